"""The hub on its own: a memory store, an injected clock the tests move, and fake worker links.

No process, no socket and no fixed sleep: time moves only when a test advances the clock and
calls ``hub.tick()``; the dispatcher (a task spawned at the end of a turn) is awaited with
:func:`until` / :meth:`Rig.settle`, which yield to the event loop until a condition holds.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

import pytest

from jobq.config import HubConfig
from jobq.core.model import Completion, Job, JobEvent, JobSpec, Submitted
from jobq.core.states import JobState
from jobq.core.views import DoorLoad, WorkerHello
from jobq.errors import InvalidRequest, JobqError, LeaseLost, NotFound, PayloadTooLarge, Unavailable
from jobq.hub.hub import Hub, SubmitOutcome
from jobq.hub.sessions import Liveness
from jobq.store.base import open_store

T0 = 1_000_000.0

QUEUED = JobState.QUEUED
SCHEDULED = JobState.SCHEDULED
RUNNING = JobState.RUNNING
COMPLETED = JobState.COMPLETED
FAILED = JobState.FAILED
CANCELLED = JobState.CANCELLED


async def until(predicate: Callable[[], object], timeout: float = 2.0) -> None:
    """Yield to the event loop until ``predicate()`` holds; fail after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout:g}s")
        await asyncio.sleep(0)


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeLink:
    """A worker connection as the hub sees it: records what the hub tells it. Deliveries are
    kept as (job id, token) taken at delivery time (the memory store's jobs are live objects;
    its tokens are 1, 2, 3... per job: core/lease.py)."""

    def __init__(self, pushes: bool = True) -> None:
        self.pushes = pushes
        self.deliveries: list[list[tuple[int, int]]] = []
        self.stops: list[list[int]] = []
        self.disconnects: list[str] = []

    def deliver(self, jobs: Sequence[Job]) -> None:
        self.deliveries.append([(job.id, job.token) for job in jobs])

    def stop(self, job_ids: Sequence[int]) -> None:
        self.stops.append(list(job_ids))

    def disconnect(self, reason: str) -> None:
        self.disconnects.append(reason)

    @property
    def attempts(self) -> list[tuple[int, int]]:
        """Every attempt delivered so far, in order."""
        return [attempt for batch in self.deliveries for attempt in batch]

    @property
    def ids(self) -> list[int]:
        return [job_id for job_id, _ in self.attempts]


class FakeSubscriber:
    def __init__(self) -> None:
        self.events: list[JobEvent] = []

    def push(self, events: list[JobEvent]) -> None:
        self.events.extend(events)


def spec(service: str = "echo", payload: bytes = b"x", **kw: Any) -> JobSpec:
    return JobSpec(service=service, payload=[payload], **kw)


def submitted(outcome: SubmitOutcome) -> Submitted:
    assert isinstance(outcome, Submitted), outcome
    return outcome


class Rig:
    """A started hub with its fake clock."""

    def __init__(self, hub: Hub, clock: FakeClock) -> None:
        self.hub = hub
        self.clock = clock

    async def attach(
        self,
        worker_id: str,
        *,
        slots: int = 1,
        pushes: bool = True,
        services: Sequence[str] = ("echo",),
        door: str = "zmq",
        liveness: Liveness | None = None,
        schemas: dict[str, Any] | None = None,
        held: Sequence[tuple[int, int]] = (),
    ) -> FakeLink:
        link = FakeLink(pushes)
        hello = WorkerHello(
            id=worker_id, services=list(services), slots=slots, door=door, schemas=schemas or {}
        )
        await self.hub.attach(hello, link, liveness=liveness, held=held)
        return link

    async def submit(self, *specs: JobSpec) -> list[int]:
        return [submitted(outcome).job.id for outcome in await self.hub.submit(specs)]

    async def advance(self, seconds: float) -> None:
        """Move the clock and let the hub see it (as its clock task would)."""
        self.clock.now += seconds
        await self.hub.tick()

    async def advance_to(self, now: float) -> None:
        self.clock.now = now
        await self.hub.tick()

    async def settle(self) -> None:
        """Until no dispatch the last changes spawned is still under way."""
        await until(lambda: not self.hub._tasks)

    async def state(self, job_id: int) -> JobState:
        return (await self.hub.get(job_id)).state

    async def complete(self, worker_id: str, job_id: int, token: int, result: bytes = b"ok") -> Job:
        [outcome] = await self.hub.complete(worker_id, [Completion(job_id, token, [result])])
        assert isinstance(outcome, Job), outcome
        return outcome


class MakeRig(Protocol):
    def __call__(self, *, rand: float = 0.0, **config: Any) -> Awaitable[Rig]: ...


@pytest.fixture
async def make_rig() -> AsyncIterator[MakeRig]:
    """Hubs over ``memory://`` with a fake clock (at T0) and a constant ``rand``; stopped after."""
    rigs: list[Rig] = []

    async def make(*, rand: float = 0.0, **config: Any) -> Rig:
        # A long tick keeps the background clock task out of the way: time is the tests'.
        base = HubConfig(store="memory://", tick=3600.0, heartbeat=1.0, liveness=5, lease_ttl=30.0)
        clock = FakeClock()
        hub = Hub(
            open_store("memory://"), dataclasses.replace(base, **config), clock=clock, rand=lambda: rand
        )
        await hub.start()
        rig = Rig(hub, clock)
        rigs.append(rig)
        return rig

    yield make
    for rig in rigs:
        if not rig.hub.draining:
            await rig.hub.stop(grace=0)


@pytest.fixture
async def rig(make_rig: MakeRig) -> Rig:
    return await make_rig()


# ---------------------------------------------------------------- submitting


async def test_each_spec_of_a_submit_has_its_own_outcome(make_rig: MakeRig) -> None:
    rig = await make_rig(max_payload=100)
    outcomes = await rig.hub.submit(
        [
            spec(payload=b"a"),
            spec(service=""),  # refused by validation
            spec(payload=b"b"),
            spec(payload=b"x" * 101),  # past the hub's payload limit
            spec(isolation="strict"),  # refused by the store (strict isolation needs a customer)
            spec(payload=b"c"),
        ]
    )
    assert [type(outcome) for outcome in outcomes] == [
        Submitted,
        InvalidRequest,
        Submitted,
        PayloadTooLarge,
        InvalidRequest,
        Submitted,
    ]
    assert "customer_id" in str(outcomes[4])
    ids = [submitted(outcomes[i]).job.id for i in (0, 2, 5)]
    assert [(await rig.hub.get(i)).payload for i in ids] == [[b"a"], [b"b"], [b"c"]]
    assert [await rig.state(i) for i in ids] == [QUEUED] * 3
    stats = await rig.hub.stats()
    assert stats.jobs.by_state == {"queued": 3}  # nothing created twice by the one-by-one retry
    assert stats.counters["submitted"] == 3


async def test_an_advertised_schema_refuses_a_payload_it_does_not_accept(rig: Rig) -> None:
    await rig.attach("w", services=["calc"], slots=0, schemas={"calc": {"type": "object"}})
    outcomes = await rig.hub.submit(
        [spec("calc", b"not json"), spec("calc", b'{"a": 1}'), spec("calc", b"[]")]
    )
    assert [type(outcome) for outcome in outcomes] == [InvalidRequest, Submitted, InvalidRequest]


async def test_submit_edges(rig: Rig) -> None:
    assert await rig.hub.submit([]) == []
    with pytest.raises(InvalidRequest):
        await rig.hub.submit_one(spec(max_attempts=0))
    done = await rig.hub.submit_one(spec(idempotency_key="k"))
    again = await rig.hub.submit_one(spec(idempotency_key="k"))
    assert again.job.id == done.job.id and done.created and not again.created
    assert (await rig.hub.stats()).counters["submitted"] == 1
    with pytest.raises(NotFound):
        await rig.hub.get(999)
    assert await rig.hub.find(999) is None


async def test_submit_placed_gives_each_queued_job_its_place_in_its_service(rig: Rig) -> None:
    first = await rig.hub.submit_placed([spec("a"), spec("a", idempotency_key="k")])
    assert [place for _, place in first] == [1, 2]
    placed = await rig.hub.submit_placed(
        [
            spec("a", idempotency_key="k"),  # found: already queued (2nd), no new place taken
            spec("a"),
            spec("b"),
            spec(""),  # refused: no place
            spec("a", delay=10.0),  # scheduled: not in the queue yet
            spec("a"),
        ]
    )
    assert [place for _, place in placed] == [2, 3, 1, None, None, 4]
    outcomes = [outcome for outcome, _ in placed]
    assert isinstance(outcomes[3], JobqError)
    found = submitted(outcomes[0])
    assert not found.created and found.job.id == submitted(first[1][0]).job.id


# ---------------------------------------------------------------- dispatch by credit


async def test_a_worker_is_pushed_no_more_jobs_than_its_free_slots(rig: Rig) -> None:
    link = await rig.attach("w", slots=2)
    ids = await rig.submit(*(spec(payload=bytes([i])) for i in range(5)))
    await until(lambda: link.attempts)
    await rig.settle()
    assert link.deliveries == [[(ids[0], 1), (ids[1], 1)]]  # one message, two jobs
    assert [await rig.state(i) for i in ids] == [RUNNING, RUNNING, QUEUED, QUEUED, QUEUED]
    assert (await rig.hub.get(ids[0])).worker == "w"

    done = await rig.complete("w", ids[0], 1, b"r0")
    assert done.state is COMPLETED and done.result == [b"r0"]
    await until(lambda: len(link.deliveries) == 2)
    await rig.settle()
    assert link.deliveries[1] == [(ids[2], 1)]  # one slot freed: one job, the next in line
    assert [await rig.state(i) for i in ids] == [COMPLETED, RUNNING, RUNNING, QUEUED, QUEUED]


@pytest.mark.parametrize(("rand", "first"), [(0.0, "a"), (0.75, "b")])
async def test_two_workers_share_a_burst(make_rig: MakeRig, rand: float, first: str) -> None:
    """Round-robin in chunks of 16, starting with the worker ``rand`` picks."""
    rig = await make_rig(rand=rand)
    links = {"a": await rig.attach("a", slots=100), "b": await rig.attach("b", slots=100)}
    ids = await rig.submit(*(spec() for _ in range(20)))
    await until(lambda: len(links["a"].attempts) + len(links["b"].attempts) == 20)
    await rig.settle()
    other = "b" if first == "a" else "a"
    assert links[first].deliveries == [[(i, 1) for i in ids[:16]]]
    assert links[other].deliveries == [[(i, 1) for i in ids[16:]]]
    assert {(await rig.hub.get(i)).worker for i in ids[16:]} == {other}


async def test_a_burst_larger_than_all_slots_leaves_the_rest_queued(rig: Rig) -> None:
    a, b = await rig.attach("a", slots=3), await rig.attach("b", slots=3)
    ids = await rig.submit(*(spec() for _ in range(10)))
    await until(lambda: len(a.attempts) == 3 and len(b.attempts) == 3)
    await rig.settle()
    assert sorted(a.ids + b.ids) == ids[:6]
    assert [await rig.state(i) for i in ids[6:]] == [QUEUED] * 4
    stats = await rig.hub.stats()
    assert (stats.slots, stats.slots_free) == (6, 0)


async def test_a_worker_without_slots_gets_work_once_it_has_some(rig: Rig) -> None:
    link = await rig.attach("w", slots=0)
    [job_id] = await rig.submit(spec())
    await rig.settle()
    assert link.deliveries == []
    await rig.hub.set_slots("w", 1)
    await until(lambda: link.attempts == [(job_id, 1)])
    with pytest.raises(NotFound):
        await rig.hub.set_slots("nobody", 1)


async def test_a_worker_gets_only_its_services(rig: Rig) -> None:
    link = await rig.attach("w", slots=5, services=["echo"])
    [other, mine] = await rig.submit(spec("resize"), spec("echo"))
    await until(lambda: link.attempts)
    await rig.settle()
    assert link.attempts == [(mine, 1)]
    assert await rig.state(other) is QUEUED


async def test_pull_style_workers_claim_their_own_work(rig: Rig) -> None:
    link = await rig.attach("p", slots=2, pushes=False)
    ids = await rig.submit(spec(), spec(), spec())
    await rig.settle()
    assert link.deliveries == []  # never pushed to

    claimed = await rig.hub.claim("p", 5)
    assert [(job.id, job.attempts) for job in claimed] == [(ids[0], 1), (ids[1], 1)]  # its 2 slots
    assert [job.worker for job in claimed] == ["p", "p"]
    assert await rig.hub.claim("p", 5) == []
    await rig.complete("p", ids[0], 1)
    assert [job.id for job in await rig.hub.claim("p", 5)] == [ids[2]]
    assert (await rig.hub.stats()).counters["claimed"] == 3
    with pytest.raises(NotFound):
        await rig.hub.claim("nobody", 1)


async def test_a_failed_attempt_is_retried_after_its_backoff(rig: Rig) -> None:
    link = await rig.attach("w")
    [job_id] = await rig.submit(spec(backoff=2.0))
    await until(lambda: link.attempts)
    job = await rig.hub.fail("w", job_id, 1, "boom")
    # rand=0: the first retry waits half the backoff
    assert job.state is SCHEDULED and job.run_at == T0 + 1.0 and job.error == "boom"
    await rig.advance_to(T0 + 0.999)
    await rig.settle()
    assert link.attempts == [(job_id, 1)]
    await rig.advance_to(T0 + 1.0)
    await until(lambda: len(link.attempts) == 2)
    assert link.attempts[1] == (job_id, 2)
    with pytest.raises(LeaseLost):
        await rig.hub.fail("w", job_id, 1, "late")  # the first attempt's token is stale
    job = await rig.hub.fail("w", job_id, 2, "fatal", retryable=False)
    assert job.state is FAILED
    counters = (await rig.hub.stats()).counters
    assert (counters["retried"], counters["failed"]) == (1, 1)


async def test_cancelling_a_running_job_stops_it_on_its_worker_and_frees_the_slot(rig: Rig) -> None:
    link = await rig.attach("w")
    first, second = await rig.submit(spec(), spec())
    await until(lambda: link.attempts)
    job = await rig.hub.cancel(first)
    assert job.state is CANCELLED
    assert link.stops == [[first]]
    await until(lambda: len(link.attempts) == 2)
    assert link.attempts[1] == (second, 1)
    [late] = await rig.hub.complete("w", [Completion(first, 1, [b"late"])])
    assert isinstance(late, LeaseLost)
    assert await rig.state(first) is CANCELLED


# ---------------------------------------------------------------- the clock


async def test_a_scheduled_job_is_delivered_once_the_clock_reaches_it(make_rig: MakeRig) -> None:
    rig = await make_rig(liveness=1000)  # the worker stays though it never heartbeats
    link = await rig.attach("w", slots=2)
    delayed, at = await rig.submit(spec(delay=10.0), spec(run_at=T0 + 20.0))
    assert (await rig.hub.get(delayed)).run_at == T0 + 10.0
    assert [await rig.state(delayed), await rig.state(at)] == [SCHEDULED, SCHEDULED]
    await rig.settle()
    assert link.deliveries == []

    await rig.advance_to(T0 + 9.999)
    await rig.settle()
    assert link.deliveries == [] and await rig.state(delayed) is SCHEDULED
    await rig.advance_to(T0 + 10.0)  # exactly run_at: due
    await until(lambda: link.attempts == [(delayed, 1)])
    assert await rig.state(delayed) is RUNNING and await rig.state(at) is SCHEDULED
    await rig.advance_to(T0 + 20.0)
    await until(lambda: link.attempts == [(delayed, 1), (at, 1)])


async def test_a_job_in_the_past_is_queued_at_once(rig: Rig) -> None:
    [job_id] = await rig.submit(spec(run_at=T0 - 5.0))
    assert await rig.state(job_id) is QUEUED


async def test_a_lost_lease_requeues_the_job_and_stops_the_worker(make_rig: MakeRig) -> None:
    """A busy worker that is never expired by silence (an MDP/0.1 worker): only the lease decides."""
    rig = await make_rig(lease_ttl=10.0)
    link = await rig.attach("m", pushes=False, liveness=Liveness(idle=5.0, busy=None))
    [job_id] = await rig.submit(spec())
    [job] = await rig.hub.claim("m", 1)
    assert job.lease_expires == T0 + 10.0

    await rig.advance_to(T0 + 10.0)  # the lease ends after its deadline, not at it
    assert await rig.state(job_id) is RUNNING and link.stops == []
    await rig.advance_to(T0 + 10.001)
    assert link.stops == [[job_id]]
    assert link.disconnects == []  # busy and silent, but with no busy limit: not dropped
    assert "m" in rig.hub.connected()
    job = await rig.hub.get(job_id)
    assert (job.state, job.worker, job.attempts) == (QUEUED, "m", 1)
    assert (await rig.hub.stats()).counters["requeued"] == 1

    # Holding nothing now, it is judged by the idle limit, long passed: dropped at the next tick.
    await rig.advance(0.001)
    assert link.disconnects == ["no heartbeat"]
    assert rig.hub.connected() == []
    [late] = await rig.hub.complete("m", [Completion(job_id, 1, [b"late"])])
    assert isinstance(late, LeaseLost)
    assert await rig.state(job_id) is QUEUED
    assert (await rig.hub.stats()).counters["lease_lost"] == 1


async def test_a_lost_lease_on_a_push_worker_sends_the_job_out_again_once_it_is_heard_from(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(lease_ttl=10.0)
    link = await rig.attach("w", liveness=Liveness(idle=None, busy=None))
    [job_id] = await rig.submit(spec())
    await until(lambda: link.attempts == [(job_id, 1)])
    await rig.advance(10.5)
    assert link.stops == [[job_id]]
    await rig.settle()
    assert link.attempts == [(job_id, 1)]  # it let a lease expire: nothing until heard from
    assert await rig.hub.heartbeat("w")
    await until(lambda: len(link.attempts) == 2)
    assert link.attempts[1] == (job_id, 2)  # no other worker: back to it, with a fresh token
    assert await rig.state(job_id) is RUNNING


async def test_a_lost_lease_never_fails_a_job_it_is_a_lost_worker(make_rig: MakeRig) -> None:
    rig = await make_rig(lease_ttl=10.0)
    link = await rig.attach("m", pushes=False, liveness=Liveness(idle=None, busy=None))
    [job_id] = await rig.submit(spec(max_attempts=1))
    await rig.hub.claim("m", 1)
    await rig.advance(11.0)
    assert link.stops == [[job_id]]
    job = await rig.hub.get(job_id)
    assert (job.state, job.attempts, job.failures, job.losses, job.avoid_worker) == (QUEUED, 1, 0, 1, "m")
    counters = (await rig.hub.stats()).counters
    assert (counters["failed"], counters["requeued"], counters["lost"]) == (0, 1, 1)


async def test_heartbeats_renew_leases(make_rig: MakeRig) -> None:
    rig = await make_rig(lease_ttl=10.0, liveness=100)  # silence (100 s) plays no part here
    link = await rig.attach("w")
    [job_id] = await rig.submit(spec())
    await until(lambda: link.attempts)
    for _ in range(3):  # 24 s in all, past the first lease, renewed every 8 s
        await rig.advance(8.0)
        assert await rig.hub.heartbeat("w")
        assert (await rig.hub.get(job_id)).lease_expires == rig.clock.now + 10.0
    await rig.advance(9.0)
    assert await rig.state(job_id) is RUNNING and link.stops == []
    await rig.advance(1.5)  # 10.5 s since the last heartbeat
    assert link.stops == [[job_id]]
    assert await rig.hub.heartbeat("nobody") is False


async def test_an_attempt_timeout_is_not_renewed_by_heartbeats(rig: Rig) -> None:
    link = await rig.attach("w")
    [job_id] = await rig.submit(spec(timeout=5.0))
    await until(lambda: link.attempts)
    await rig.advance(3.0)
    await rig.hub.heartbeat("w")
    await rig.advance(2.0)
    assert await rig.state(job_id) is RUNNING
    await rig.advance(0.5)
    assert link.stops == [[job_id]]
    job = await rig.hub.get(job_id)
    assert job.state is SCHEDULED and job.error == "timed out after 5s"
    assert (await rig.hub.stats()).counters["retried"] == 1
    await rig.advance(1.0)  # past the retry's backoff: out again, though to the same worker
    await until(lambda: len(link.attempts) == 2)
    assert link.attempts[1] == (job_id, 2)


async def test_a_silent_worker_is_dropped_and_its_jobs_go_to_another(rig: Rig) -> None:
    silent = await rig.attach("silent", slots=2)
    ids = await rig.submit(spec(), spec())
    await until(lambda: len(silent.attempts) == 2)
    other = await rig.attach("other", slots=2)

    await rig.advance(3.0)
    assert await rig.hub.heartbeat("other")
    await rig.advance(2.0)  # exactly the 5 s silence window: not yet
    assert silent.disconnects == []
    assert sorted(rig.hub.connected()) == ["other", "silent"]
    assert await rig.hub.heartbeat("other")
    await rig.advance(0.5)
    assert silent.disconnects == ["no heartbeat"]
    assert rig.hub.connected() == ["other"]
    assert [status.info.id for status in await rig.hub.worker_statuses()] == ["other"]
    assert other.disconnects == []

    await until(lambda: len(other.attempts) == 2)
    assert other.attempts == [(ids[0], 2), (ids[1], 2)]  # the front of the queue, in order
    assert {(await rig.hub.get(i)).worker for i in ids} == {"other"}
    [late] = await rig.hub.complete("silent", [Completion(ids[0], 1, [b"late"])])
    assert isinstance(late, LeaseLost)
    assert await rig.hub.heartbeat("silent") is False and rig.hub.seen("silent") is False
    assert (await rig.hub.stats()).counters["requeued"] == 2


async def test_an_idle_worker_is_dropped_after_the_silence_window_too(rig: Rig) -> None:
    link = await rig.attach("w")
    await rig.advance(4.0)
    assert rig.hub.seen("w")  # any sign of life counts, not only heartbeats
    await rig.advance(5.0)
    assert link.disconnects == []
    await rig.advance(0.1)
    assert link.disconnects == ["no heartbeat"]
    assert rig.hub.connected() == []


# ---------------------------------------------------------------- draining


async def test_stop_waits_for_running_jobs_and_takes_no_new_work(rig: Rig) -> None:
    link = await rig.attach("w")
    running, waiting = await rig.submit(spec(), spec())
    await until(lambda: link.attempts == [(running, 1)])

    stopping = asyncio.create_task(rig.hub.stop(grace=5.0))
    await until(lambda: rig.hub.draining)
    with pytest.raises(Unavailable):
        await rig.hub.submit([spec()])
    with pytest.raises(Unavailable):
        await rig.attach("late")
    assert (await rig.hub.stats()).draining

    await rig.settle()
    assert not stopping.done()  # the running job holds it
    await rig.complete("w", running, 1)
    await until(stopping.done)
    await stopping
    assert link.disconnects == ["the hub is shutting down"]
    assert link.attempts == [(running, 1)]  # the freed slot got nothing
    assert await rig.state(running) is COMPLETED
    assert await rig.state(waiting) is QUEUED


async def test_a_draining_hub_hands_out_nothing_to_pull_workers(rig: Rig) -> None:
    await rig.attach("p", pushes=False)
    [failed] = await rig.submit(spec(max_attempts=1))
    await rig.submit(spec())
    await rig.hub.claim("p", 1)
    await rig.hub.fail("p", failed, 1, "boom")
    stopping = asyncio.create_task(rig.hub.stop(grace=5.0))
    await until(lambda: rig.hub.draining)
    assert await rig.hub.claim("p", 1) == []
    with pytest.raises(Unavailable):
        await rig.hub.retry(failed)
    await until(stopping.done)  # nothing runs: no waiting for the grace period
    await stopping


async def test_stop_without_grace_leaves_running_jobs(rig: Rig) -> None:
    link = await rig.attach("w")
    [job_id] = await rig.submit(spec())
    await until(lambda: link.attempts)
    await asyncio.wait_for(rig.hub.stop(grace=0), 1.0)
    assert link.disconnects == ["the hub is shutting down"]
    assert await rig.state(job_id) is RUNNING  # requeued after the next start, not now


# ---------------------------------------------------------------- figures


async def test_stats_count_what_happened_and_the_free_slots_per_door(rig: Rig) -> None:
    pusher = await rig.attach("z", slots=3, door="zmq")
    await rig.attach("l", slots=2, door="line", pushes=False)
    ids = await rig.submit(*(spec() for _ in range(5)))
    await until(lambda: len(pusher.attempts) == 3)
    [pulled] = await rig.hub.claim("l", 1)
    stats = await rig.hub.stats()
    assert (stats.workers, stats.slots, stats.slots_free) == (2, 5, 1)
    assert stats.by_door == {
        "zmq": DoorLoad(workers=1, slots=3, free=0),
        "line": DoorLoad(workers=1, slots=2, free=1),
    }
    assert stats.jobs.by_state == {"running": 4, "queued": 1}
    assert stats.jobs.by_service == {"echo": {"running": 4, "queued": 1}}

    await rig.complete("z", ids[0], 1)
    await rig.hub.fail("l", pulled.id, 1, "boom")  # retried later
    await rig.hub.cancel(ids[1])
    await until(lambda: len(pusher.attempts) == 4)  # a slot freed: the job left goes to it
    await rig.settle()
    rig.clock.now += 42.0
    stats = await rig.hub.stats()
    assert stats.counters == {
        "submitted": 5,
        "completed": 1,
        "failed": 0,
        "retried": 1,
        "cancelled": 1,
        "requeued": 0,
        "lost": 0,
        "quarantined": 0,
        "claimed": 5,
        "lease_lost": 0,
    }
    assert stats.uptime == 42.0 and stats.hub == "hub" and not stats.draining
    assert (stats.slots, stats.slots_free) == (5, 3)  # z runs 2 of 3, l nothing
    assert stats.jobs.by_state == {"completed": 1, "cancelled": 1, "scheduled": 1, "running": 2}


async def test_worker_health_follows_the_clock(rig: Rig) -> None:
    await rig.attach("w", slots=2)
    [job_id] = await rig.submit(spec())
    await rig.settle()

    async def health() -> tuple[str, float, int, bool]:
        [status] = await rig.hub.worker_statuses()
        return status.health, status.last_seen, status.running, status.local

    assert await health() == ("ok", T0, 1, True)
    rig.clock.now = T0 + 2.5  # two heartbeats and the slack
    assert (await health())[0] == "ok"
    rig.clock.now = T0 + 2.6
    assert (await health())[0] == "late"
    rig.clock.now = T0 + 5.0
    assert (await health())[0] == "late"
    rig.clock.now = T0 + 5.1  # silent (the clock has not ticked, so not dropped yet)
    assert (await health())[0] == "silent"
    await rig.hub.heartbeat("w")
    assert await health() == ("ok", T0 + 5.1, 1, True)
    await rig.complete("w", job_id, 1)
    assert (await health())[2] == 0
    await rig.advance(5.5)
    assert await rig.hub.worker_statuses() == []


async def test_services_and_explain(rig: Rig) -> None:
    await rig.attach("w", slots=1, services=["echo", "calc"])
    first, second = await rig.submit(spec(), spec())
    await rig.settle()
    assert await rig.hub.serves("calc") and not await rig.hub.serves("resize")
    echo = next(service for service in await rig.hub.services() if service.name == "echo")
    assert (echo.workers, echo.slots, echo.queued, echo.running) == (1, 1, 1, 1)
    assert (await rig.hub.explain(first)).summary == "running on w"
    explained = await rig.hub.explain(second)
    assert (explained.position, explained.eligible) == (1, ["w"])
    assert explained.summary == "waiting behind 0 job(s) for 1 eligible worker(s)"


# ---------------------------------------------------------------- listening


async def test_watch_ends_pushes_jobs_that_already_ended_at_once(rig: Rig) -> None:
    link = await rig.attach("w")
    ended, live = await rig.submit(spec(), spec())
    await until(lambda: link.attempts == [(ended, 1)])
    await rig.complete("w", ended, 1, b"done")
    await until(lambda: link.attempts == [(ended, 1), (live, 1)])

    subscriber = FakeSubscriber()
    rig.hub.watch_ends(subscriber, [await rig.hub.get(ended), await rig.hub.get(live)])
    assert [(e.id, e.kind, e.state, e.result) for e in subscriber.events] == [
        (ended, "completed", COMPLETED, [b"done"])  # pushed before watch_ends returned
    ]
    await rig.hub.progress("w", live, 1, 50.0, "half")  # not an end: not sent
    await rig.complete("w", live, 1, b"later")
    await until(lambda: len(subscriber.events) == 2)
    last = subscriber.events[1]
    assert (last.id, last.kind, last.result) == (live, "completed", [b"later"])


async def test_watch_sends_every_event_of_a_job(rig: Rig) -> None:
    subscriber = FakeSubscriber()
    [job_id] = await rig.submit(spec())
    rig.hub.watch(subscriber, [job_id])
    link = await rig.attach("w")
    await until(lambda: link.attempts)
    await rig.hub.progress("w", job_id, 1, 50.0, "half")
    await rig.complete("w", job_id, 1)
    await until(lambda: [e.kind for e in subscriber.events] == ["started", "progress", "completed"])


async def test_wait_returns_the_job_once_it_ends(rig: Rig) -> None:
    link = await rig.attach("w")
    [job_id] = await rig.submit(spec())
    waiting = asyncio.create_task(rig.hub.wait(job_id, 5.0))
    await until(lambda: link.attempts)
    assert not waiting.done()
    await rig.complete("w", job_id, 1, b"r")
    await until(waiting.done)
    assert (await waiting).result == [b"r"]
    assert (await rig.hub.wait(job_id, 0)).state is COMPLETED  # ended: at once


# ---------------------------------------------------------------- reconnecting


async def test_a_reconnecting_worker_keeps_the_attempts_it_still_holds(rig: Rig) -> None:
    old = await rig.attach("w", slots=2)
    ids = await rig.submit(spec(), spec())
    await until(lambda: len(old.attempts) == 2)
    new = FakeLink()
    welcome = await rig.hub.attach(
        WorkerHello(id="w", services=["echo"], slots=2), new, held=[(ids[0], 1), (ids[1], 99)]
    )
    assert welcome.kept == [ids[0]]  # the other token is not the job's
    assert old.disconnects == ["replaced by a new connection of the same worker"]
    done = await rig.complete("w", ids[0], 1)
    assert done.state is COMPLETED


async def test_attempts_a_reconnecting_worker_did_not_keep_go_back_to_the_queue(
    make_rig: MakeRig,
) -> None:
    rig = await make_rig(lease_ttl=10.0, liveness=100)
    old = await rig.attach("w")
    [lost] = await rig.submit(spec())
    await until(lambda: old.attempts == [(lost, 1)])
    # The worker restarts and says hello again holding nothing.
    new = FakeLink()
    welcome = await rig.hub.attach(WorkerHello(id="w", services=["echo"], slots=1), new)
    assert welcome.kept == []  # it must drop the attempt ...
    for _ in range(5):  # ... and heartbeats as a live worker does, for 40 s (4 lease lengths)
        await rig.advance(8.0)
        assert await rig.hub.heartbeat("w")
    await rig.settle()
    # ... so the job should have run again, as a new attempt (here it is still "running" on w,
    # its lease renewed by the new connection's heartbeats, and w's one slot is taken by it).
    assert (lost, 2) in new.attempts


async def test_a_worker_leaving_never_fails_a_job_and_counts_as_lost(rig: Rig) -> None:
    link = await rig.attach("w")
    [job_id] = await rig.submit(spec(max_attempts=1))
    await until(lambda: link.attempts)
    await rig.hub.detach("w")
    assert await rig.state(job_id) is QUEUED
    counters = (await rig.hub.stats()).counters
    assert (counters["failed"], counters["requeued"], counters["lost"]) == (0, 1, 1)
