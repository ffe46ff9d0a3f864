"""Redis going away under a running hub (a proxy we cut, never the shared server).

While Redis cannot be reached the hub answers at once with a clear ``unavailable`` error, does
not crash, and when Redis is back it carries on by itself: jobs that finished during the
outage are completed (the worker sends their results again), leases did not run out for lack
of heartbeats Redis could not record, and new jobs run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobq.client.client import Client
from jobq.core.states import JobState
from jobq.errors import Unavailable
from tests.helpers import Proc, start_hub, start_worker
from tests.redis_helpers import REDIS_URL, Namespace, Proxy, require_redis

FAST = ["--heartbeat", "0.2", "--liveness", "5", "--lease-ttl", "2"]


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    require_redis()
    p = Proxy().start()
    yield p
    p.close()


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    ns = Namespace(timeout="0.5", lease_pause="1")
    yield ns
    ns.cleanup()


@pytest.mark.parametrize("how", ["blackhole", "refuse"])
async def test_hub_answers_unavailable_while_redis_is_away_and_recovers(
    tmp_path: Path, namespace: Namespace, proxy: Proxy, procs: list[Proc], how: str
) -> None:
    # (namespace first: fixtures end in reverse, so the hub dies before its keys are removed)
    store = namespace.url.replace(REDIS_URL, proxy.url)
    hub, endpoint = start_hub(tmp_path, store=store, extra=FAST)
    procs.append(hub)
    trace = tmp_path / "trace"
    trace.mkdir()
    procs.append(
        start_worker(
            tmp_path,
            endpoint,
            handler="tests.handlers:traced_sleep",
            concurrency=4,
            env={"JOBQ_TEST_TRACE": str(trace)},
        )
    )
    async with Client(endpoint, timeout=5.0) as client:
        deadline = time.monotonic() + 20
        while not await client.workers():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        running = [await client.submit("echo", "1.5") for _ in range(4)]
        while len(list(trace.glob("*.started"))) < 4:
            await asyncio.sleep(0.02)

        if how == "blackhole":
            proxy.blackhole()
        else:
            proxy.refuse()
        outage = time.monotonic()
        for ask in (lambda: client.submit("echo", "0"), client.stats, lambda: client.status(running[0])):
            started = time.monotonic()
            with pytest.raises(Unavailable, match=r"redis at 127\.0\.0\.1"):
                await ask()
            assert time.monotonic() - started < 3, "an answer, not a hang"
        await asyncio.sleep(max(0.0, outage + 3.0 - time.monotonic()))  # longer than a lease
        assert hub.alive()
        assert len(list(trace.glob("*.finished"))) == 4  # they ended during the outage
        proxy.restore()

        jobs = [await client.wait(job_id, 20) for job_id in running]
        assert [j.state for j in jobs] == [JobState.COMPLETED] * 4
        assert [j.attempts for j in jobs] == [1] * 4, "leases held through the outage"
        assert all(j.result == [b"slept 1.5"] for j in jobs)
        after = await client.submit("echo", "0")
        assert (await client.wait(after, 20)).state is JobState.COMPLETED
    log = hub.output()
    assert "unreachable" in log and "answers again" in log
    assert "Traceback" not in log
