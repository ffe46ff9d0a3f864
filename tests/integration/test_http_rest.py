"""The HTTP door's REST API against a real hub process (httpx), incl. REST submit → ZeroMQ worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import start_worker
from tests.http_helpers import HttpHub, start_http_hub

MAX_BODY = 64 * 1024


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpHub]:
    tmp = tmp_path_factory.mktemp("http-rest")
    started = start_http_hub(tmp, ["--http-max-body", str(MAX_BODY), "--max-payload", "20000"])
    worker = start_worker(tmp, started.endpoint, service="echo", handler="tests.handlers:upper", name="zw1")
    yield started
    worker.close()
    started.proc.close()


@pytest.fixture
def api(hub: HttpHub) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub.url, timeout=20) as client:
        yield client


def submit(api: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    answer = api.post("/api/jobs", json=body)
    assert answer.status_code == 201, answer.text
    created: dict[str, Any] = answer.json()
    return created


def wait_for_workers(api: httpx.Client, n: int = 1) -> None:
    import time

    deadline = time.monotonic() + 20
    while len(api.get("/api/workers").json()) < n:
        assert time.monotonic() < deadline, "workers did not connect"
        time.sleep(0.05)


def test_emprops_body_becomes_a_job_and_can_be_cancelled_and_retried(api: httpx.Client) -> None:
    body = {
        "type": "nobody-serves-this",
        "priority": 7,
        "payload": {"prompt": "a cat", "steps": 20},
        "customer_id": "acme",
        "requirements": {
            "service_type": "comfyui",
            "component": "upscaler",
            "models": ["sdxl"],
            "hardware": {"gpu_memory_gb": 16, "cpu_cores": 4},
            "customer_isolation": "strict",
            "geographic_region": "eu",
            "compliance": ["gdpr"],
            "quality_level": "high",
            "timeout_minutes": 2,
        },
        "max_attempts": 5,
        "idempotency_key": "cat-1",
    }
    created = submit(api, body)
    assert created["status"] == "queued" and created["created"] is True
    assert created["queue_position"] >= 1
    job = api.get(f"/api/jobs/{created['job_id']}").json()
    assert job["service"] == "nobody-serves-this" and job["priority"] == 7
    assert job["customer_id"] == "acme" and job["isolation"] == "strict" and job["timeout"] == 120
    assert job["max_attempts"] == 5
    assert job["requires"]["hardware"] == {"gpu_memory_gb": 16, "cpu_cores": 4}
    assert job["requires"]["geographic_region"] == "eu"
    assert job["payload"] == {"prompt": "a cat", "steps": 20} and job["payload_encoding"] == "json"
    # The same idempotency key answers the first job, with 200 instead of 201.
    again = api.post("/api/jobs", json=body)
    assert again.status_code == 200 and again.json()["job_id"] == created["job_id"]
    assert again.json()["created"] is False
    explain = api.get(f"/api/jobs/{created['job_id']}/explain").json()
    assert "no connected worker serves" in explain["summary"]
    listed = api.get("/api/jobs", params={"status": "queued", "customer_id": "acme"}).json()["jobs"]
    assert created["job_id"] in [j["job_id"] for j in listed]
    cancelled = api.delete(f"/api/jobs/{created['job_id']}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    twice = api.delete(f"/api/jobs/{created['job_id']}")
    assert twice.status_code == 409 and twice.json()["error"] == "conflict"
    result = api.get(f"/api/jobs/{created['job_id']}/result")
    assert result.status_code == 409
    retried = api.post(f"/api/jobs/{created['job_id']}/retry")
    assert retried.status_code == 200 and retried.json()["status"] == "queued"
    api.delete(f"/api/jobs/{created['job_id']}")


def test_rest_submit_runs_on_a_zeromq_worker(api: httpx.Client) -> None:
    wait_for_workers(api)
    text = submit(api, {"type": "echo", "payload": "hello", "payload_encoding": "text"})
    binary = submit(api, {"type": "echo", "payload": ["aGk=", "AP8="], "payload_encoding": "base64"})
    data = submit(api, {"type": "echo", "payload": {"k": "v"}})
    answer = api.get(f"/api/jobs/{text['job_id']}/result", params={"wait": 20})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "id": text["job_id"],
        "job_id": text["job_id"],
        "state": "completed",
        "status": "completed",
        "result": "HELLO",
        "result_encoding": "text",
    }
    raw = api.get(f"/api/jobs/{binary['job_id']}/result", params={"wait": 20, "raw": True})
    assert raw.status_code == 200 and raw.content == b"HI\x00\xff"
    assert raw.headers["content-type"] == "application/octet-stream"
    shouted = api.get(f"/api/jobs/{data['job_id']}/result", params={"wait": 20}).json()
    assert shouted["result"] == {"K": "V"} and shouted["result_encoding"] == "json"
    events = api.get(f"/api/jobs/{text['job_id']}/events").json()
    assert events["recorded"] is True
    assert [e["event"] for e in events["events"]] == ["submitted", "started", "completed"]
    job = api.get(f"/api/jobs/{text['job_id']}").json()
    assert job["worker_id"] and job["attempts"] == 1 and job["finished_at"] >= job["started_at"]


def test_batch_submit_is_all_or_nothing(api: httpx.Client) -> None:
    good = {"type": "batch-svc", "payload": 1}
    answer = api.post("/api/jobs/batch", json={"jobs": [good, good, good]})
    assert answer.status_code == 201
    ids = [j["job_id"] for j in answer.json()["jobs"]]
    assert len(set(ids)) == 3
    bad = api.post("/api/jobs/batch", json={"jobs": [good, {"payload": 2, "colour": "red"}]})
    assert bad.status_code == 400
    assert bad.json()["fields"] == ["jobs[1].type", "jobs[1].colour"]
    listed = api.get("/api/jobs", params={"service": "batch-svc"}).json()["jobs"]
    assert sorted(j["job_id"] for j in listed) == sorted(ids)


def test_cluster_views_metrics_and_openapi(api: httpx.Client) -> None:
    wait_for_workers(api)
    workers = api.get("/api/workers").json()
    assert workers[0]["door"] == "zmq" and workers[0]["services"] == ["echo"]
    assert workers[0]["health"] in ("ok", "late") and workers[0]["slots"] == 4
    services = {s["name"]: s for s in api.get("/api/services").json()}
    assert services["echo"]["workers"] == 1
    stats = api.get("/api/stats").json()
    assert stats["workers"] == 1 and stats["slots"] == 4 and "submitted" in stats["counters"]
    assert api.get("/health").json()["status"] == "ok"
    submit(api, {"type": "echo", "payload": "m"})
    api.get("/api/jobs", params={"service": "echo", "limit": 1})
    metrics = api.get("/metrics")
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    for name in (
        "jobq_jobs{",
        "jobq_jobs_submitted_total",
        "jobq_jobs_completed_total",
        "jobq_jobs_failed_total",
        'jobq_workers_connected{door="zmq"} 1.0',
        "jobq_worker_slots_free",
        "jobq_http_websockets",
    ):
        assert name in text, name
    document = api.get("/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    body = document["paths"]["/api/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/JobRequest"}
    assert set(document["components"]["schemas"]["JobRequest"]["required"]) == {"type", "payload"}
    for page in ("/", "/docs", "/dashboard/app.js", "/dashboard/style.css"):
        assert api.get(page).status_code == 200, page


BAD_BODIES: list[tuple[str, bytes, int, list[str]]] = [
    ("empty", b"", 400, []),
    ("malformed", b'{"type": "x", ', 400, []),
    ("not an object", b"[1, 2]", 400, []),
    ("string", b'"hello"', 400, []),
    ("missing both", b"{}", 400, ["type", "payload"]),
    ("missing payload", b'{"type": "x"}', 400, ["payload"]),
    ("unknown field", b'{"type": "x", "payload": 1, "colour": "red"}', 400, ["colour"]),
    (
        "nested unknown",
        b'{"type": "x", "payload": 1, "requirements": {"hardware": {"vram": 3}}}',
        400,
        ["requirements.hardware.vram"],
    ),
    ("priority as string", b'{"type": "x", "payload": 1, "priority": "5"}', 400, ["priority"]),
    (
        "huge priority",
        b'{"type": "x", "payload": 1, "priority": 99999999999999999999999999}',
        400,
        ["priority"],
    ),
    ("float priority", b'{"type": "x", "payload": 1, "priority": 1.5}', 400, ["priority"]),
    ("huge float", b'{"type": "x", "payload": 1, "timeout": 1e400}', 400, ["timeout"]),
    ("negative delay", b'{"type": "x", "payload": 1, "delay": -1}', 400, ["delay"]),
    ("zero attempts", b'{"type": "x", "payload": 1, "max_attempts": 0}', 400, ["max_attempts"]),
    ("empty type", b'{"type": "", "payload": 1}', 400, ["type"]),
    ("type not a string", b'{"type": 5, "payload": 1}', 400, ["type"]),
    ("control characters", b'{"type": "a\\u0001b", "payload": 1}', 400, []),
    ("bad isolation", b'{"type": "x", "payload": 1, "isolation": "total"}', 400, ["isolation"]),
    ("isolation without customer", b'{"type": "x", "payload": 1, "isolation": "strict"}', 400, []),
    ("bad base64", b'{"type": "x", "payload": "%%%", "payload_encoding": "base64"}', 400, ["payload"]),
    ("text not a string", b'{"type": "x", "payload": 5, "payload_encoding": "text"}', 400, ["payload"]),
    ("naive run_at", b'{"type": "x", "payload": 1, "run_at": "2030-01-01T00:00:00"}', 400, ["run_at"]),
    ("bad requires", b'{"type": "x", "payload": 1, "requires": {"a": {"b": [[1]]}}}', 400, []),
    ("payload over the hub limit", json.dumps({"type": "x", "payload": "a" * 30000}).encode(), 413, []),
    (
        "body over the door limit",
        json.dumps({"type": "x", "payload": "a" * (MAX_BODY + 10)}).encode(),
        413,
        [],
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "fields"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES]
)
def test_bad_bodies_get_a_4xx_naming_the_fields(
    api: httpx.Client, body: bytes, status: int, fields: list[str]
) -> None:
    answer = api.post("/api/jobs", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == status, answer.text
    error = answer.json()
    assert error["error"] in ("invalid", "too_large") and error["message"]
    if fields:
        assert error["fields"] == fields
    # the same body as a one-job batch is refused the same way
    if status == 400 and body.startswith(b"{") and fields:
        batch = api.post("/api/jobs/batch", content=b'{"jobs": [' + body + b"]}")
        assert batch.status_code == 400 and batch.json()["fields"] == [f"jobs[0].{f}" for f in fields]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/api/jobs?limit=-1", 400),
        ("GET", "/api/jobs?limit=many", 400),
        ("GET", "/api/jobs?limit=100000", 400),
        ("GET", "/api/jobs?status=done", 400),
        ("GET", "/api/jobs?offset=99999999999999999999999", 400),
        ("GET", "/api/jobs/0", 400),
        ("GET", "/api/jobs/99999999999999999999999999", 400),
        ("GET", "/api/jobs/123456789", 404),
        ("GET", "/api/jobs/abc", 404),
        ("GET", "/api/jobs/1/result?wait=-1", 400),
        ("GET", "/api/jobs/1/result?wait=1e999", 400),
        ("DELETE", "/api/jobs/123456789", 404),
        ("POST", "/api/jobs/123456789/retry", 404),
        ("GET", "/api/nothing", 404),
        ("PUT", "/api/jobs", 405),
    ],
)
def test_bad_parameters_get_a_4xx(api: httpx.Client, method: str, path: str, status: int) -> None:
    answer = api.request(method, path)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]


def test_the_hub_survives_all_that(api: httpx.Client, hub: HttpHub) -> None:
    """After every bad request above, the hub still answers and logged no internal error."""
    assert api.get("/health").status_code == 200
    assert "Traceback" not in hub.proc.output()
