"""The rules the Redis store runs in Lua as well as in Python, each held to one answer.

The embedded stores decide these in Python (``core/index.py``, ``core/matching.py``,
``core/explain.py``, ``core/retention.py``, ``store/embedded.py``); the Redis store runs them in
its scripts (``store/lua``). ``docs/redis.md`` maps each Lua function to the Python function it
mirrors and to its case here (cases that the main contract suite already has are named there
too); every case runs on every backend.
"""

from __future__ import annotations

import pytest

from jobq.core.model import Completion, JobSpec
from jobq.core.retention import DEFAULT_FAILED_TTL
from jobq.core.schedule import new_schedule
from jobq.core.states import JobState
from jobq.core.workflow import Group, GroupState, record_end, record_retry
from jobq.errors import Conflict
from jobq.store.base import Store
from tests.contract.support import T0, TTL, Backend, attach, spec, submit_one

GPU = "hardware.gpu_memory_gb"
DAY = 24 * 3600.0


# ---------------------------------------------------------------- claim.lua: what fits now


async def test_a_job_that_does_not_fit_lets_smaller_ones_pass_then_reserves_the_worker(
    store: Store,
) -> None:
    """claim.lua load_miss and the reservation ↔ ReadyIndex._pick (matching.load_miss);
    load_take / load_give_back ↔ Load.take / Load.give_back."""
    await attach(store, "big", slots=10, caps={GPU: 24})
    first = await submit_one(store, spec(requires={GPU: 8}))
    assert [j.id for j in await store.claim("big", 1, T0, TTL)] == [first.id]
    large = await submit_one(store, spec(requires={GPU: 20}))
    small = await submit_one(store, spec(requires={GPU: 8}))
    # 16 GB free: the 20 GB job does not fit yet, the smaller one behind it passes.
    assert [j.id for j in await store.claim("big", 10, T0 + 5, TTL)] == [small.id]
    later = await submit_one(store, spec(requires={GPU: 4}), T0 + 6)
    # The large job has waited 30 s: the worker is kept for it and takes nothing smaller.
    assert await store.claim("big", 10, T0 + 31, TTL) == []
    done = await store.complete([Completion(first.id, 1, []), Completion(small.id, 1, [])], T0 + 32)
    assert all(not isinstance(d, Exception) for d in done)
    # The memory they held is given back: the large job fits, and the small one after it.
    assert [j.id for j in await store.claim("big", 1, T0 + 32, TTL)] == [large.id]
    assert [j.id for j in await store.claim("big", 10, T0 + 32, TTL)] == [later.id]


async def test_a_worker_at_its_customer_limit_takes_no_further_customer(store: Store) -> None:
    """claim.lua load_miss (customers) ↔ matching.load_miss; explain's "eligible, but"."""
    await attach(store, slots=5, caps={"customer_access": {"max_concurrent_customers": 1}})
    one = await submit_one(store, spec(customer_id="c1", isolation="loose"))
    two = await submit_one(store, spec(customer_id="c2", isolation="loose"))
    more = await submit_one(store, spec(customer_id="c1", isolation="loose"))
    assert [j.id for j in await store.claim("w1", 5, T0, TTL)] == [one.id, more.id]
    found = await store.explain(two.id, T0 + 1)
    assert found is not None and found.eligible == ["w1"]
    assert found.ineligible == {"w1": "eligible, but worker already serves 1 customers (max 1)"}
    await store.complete([Completion(one.id, 1, []), Completion(more.id, 1, [])], T0 + 2)
    assert [j.id for j in await store.claim("w1", 5, T0 + 2, TTL)] == [two.id]


async def test_a_failed_job_goes_back_to_its_worker_when_no_other_can_run_it(store: Store) -> None:
    """claim.lua head / avoided with shape_workers ↔ ReadyIndex._pick (ShapeQueue.workers)."""
    job = await submit_one(store, spec(backoff=0))
    await attach(store, "w1", slots=1)
    await attach(store, "elsewhere", services=("resize",), slots=1)  # attached, not eligible
    await store.claim("w1", 1, T0, TTL)
    await store.fail(job.id, 1, "boom", T0)
    await store.tick(T0 + 0.1)
    (again,) = await store.claim("w1", 1, T0 + 0.2, TTL)
    assert again.id == job.id and again.attempts == 2


async def test_a_new_shape_is_matched_against_the_workers_already_attached(store: Store) -> None:
    """register.lua (pairs decided by matching.first_miss) ↔ ReadyIndex.queue."""
    await attach(store, "big", slots=5, caps={GPU: 24, "location": {"region": "eu"}})
    await attach(store, "small", slots=5, caps={GPU: 8})
    job = await submit_one(store, spec(requires={GPU: 16, "region": "eu"}))
    assert await store.claim("small", 5, T0, TTL) == []
    assert [j.id for j in await store.claim("big", 5, T0, TTL)] == [job.id]


# ---------------------------------------------------------------- prelude.lua: fairness


async def test_a_customer_back_from_idle_has_banked_no_share(store: Store) -> None:
    """fair_add (back from idle at the virtual time) ↔ ReadyIndex.add; fair_left on a cancel
    ↔ ReadyIndex.discard; fair_take ↔ ReadyIndex.claim."""
    await attach(store, slots=100)
    first, dropped = [d.job for d in await store.submit([spec(customer_id="b")] * 2, T0)]
    await store.submit([spec(customer_id="a")] * 20, T0)
    assert [j.id for j in await store.claim("w1", 1, T0, TTL)] == [first.id]
    await store.cancel(dropped.id, T0)  # b has nothing queued now: it is idle
    assert {j.customer_id for j in await store.claim("w1", 20, T0, TTL)} == {"a"}
    await store.submit([spec(customer_id="b")] * 10, T0 + 1)
    await store.submit([spec(customer_id="a")] * 10, T0 + 1)
    taken = [j.customer_id for j in await store.claim("w1", 10, T0 + 1, TTL)]
    # b idled while a ran 20 jobs: it shares from now on, it does not take the worker over.
    assert taken.count("b") <= 6 and "a" in taken[:3]


# ---------------------------------------------------------------- prelude.lua: ends and retention


async def test_failed_jobs_are_kept_as_dead_letters(store: Store) -> None:
    """fail.lua / release (dead_letter_ttl, finish) ↔ EmbeddedStore.failed_ttl, expires_at: a
    failed (or quarantined) job is kept the store's failed_ttl, whatever its own result_ttl."""
    short = await submit_one(store, spec(max_attempts=1, result_ttl=10))
    long = await submit_one(store, spec(max_attempts=1, max_losses=1, result_ttl=30 * DAY))
    await attach(store, slots=2)
    await store.claim("w1", 2, T0, TTL)
    failed = await store.fail(short.id, 1, "boom", T0 + 1)
    assert failed.state is JobState.FAILED and failed.expires_at == T0 + 1 + DEFAULT_FAILED_TTL
    (quarantined,) = await store.detach_worker("w1", T0 + 1)
    assert quarantined.id == long.id and quarantined.state is JobState.QUARANTINED
    assert quarantined.error == (
        "quarantined after losing its worker on 1 attempt(s) (max_losses 1); last: its worker went away"
    )
    assert quarantined.expires_at == T0 + 1 + DEFAULT_FAILED_TTL
    assert (await store.tick(T0 + 100)).purged == 0
    assert (await store.tick(T0 + 1 + DEFAULT_FAILED_TTL)).purged == 2
    assert await store.get(short.id) is None
    assert await store.get(long.id) is None


async def test_retention_follows_the_stores_settings(backend: Backend) -> None:
    """The hub's --result-ttl / --failed-ttl reach the store (fail.lua's FAILED_TTL, submit's
    ttl): a failed job with failed_ttl=1 is forgotten a tick past it; a completed one keeps
    result_ttl unless it has its own."""
    store = await backend.open(result_ttl=5, failed_ttl=1)
    failed = await submit_one(store, spec(max_attempts=1))
    done = await submit_one(store)
    own = await submit_one(store, spec(result_ttl=50))
    await attach(store, slots=3)
    await store.claim("w1", 3, T0, TTL)
    ended = await store.fail(failed.id, 1, "boom", T0)
    assert ended.state is JobState.FAILED and ended.expires_at == T0 + 1
    await store.complete([Completion(done.id, 1, [b"r"]), Completion(own.id, 1, [b"r"])], T0)
    assert (await store.tick(T0 + 0.5)).purged == 0
    assert (await store.tick(T0 + 1.5)).purged == 1
    assert await store.get(failed.id) is None
    assert (await store.tick(T0 + 5.5)).purged == 1
    assert await store.get(done.id) is None
    kept = await store.get(own.id)
    assert kept is not None and kept.state is JobState.COMPLETED
    assert (await store.tick(T0 + 50.5)).purged == 1


async def test_completing_a_job_that_reported_progress_sets_it_to_100(store: Store) -> None:
    """complete.lua ↔ EmbeddedStore.complete."""
    with_progress = await submit_one(store)
    without = await submit_one(store)
    await attach(store, slots=2)
    await store.claim("w1", 2, T0, TTL)
    await store.progress(with_progress.id, 1, 40.0, "almost", T0)
    await store.complete([Completion(with_progress.id, 1, []), Completion(without.id, 1, [])], T0 + 1)
    done = await store.get(with_progress.id)
    assert done is not None and done.progress == 100.0 and done.progress_message == "almost"
    plain = await store.get(without.id)
    assert plain is not None and plain.progress is None


# ---------------------------------------------------------------- attach.lua, adopt.lua


async def test_workers_are_listed_in_the_order_they_attached(store: Store) -> None:
    """attach.lua (workers, a re-attach keeps its place) ↔ EmbeddedStore.attach_worker."""
    for name in ("w2", "w1", "w3"):
        await attach(store, name, slots=1)
    await attach(store, "w2", slots=4)
    listed = await store.list_workers()
    assert [(w.id, w.slots) for w in listed] == [("w2", 4), ("w1", 1), ("w3", 1)]


async def test_an_adopted_attempt_holds_its_share_of_the_worker(backend: Backend) -> None:
    """adopt.lua (load_take) ↔ ReadyIndex.adopt."""
    if not backend.durable:
        pytest.skip("memory:// keeps nothing")
    store = await backend.open()
    held, waiting = [d.job for d in await store.submit([spec(requires={GPU: 16})] * 2, T0)]
    await attach(store, "big", slots=5, caps={GPU: 24})
    await store.claim("big", 1, T0, TTL)
    store = await backend.reopen(store, T0 + 1)
    await attach(store, "big", slots=5, caps={GPU: 24})
    assert await store.adopt("big", [(held.id, 1)], T0 + 1, TTL) == [held.id]
    assert await store.claim("big", 5, T0 + 2, TTL) == []
    found = await store.explain(waiting.id, T0 + 2)
    assert found is not None
    assert found.ineligible == {"big": "eligible, but needs 16 GB of GPU memory, 8 GB free now"}


# ---------------------------------------------------------------- explain and blocked


async def test_explain_names_the_workers_and_the_jobs_ahead(store: Store) -> None:
    """core/explain.py: judge, competing, explanation (both store families)."""
    older = await submit_one(store, spec(priority=0))
    urgent = await submit_one(store, spec(priority=5))
    gpu = await submit_one(store, spec(requires={GPU: 16}))
    job = await submit_one(store, spec(priority=0))
    await submit_one(store, spec(priority=0))  # behind it: not ahead
    await submit_one(store, spec(service="resize", priority=9))  # nobody here takes it first
    await attach(store, "small", slots=2, caps={GPU: 8})
    await attach(store, "big", slots=3, caps={GPU: 24})
    await attach(store, "other", services=("resize",), slots=1)
    found = await store.explain(job.id, T0 + 7)
    assert found is not None
    assert found.eligible == ["small", "big"]
    assert found.ineligible == {"other": "does not serve echo"}
    assert found.ahead == 3  # older, urgent, and the GPU job big would take first
    assert found.blocked is None and found.waited == 7.0 and found.free_slots == 5
    claimed = await store.claim("big", 3, T0 + 8, TTL)
    assert [j.id for j in claimed] == [urgent.id, older.id, gpu.id]
    again = await store.explain(job.id, T0 + 8)
    assert again is not None and again.ahead == 0 and again.free_slots == 2
    assert await store.explain(gpu.id, T0 + 8) is None  # running
    assert await store.explain(999_999, T0 + 8) is None


async def test_blocked_names_what_each_worker_misses(store: Store) -> None:
    """core/explain.py: blocked_reason, blocked_queues (both store families)."""
    job = await submit_one(store, spec(requires={GPU: 16}))
    fine = await submit_one(store)
    for name in ("s1", "s2", "s3", "s4"):
        await attach(store, name, slots=1, caps={GPU: 8})
    await attach(store, "other", services=("resize",), slots=1)
    miss = "needs hardware.gpu_memory_gb >= 16, worker has 8"
    reason = f"s1: {miss}; s2: {miss}; s3: {miss}"
    assert await store.blocked() == [(job.id, reason)]
    found = await store.explain(job.id, T0 + 1)
    assert found is not None and found.eligible == [] and found.blocked == reason
    assert found.free_slots == 0 and found.ahead == 0
    assert (await store.explain(fine.id, T0 + 1)) is not None
    await attach(store, "big", slots=1, caps={GPU: 24})
    assert await store.blocked() == []


# ---------------------------------------------------------------- fire.lua: a schedule's firing


async def test_a_firing_is_made_once_and_only_after_the_cursor(store: Store) -> None:
    """fire.lua (the cursor's compare-and-set, then submit.lua's job) ↔
    ScheduledEmbeddedStore.fire; schedule.lua advance/pause ↔ advance_schedule/pause_schedule."""
    schedule = new_schedule("m", "* * * * *", spec(), T0)  # T0 is 13:46:40: fires 13:47:00, ...
    await store.put_schedule(schedule)
    first = await store.fire(schedule, T0 + 20, T0 + 20)
    assert first is not None and first.created and first.job.state is JobState.QUEUED
    assert await store.fire(schedule, T0 + 20, T0 + 21) is None  # the same firing: no second job
    assert await store.advance_schedule("m", T0 + 140) is True  # 13:49 considered (skipped)
    assert await store.fire(schedule, T0 + 80, T0 + 141) is None  # 13:48: behind the cursor
    await store.pause_schedule("m", T0 + 141)
    assert await store.fire(schedule, T0 + 200, T0 + 200) is None  # paused
    [(after, following)] = await store.list_schedules()
    assert after.cursor == T0 + 140 and after.paused and following is None


# ---------------------------------------------------------------- deps.lua: dependencies


async def test_a_lost_or_quarantined_prerequisite_decides_its_dependents_in_the_same_step(
    store: Store,
) -> None:
    """deps.lua after_decision / dependents_decide, reached through prelude release (a loss
    that quarantines) ↔ dependencies.after_decision through EmbeddedDependencies._ended; the
    rest of the dependency cases are in test_dependencies.py."""
    doomed = await submit_one(store, spec(max_losses=1))
    cancelled = await submit_one(store, spec(after=[doomed.id]))
    anyway = await submit_one(store, spec(after=[doomed.id], after_policy="always", delay=50))
    await attach(store, slots=1)
    await store.claim("w1", 1, T0, TTL)
    (quarantined,) = await store.detach_worker("w1", T0 + 1)
    assert quarantined.state is JobState.QUARANTINED
    dependent = await store.get(cancelled.id)
    assert dependent is not None and dependent.state is JobState.CANCELLED
    assert dependent.error == f"prerequisite {doomed.id} ended quarantined"
    # Released while its own start is still ahead: scheduled, then queued on time.
    later = await store.get(anyway.id)
    assert later is not None and later.state is JobState.SCHEDULED
    await store.tick(T0 + 51)
    later = await store.get(anyway.id)
    assert later is not None and later.state is JobState.QUEUED


# ---------------------------------------------------------------- groups.lua: record_end


async def test_a_group_records_each_member_end_as_record_end_does(store: Store) -> None:
    """groups.lua group_end and group_failure ↔ workflow.record_end and _failure_reason: the
    same ends (completed, failed, quarantined, cancelled) give the same group."""
    await attach(store, "w1", slots=10)
    base = Group(id=0, service="echo", total=4, created_at=T0, finalize=JobSpec(service="merge"))
    group, jobs, _ = await store.submit_group(base, [spec(max_losses=1, backoff=0) for _ in range(4)], T0)
    claimed = {job.id: job for job in await store.claim("w1", 3, T0, TTL)}
    first, second, third = (claimed[j.id] for j in jobs[:3])
    expected = Group(id=group.id, service="echo", total=4, created_at=T0, finalize=JobSpec(service="merge"))
    await store.complete([Completion(first.id, first.token, [b"ok"])], T0)
    expected = record_end(expected, 0, JobState.COMPLETED, T0).group
    await store.fail(second.id, second.token, "boom", T0, retryable=False)
    expected = record_end(expected, 1, JobState.FAILED, T0).group
    await store.detach_worker("w1", T0)  # its last loss: quarantined
    assert (await store.get(third.id)).state is JobState.QUARANTINED  # type: ignore[union-attr]
    expected = record_end(expected, 2, JobState.QUARANTINED, T0).group
    await store.cancel(jobs[3].id, T0 + 1)
    expected = record_end(expected, 3, JobState.CANCELLED, T0 + 1).group
    found = await store.get_group(group.id)
    assert found is not None
    got = found[0]
    assert (got.state, got.ended, got.reason, got.ended_at) == (
        expected.state, expected.ended, expected.reason, expected.ended_at,
    )  # fmt: skip
    assert got.reason == "3 of 4 members did not complete (1 cancelled, 1 failed, 1 quarantined)"


# ---------------------------------------------------------------- groups.lua: record_retry


async def test_retrying_a_member_or_the_finalize_job_follows_record_retry(store: Store) -> None:
    """groups.lua group_retry (called by retry.lua) ↔ workflow.record_retry (EmbeddedGroups.retry):
    a failed group takes a failed member back and runs again; once finalized, members are
    refused and the finalize job is retried; a cancelled group's jobs are refused."""
    await attach(store, "w1", slots=10)
    await attach(store, "f", services=("merge",), slots=1)
    base = Group(id=0, service="echo", total=2, created_at=T0, finalize=JobSpec(service="merge"))
    group, jobs, _ = await store.submit_group(base, [spec(), spec()], T0)
    claimed = {job.id: job for job in await store.claim("w1", 2, T0, TTL)}
    first, second = (claimed[j.id] for j in jobs)
    await store.complete([Completion(first.id, first.token, [b"ok"])], T0)
    await store.fail(second.id, second.token, "boom", T0, retryable=False)
    expected = record_end(record_end(base, 0, JobState.COMPLETED, T0).group, 1, JobState.FAILED, T0).group
    expected = record_retry(expected, 1, JobState.FAILED)
    retried = await store.retry(second.id, T0 + 1)
    assert retried.state is JobState.QUEUED
    found = await store.group_records([group.id])
    got = found[0]
    assert (got.state, got.ended, got.reason, got.ended_at) == (
        expected.state, expected.ended, expected.reason, expected.ended_at,
    )  # fmt: skip
    assert got.state is GroupState.RUNNING and got.ended == {"completed": 1}
    (again,) = await store.claim("w1", 1, T0 + 2, TTL)
    await store.complete([Completion(again.id, again.token, [b"ok"])], T0 + 2)
    await store.finished_groups([group.id])  # on Redis: the finalize job is made here
    (finalizing,) = await store.group_records([group.id])
    assert finalizing.state is GroupState.FINALIZING and finalizing.finalize_id is not None
    (final,) = await store.claim("f", 1, T0 + 3, TTL)
    await store.fail(final.id, final.token, "merge broke", T0 + 3, retryable=False)
    (failed,) = await store.group_records([group.id])
    assert failed.state is GroupState.FAILED and failed.reason == "finalize job failed: merge broke"
    assert (await store.retry(final.id, T0 + 4)).state is JobState.QUEUED
    (again_finalizing,) = await store.group_records([group.id])
    assert again_finalizing.state is GroupState.FINALIZING and again_finalizing.reason is None
    # under all_ended a failed member's outcome went to the finalize job: it is not retried
    lenient = Group(
        id=0, service="echo", total=1, created_at=T0, policy="all_ended", finalize=JobSpec(service="merge")
    )
    handed, (member,), _ = await store.submit_group(lenient, [spec()], T0 + 5)
    (running,) = await store.claim("w1", 1, T0 + 5, TTL)
    await store.fail(running.id, running.token, "boom", T0 + 5, retryable=False)
    await store.finished_groups([handed.id])
    with pytest.raises(Conflict, match="has finalized; its members cannot be retried"):
        await store.retry(member.id, T0 + 6)
    # a cancelled group's jobs are not retried
    other, members, _ = await store.submit_group(
        Group(id=0, service="echo", total=1, created_at=T0), [spec(service="nobody")], T0 + 5
    )
    await store.cancel_group(other.id, T0 + 5)
    with pytest.raises(Conflict, match="was cancelled; its jobs cannot be retried"):
        await store.retry(members[0].id, T0 + 6)
