"""What the Redis store spares a hub: bus entries while it is alone on its namespace, and claims
it knows would find nothing (issue 16; bench/wire.py counts both per job)."""

from __future__ import annotations

import asyncio

import redis

from jobq.config import HubConfig
from jobq.core.model import JobEvent, JobSpec, WorkerInfo
from jobq.core.states import JobState
from jobq.core.views import WorkerHello
from jobq.hub.hub import Hub
from jobq.store.base import open_store
from tests.redis_helpers import REDIS_URL, Namespace, open_redis
from tests.unit.test_hub import FakeClock, FakeLink, until

T0 = 1_000_000.0
TTL = 30.0


def bus_length(ns: Namespace) -> int:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return int(client.xlen("{" + ns.prefix + "}:bus"))
    finally:
        client.close()


async def test_a_hub_alone_writes_no_bus_entries_and_starts_when_another_hub_opens(
    namespace: Namespace,
) -> None:
    a = await open_redis(namespace.url)
    try:
        await a.tick(T0)  # it learns that it is alone
        await a.attach_worker(WorkerInfo(id="w", services=["echo"], slots=4), T0)
        (done,) = await a.submit([JobSpec(service="echo", payload=[b"x"])], T0)
        (job,) = await a.claim("w", 4, T0, TTL)
        a.broadcast(JobEvent(id=job.id, kind="started", state=JobState.RUNNING, at=T0, worker="w"))
        await asyncio.sleep(0.05)
        await a.cancel(done.job.id, T0 + 1)
        assert bus_length(namespace) == 0  # no 'r', no event, no end: nobody would read them
        b = await open_redis(namespace.url)  # alive from its open on
        try:
            await a.submit([JobSpec(service="echo", payload=[b"y"])], T0 + 2)
            assert bus_length(namespace) == 1  # 'r' for b, at once (the scripts see it)
            await a.tick(T0 + 2)  # and a's own events at its next tick
            a.broadcast(JobEvent(id=job.id, kind="progress", state=JobState.RUNNING, at=T0, worker="w"))
            await asyncio.sleep(0.05)
            assert bus_length(namespace) == 2
        finally:
            await b.close()
    finally:
        await a.close()


async def test_a_claim_that_empties_a_profile_says_so_for_its_worker_only(namespace: Namespace) -> None:
    store = await open_redis(namespace.url)
    try:
        for worker in ("a", "b"):
            await store.attach_worker(WorkerInfo(id=worker, services=["echo"], slots=4), T0)
        await store.attach_worker(WorkerInfo(id="other", services=["echo", "resize"], slots=4), T0)
        assert store.claim_scope("a") == store.claim_scope("b") != store.claim_scope("other")
        await store.submit([JobSpec(service="echo", payload=[b"x"])], T0)
        assert len(await store.claim("a", 4, T0, TTL)) == 1
        assert store.claimed_empty("a") and not store.claimed_empty("b")
        await store.submit([JobSpec(service="echo", payload=[b"y"])] * 2, T0)
        assert len(await store.claim("a", 1, T0, TTL)) == 1  # took its limit: not emptied
        assert not store.claimed_empty("a")
        assert len(await store.claim("b", 4, T0, TTL)) == 1 and store.claimed_empty("b")
    finally:
        await store.close()


async def test_a_job_queued_while_a_claim_runs_is_not_left_behind(namespace: Namespace) -> None:
    """The dispatcher spares the claims of a round whose scope a claim found empty; a job queued
    meanwhile kicks another round, which asks again (a hub on Redis, two idle workers)."""

    hub = Hub(open_store(namespace.url), HubConfig(store=namespace.url, tick=3600.0), clock=FakeClock())
    await hub.start()
    try:
        links = [FakeLink(), FakeLink()]
        for i, link in enumerate(links):
            await hub.attach(WorkerHello(id=f"w{i}", services=["echo"], slots=100), link)
        for n in range(1, 41):  # one at a time, and in bursts submitted while claims run
            await hub.submit([JobSpec(service="echo", payload=[b"x"])] * (1 + n % 3))
            await asyncio.sleep(0)
        total = sum(1 + n % 3 for n in range(1, 41))
        await until(lambda: sum(len(link.ids) for link in links) == total)
    finally:
        await hub.stop(grace=0)


async def test_a_drained_worker_does_not_stand_for_its_profile(namespace: Namespace) -> None:
    """Found in review: a drained worker's claim never reaches the store, so what the store said
    of its last (empty) claim must not make the dispatcher skip the other workers of its profile."""
    hub = Hub(
        open_store(namespace.url),
        HubConfig(store=namespace.url, tick=3600.0),
        clock=FakeClock(),
        rand=lambda: 0.0,
    )
    await hub.start()
    try:
        a, b = FakeLink(), FakeLink()
        await hub.attach(WorkerHello(id="a", services=["echo"], slots=4), a)
        await hub.attach(WorkerHello(id="b", services=["echo"], slots=4), b)
        hub.kick()  # a's claim, first in the rotation, finds the queues empty
        await asyncio.sleep(0.1)
        await hub.drain_worker("a")
        await hub.submit([JobSpec(service="echo", payload=[b"x"])])
        await until(lambda: len(b.ids) == 1)
        assert a.ids == []
    finally:
        await hub.stop(grace=0)
