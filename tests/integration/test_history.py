"""The hub's history (issue 15) with real hub and worker processes: after a workload,
``GET /api/history?minutes=5`` sums to exactly what the workload did (in all and per service),
the history survives a hub restart on SQLite, two hubs on one Redis show the same merged
history, bad queries are 400s, and only admin and monitor tokens may read it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobq import JobState, SyncClient
from tests.helpers import Proc, start_worker
from tests.http_helpers import HttpHub, start_http_hub
from tests.integration.zmqauth import standard_tokens
from tests.redis_helpers import Namespace, require_redis

ECHO, BOOM = 20, 10  # jobs that complete, jobs that fail (the ``fail`` handler, one attempt)
#: The ``boom`` worker fails every job on purpose: it must not be drained for it.
KEEP = ["--auto-drain", "0"]


def history(hub: HttpHub, query: str = "minutes=5", token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(f"{hub.url}/api/history?{query}", headers=headers, timeout=10)


def sums(body: dict[str, Any]) -> tuple[int, int, int]:
    points = body["points"]
    return (
        sum(p["submitted"] for p in points),
        sum(p["completed"] for p in points),
        sum(p["failed"] for p in points),
    )


def totals(hub: HttpHub) -> dict[str | None, tuple[int, int, int]]:
    """The sums of the last five minutes: in all (None) and per service."""
    out: dict[str | None, tuple[int, int, int]] = {}
    for service in (None, "echo", "boom"):
        response = history(hub, "minutes=5" + (f"&service={service}" if service else ""))
        assert response.status_code == 200, response.text
        out[service] = sums(response.json())
    return out


EXPECTED = {None: (ECHO + BOOM, ECHO, BOOM), "echo": (ECHO, ECHO, 0), "boom": (BOOM, 0, BOOM)}


def workload(endpoint: str, echo: int = ECHO, boom: int = BOOM) -> None:
    """Submit the jobs and wait for each to end as it should."""
    with SyncClient(endpoint) as client:
        ids = [client.submit("echo", b"hi") for _ in range(echo)]
        failing = [client.submit("boom", b"no", max_attempts=1) for _ in range(boom)]
        for job_id in ids:
            assert client.wait(job_id, 30).state is JobState.COMPLETED
        for job_id in failing:
            assert client.wait(job_id, 30).state is JobState.FAILED


def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)


def test_history_counts_what_a_workload_did_and_survives_a_restart(tmp_path: Path, procs: list[Proc]) -> None:
    store = f"sqlite:///{tmp_path / 'jobq.db'}"
    hub = start_http_hub(tmp_path, ["--store", store, *KEEP])
    procs.append(hub.proc)
    procs.append(start_worker(tmp_path, hub.endpoint, service="echo", handler="echo"))
    procs.append(start_worker(tmp_path, hub.endpoint, service="boom", handler="fail"))
    workload(hub.endpoint)

    body = history(hub).json()
    assert body["bucket"] == 10 and body["service"] is None
    assert len(body["points"]) == 30 and body["until"] - body["since"] == 300
    assert [p["t"] for p in body["points"]] == list(range(body["since"], body["until"], 10))
    assert {"echo", "boom"} <= set(body["services"])
    assert totals(hub) == EXPECTED  # at once: this hub answers with what it has not flushed yet
    started = [p for p in body["points"] if p["wait_ms"] is not None]
    ended = [p for p in body["points"] if p["run_ms"] is not None]
    assert started and ended
    assert all(0 <= p["wait_ms"]["p50"] <= p["wait_ms"]["p95"] <= p["wait_ms"]["p99"] for p in started)
    # the queue depth is sampled at each flush (every 5 s): 0 now that every job has ended
    wait_for(
        lambda: [p["depth"] for p in history(hub).json()["points"] if p["depth"] is not None][-1:] == [0]
    )

    for bad in ("minutes=0", "minutes=10081", "minutes=abc", "minutes=5&service="):
        refused = history(hub, bad)
        assert refused.status_code == 400, (bad, refused.text)
        assert refused.json()["error"] == "invalid"
    week = history(hub, "minutes=10080").json()
    assert week["bucket"] == 60 and len(week["points"]) == 10080 and sums(week) == EXPECTED[None]

    assert hub.proc.terminate() == 0  # a clean shutdown flushes what is left
    hub = start_http_hub(tmp_path, ["--store", store, *KEEP], name="again")
    procs.append(hub.proc)
    assert totals(hub) == EXPECTED


def test_two_hubs_on_one_redis_show_one_merged_history(tmp_path: Path, procs: list[Proc]) -> None:
    require_redis()
    namespace = Namespace()
    try:
        a = start_http_hub(tmp_path, ["--store", namespace.url, *KEEP], name="hub-a")
        procs.append(a.proc)
        b = start_http_hub(tmp_path, ["--store", namespace.url, *KEEP], name="hub-b")
        procs.append(b.proc)
        procs.append(start_worker(tmp_path, a.endpoint, service="echo", handler="echo"))
        procs.append(start_worker(tmp_path, b.endpoint, service="echo", handler="echo"))
        procs.append(start_worker(tmp_path, b.endpoint, service="boom", handler="fail"))
        workload(a.endpoint, echo=12, boom=4)
        workload(b.endpoint, echo=ECHO - 12, boom=BOOM - 4)
        # each hub has its own figures at once and the other's after its next flush (5 s)
        wait_for(lambda: totals(a) == EXPECTED)
        wait_for(lambda: totals(b) == EXPECTED)
    finally:
        namespace.cleanup()


def test_only_admin_and_monitor_tokens_read_the_history(tmp_path: Path, procs: list[Proc]) -> None:
    tokens = standard_tokens(tmp_path)
    hub = start_http_hub(tmp_path, ["--auth", str(tokens.path)])
    procs.append(hub.proc)
    assert history(hub, token=tokens["admin"]).status_code == 200
    assert history(hub, token=tokens["monitor"]).status_code == 200
    refused = history(hub, token=tokens["client-a"])
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    assert history(hub, token=tokens["worker-all"]).status_code == 403
    assert history(hub).status_code == 401


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """httpx must reach the loopback door directly."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
