"""Dependencies (``after``) on every store: a dependent waits, then runs, or ends cancelled with
the reason, decided in the same step as its prerequisite's end (``docs/workflows.md``).

On Redis the decisions run in Lua (``store/lua/deps.lua``: ``after_decision`` mirrors
``core/dependencies.after_decision``), so these cases are also its mirror cases
(``docs/redis.md``).
"""

from __future__ import annotations

import pytest

from jobq.core.model import Completion, Job, JobFilter
from jobq.core.states import JobState
from jobq.errors import NotFound
from jobq.store.base import Store
from tests.contract.support import T0, TTL, Backend, attach, spec, submit_one

WAITING = JobState.WAITING


async def run(store: Store, job_id: int, now: float = T0, ok: bool = True) -> Job:
    """Claim ``job_id`` (it must be the only queued one) and complete or fail it."""
    claimed = await store.claim("w1", 10, now, TTL)
    assert [j.id for j in claimed] == [job_id]
    if ok:
        (done,) = await store.complete([Completion(job_id, claimed[0].token, [b"ok"])], now)
        assert isinstance(done, Job)
        return done
    return await store.fail(job_id, claimed[0].token, "boom", now, retryable=False)


async def state(store: Store, job_id: int) -> JobState:
    job = await store.get(job_id)
    assert job is not None
    return job.state


async def test_a_dependent_waits_then_runs_once_its_prerequisite_completed(store: Store) -> None:
    """deps.lua after_decision (all completed: run) ↔ dependencies.after_decision."""
    await attach(store)
    first = await submit_one(store)
    second = await submit_one(store, spec(after=[first.id]))
    assert second.state is WAITING and second.after == [first.id]
    assert (await store.stats()).by_state.get("waiting") == 1
    await run(store, first.id)  # the dependent is not handed out before: run() checks
    assert await state(store, second.id) is JobState.QUEUED
    await run(store, second.id, T0 + 1)
    waiting = await store.list_jobs(JobFilter(states=[WAITING]))
    assert waiting == []


async def test_a_failed_prerequisite_cancels_its_dependents_in_a_chain(store: Store) -> None:
    """deps.lua (cancel with the reason, cascading) ↔ dependencies.after_decision."""
    await attach(store)
    first = await submit_one(store)
    second = await submit_one(store, spec(after=[first.id]))
    third = await submit_one(store, spec(after=[second.id]))
    await run(store, first.id, ok=False)
    cancelled = await store.get(second.id)
    assert cancelled is not None and cancelled.state is JobState.CANCELLED
    assert cancelled.error == f"prerequisite {first.id} ended failed"
    last = await store.get(third.id)
    assert last is not None and last.state is JobState.CANCELLED
    assert last.error == f"prerequisite {second.id} ended cancelled"
    assert await store.claim("w1", 10, T0 + 1, TTL) == []


async def test_cancelling_a_prerequisite_cancels_the_dependent(store: Store) -> None:
    first = await submit_one(store)
    second = await submit_one(store, spec(after=[first.id]))
    await store.cancel(first.id, T0)
    dependent = await store.get(second.id)
    assert dependent is not None and dependent.state is JobState.CANCELLED
    assert dependent.error == f"prerequisite {first.id} ended cancelled"


async def test_policy_always_runs_once_every_prerequisite_ended(store: Store) -> None:
    """deps.lua after_decision (policy always) ↔ dependencies.after_decision."""
    await attach(store)
    first = await submit_one(store)
    other = await submit_one(store, spec(delay=100))
    after = await submit_one(store, spec(after=[first.id, other.id], after_policy="always"))
    await run(store, first.id, ok=False)
    assert await state(store, after.id) is WAITING  # the other has not ended
    await store.cancel(other.id, T0 + 1)
    assert await state(store, after.id) is JobState.QUEUED
    await run(store, after.id, T0 + 2)


async def test_a_dependent_of_two_waits_for_both(store: Store) -> None:
    await attach(store)
    one, two = await submit_one(store), await submit_one(store, spec(delay=10))
    both = await submit_one(store, spec(after=[one.id, two.id]))
    await run(store, one.id)
    assert await state(store, both.id) is WAITING
    await store.tick(T0 + 11)
    await run(store, two.id, T0 + 11)
    assert await state(store, both.id) is JobState.QUEUED


async def test_prerequisites_that_already_ended_decide_at_submit(store: Store) -> None:
    """submit.lua's after_decision at creation ↔ EmbeddedDependencies._place."""
    await attach(store)
    done = await submit_one(store)
    await run(store, done.id)
    failed = await submit_one(store)
    await run(store, failed.id, ok=False)
    runs = await submit_one(store, spec(after=[done.id]))
    assert runs.state is JobState.QUEUED
    never = await submit_one(store, spec(after=[done.id, failed.id]))
    assert never.state is JobState.CANCELLED and never.error == f"prerequisite {failed.id} ended failed"
    anyway = await submit_one(store, spec(after=[failed.id], after_policy="always"))
    assert anyway.state is JobState.QUEUED


async def test_an_unknown_prerequisite_refuses_the_batch(store: Store) -> None:
    known = await submit_one(store)
    with pytest.raises(NotFound, match="no job 999"):
        await store.submit([spec(), spec(after=[known.id]), spec(after=[999])], T0)
    assert sum((await store.stats()).by_state.values()) == 1  # nothing was created


async def test_refs_of_a_batch_name_the_jobs_just_made(store: Store) -> None:
    """submit.lua ('#k' refs) ↔ EmbeddedDependencies._new_job: the batch comes ordered."""
    await attach(store)
    made = await store.submit(
        [spec(ref="a"), spec(ref="b", after=["a"]), spec(after=["a", "b"], after_policy="always")], T0
    )
    a, b, c = (m.job for m in made)
    assert b.after == [a.id] and b.state is WAITING
    assert c.after == [a.id, b.id] and c.state is WAITING
    await run(store, a.id)
    await run(store, b.id, T0 + 1)
    assert await state(store, c.id) is JobState.QUEUED


async def test_a_retried_dependent_waits_again_for_what_has_not_ended(store: Store) -> None:
    """retry.lua ↔ EmbeddedDependencies._requeue."""
    await attach(store)
    first = await submit_one(store)
    second = await submit_one(store, spec(after=[first.id]))
    await store.cancel(second.id, T0)
    again = await store.retry(second.id, T0 + 1)
    assert again.state is WAITING
    await run(store, first.id, T0 + 2)
    assert await state(store, second.id) is JobState.QUEUED


async def test_waiting_jobs_survive_a_restart(backend: Backend) -> None:
    if not backend.durable:
        pytest.skip("memory:// keeps nothing")
    store = await backend.open()
    first = await submit_one(store)
    second = await submit_one(store, spec(after=[first.id]))
    store = await backend.reopen(store, T0 + 1)
    assert await state(store, second.id) is WAITING
    await attach(store)
    await run(store, first.id, T0 + 2)
    assert await state(store, second.id) is JobState.QUEUED
