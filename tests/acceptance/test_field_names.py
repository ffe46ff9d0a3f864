"""One name per field (issue 15): a job fetched three ways (REST, ``jobq status --json``, the SDK)
has each field under the same name, REST adding only the documented EmProps aliases (docs/http.md,
*Field names*); and listings stay light: no job's timeline in a listing, every event in ``get``.

A real hub process (ZeroMQ and HTTP doors), a real worker, the real ``jobq`` command."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest

from jobq.client.sync import SyncClient
from jobq.core.model import Job
from tests.helpers import REPO, Proc, jobq_command, start_worker
from tests.http_helpers import HttpHub, Peer, start_http_hub

#: REST's EmProps-compatible names → jobq's (the CLI's and the SDK's) for a job, as documented.
JOB_ALIASES = {"job_id": "id", "status": "state", "worker_id": "worker", "created_at": "submitted_at"}
#: ... for an event of a job's timeline.
EVENT_ALIASES = {"event": "kind", "status": "state", "worker_id": "worker"}
#: REST fields with no counterpart elsewhere: how payload and result travel in JSON.
REST_ONLY = {"payload_encoding", "result_encoding"}


def jobq(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(jobq_command(*args), capture_output=True, timeout=60, text=True, env=env)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HttpHub, Proc]]:
    tmp = tmp_path_factory.mktemp("field-names")
    hub = start_http_hub(tmp)
    worker = start_worker(tmp, hub.endpoint, service="names", handler="tests.handlers:upper", name="nw")
    try:
        yield hub, worker
    finally:
        worker.close()
        hub.proc.close()


@pytest.fixture(scope="module")
def done_job(cluster: tuple[HttpHub, Proc]) -> int:
    """A job submitted over REST and completed by the worker."""
    hub, worker = cluster
    with httpx.Client(base_url=hub.url, timeout=30) as api:
        body = {
            "type": "names",
            "payload": "hello",
            "payload_encoding": "text",
            "priority": 3,
            "max_attempts": 2,
        }
        created = api.post("/api/jobs", json={**body, "customer_id": "acme"})
        assert created.status_code == 201, created.text
        answer = created.json()
        assert answer["id"] == answer["job_id"] and answer["state"] == answer["status"] == "queued"
        result = api.get(f"/api/jobs/{answer['id']}/result", params={"wait": 30})
        assert result.status_code == 200, result.text + worker.output()
        done = result.json()
        assert done["id"] == done["job_id"] == answer["id"] and done["state"] == done["status"] == "completed"
        job_id: int = answer["id"]
        return job_id


def _canonical(rest: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    """REST's answer under jobq's names, each alias checked to carry its canonical's value."""
    for alias, name in aliases.items():
        if alias in rest or name in rest:
            assert rest.get(alias) == rest.get(name), (alias, name, rest)
    return {key: value for key, value in rest.items() if key not in aliases}


def test_a_job_has_the_same_field_names_over_rest_the_cli_and_the_sdk(
    cluster: tuple[HttpHub, Proc], done_job: int
) -> None:
    hub, _ = cluster
    with httpx.Client(base_url=hub.url, timeout=30) as api:
        rest = api.get(f"/api/jobs/{done_job}").json()
        events = api.get(f"/api/jobs/{done_job}/events").json()
    shown = jobq("status", str(done_job), "--json", "--hub", hub.endpoint)
    assert shown.returncode == 0, shown.stderr
    cli = json.loads(shown.stdout)
    with SyncClient(hub.endpoint) as client:
        job = client.status(done_job)
    assert isinstance(job, Job)
    sdk = msgspec.structs.asdict(job)

    assert {"id", "state", "worker", "submitted_at"} <= rest.keys()
    assert set(JOB_ALIASES) <= rest.keys()  # the EmProps names stay, as aliases
    view = _canonical(rest, JOB_ALIASES)
    # Every field REST shows is named as the CLI and the SDK name it (but how JSON carries data).
    assert view.keys() - REST_ONLY <= cli.keys(), view.keys() - REST_ONLY - cli.keys()
    assert view.keys() - REST_ONLY <= sdk.keys(), view.keys() - REST_ONLY - sdk.keys()
    for name in (
        "id",
        "service",
        "state",
        "priority",
        "customer_id",
        "attempts",
        "max_attempts",
        "worker",
        "submitted_at",
        "started_at",
        "finished_at",
        "error",
    ):
        value = sdk[name].value if name == "state" else sdk[name]
        assert view.get(name) == cli[name] == value, (name, view.get(name), cli[name], value)
    assert view["state"] == "completed" and view["worker"].startswith("nw")
    assert view["payload"] == cli["payload"] == "hello" and view["result"] == cli["result"] == "HELLO"

    # A timeline's events: kind, state, worker (and the EmProps event, status, worker_id).
    assert events["id"] == events["job_id"] == done_job
    marks = [_canonical(e, EVENT_ALIASES) for e in events["events"]]
    brief = [(e["kind"], e.get("attempt", 0), e.get("worker"), e["at"]) for e in marks]
    for timeline in (cli["timeline"], [msgspec.structs.asdict(m) for m in job.timeline]):
        assert brief == [(m["kind"], m["attempt"], m["worker"], m["at"]) for m in timeline]
    assert [(e["kind"], e["state"]) for e in marks] == [
        ("submitted", "queued"),
        ("started", "running"),
        ("completed", "completed"),
    ]


def test_listings_workers_and_explain_use_the_same_names(
    cluster: tuple[HttpHub, Proc], done_job: int
) -> None:
    hub, _ = cluster
    with httpx.Client(base_url=hub.url, timeout=30) as api:
        by_state = api.get("/api/jobs", params={"state": "completed", "service": "names"}).json()
        by_status = api.get("/api/jobs", params={"status": "completed", "service": "names"}).json()
        bad = api.get("/api/jobs", params={"state": "nope"})
        workers = api.get("/api/workers").json()
        explained = api.get(f"/api/jobs/{done_job}/explain").json()
    assert [j["id"] for j in by_state["jobs"]] == [j["id"] for j in by_status["jobs"]] == [done_job]
    assert bad.status_code == 400 and bad.json()["fields"] == ["state"]
    listed = _canonical(by_state["jobs"][0], JOB_ALIASES)
    assert listed["state"] == "completed" and listed["worker"].startswith("nw")
    [worker] = [w for w in workers if w["id"].startswith("nw")]
    assert worker["id"] == worker["worker_id"]
    cli_workers = jobq("workers", "--json", "--hub", hub.endpoint)
    assert cli_workers.returncode == 0, cli_workers.stderr
    assert worker["id"] in [json.loads(line)["id"] for line in cli_workers.stdout.splitlines()]
    assert explained["id"] == done_job and explained["state"] == "completed"


def test_websocket_messages_carry_both_names(cluster: tuple[HttpHub, Proc]) -> None:
    hub, _ = cluster

    async def scenario() -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
        monitor = await Peer.open(hub.ws + "/ws/monitor")
        client = await Peer.open(hub.ws + "/ws/client")
        try:
            snapshot = await monitor.request({"type": "request_full_state"}, "full_state_snapshot")
            submitted = await client.request(
                {"type": "submit_job", "id": "r1", "job_type": "names", "payload": "ws"}, "job_submitted"
            )
            pushed = [await client.expect("complete_job", timeout=30)]
            return submitted, pushed, snapshot
        finally:
            await Peer.close_all()

    submitted, pushed, snapshot = asyncio.run(scenario())
    assert submitted["id"] == submitted["job_id"] and submitted["state"] == submitted["status"] == "queued"
    assert submitted["request_id"] == "r1"
    [done] = pushed
    assert done["id"] == done["job_id"] == submitted["id"]
    assert done["kind"] == done["event"] == "completed" and done["state"] == done["status"] == "completed"
    assert done["worker"] == done["worker_id"] and done["worker"].startswith("nw")
    assert all(w["id"] == w["worker_id"] for w in snapshot["workers"]) and snapshot["workers"]
    assert all(j["id"] == j["job_id"] and j["state"] == j["status"] for j in snapshot["jobs"])


def test_listings_leave_timelines_out_and_a_single_job_keeps_it(
    cluster: tuple[HttpHub, Proc], done_job: int
) -> None:
    hub, _ = cluster
    with SyncClient(hub.endpoint) as client:
        listed = client.jobs(service="names", state="completed")
        with_payloads = client.jobs(service="names", state="completed", payload=True)
        single = client.status(done_job)
    assert done_job in [job.id for job in listed]
    assert all(job.timeline == [] for job in listed + with_payloads)
    assert [job.payload for job in with_payloads if job.id == done_job] == [[b"hello"]]
    assert single is not None and [m.kind for m in single.timeline] == ["submitted", "started", "completed"]

    lines = jobq("jobs", "--service", "names", "--json", "--hub", hub.endpoint)
    assert lines.returncode == 0, lines.stderr
    rows = [json.loads(line) for line in lines.stdout.splitlines()]
    assert done_job in [row["id"] for row in rows] and all("timeline" not in row for row in rows)
    status = json.loads(jobq("status", str(done_job), "--json", "--hub", hub.endpoint).stdout)
    assert len(status["timeline"]) == 3

    with httpx.Client(base_url=hub.url, timeout=30) as api:
        page = api.get("/api/jobs", params={"service": "names"}).json()
        events = api.get(f"/api/jobs/{done_job}/events").json()
    assert page["jobs"] and all("timeline" not in job and "events" not in job for job in page["jobs"])
    assert len(events["events"]) == 3


def test_the_timeline_stays_out_of_a_listing_of_many_events(cluster: tuple[HttpHub, Proc]) -> None:
    """A job with many events: the listing's answer does not grow with them."""
    hub, _ = cluster
    with SyncClient(hub.endpoint) as client:
        job_id = client.submit("names-nobody", b"x")
        for _ in range(3):
            client.cancel(job_id)
            client.retry(job_id)
        deadline = time.monotonic() + 10
        while len((client.status(job_id) or single_missing()).timeline) < 7 and time.monotonic() < deadline:
            time.sleep(0.05)
        full = client.status(job_id)
        [listed] = client.jobs(service="names-nobody")
    assert full is not None and len(full.timeline) >= 7
    assert listed.id == job_id and listed.timeline == []


def single_missing() -> Job:
    raise AssertionError("the job is gone")
