"""Schema-driven fuzzing of the REST API against its own OpenAPI document (schemathesis): valid
and invalid requests alike must never get a 5xx, and every answer must match the document.

Each operation gets generated requests that fit its schema and requests that break it; the hub
is one real process for the whole run. (schemathesis' own pytest plugin does not run on this
pytest, so the operations' strategies are driven by hypothesis directly.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from tests.http_helpers import HttpHub, start_http_hub


def rejects_bad_data(ctx: Any, response: Any, case: Any) -> bool | None:
    """schemathesis' negative-data check, with 413 counted as a rejection: a generated body
    can exceed the body limit (the hub is started with 64 KiB here) before it is invalid."""
    if response.status_code == 413:
        return None
    result: bool | None = negative_data_rejection(ctx, response, case)
    return result


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    rejects_bad_data,
]

#: The document's operations (checked against it below, so none is forgotten).
OPERATIONS = [
    ("GET", "/api/jobs"),
    ("POST", "/api/jobs"),
    ("POST", "/api/jobs/batch"),
    ("GET", "/api/jobs/{job_id}"),
    ("DELETE", "/api/jobs/{job_id}"),
    ("POST", "/api/jobs/{job_id}/retry"),
    ("GET", "/api/jobs/{job_id}/result"),
    ("GET", "/api/jobs/{job_id}/events"),
    ("GET", "/api/jobs/{job_id}/explain"),
    ("GET", "/api/workers"),
    ("GET", "/api/services"),
    ("GET", "/api/stats"),
    ("GET", "/health"),
    ("GET", "/metrics"),
]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpHub]:
    started = start_http_hub(tmp_path_factory.mktemp("http-fuzz"), ["--http-max-body", "65536"])
    yield started
    log = started.proc.output()
    started.proc.close()
    assert "Traceback" not in log, log[-3000:]


@pytest.fixture(scope="module")
def operations(hub: HttpHub) -> dict[tuple[str, str], Any]:
    schema = schemathesis.openapi.from_url(hub.url + "/openapi.json")
    found = {}
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        found[(operation.method.upper(), operation.path)] = operation
    assert sorted(found) == sorted(OPERATIONS)
    # A few jobs, so that generated ids sometimes hit one.
    for case in (
        schema["/api/jobs"]["POST"].Case(body={"type": "fuzz", "payload": {"n": i}}) for i in range(3)
    ):
        assert case.call().status_code == 201
    return found


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_rest_api_never_answers_5xx(operations: dict[tuple[str, str], Any], method: str, path: str) -> None:
    operation = operations[(method, path)]
    strategy = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @given(case=strategy)
    @settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        if case.query and "wait" in case.query and isinstance(case.query["wait"], int | float):
            case.query["wait"] = 0  # long polls are tested elsewhere; here they would only wait
        note(f"{case.method} {case.formatted_path} query={case.query} body={str(case.body)[:300]}")
        case.call_and_validate(checks=CHECKS, timeout=15)

    run()
