"""Issue 12, delivery semantics, on every store: what an attempt costs, and fencing tokens.

- A worker lost (gone, or its lease expired) is not a handler failure: it costs the job's
  ``max_losses`` budget, never ``max_attempts``; the last loss quarantines the job (finding 1,
  finding 11). An attempt handed to a worker that had already gone silent costs nothing.
- An expired lease puts the job on another worker (finding 2).
- An attempt given back unstarted (a draining worker's prefetched jobs) costs nothing and is not
  counted as run (finding 5).
- Fencing tokens strictly increase per job, across operator retries and across a crash of the
  store's process that lost claims not yet on disk (finding 4); recovered running jobs get the
  lease the hub asks for (finding 3).

The Lua side of each rule is mapped in docs/redis.md.
"""

from __future__ import annotations

import msgspec
import pytest

from jobq.core.model import Completion, Job, JobFilter
from jobq.core.retry import DEFAULT_MAX_LOSSES, SUSPECT_LOSSES
from jobq.core.states import JobState
from jobq.store.base import Store, open_store
from tests.contract.support import T0, TTL, Backend, attach, spec, submit_one

QUEUED, RUNNING, QUARANTINED = JobState.QUEUED, JobState.RUNNING, JobState.QUARANTINED


async def claim_one(store: Store, worker: str, now: float = T0) -> Job:
    """The one job the worker claims (a copy: the embedded stores hand out their live jobs)."""
    (job,) = await store.claim(worker, 1, now, TTL)
    return msgspec.structs.replace(job)


async def stored(store: Store, job_id: int) -> Job:
    job = await store.get(job_id)
    assert job is not None
    return job


def budgets(job: Job) -> tuple[JobState, int, int, int]:
    return job.state, job.attempts, job.failures, job.losses


# ---------------------------------------------------------------- finding 5: given back unstarted


async def test_an_attempt_given_back_unstarted_costs_nothing(store: Store) -> None:
    """release.lua / prelude release (lost false) ↔ EmbeddedStore._release."""
    job = await submit_one(store, spec(max_attempts=1, max_losses=1))
    behind = await submit_one(store)
    await attach(store, slots=1)
    tokens = []
    for n in range(4):  # more often than either budget allows
        claimed = await claim_one(store, "w1", T0 + n)
        assert claimed.id == job.id and claimed.attempts == 1
        tokens.append(claimed.token)
        released = await store.release(job.id, claimed.token, T0 + n + 0.5)
        assert budgets(released) == (QUEUED, 0, 0, 0)
    assert tokens == sorted(set(tokens)), "every claim has a new, greater token"
    again = await claim_one(store, "w1", T0 + 10)
    assert again.id == job.id  # still first in line
    done = await store.complete([Completion(job.id, again.token, [b"ok"])], T0 + 11)
    assert isinstance(done[0], Job) and done[0].attempts == 1
    assert (await claim_one(store, "w1", T0 + 12)).id == behind.id


# ---------------------------------------------------------------- findings 1, 11: losses


async def test_a_lost_worker_costs_the_loss_budget_never_max_attempts(store: Store) -> None:
    """detach.lua, prelude release (lost) ↔ EmbeddedStore.detach_worker, _release."""
    job = await submit_one(store, spec(max_attempts=1))
    assert job.max_losses == DEFAULT_MAX_LOSSES
    await attach(store, "w1")
    first = await claim_one(store, "w1")
    (released,) = await store.detach_worker("w1", T0 + 1)
    assert budgets(released) == (QUEUED, 1, 0, 1)
    assert released.avoid_worker == "w1"
    await attach(store, "w2")
    second = await claim_one(store, "w2", T0 + 2)
    assert second.id == job.id and second.attempts == 2 and second.token > first.token
    (done,) = await store.complete([Completion(job.id, second.token, [b"ok"])], T0 + 3)
    assert isinstance(done, Job) and done.state is JobState.COMPLETED


async def test_the_last_loss_quarantines_the_job_and_no_worker_gets_it_again(store: Store) -> None:
    """prelude release (quarantine), retry.lua, cancel.lua, tick.lua retention ↔
    retry.after_loss, EmbeddedStore._release / retry."""
    job = await submit_one(store, spec(max_losses=3))
    for n, worker in enumerate(("w1", "w2", "w3")):
        await attach(store, worker)
        claimed = await claim_one(store, worker, T0 + n)
        (released,) = await store.detach_worker(worker, T0 + n + 0.5)
        assert released.losses == n + 1
    assert budgets(released) == (QUARANTINED, 3, 0, 3)
    assert released.error == (
        "quarantined after losing its worker on 3 attempt(s) (max_losses 3); last: its worker went away"
    )
    assert released.finished_at == T0 + 2.5
    await attach(store, "w4")
    assert await store.claim("w4", 1, T0 + 3, TTL) == []
    assert (await store.stats()).by_state.get("quarantined") == 1
    listed = await store.list_jobs(JobFilter(states=[QUARANTINED]))
    assert [j.id for j in listed] == [job.id]
    with pytest.raises(Exception, match="already ended quarantined"):
        await store.cancel(job.id, T0 + 4)
    # An operator's retry: fresh budgets, and the token goes on growing.
    again = await store.retry(job.id, T0 + 5)
    assert budgets(again) == (QUEUED, 0, 0, 0)
    fresh = await claim_one(store, "w4", T0 + 6)
    assert fresh.id == job.id and fresh.attempts == 1 and fresh.token > claimed.token


async def test_handler_failures_spend_max_attempts_and_losses_do_not(store: Store) -> None:
    """fail.lua (fl) ↔ EmbeddedStore._after_failed_attempt (retry.decide on failures)."""
    job = await submit_one(store, spec(max_attempts=2, backoff=0))
    await attach(store, "w1")
    await claim_one(store, "w1")
    await store.detach_worker("w1", T0 + 1)
    await attach(store, "w1")
    claimed = await claim_one(store, "w1", T0 + 2)
    failed = await store.fail(job.id, claimed.token, "boom", T0 + 3, rand=0.0)
    assert budgets(failed) == (JobState.SCHEDULED, 2, 1, 1)
    await store.tick(T0 + 3.5)
    claimed = await claim_one(store, "w1", T0 + 4)
    assert claimed.attempts == 3
    final = await store.fail(job.id, claimed.token, "boom again", T0 + 5)
    assert budgets(final) == (JobState.FAILED, 3, 2, 1)


async def test_an_attempt_handed_out_after_the_worker_went_silent_costs_nothing(store: Store) -> None:
    """detach.lua (`unreached`) ↔ EmbeddedStore.detach_worker, lease.reached."""
    early = await submit_one(store)
    await attach(store, "w1", slots=2)
    await claim_one(store, "w1", T0)
    late = await submit_one(store, now=T0 + 3)
    await claim_one(store, "w1", T0 + 3)
    # The worker was last heard from at T0: what it was handed after T0 + 2 reached nobody.
    released = {j.id: j for j in await store.detach_worker("w1", T0 + 5, T0 + 2)}
    assert budgets(released[early.id]) == (QUEUED, 1, 0, 1)
    assert budgets(released[late.id]) == (QUEUED, 0, 0, 0)
    assert released[late.id].avoid_worker is None


# ---------------------------------------------------------------- finding 2: leases


async def test_an_expired_lease_is_a_loss_and_the_job_goes_to_another_worker(store: Store) -> None:
    """tick.lua (expired leases, release lost) and claim.lua avoided ↔ EmbeddedStore.tick,
    ReadyIndex._pick."""
    job = await submit_one(store, spec(max_attempts=1))
    await attach(store, "stalled")
    await attach(store, "idle")
    assert (await claim_one(store, "stalled")).id == job.id
    result = await store.tick(T0 + TTL + 1)
    [(expired, worker)] = result.expired
    assert worker == "stalled" and budgets(expired) == (QUEUED, 1, 0, 1)
    assert await store.claim("stalled", 1, T0 + TTL + 2, TTL) == []
    again = await claim_one(store, "idle", T0 + TTL + 2)
    assert again.id == job.id and again.attempts == 2


async def test_expired_leases_quarantine_a_job_at_its_last_loss(store: Store) -> None:
    """tick.lua release (lost) ↔ EmbeddedStore.tick, _release."""
    job = await submit_one(store, spec(max_losses=2))
    await attach(store, "w1")
    await claim_one(store, "w1")
    (first,) = (await store.tick(T0 + TTL + 1)).expired
    assert first[0].state is QUEUED
    await claim_one(store, "w1", T0 + TTL + 2)
    ((last, worker),) = (await store.tick(T0 + 2 * TTL + 3)).expired
    assert (last.id, worker) == (job.id, "w1")
    assert budgets(last) == (QUARANTINED, 2, 0, 2)
    assert last.error is not None and last.error.endswith("last: its lease expired")
    assert budgets(await stored(store, job.id)) == (QUARANTINED, 2, 0, 2)


# ---------------------------------------------------------------- finding 4: fencing tokens


async def test_tokens_strictly_increase_per_job(store: Store) -> None:
    """claim.lua (tok), holds ↔ lease.next_token, lease.holds_lease."""
    job = await submit_one(store, spec(backoff=0, max_attempts=5))
    await attach(store, "w1")
    seen = []
    claimed = await claim_one(store, "w1")
    seen.append(claimed.token)
    await store.release(job.id, claimed.token, T0)
    claimed = await claim_one(store, "w1", T0 + 1)
    seen.append(claimed.token)
    await store.fail(job.id, claimed.token, "boom", T0 + 1)
    await store.tick(T0 + 2)
    claimed = await claim_one(store, "w1", T0 + 2)
    seen.append(claimed.token)
    for stale in seen[:-1]:
        (refused,) = await store.complete([Completion(job.id, stale, [b"stale"])], T0 + 3)
        assert isinstance(refused, Exception)
    await store.fail(job.id, claimed.token, "final", T0 + 3, retryable=False)
    await store.retry(job.id, T0 + 4)
    claimed = await claim_one(store, "w1", T0 + 5)
    seen.append(claimed.token)
    assert claimed.attempts == 1
    assert seen == sorted(set(seen)), seen
    assert await store.adopt("w1", [(job.id, seen[0])], T0 + 6, TTL) == []  # the old token holds nothing
    assert await store.adopt("w1", [(job.id, seen[-1])], T0 + 6, TTL) == [job.id]


def _crash(store: Store) -> None:
    """What a SIGKILL of the hub loses: the changes not yet committed (SQLite writes a claim
    with the next commit; Redis has every change once its script ran)."""
    pending = getattr(store, "_pending", None)
    if pending is not None:
        pending.clear()
        store._unwritten.clear()  # type: ignore[attr-defined]


async def test_tokens_grow_across_a_crash_that_lost_claims(backend: Backend) -> None:
    """Finding 4: the claim of attempt 1 never reached the disk, so after the restart the job is
    queued as if never claimed; the next attempt must not get the token attempt 1 had (a worker
    still running attempt 1 would have its result taken)."""
    if not backend.durable:
        pytest.skip("memory:// keeps nothing")
    store = await backend.open()
    job = await submit_one(store)
    await attach(store)
    before = await claim_one(store, "w1")
    _crash(store)
    store = await backend.reopen(store, T0 + 1)
    await attach(store, "w2")
    if (await stored(store, job.id)).state is RUNNING:  # Redis: the claim was kept
        await store.detach_worker("w1", T0 + 1)
    after = await claim_one(store, "w2", T0 + 2)
    assert after.id == job.id and after.token > before.token
    (stale,) = await store.complete([Completion(job.id, before.token, [b"stale"])], T0 + 3)
    assert isinstance(stale, Exception)
    (done,) = await store.complete([Completion(job.id, after.token, [b"fresh"])], T0 + 3)
    assert isinstance(done, Job) and done.result == [b"fresh"]


# ---------------------------------------------------------------- finding 3: recovered leases


async def test_recovered_running_jobs_get_the_lease_the_hub_asks_for(backend: Backend) -> None:
    """Finding 3: a job found running when an embedded store opens waits ``lease_ttl`` (the
    hub's --lease-ttl) for its worker, not the default 30 s. (Redis keeps each lease's own
    deadline across hub restarts.)"""
    if backend.name not in ("sqlite", "sqlite-full"):
        pytest.skip("only an embedded store that keeps jobs reads leases back at open")
    store = await backend.open()
    job = await submit_one(store)
    await attach(store)
    await claim_one(store, "w1")
    await store.close()
    backend.opened.remove(store)
    store = open_store(backend.url())
    await store.open(T0 + 100, lease_ttl=3.0)
    backend.opened.append(store)
    assert (await store.tick(T0 + 102.9)).expired == []
    [(expired, _)] = (await store.tick(T0 + 103.1)).expired
    assert expired.id == job.id and expired.state is QUEUED


async def test_a_worker_runs_one_suspect_at_a_time(store: Store) -> None:
    """claim.lua head / passed_over, `sus` (prelude stop_running, is_suspect; adopt.lua) ↔
    ReadyIndex._pick, _next_allowed, finish, retry.is_suspect. Two workers died holding a, b and
    d: each lost its worker twice (a suspect: one of them may be what kills workers), so no
    worker gets two of them at once; jobs lost once are not held apart."""
    a, b, d = [s.job for s in await store.submit([spec(), spec(), spec()], T0)]
    for n in range(SUSPECT_LOSSES):
        await attach(store, f"dead-{n}", slots=5)
        assert len(await store.claim(f"dead-{n}", 5, T0 + n, TTL)) == 3  # lost once: together
        await store.detach_worker(f"dead-{n}", T0 + n + 0.5)
    fresh = await submit_one(store, now=T0 + 2)
    await attach(store, "w2", slots=5)
    taken = await store.claim("w2", 5, T0 + 2, TTL)
    assert [j.id for j in taken] == [a.id, fresh.id]  # b and d wait: w2 runs a suspect
    await attach(store, "w3", slots=5)
    assert [j.id for j in await store.claim("w3", 5, T0 + 3, TTL)] == [b.id]
    assert await store.claim("w2", 5, T0 + 4, TTL) == []
    await store.complete([Completion(a.id, taken[0].token, [b"ok"])], T0 + 5)
    assert [j.id for j in await store.claim("w2", 5, T0 + 6, TTL)] == [d.id]
