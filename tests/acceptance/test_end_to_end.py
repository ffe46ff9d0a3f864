"""Issue 2 end to end: a real hub process, real worker processes, real clients on loopback."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from jobq.client.client import Client, make_spec
from jobq.core.states import JobState
from jobq.errors import Unavailable
from tests.helpers import Proc, start_hub, start_worker

FAST = ["--heartbeat", "0.2", "--liveness", "5", "--lease-ttl", "5"]


def worker(
    tmp: Path,
    endpoint: str,
    procs: list[Proc],
    handler: str = "echo",
    concurrency: int = 4,
    service: str = "echo",
    trace: Path | None = None,
) -> Proc:
    env = {} if trace is None else {"JOBQ_TEST_TRACE": str(trace)}
    p = start_worker(tmp, endpoint, service=service, handler=handler, concurrency=concurrency, env=env)
    procs.append(p)
    return p


async def wait_workers(client: Client, n: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while len(await client.workers()) < n:
        assert time.monotonic() < deadline, "workers did not connect"
        await asyncio.sleep(0.05)


async def test_two_workers_two_thousand_jobs(tmp_path: Path, procs: list[Proc]) -> None:
    hub, endpoint = start_hub(tmp_path)
    procs.append(hub)
    worker(tmp_path, endpoint, procs, handler="tests.handlers:upper")
    worker(tmp_path, endpoint, procs, handler="tests.handlers:upper")
    async with Client(endpoint) as client:
        await wait_workers(client, 2)
        specs = [make_spec("echo", f"job {i}") for i in range(2000)]
        accepted = await client.submit_many(specs, watch=True)
        ends = await asyncio.gather(*(client.finished(i, 60) for i, _, _ in accepted))
    assert [b"".join(e.result or []) for e in ends] == [f"JOB {i}".encode() for i in range(2000)]
    workers_used = {e.worker for e in ends}
    assert len(workers_used) == 2


async def test_sigkilled_worker_loses_nothing(tmp_path: Path, procs: list[Proc]) -> None:
    hub, endpoint = start_hub(tmp_path, extra=FAST)
    procs.append(hub)
    trace = tmp_path / "trace"
    trace.mkdir()
    victim = worker(tmp_path, endpoint, procs, handler="tests.handlers:traced_sleep", trace=trace)
    async with Client(endpoint) as client:
        await wait_workers(client, 1)
        accepted = await client.submit_many([make_spec("echo", b"0.3") for _ in range(30)], watch=True)
        ids = [a[0] for a in accepted]
        # wait until the victim holds running jobs, then kill it without a word
        while len(list(trace.glob("*.started"))) < 4:
            await asyncio.sleep(0.02)
        victim.kill()
        worker(tmp_path, endpoint, procs, handler="tests.handlers:traced_sleep", trace=trace)
        ends = await asyncio.gather(*(client.finished(i, 60) for i in ids))
    assert all(e.state is JobState.COMPLETED for e in ends)
    assert sorted(e.id for e in ends) == sorted(ids)  # one end per job as the client sees it
    reruns = [p for p in trace.glob("*.started") if len(p.read_text().splitlines()) > 1]
    assert reruns, "the killed worker's jobs should have run again elsewhere"


async def test_sigkilled_hub_restarts_and_everything_completes(tmp_path: Path, procs: list[Proc]) -> None:
    hub, endpoint = start_hub(tmp_path, extra=FAST)
    procs.append(hub)
    port = int(endpoint.rsplit(":", 1)[1])
    worker(tmp_path, endpoint, procs, handler="tests.handlers:traced_sleep", concurrency=4)
    worker(tmp_path, endpoint, procs, handler="tests.handlers:traced_sleep", concurrency=4)
    async with Client(endpoint) as client:
        await wait_workers(client, 2)
        accepted = await client.submit_many([make_spec("echo", b"0.05") for _ in range(300)])
        ids = [a[0] for a in accepted]
        while True:
            stats = await client.stats()
            if stats["jobs"]["by_state"].get("completed", 0) >= 30:
                break
            await asyncio.sleep(0.02)
    hub.kill()
    hub, _ = start_hub(tmp_path, port=port, extra=FAST, name="hub2")
    procs.append(hub)
    async with Client(endpoint, timeout=30) as client:
        jobs = [await client.wait(i, 60) for i in ids]
    assert [j.state for j in jobs] == [JobState.COMPLETED] * len(ids)
    assert all(j.result == [b"slept 0.05"] for j in jobs)


async def test_priority_order_is_observed(tmp_path: Path, procs: list[Proc]) -> None:
    hub, endpoint = start_hub(tmp_path)
    procs.append(hub)
    async with Client(endpoint) as client:
        low = [await client.submit("echo", f"low {i}", priority=0) for i in range(5)]
        high = [await client.submit("echo", f"high {i}", priority=9) for i in range(5)]
        worker(tmp_path, endpoint, procs, concurrency=1)
        done = [await client.wait(i, 30) for i in low + high]
    order = [j.id for j in sorted(done, key=lambda j: j.started_at or 0)]
    assert order == high + low


async def test_always_failing_job_ends_failed_after_max_attempts(tmp_path: Path, procs: list[Proc]) -> None:
    hub, endpoint = start_hub(tmp_path)
    procs.append(hub)
    worker(tmp_path, endpoint, procs, handler="fail")
    async with Client(endpoint) as client:
        job_id = await client.submit("echo", "doomed", max_attempts=3, backoff=0.05)
        job = await client.wait(job_id, 30)
        flaky_id = await client.submit("echo", "second time lucky", backoff=0.05)
    assert job.state is JobState.FAILED and job.attempts == 3
    assert "doomed" in (job.error or "")
    del flaky_id


async def test_cancel_queued_never_runs_and_cancel_running_stops(tmp_path: Path, procs: list[Proc]) -> None:
    hub, endpoint = start_hub(tmp_path)
    procs.append(hub)
    trace = tmp_path / "trace"
    trace.mkdir()
    worker(tmp_path, endpoint, procs, handler="tests.handlers:traced_sleep", concurrency=1, trace=trace)
    async with Client(endpoint) as client:
        await wait_workers(client, 1)
        running = await client.submit("echo", "30")
        queued = await client.submit("echo", "0")
        while not (trace / f"{running}.started").exists():
            await asyncio.sleep(0.02)
        assert (await client.cancel(queued)).state is JobState.CANCELLED
        assert (await client.cancel(running)).state is JobState.CANCELLED
        for _ in range(100):
            if (trace / f"{running}.cancelled").exists():
                break
            await asyncio.sleep(0.05)
        follow = await client.submit("echo", "0")
        assert (await client.wait(follow, 30)).state is JobState.COMPLETED
    assert (trace / f"{running}.cancelled").exists(), "the running handler saw the cancel"
    assert not (trace / f"{running}.finished").exists()
    assert not (trace / f"{queued}.started").exists(), "a cancelled queued job never runs"
    assert os.path.exists(trace / f"{follow}.finished")


async def test_sigterm_lets_running_jobs_finish_and_refuses_new_ones(
    tmp_path: Path, procs: list[Proc]
) -> None:
    hub, endpoint = start_hub(tmp_path, extra=[*FAST, "--grace", "20"])
    procs.append(hub)
    port = int(endpoint.rsplit(":", 1)[1])
    trace = tmp_path / "trace"
    trace.mkdir()
    worker(tmp_path, endpoint, procs, handler="tests.handlers:traced_sleep", concurrency=2, trace=trace)
    async with Client(endpoint, timeout=5) as client:
        await wait_workers(client, 1)
        ids = [await client.submit("echo", "1.5") for _ in range(2)]
        while len(list(trace.glob("*.started"))) < 2:
            await asyncio.sleep(0.02)
        hub.popen.send_signal(15)
        await asyncio.sleep(0.3)
        with pytest.raises(Unavailable, match="shutting down"):
            await client.submit("echo", "0")
        assert await asyncio.to_thread(hub.popen.wait, 30) == 0
    assert all((trace / f"{i}.finished").exists() for i in ids)
    hub, _ = start_hub(tmp_path, port=port, extra=FAST, name="hub2")
    procs.append(hub)
    async with Client(endpoint) as client:
        assert [(await client.status(i)).state for i in ids] == [JobState.COMPLETED] * 2  # type: ignore[union-attr]
