"""Issue 12, delivery semantics under faults: real hub and worker processes on loopback.

Each test reproduces a finding of the issue: it failed before the change it names.

- finding 1: jobs running on a SIGKILLed worker end ``failed`` ("its worker went away during
  its last attempt") though their handler never failed: a lost worker now costs the separate
  ``max_losses`` budget.
- finding 2: with ``--lease-ttl`` shorter than the silence window, a SIGSTOPped worker's job
  went back to it (or, on its last attempt, ended ``failed``) while another worker was idle.
- finding 3: jobs found running when the hub restarts wait the configured lease, not 30 s.
- finding 5: a draining worker's prefetched jobs, given back unstarted, cost an attempt.
- findings 10 and 11: a job that kills every worker it reaches ends ``quarantined`` after
  ``max_losses`` deaths, the others complete, and ``stats`` counts it (``failed`` 0).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

from jobq.client.client import Client
from jobq.client.specs import make_spec
from jobq.core.model import Job
from jobq.core.retry import DEFAULT_MAX_LOSSES
from jobq.core.states import JobState
from tests.helpers import Proc, eventually, start_hub, start_worker

FAST = ["--heartbeat", "0.2", "--liveness", "5", "--lease-ttl", "5"]
COMPLETED = JobState.COMPLETED


def traced_worker(
    tmp: Path,
    endpoint: str,
    procs: list[Proc],
    trace: Path,
    *,
    handler: str = "traced_sleep",
    concurrency: int = 4,
    name: str | None = None,
    extra: tuple[str, ...] = (),
) -> Proc:
    """A worker process running ``tests.handlers:<handler>``, leaving traces in ``trace``."""
    proc = start_worker(
        tmp,
        endpoint,
        handler=f"tests.handlers:{handler}",
        concurrency=concurrency,
        name=name,
        extra=extra,
        env={"JOBQ_TEST_TRACE": str(trace)},
    )
    procs.append(proc)
    return proc


def starts(trace: Path, job_id: int | None = None) -> list[str]:
    """The attempts started, one line each (``<pid> attempt <n>``), of one job or of all."""
    files = [trace / f"{job_id}.started"] if job_id is not None else sorted(trace.glob("*.started"))
    return [line for f in files if f.exists() for line in f.read_text().splitlines()]


async def workers_named(client: Client) -> dict[str, str]:
    return {w.id: w.name or w.id for w in await client.workers()}


async def wait_all(client: Client, ids: list[int], timeout: float = 60) -> list[Job]:
    return list(await asyncio.gather(*(client.wait(i, timeout) for i in ids)))


async def test_jobs_on_a_killed_worker_run_again_though_each_had_one_attempt(
    tmp_path: Path, procs: list[Proc]
) -> None:
    hub, endpoint = start_hub(tmp_path, extra=FAST)
    procs.append(hub)
    trace = tmp_path / "trace"
    trace.mkdir()
    victim = traced_worker(tmp_path, endpoint, procs, trace, concurrency=4)
    async with Client(endpoint, timeout=20) as client:
        await eventually(lambda: _count_workers(client, 1), timeout=30)
        accepted = await client.submit_many([make_spec("echo", b"1.0", max_attempts=1) for _ in range(8)])
        ids = [a[0] for a in accepted]
        await eventually(lambda: len(starts(trace)) >= 4, timeout=30)
        victim.kill()
        traced_worker(tmp_path, endpoint, procs, trace, concurrency=4)
        jobs = await wait_all(client, ids)
        counters = (await client.stats())["counters"]
    assert [j.state for j in jobs] == [COMPLETED] * 8, [(j.state, j.error) for j in jobs]
    hit = [j for j in jobs if j.losses]
    assert len(hit) == 4 and all((j.attempts, j.failures, j.losses) == (2, 0, 1) for j in hit)
    assert (counters["failed"], counters["lost"]) == (0, 4)


async def _count_workers(client: Client, n: int) -> bool:
    return len(await client.workers()) >= n


async def test_a_stopped_worker_loses_its_job_to_an_idle_one_and_gets_no_more(
    tmp_path: Path, procs: list[Proc]
) -> None:
    # The lease (2 s) is shorter than the silence window (0.2 s x 50 = 10 s): the stopped worker
    # is still attached when its lease runs out.
    hub, endpoint = start_hub(tmp_path, extra=["--heartbeat", "0.2", "--liveness", "50", "--lease-ttl", "2"])
    procs.append(hub)
    trace = tmp_path / "trace"
    trace.mkdir()
    stalled = traced_worker(tmp_path, endpoint, procs, trace, concurrency=1, name="stalled")
    async with Client(endpoint, timeout=20) as client:
        await eventually(lambda: _count_workers(client, 1), timeout=30)
        job_id = await client.submit("echo", b"1.0", max_attempts=1)
        await eventually(lambda: len(starts(trace, job_id)) == 1, timeout=30)
        os.kill(stalled.pid, signal.SIGSTOP)
        try:
            traced_worker(tmp_path, endpoint, procs, trace, concurrency=1, name="rescuer")
            job = await client.wait(job_id, 30)
            more = [await client.submit("echo", b"0.05") for _ in range(3)]
            later = await wait_all(client, more, 30)
            names = await workers_named(client)
            assert "stalled" in names.values(), "still attached: only its lease ran out"
        finally:
            os.kill(stalled.pid, signal.SIGCONT)
    assert (job.state, job.attempts, job.failures, job.losses) == (COMPLETED, 2, 0, 1), job.error
    assert names.get(job.worker or "") == "rescuer"
    assert {names.get(j.worker or "") for j in later} == {"rescuer"}, "none for the stopped worker"
    assert len(starts(trace, job_id)) == 2  # once on each worker


async def test_recovered_running_jobs_wait_the_configured_lease(tmp_path: Path, procs: list[Proc]) -> None:
    extra = ["--heartbeat", "0.2", "--liveness", "5", "--lease-ttl", "3"]
    hub, endpoint = start_hub(tmp_path, extra=extra)
    procs.append(hub)
    port = int(endpoint.rsplit(":", 1)[1])
    trace = tmp_path / "trace"
    trace.mkdir()
    first = traced_worker(tmp_path, endpoint, procs, trace, handler="slow_first", concurrency=1)
    async with Client(endpoint, timeout=20) as client:
        await eventually(lambda: _count_workers(client, 1), timeout=30)
        job_id = await client.submit("echo", b"120")
        await eventually(lambda: len(starts(trace, job_id)) == 1, timeout=30)
    await asyncio.sleep(1.0)  # the claim reaches the disk (written lazily, within a tick)
    hub.kill()
    first.kill()
    restarted = time.monotonic()
    hub, _ = start_hub(tmp_path, port=port, extra=extra, name="hub2")
    procs.append(hub)
    traced_worker(tmp_path, endpoint, procs, trace, handler="slow_first", concurrency=1)
    async with Client(endpoint, timeout=20) as client:
        job = await client.wait(job_id, 25)
    took = time.monotonic() - restarted
    assert (job.state, job.attempts, job.losses) == (COMPLETED, 2, 1), job.error
    assert took < 12, f"re-queued after {took:.1f}s: the 3 s lease was not applied"


async def test_a_draining_worker_gives_back_its_prefetched_jobs_at_no_cost(
    tmp_path: Path, procs: list[Proc]
) -> None:
    hub, endpoint = start_hub(tmp_path, extra=FAST)
    procs.append(hub)
    trace = tmp_path / "trace"
    trace.mkdir()
    draining = traced_worker(
        tmp_path, endpoint, procs, trace, concurrency=1, extra=("--prefetch", "4"), name="draining"
    )
    async with Client(endpoint, timeout=20) as client:
        await eventually(lambda: _count_workers(client, 1), timeout=30)
        accepted = await client.submit_many([make_spec("echo", b"1.0", max_attempts=1) for _ in range(5)])
        ids = [a[0] for a in accepted]
        await eventually(lambda: len(starts(trace)) == 1, timeout=30)
        os.kill(draining.pid, signal.SIGTERM)  # drains: its 4 prefetched jobs go back unstarted
        traced_worker(tmp_path, endpoint, procs, trace, concurrency=4, name="rescuer")
        jobs = await wait_all(client, ids)
        names = await workers_named(client)
    assert [j.state for j in jobs] == [COMPLETED] * 5, [(j.state, j.error) for j in jobs]
    assert [(j.attempts, j.failures, j.losses) for j in jobs] == [(1, 0, 0)] * 5
    assert sorted(names.get(j.worker or "", "draining") for j in jobs) == ["draining"] + ["rescuer"] * 4
    assert len(starts(trace)) == 5  # each ran once
    assert draining.popen.wait(20) == 0


async def test_a_poison_job_is_quarantined_and_every_other_job_completes(
    tmp_path: Path, procs: list[Proc]
) -> None:
    hub, endpoint = start_hub(tmp_path, extra=FAST)
    procs.append(hub)
    trace = tmp_path / "trace"
    trace.mkdir()
    workers = [
        traced_worker(tmp_path, endpoint, procs, trace, handler="poison_or_sleep", concurrency=2)
        for _ in range(3)
    ]
    deaths = 0
    async with Client(endpoint, timeout=20) as client:
        await eventually(lambda: _count_workers(client, 3), timeout=30)
        accepted = await client.submit_many([make_spec("echo", b"0.05") for _ in range(30)])
        poison = await client.submit("echo", b"poison")
        deadline = time.monotonic() + 90
        while not await _ended(client, poison):
            assert time.monotonic() < deadline, "the poison job never ended"
            for i, proc in enumerate(workers):
                if not proc.alive():  # it died: the operator's supervisor starts another
                    deaths += 1
                    workers[i] = traced_worker(
                        tmp_path, endpoint, procs, trace, handler="poison_or_sleep", concurrency=2
                    )
            await asyncio.sleep(0.05)
        others = await wait_all(client, [a[0] for a in accepted])
        job = await client.wait(poison, 5)
        stats = await client.stats()
    assert job.state is JobState.QUARANTINED, (job.state, job.error)
    assert (job.attempts, job.failures, job.losses) == (DEFAULT_MAX_LOSSES, 0, DEFAULT_MAX_LOSSES)
    assert job.error is not None and job.error.startswith("quarantined after losing its worker")
    assert len(starts(trace, poison)) == DEFAULT_MAX_LOSSES, "no worker got it after the last death"
    assert deaths + sum(not p.alive() for p in workers) == DEFAULT_MAX_LOSSES
    assert [j.state for j in others] == [COMPLETED] * 30
    assert stats["counters"]["quarantined"] == 1 and stats["counters"]["failed"] == 0
    assert stats["jobs"]["by_state"].get("quarantined") == 1


async def _ended(client: Client, job_id: int) -> bool:
    job = await client.status(job_id)
    return job is not None and job.state.terminal
