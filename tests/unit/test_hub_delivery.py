"""Issue 12, delivery semantics in the hub's worker half (fake clock, fake links, memory store).

- A lost worker costs a job its ``max_losses`` budget, never ``max_attempts`` (finding 1); what
  was handed to a worker already silent costs nothing.
- An expired lease puts the job on another worker, and the holder gets no new jobs until it is
  heard from (finding 2).
- Prefetched jobs given back by a draining worker cost nothing (finding 5).
- Counters count what happened: ``lost``, ``quarantined`` (finding 10); a poison job is
  quarantined after ``max_losses`` worker deaths and never handed out again (finding 11).
"""

from __future__ import annotations

from jobq.core.model import JobEvent
from jobq.core.retry import DEFAULT_MAX_LOSSES
from jobq.core.states import JobState
from jobq.hub.sessions import Liveness
from tests.unit.test_hub import FakeSubscriber, MakeRig, Rig, spec, until

QUEUED, RUNNING, QUARANTINED = JobState.QUEUED, JobState.RUNNING, JobState.QUARANTINED


async def budgets(rig: Rig, job_id: int) -> tuple[JobState, int, int, int]:
    job = await rig.hub.get(job_id)
    return job.state, job.attempts, job.failures, job.losses


async def test_an_expired_lease_sends_the_job_to_another_worker_and_none_to_the_stalled_one(
    make_rig: MakeRig,
) -> None:
    """Finding 2: a lease (2 s) shorter than the silence window (100 s): a stalled worker is
    still attached when its lease runs out. Before, the job went back to the front of the queue
    and the dispatcher gave the stalled worker its next attempts too."""
    rig = await make_rig(lease_ttl=2.0, liveness=100)
    stalled = await rig.attach("stalled")
    [job_id] = await rig.submit(spec(max_attempts=1))
    await until(lambda: stalled.attempts == [(job_id, 1)])
    idle = await rig.attach("idle")
    await rig.advance(1.5)
    assert await rig.hub.heartbeat("idle")
    await rig.advance(1.0)  # the stalled worker's lease ran out
    assert stalled.stops == [[job_id]]
    await until(lambda: idle.attempts == [(job_id, 2)])
    assert await budgets(rig, job_id) == (RUNNING, 2, 0, 1)

    more = await rig.submit(spec(), spec())
    await rig.settle()
    assert stalled.attempts == [(job_id, 1)], "it takes nothing until it is heard from"
    assert await rig.hub.heartbeat("stalled")
    await until(lambda: len(stalled.attempts) == 2)
    assert stalled.attempts[1] == (more[0], 1)
    counters = (await rig.hub.stats()).counters
    assert (counters["lost"], counters["requeued"], counters["failed"]) == (1, 1, 0)


async def test_any_message_proves_a_stalled_pull_worker_alive(make_rig: MakeRig) -> None:
    rig = await make_rig(lease_ttl=2.0, liveness=100)
    await rig.attach("puller", pushes=False, liveness=Liveness(idle=None, busy=None))
    [first, second] = await rig.submit(spec(), spec())
    [job] = await rig.hub.claim("puller", 1)
    await rig.advance(3.0)
    assert await rig.state(job.id) is QUEUED
    # Its FETCH after the expiry is a sign of life: it takes work again (the job it lost first,
    # as no other worker could run it).
    assert [j.id for j in await rig.hub.claim("puller", 1)] == [first]
    assert second != first


async def test_a_lost_worker_never_fails_a_job_and_a_silent_ones_late_deliveries_cost_nothing(
    rig: Rig,
) -> None:
    """Finding 1: a worker goes silent (SIGKILLed, its connection not seen to close); until the
    hub drops it, it is handed jobs. Those cost nothing; what it held before costs a loss, not an
    attempt: every job still has its one attempt."""
    dead = await rig.attach("dead", slots=10)
    [held] = await rig.submit(spec(max_attempts=1))
    await until(lambda: dead.attempts == [(held, 1)])
    await rig.advance(3.0)  # 3 s silent: over half its 5 s window
    late = await rig.submit(*(spec(max_attempts=1) for _ in range(4)))
    await until(lambda: len(dead.attempts) == 5)
    await rig.advance(2.5)  # dropped: 5.5 s silent
    assert dead.disconnects == ["no heartbeat"]
    assert await budgets(rig, held) == (QUEUED, 1, 0, 1)
    for job_id in late:
        assert await budgets(rig, job_id) == (QUEUED, 0, 0, 0)
    live = await rig.attach("live", slots=10)
    await until(lambda: len(live.attempts) == 5)
    for job_id, token in live.attempts:
        await rig.complete("live", job_id, token)
    assert {await rig.state(i) for i in [held, *late]} == {JobState.COMPLETED}
    counters = (await rig.hub.stats()).counters
    assert (counters["failed"], counters["lost"], counters["requeued"]) == (0, 1, 5)


async def test_a_job_that_kills_every_worker_is_quarantined_and_never_handed_out_again(rig: Rig) -> None:
    """Finding 11: each worker that runs it dies (the door sees its connection close: detach)."""
    watcher = FakeSubscriber()
    [poison] = await rig.submit(spec(payload=b"poison"))
    rig.hub.watch(watcher, [poison], ends_only=True)
    for n in range(DEFAULT_MAX_LOSSES):
        link = await rig.attach(f"victim-{n}")
        expected = [(poison, n + 1)]
        await until(lambda link=link, expected=expected: link.attempts == expected)  # type: ignore[misc]
        await rig.hub.detach(f"victim-{n}", "connection closed")
    assert await budgets(rig, poison) == (QUARANTINED, DEFAULT_MAX_LOSSES, 0, DEFAULT_MAX_LOSSES)
    job = await rig.hub.get(poison)
    assert job.error is not None and job.error.startswith("quarantined after losing its worker on 5")
    healthy = await rig.attach("healthy")
    [normal] = await rig.submit(spec())
    await until(lambda: healthy.attempts == [(normal, 1)])  # the poison job is not among them
    await until(lambda: bool(watcher.events))
    [end] = watcher.events
    assert isinstance(end, JobEvent) and (end.kind, end.state) == ("quarantined", QUARANTINED)
    stats = await rig.hub.stats()
    assert stats.counters["quarantined"] == 1 and stats.counters["lost"] == DEFAULT_MAX_LOSSES
    assert stats.counters["failed"] == 0 and stats.jobs.by_state.get("quarantined") == 1
    retried = await rig.hub.retry(poison)
    assert (retried.state, retried.losses, retried.attempts) == (QUEUED, 0, 0)


async def test_prefetched_jobs_given_back_by_a_draining_worker_cost_nothing(rig: Rig) -> None:
    """Finding 5: the worker SDK releases the jobs it never started when it drains."""
    draining = await rig.attach("draining", slots=3)
    ids = await rig.submit(*(spec(max_attempts=1) for _ in range(3)))
    await until(lambda: len(draining.attempts) == 3)
    await rig.hub.set_slots("draining", 0)
    await rig.hub.release("draining", draining.attempts[1:])
    for job_id in ids[1:]:
        assert await budgets(rig, job_id) == (QUEUED, 0, 0, 0)
    other = await rig.attach("other", slots=3)
    await until(lambda: len(other.attempts) == 2)
    assert other.attempts == [(ids[1], 2), (ids[2], 2)]  # new tokens, first attempts
    assert [(await rig.hub.get(i)).attempts for i in ids[1:]] == [1, 1]
    counters = (await rig.hub.stats()).counters
    assert (counters["requeued"], counters["lost"], counters["failed"]) == (2, 0, 0)
