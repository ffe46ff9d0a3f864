"""Operator control of workers with real hub and worker processes on loopback (issue 12, finding
11): ``jobq workers drain|resume|evict``, the SDK, REST and the monitor stream, the automatic
drain of a worker that fails job after job, and only an admin may do any of it."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from jobq import Client, JobState, SyncClient
from jobq.errors import Forbidden
from tests.helpers import Proc, hub_cli, start_hub, start_worker, wait_until
from tests.http_helpers import Peer, start_http_hub
from tests.integration.zmqauth import standard_tokens

FAST = ["--heartbeat", "0.2", "--liveness", "5"]
TRACED = "tests.handlers:traced_sleep"


@pytest.fixture(autouse=True)
async def close_peers() -> AsyncIterator[None]:
    yield
    await Peer.close_all()


def worker_of(client: SyncClient, name: str) -> str:
    """The id of the connected worker started with ``--name name``."""
    found: list[str] = []

    def connected() -> bool:
        found[:] = [w.id for w in client.workers() if w.name == name]
        return bool(found)

    wait_until(connected)
    return found[0]


def ran_on(client: SyncClient, job_id: int, timeout: float = 20) -> str:
    job = client.wait(job_id, timeout)
    assert job.state is JobState.COMPLETED, job
    assert job.worker is not None
    return job.worker


def test_drain_and_resume_from_the_cli(tmp_path: Path, procs: list[Proc]) -> None:
    hub, endpoint = start_hub(tmp_path, store="memory://", extra=FAST)
    procs.append(hub)
    a = start_worker(tmp_path, endpoint, service="work", handler=TRACED, concurrency=1, name="wa")
    procs.append(a)
    with SyncClient(endpoint) as client:
        a_id = worker_of(client, "wa")
        running = client.submit("work", b"1.5")
        wait_until(lambda: (job := client.status(running)) is not None and job.state is JobState.RUNNING)

        drained = hub_cli(endpoint, "workers", "drain", "wa", "--reason", "new driver")
        assert drained.returncode == 0, drained.stderr
        assert f"worker {a_id} drained (new driver)" in drained.stdout
        listed = hub_cli(endpoint, "workers", "--json")
        rows = {row["id"]: row for row in map(json.loads, listed.stdout.splitlines())}
        assert rows[a_id]["drained"] == "new driver"
        assert "new driver" in hub_cli(endpoint, "workers").stdout

        b = start_worker(tmp_path, endpoint, service="work", handler=TRACED, concurrency=1, name="wb")
        procs.append(b)
        b_id = worker_of(client, "wb")
        later = [client.submit("work", b"0.05") for _ in range(4)]
        assert {ran_on(client, job_id) for job_id in later} == {b_id}  # none on the drained worker
        assert ran_on(client, running) == a_id  # what it ran, it finished

        resumed = hub_cli(endpoint, "workers", "resume", a_id)
        assert resumed.returncode == 0 and "takes jobs again" in resumed.stdout, resumed.stderr
        assert b.terminate() == 0
        assert ran_on(client, client.submit("work", b"0")) == a_id
        listed = hub_cli(endpoint, "workers", "--json")
        rows = {row["id"]: row for row in map(json.loads, listed.stdout.splitlines())}
        assert rows[a_id]["drained"] is None

        unknown = hub_cli(endpoint, "workers", "evict", "nobody")
        assert unknown.returncode == 4 and "no worker nobody" in unknown.stderr


async def test_evict_puts_the_running_job_on_another_worker(tmp_path: Path, procs: list[Proc]) -> None:
    trace = tmp_path / "trace"
    trace.mkdir()
    hub, endpoint = start_hub(tmp_path, store="memory://", extra=FAST)
    procs.append(hub)
    env = {"JOBQ_TEST_TRACE": str(trace)}
    a = start_worker(tmp_path, endpoint, service="work", handler=TRACED, concurrency=2, name="ea", env=env)
    procs.append(a)
    async with Client(endpoint) as client:

        async def ids(name: str) -> list[str]:
            return [w.id for w in await client.workers() if w.name == name]

        deadline = time.monotonic() + 20
        while not await ids("ea"):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        [a_id] = await ids("ea")
        job_id = await client.submit("work", b"2")
        while not (trace / f"{job_id}.started").exists():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        b = start_worker(
            tmp_path, endpoint, service="work", handler=TRACED, concurrency=1, name="eb", env=env
        )
        procs.append(b)
        while not await ids("eb"):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        [b_id] = await ids("eb")

        notice = await client.evict_worker(a_id)
        assert notice.kind == "evicted" and notice.requeued == 1 and notice.drained == "evicted by local"
        job = await client.wait(job_id, 20)
        assert job.state is JobState.COMPLETED and job.worker == b_id
        assert (trace / f"{job_id}.cancelled").exists()  # the evicted worker was told to stop it
        # It said hello again, and is attached drained until an operator resumes it.
        while not [w for w in await client.workers() if w.id == a_id and w.drained]:
            assert time.monotonic() < deadline + 10
            await asyncio.sleep(0.05)
        assert (await client.resume_worker(a_id)).kind == "resumed"
    assert "evicted by local; 1 attempt(s) back to the queue" in hub.output()


async def test_a_worker_failing_job_after_job_is_drained_and_monitors_hear_it(
    tmp_path: Path, procs: list[Proc]
) -> None:
    web = start_http_hub(tmp_path, extra=["--auto-drain", "3"])
    procs.append(web.proc)
    monitor = await Peer.open(web.ws + "/ws/monitor")
    await monitor.request({"type": "request_full_state"}, "full_state_snapshot")
    bad = start_worker(tmp_path, web.endpoint, service="flaky", handler="fail", concurrency=1, name="bad")
    procs.append(bad)
    async with Client(web.endpoint) as client, httpx.AsyncClient(base_url=web.url, timeout=10) as api:
        jobs = [await client.submit("flaky", b"boom", max_attempts=1) for _ in range(5)]
        drained = await monitor.expect("worker_drained", timeout=20)
        assert (
            drained["by"] == "hub" and drained["drained"] == "automatic: 3 failed or lost attempts in a row"
        )
        worker_id = drained["worker_id"]
        states = [(await client.wait(job_id, 10)).state for job_id in jobs[:3]]
        assert states == [JobState.FAILED] * 3
        await asyncio.sleep(0.5)
        assert [(await client.status(job_id)).state for job_id in jobs[3:]] == [JobState.QUEUED] * 2  # type: ignore[union-attr]
        [listed] = (await api.get("/api/workers")).json()
        assert listed["worker_id"] == worker_id and listed["drained"] == drained["drained"]

        resumed = await api.post(
            f"/api/workers/{worker_id}/resume", headers={"Content-Type": "application/json"}
        )
        assert resumed.status_code == 200, resumed.text
        assert resumed.json()["action"] == "resumed" and resumed.json()["drained"] is None
        await monitor.expect("worker_resumed", worker_id=worker_id)
        assert [(await client.wait(job_id, 10)).state for job_id in jobs[3:]] == [JobState.FAILED] * 2
        assert (await api.get("/api/stats")).json()["counters"]["auto_drained"] == 1
    log = web.proc.output()
    assert f"worker {worker_id} drained: automatic: 3 failed or lost attempts in a row" in log
    assert "boom" not in log  # the log line names the worker and why, never a payload


async def test_only_an_admin_token_may_drain_resume_or_evict(tmp_path: Path, procs: list[Proc]) -> None:
    tokens = standard_tokens(tmp_path)
    web = start_http_hub(tmp_path, extra=["--auth", str(tokens.path)])
    procs.append(web.proc)
    worker = start_worker(tmp_path, web.endpoint, name="guarded", env={"JOBQ_TOKEN": tokens["worker-all"]})
    procs.append(worker)
    async with Client(web.endpoint, token=tokens["admin"]) as admin:
        deadline = time.monotonic() + 20
        while not [w for w in await admin.workers() if w.name == "guarded"]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        for name in ("client-a", "worker-all", "monitor"):
            async with Client(web.endpoint, token=tokens[name]) as other:
                with pytest.raises(Forbidden, match="only an admin token may drain workers"):
                    await other.drain_worker("guarded")
        refused = await asyncio.to_thread(
            hub_cli, web.endpoint, "workers", "evict", "guarded", token=tokens["client-a"]
        )
        assert refused.returncode == 7 and "only an admin token may evict workers" in refused.stderr
        async with httpx.AsyncClient(base_url=web.url, timeout=10) as api:
            for name in ("monitor", "client-a"):
                answer = await api.post(
                    "/api/workers/guarded/drain",
                    json={"reason": "no"},
                    headers={"Authorization": f"Bearer {tokens[name]}"},
                )
                assert answer.status_code == 403, answer.text
            anonymous = await api.post("/api/workers/guarded/drain", json={})
            assert anonymous.status_code == 401
            assert all(w.drained is None for w in await admin.workers())
            done = await api.post(
                "/api/workers/guarded/drain",
                json={"reason": "maintenance"},
                headers={"Authorization": f"Bearer {tokens['admin']}"},
            )
            assert done.status_code == 200 and done.json()["drained"] == "maintenance", done.text
            assert done.json()["by"] == "admin"
        assert [w.drained for w in await admin.workers()] == ["maintenance"]
        allowed = await asyncio.to_thread(
            hub_cli, web.endpoint, "workers", "resume", "guarded", token=tokens["admin"]
        )
        assert allowed.returncode == 0, allowed.stderr
        assert [w.drained for w in await admin.workers()] == [None]
