"""The Redis store beyond the contract suite: the same decisions as the embedded stores on
random histories, several hubs on one namespace, dead hubs, and Redis going away."""

from __future__ import annotations

import asyncio
import random
import socket
import time
from typing import Any

import pytest

from jobq.core.model import Completion, Job, JobEvent, JobFilter, JobSpec, WorkerInfo
from jobq.core.states import JobState
from jobq.errors import InvalidRequest, JobqError, Unavailable
from jobq.store.base import Store, open_store
from jobq.store.memory import MemoryStore
from jobq.store.redis import RedisStore
from tests.redis_helpers import REDIS_URL, Namespace, Proxy, open_redis

T0 = 1_000_000.0
TTL = 30.0


# ---------------------------------------------------------------- same decisions as memory://

WORKERS: dict[str, tuple[list[str], dict[str, Any], int]] = {
    "big": (
        ["echo", "resize"],
        {"hardware": {"gpu_memory_gb": 24}, "customer_access": {"max_concurrent_customers": 2}},
        3,
    ),
    "small": (["echo"], {"hardware": {"gpu_memory_gb": 8}}, 2),
    "c1-only": (["echo"], {"customer_access": {"isolation": "strict", "allowed_customers": ["c1"]}}, 2),
    "plain": (["echo", "resize"], {}, 1),
}


def random_spec(rng: random.Random) -> JobSpec:
    customer = rng.choice([None, "c1", "c2", "c3"])
    isolation = "none"
    if customer is not None:
        isolation = rng.choice(["none", "loose", "loose", "strict" if customer == "c1" else "none"])
    requires: dict[str, Any] = {}
    if rng.random() < 0.3:
        requires["hardware.gpu_memory_gb"] = rng.choice([4, 8, 16])
    return JobSpec(
        service=rng.choice(["echo", "echo", "resize", "nobody"]),
        payload=[str(rng.random()).encode()],
        priority=rng.choice([0, 0, 1, 5]),
        customer_id=customer,
        isolation=isolation,  # type: ignore[arg-type]
        requires=requires,
        max_attempts=rng.choice([1, 2, 3]),
        backoff=0.0,
        timeout=rng.choice([None, None, 20.0]),
        delay=rng.choice([None, None, None, 3.0]),
        idempotency_key=rng.choice([None, None, None, f"k{rng.randrange(5)}"]),
    )


def view(job: Job) -> tuple[Any, ...]:
    return (job.id, job.state, job.attempts, job.worker, job.error, job.avoid_worker, job.result)


def outcome(value: object) -> object:
    if isinstance(value, Job):
        return view(value)
    if isinstance(value, JobqError):
        return (type(value).__name__, value.message)
    if isinstance(value, list | tuple):
        return [outcome(v) for v in value]
    return value


async def call(store: Store, op: str, *args: Any, **kw: Any) -> object:
    try:
        return outcome(await getattr(store, op)(*args, **kw))
    except JobqError as exc:
        return outcome(exc)


@pytest.mark.parametrize("seed", range(6))
async def test_random_histories_decide_like_the_memory_store(namespace: Namespace, seed: int) -> None:
    rng = random.Random(seed)
    memory = MemoryStore()
    await memory.open(T0)
    redis = await open_redis(namespace.url)
    await redis.set_customer_weight("c2", 3.0)
    await memory.set_customer_weight("c2", 3.0)
    stores: list[Store] = [memory, redis]
    now = T0
    running: list[tuple[int, int]] = []
    attached: set[str] = set()
    try:
        for step in range(160):
            now += rng.choice([0.0, 0.5, 2.0, 11.0])
            roll = rng.random()
            if roll < 0.25:
                specs = [random_spec(rng) for _ in range(rng.randint(1, 4))]
                ops: tuple[Any, ...] = ("submit", specs, now)
            elif roll < 0.4 or not attached:
                name = rng.choice(sorted(WORKERS))
                services, caps, slots = WORKERS[name]
                if name in attached and rng.random() < 0.3:
                    attached.discard(name)
                    ops = ("detach_worker", name, now)
                else:
                    attached.add(name)
                    ops = (
                        "attach_worker",
                        WorkerInfo(id=name, services=services, capabilities=caps, slots=slots),
                        now,
                    )
            elif roll < 0.65:
                ops = ("claim", rng.choice(sorted(attached)), rng.randint(1, 3), now, TTL)
            elif roll < 0.85 and running:
                job_id, token = rng.choice(running)
                kind = rng.choice(["complete", "fail", "release", "progress", "cancel"])
                if kind == "complete":
                    ops = ("complete", [Completion(job_id, token, [b"r"])], now)
                elif kind == "fail":
                    ops = ("fail", job_id, token, "boom", now)
                elif kind == "release":
                    ops = ("release", job_id, token, now)
                elif kind == "progress":
                    ops = ("progress", job_id, token, 50.0, "half", now)
                else:
                    ops = ("cancel", job_id, now)
            elif roll < 0.9:
                ops = ("retry", rng.randrange(1, 30), now)
            elif roll < 0.95:
                ops = ("touch_worker", rng.choice(sorted(attached)), now, TTL)
            else:
                ops = ("tick", now)
            name, *args = ops
            if name == "attach_worker":  # each store gets its own copy
                results = [await call(s, name, _copy(args[0]), *args[1:]) for s in stores]
            elif name == "tick":
                results = [_tick_view(await s.tick(now)) for s in stores]
            else:
                results = [await call(s, name, *args) for s in stores]
            assert results[0] == results[1], f"step {step}: {name}{tuple(args)}"
            jobs = await memory.list_jobs(JobFilter(states=[JobState.RUNNING], limit=1000))
            running = [(j.id, j.attempts) for j in jobs]
            for probe in (1, 2, 5, 9):
                assert await call(memory, "explain", probe, now) == await call(redis, "explain", probe, now)
        for query in (
            JobFilter(limit=1000),
            JobFilter(states=[JobState.QUEUED]),
            JobFilter(service="echo", limit=7),
        ):
            assert [view(j) for j in await memory.list_jobs(query)] == [
                view(j) for j in await redis.list_jobs(query)
            ]
        assert await memory.stats() == await redis.stats()
        assert await memory.blocked() == await redis.blocked()
        assert await memory.next_due() == await redis.next_due()
    finally:
        await memory.close()
        await redis.close()


def _copy(info: WorkerInfo) -> WorkerInfo:
    return WorkerInfo(
        id=info.id, services=list(info.services), capabilities=dict(info.capabilities), slots=info.slots
    )


def _tick_view(result: Any) -> object:
    return (result.promoted, result.purged, sorted((j.id, j.state, w) for j, w in result.expired))


# ---------------------------------------------------------------- several hubs, one namespace


class Heard:
    """A StoreListener that writes down what the other hubs said."""

    def __init__(self) -> None:
        self.ready = 0
        self.events: list[JobEvent] = []
        self.stops: list[tuple[str, list[int]]] = []
        self.changed = asyncio.Event()

    def on_ready(self) -> None:
        self.ready += 1
        self.changed.set()

    def on_event(self, event: JobEvent) -> None:
        self.events.append(event)
        self.changed.set()

    def on_stop(self, worker_id: str, job_ids: list[int]) -> None:
        self.stops.append((worker_id, job_ids))
        self.changed.set()

    def on_paused(self) -> None:
        self.paused = getattr(self, "paused", 0) + 1
        self.changed.set()

    def on_group_finished(self, group_id: int, workers: list[str]) -> int:
        self.finished = [*getattr(self, "finished", []), (group_id, workers)]
        self.changed.set()
        return 0


async def until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.01)


async def test_two_hubs_share_jobs_and_hear_each_other(namespace: Namespace) -> None:
    a, b = await open_redis(namespace.url), await open_redis(namespace.url)
    heard_a, heard_b = Heard(), Heard()
    a.listen(heard_a)
    b.listen(heard_b)
    try:
        await asyncio.sleep(0.05)  # both readers are at the end of the stream
        await b.attach_worker(WorkerInfo(id="w-at-b", services=["echo"], slots=4), T0)
        (done,) = await a.submit([JobSpec(service="echo", payload=[b"x"])], T0)
        await until(lambda: heard_b.ready >= 1)  # no polling: B hears at once
        assert heard_a.ready == 0  # a hub does not hear itself
        (claimed,) = await b.claim("w-at-b", 4, T0, TTL)
        assert claimed.id == done.job.id and claimed.payload == [b"x"]
        b.broadcast(JobEvent(id=claimed.id, kind="started", state=JobState.RUNNING, at=T0, worker="w-at-b"))
        await until(lambda: heard_a.events)
        assert heard_a.events[0].id == claimed.id and not heard_b.events
        cancelled, worker = await a.cancel(claimed.id, T0 + 1)
        assert worker == "w-at-b" and cancelled.state is JobState.CANCELLED
        a.notify_stop(worker, [claimed.id])
        await until(lambda: heard_b.stops)
        assert heard_b.stops == [("w-at-b", [claimed.id])]
        # Both hubs see the whole cluster.
        assert [w.id for w in await a.list_workers()] == ["w-at-b"]
        assert (await a.stats()).by_state == (await b.stats()).by_state == {"cancelled": 1}
    finally:
        await a.close()
        await b.close()


async def test_a_dead_hubs_workers_leave_the_registry_but_keep_their_jobs(namespace: Namespace) -> None:
    a = await open_redis(namespace.url + "&hub_ttl=5")
    b = await open_redis(namespace.url + "&hub_ttl=5")
    try:
        await a.attach_worker(WorkerInfo(id="w1", services=["echo"], slots=2, connected_at=T0), T0)
        job = (await a.submit([JobSpec(service="echo")], T0))[0].job
        await a.claim("w1", 2, T0, TTL)
        await a.tick(T0)
        # Hub A dies without a word; B keeps ticking.
        await b.tick(T0 + 3)
        assert [w.id for w in await b.list_workers()] == ["w1"]
        await b.tick(T0 + 6)
        assert await b.list_workers() == []
        still = await b.get(job.id)
        assert still is not None and still.state is JobState.RUNNING
        # The worker reconnects to B within its lease and keeps its job.
        await b.attach_worker(WorkerInfo(id="w1", services=["echo"], slots=2, connected_at=T0 + 7), T0 + 7)
        assert await b.adopt("w1", [(job.id, 1)], T0 + 7, TTL) == [job.id]
        await b.touch_worker("w1", T0 + 20, TTL)
        assert (await b.tick(T0 + 45)).expired == []
        (finished,) = await b.complete([Completion(job.id, 1, [b"ok"])], T0 + 46)
        assert isinstance(finished, Job) and finished.state is JobState.COMPLETED
    finally:
        await a.close()
        await b.close()


async def test_attempts_a_worker_never_received_from_a_dead_hub_expire(namespace: Namespace) -> None:
    a, b = await open_redis(namespace.url), await open_redis(namespace.url)
    try:
        await a.attach_worker(WorkerInfo(id="w1", services=["echo"], slots=3), T0)
        held, lost, late = [d.job for d in await a.submit([JobSpec(service="echo")] * 3, T0)]
        await a.claim("w1", 2, T0, TTL)
        # Hub A dies; `lost` never reached the worker. It comes back through hub B, twice (a
        # repeated hello), and B hands it `late` in between: that one is its own to run.
        await b.attach_worker(WorkerInfo(id="w1", services=["echo"], slots=3), T0 + 1)
        assert await b.adopt("w1", [(held.id, 1)], T0 + 1, TTL) == [held.id]
        (given,) = await b.claim("w1", 3, T0 + 1, TTL)
        assert given.id == late.id
        await b.attach_worker(WorkerInfo(id="w1", services=["echo"], slots=3), T0 + 1.1)
        assert await b.adopt("w1", [(held.id, 1)], T0 + 1.1, TTL) == [held.id]
        await b.touch_worker("w1", T0 + 25, TTL)
        expired = (await b.tick(T0 + 31)).expired
        assert [(j.id, j.state, w) for j, w in expired] == [(lost.id, JobState.QUEUED, "w1")]
        (again,) = await b.claim("w1", 3, T0 + 32, TTL)
        assert again.id == lost.id and again.attempts == 2
    finally:
        await a.close()
        await b.close()


async def test_a_swept_worker_of_a_live_hub_is_registered_again(namespace: Namespace) -> None:
    a = await open_redis(namespace.url + "&hub_ttl=5")
    b = await open_redis(namespace.url + "&hub_ttl=5")
    try:
        await a.attach_worker(WorkerInfo(id="w1", services=["echo"], slots=1, connected_at=T0), T0)
        job = (await a.submit([JobSpec(service="echo")], T0))[0].job
        await a.claim("w1", 1, T0, TTL)
        await a.tick(T0)
        await b.tick(T0 + 6)  # A looked dead (a long pause), B swept its worker
        assert await b.list_workers() == []
        await a.touch_worker("w1", T0 + 7, TTL)  # A is alive after all
        assert [w.id for w in await b.list_workers()] == ["w1"]
        assert (await b.tick(T0 + 31)).expired == []  # its job's lease was renewed
        assert (await a.get(job.id)) is not None
    finally:
        await a.close()
        await b.close()


async def test_leases_pause_while_no_hub_could_tick(namespace: Namespace) -> None:
    store = await open_redis(namespace.url)
    try:
        await store.attach_worker(WorkerInfo(id="w1", services=["echo"], slots=1), T0)
        job = (await store.submit([JobSpec(service="echo")], T0))[0].job
        await store.claim("w1", 1, T0, TTL)
        await store.tick(T0)
        # Pretend the last tick anyone managed was 25 s ago (Redis time): Redis was unreachable.
        server = await store.client.cmd("TIME")
        await store.client.cmd("SET", store.key("clock"), repr(int(server[0]) - 25.0))
        await store.tick(T0 + 1)
        moved = await store.get(job.id)
        assert moved is not None and moved.lease_expires is not None
        assert moved.lease_expires >= T0 + TTL + 24
        assert (await store.tick(T0 + TTL + 10)).expired == []
    finally:
        await store.close()


async def test_retention_leaves_no_key_behind(namespace: Namespace) -> None:
    store = await open_redis(namespace.url)
    try:
        await store.attach_worker(WorkerInfo(id="w1", services=["echo"], slots=2), T0)
        done = await store.submit(
            [JobSpec(service="echo", payload=[b"p"], result_ttl=5, idempotency_key="once")], T0
        )
        job = done[0].job
        await store.claim("w1", 1, T0, TTL)
        await store.complete([Completion(job.id, 1, [b"r"])], T0)
        before = set(namespace.keys())
        assert f"{{{namespace.prefix}}}:job:{job.id}".encode() in before
        assert (await store.tick(T0 + 6)).purged == 1
        after = set(namespace.keys())
        gone = {k.decode().split(":", 1)[1] for k in before - after}
        assert gone == {
            f"job:{job.id}",
            f"p:{job.id}",
            f"r:{job.id}",
            f"tl:{job.id}",  # its timeline
            "idem:once",
            "st:completed",
            "expiry",
            "counts",
        }
    finally:
        await store.close()


async def test_scripts_are_loaded_again_when_redis_lost_them(namespace: Namespace) -> None:
    store = await open_redis(namespace.url)
    try:
        # A script Redis has never seen (as after a restart): the store loads it and goes on.
        scripts = store.scripts
        scripts.sources = {**scripts.sources, "claim": scripts.sources["claim"] + "\n-- again"}
        scripts.shas = {
            **scripts.shas,
            "claim": __import__("hashlib").sha1(scripts.sources["claim"].encode()).hexdigest(),
        }
        await store.attach_worker(WorkerInfo(id="w1", services=["echo"], slots=1), T0)
        await store.submit([JobSpec(service="echo")], T0)
        assert len(await store.claim("w1", 1, T0, TTL)) == 1
    finally:
        await store.close()


def test_url_options() -> None:
    store = open_store(
        "rediss://user:secret@example.invalid:6380/3?prefix=team-a&timeout=0.5&ssl_cert_reqs=none"
    )
    assert isinstance(store, RedisStore)
    assert store.prefix == "team-a" and store.timeout == 0.5 and store.tag == "{team-a}:"
    assert store.url == "rediss://example.invalid:6380/3?prefix=team-a"  # no password shown
    assert "ssl_cert_reqs=none" in store.redis_url and "prefix" not in store.redis_url
    with pytest.raises(InvalidRequest, match="not a number"):
        open_store("redis://localhost/0?timeout=soon")
    with pytest.raises(InvalidRequest, match="braces"):
        open_store("redis://localhost/0?prefix=a{b}")


# ---------------------------------------------------------------- Redis going away


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def test_no_redis_at_start_is_a_clear_error() -> None:
    store = open_store(f"redis://127.0.0.1:{_closed_port()}/0?timeout=0.5")
    started = time.monotonic()
    with pytest.raises(Unavailable, match=r"cannot use redis at 127\.0\.0\.1"):
        await store.open(T0)
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("how", ["refuse", "blackhole"])
async def test_calls_fail_fast_while_redis_is_away_and_recover(namespace: Namespace, how: str) -> None:
    proxy = Proxy().start()
    url = namespace.url.replace(REDIS_URL, proxy.url) + "&timeout=0.3"
    store = await open_redis(url)
    heard = Heard()
    store.listen(heard)
    try:
        await store.attach_worker(WorkerInfo(id="w1", services=["echo"], slots=4), T0)
        await store.submit([JobSpec(service="echo")], T0)
        if how == "refuse":
            proxy.refuse()
        else:
            proxy.blackhole()
        for call_ in (
            lambda: store.submit([JobSpec(service="echo")], T0),
            lambda: store.claim("w1", 1, T0, TTL),
            lambda: store.stats(),
            lambda: store.get(1),
        ):
            started = time.monotonic()
            with pytest.raises(Unavailable, match=r"redis at 127\.0\.0\.1"):
                await call_()
            assert time.monotonic() - started < 1.5
        assert await store.tick(T0 + 1) == type(await store.tick(T0 + 1))()  # quiet, empty
        assert await store.next_due() is None
        ready_before = heard.ready
        proxy.restore()
        (claimed,) = await store.claim("w1", 4, T0 + 2, TTL)
        assert claimed.id == 1
        await until(lambda: heard.ready > ready_before)  # the hub is told to dispatch again
        assert (await store.submit([JobSpec(service="echo")], T0 + 3))[0].job.id == 2
    finally:
        await store.close()
        proxy.close()


async def test_a_namespace_of_another_layout_is_refused(namespace: Namespace) -> None:
    store = await open_redis(namespace.url)
    await store.client.cmd("SET", store.key("layout"), "0")
    await store.close()
    with pytest.raises(InvalidRequest, match="another version of jobq"):
        await open_redis(namespace.url)


def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "jobq.store.redis", None)
    with pytest.raises(InvalidRequest, match=r"pip install 'jobq\[redis\]'"):
        open_store("redis://127.0.0.1:6379/0")
