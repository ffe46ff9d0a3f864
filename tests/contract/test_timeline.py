"""Every job's timeline (``Job.timeline``, ``core/timeline.py``) on every store: the same marks for
the same operations, kept with the job (across a reopen of a durable store), bounded.

The Redis store adds its marks in Lua (``mark``, ``progress_due`` in ``store/lua/prelude.lua``);
these cases hold it to the Python rules (``docs/redis.md``, "Python and Lua").
"""

from __future__ import annotations

from typing import Any

from jobq.core import timeline
from jobq.core.model import Completion, Job
from jobq.core.states import JobState
from jobq.store.base import Store
from tests.contract.support import T0, TTL, Backend, attach, spec, submit_one


def marks(job: Job | None) -> list[tuple[Any, ...]]:
    """(seconds after T0, kind, attempt, worker, detail, value) of each mark."""
    assert job is not None
    return [(m.at - T0, m.kind, m.attempt, m.worker, m.detail, m.value) for m in job.timeline]


async def claim_token(store: Store, worker: str, now: float) -> int:
    (job,) = await store.claim(worker, 1, now, TTL)
    return job.token


async def test_a_job_failed_once_then_completed(backend: Backend) -> None:
    """claim.lua, progress.lua, fail.lua, complete.lua (mark, progress_due) ↔ embedded_timeline."""
    store = await backend.open()
    job = await submit_one(store, spec(backoff=1))
    assert marks(job) == [(0, "submitted", 0, None, None, None)]
    await attach(store, "w1")
    await attach(store, "w2")
    token = await claim_token(store, "w1", T0 + 1)
    await store.progress(job.id, token, 10.0, "ten", T0 + 1.5)
    await store.progress(job.id, token, 20.0, None, T0 + 2)  # under a second after: not kept
    await store.progress(job.id, token, None, "still going", T0 + 2.5)
    after = await store.fail(job.id, token, "KeyError: 'x'", T0 + 3, rand=0.5)
    assert after.state is JobState.SCHEDULED and after.run_at is not None
    retry_at = after.run_at - T0
    await store.tick(T0 + 10)
    token = await claim_token(store, "w2", T0 + 11)
    await store.complete([Completion(job.id, token, [b"ok"])], T0 + 12)

    if backend.durable:
        store = await backend.reopen(store, T0 + 13)
    assert marks(await store.get(job.id)) == [
        (0, "submitted", 0, None, None, None),
        (1, "started", 1, "w1", None, None),
        (1.5, "progress", 1, None, "ten", 10.0),
        (2.5, "progress", 1, None, "still going", None),
        (3, "retrying", 1, "w1", "KeyError: 'x'", retry_at + T0),
        (11, "started", 2, "w2", None, None),
        (12, "completed", 2, "w2", None, None),
    ]


async def test_a_final_failure_and_a_timeout(store: Store) -> None:
    """fail.lua ('failed'), tick.lua overrun → fail ↔ EmbeddedTimeline._finish / _after_failed_attempt."""
    job = await submit_one(store, spec(max_attempts=2, backoff=0, timeout=5))
    await attach(store)
    await claim_token(store, "w1", T0)
    await store.touch_worker("w1", T0 + 6, TTL)
    await store.tick(T0 + 6)  # over its timeout: retried at once (no backoff)
    await store.tick(T0 + 7)
    token = await claim_token(store, "w1", T0 + 7)
    await store.fail(job.id, token, "bad input", T0 + 8, retryable=False)
    assert marks(await store.get(job.id)) == [
        (0, "submitted", 0, None, None, None),
        (0, "started", 1, "w1", None, None),
        (6, "retrying", 1, "w1", "timed out after 5s", T0 + 6),
        (7, "started", 2, "w1", None, None),
        (8, "failed", 2, "w1", "bad input", None),
    ]


async def test_cancelled_queued_running_and_delayed_jobs(store: Store) -> None:
    """cancel.lua, submit.lua (a delayed job's first mark) ↔ timeline.ended, model.new_job."""
    await attach(store)
    running = await submit_one(store)
    queued = await submit_one(store)
    delayed = await submit_one(store, spec(delay=60))
    await store.claim("w1", 1, T0 + 1, TTL)
    for job in (running, queued, delayed):
        await store.cancel(job.id, T0 + 2)
    assert marks(await store.get(running.id)) == [
        (0, "submitted", 0, None, None, None),
        (1, "started", 1, "w1", None, None),
        (2, "cancelled", 1, "w1", None, None),
    ]
    assert marks(await store.get(queued.id)) == [
        (0, "submitted", 0, None, None, None),
        (2, "cancelled", 0, None, None, None),
    ]
    assert marks(await store.get(delayed.id)) == [
        (0, "submitted", 0, None, None, T0 + 60),
        (2, "cancelled", 0, None, None, None),
    ]
    assert [timeline.state_after(m) for m in (await store.get(delayed.id)).timeline] == [  # type: ignore[union-attr]
        JobState.SCHEDULED,
        JobState.CANCELLED,
    ]


async def test_released_lost_quarantined_and_retried(store: Store) -> None:
    """release.lua, detach.lua, tick.lua (leases), prelude release, retry.lua ↔
    EmbeddedTimeline._release / _enqueue."""
    job = await submit_one(store, spec(max_losses=2))
    await attach(store, "w1", slots=1)
    token = await claim_token(store, "w1", T0 + 1)
    await store.release(job.id, token, T0 + 2)  # given back unstarted
    await claim_token(store, "w1", T0 + 3)
    await store.detach_worker("w1", T0 + 4)  # lost with its worker
    await attach(store, "w2", slots=1)
    await claim_token(store, "w2", T0 + 5)
    await store.tick(T0 + 5 + TTL + 1)  # its lease ran out: the second loss quarantines it
    await store.retry(job.id, T0 + 40)
    why_lost = "its worker went away"
    reason = "quarantined after losing its worker on 2 attempt(s) (max_losses 2); last: its lease expired"
    assert marks(await store.get(job.id)) == [
        (0, "submitted", 0, None, None, None),
        (1, "started", 1, "w1", None, None),
        (2, "released", 1, "w1", "released by its worker", None),
        (3, "started", 1, "w1", None, None),
        (4, "lost", 1, "w1", why_lost, None),
        (5, "started", 2, "w2", None, None),
        (5 + TTL + 1, "quarantined", 2, "w2", reason, None),
        (40, "retried", 0, None, None, None),
    ]


async def test_progress_marks_are_sampled_per_attempt(store: Store) -> None:
    """progress.lua progress_due ↔ timeline.progress_due."""
    job = await submit_one(store)
    await attach(store)
    token = await claim_token(store, "w1", T0)
    for n in range(40):  # every half second: one mark a second, at most PROGRESS_MARKS
        await store.progress(job.id, token, float(n), None, T0 + n / 2)
    kept = [m for m in marks(await store.get(job.id)) if m[1] == "progress"]
    assert [m[0] for m in kept] == [float(n) for n in range(timeline.PROGRESS_MARKS)]
    assert [m[5] for m in kept] == [float(2 * n) for n in range(timeline.PROGRESS_MARKS)]


async def test_the_timeline_is_bounded_keeping_its_start_and_its_end(store: Store) -> None:
    """prelude mark (MARKS_KEPT, FIRST_KEPT) ↔ timeline.add; details cut ↔ timeline.cut."""
    attempts = timeline.MARKS_KEPT  # two marks each: twice as many as are kept
    job = await submit_one(store, spec(max_attempts=attempts, backoff=0))
    await attach(store)
    long_error = "é" * timeline.DETAIL_LIMIT  # two bytes each: cut in the middle of a character
    for n in range(attempts):
        token = await claim_token(store, "w1", T0 + n)
        await store.fail(job.id, token, f"{n} {long_error}", T0 + n + 0.5)
        await store.tick(T0 + n + 0.5)
    got = marks(await store.get(job.id))
    assert len(got) == timeline.MARKS_KEPT
    assert got[0] == (0, "submitted", 0, None, None, None)
    assert got[1][:4] == (0, "started", 1, "w1")
    assert got[-1][:4] == (attempts - 0.5, "failed", attempts, "w1")
    assert got[-2][:4] == (attempts - 1, "started", attempts, "w1")
    cut = timeline.cut(f"{attempts - 1} {long_error}")
    assert got[-1][4] == cut and cut is not None and len(cut.encode()) <= timeline.DETAIL_LIMIT
    # Between the first FIRST_KEPT marks and the recent ones, the oldest went.
    kept_attempts = [m[2] for m in got if m[1] == "started"]
    assert kept_attempts[: timeline.FIRST_KEPT // 2] == list(range(1, timeline.FIRST_KEPT // 2 + 1))
    assert kept_attempts[-1] == attempts and len(kept_attempts) == timeline.MARKS_KEPT // 2


async def test_the_timeline_goes_with_its_job(backend: Backend) -> None:
    """tick.lua purge (tl:<id>) ↔ retention."""
    store = await backend.open(result_ttl=10)
    job = await submit_one(store)
    await attach(store)
    token = await claim_token(store, "w1", T0)
    await store.complete([Completion(job.id, token, [])], T0 + 1)
    assert len(marks(await store.get(job.id))) == 3
    await store.tick(T0 + 12)
    assert await store.get(job.id) is None


async def test_a_dependent_cancelled_by_its_prerequisite_then_retried(store: Store) -> None:
    """deps.lua cancel_waiting, retry.lua ↔ EmbeddedDependencies._apply / _requeue (timeline)."""
    await attach(store)
    first = await submit_one(store, spec(max_attempts=1))
    second = await submit_one(store, spec(after=[first.id]), T0 + 1)
    token = await claim_token(store, "w1", T0 + 2)
    await store.fail(first.id, token, "boom", T0 + 3)
    why = f"prerequisite {first.id} ended failed"
    await store.retry(second.id, T0 + 4)  # its prerequisite has ended: queued
    assert marks(await store.get(second.id)) == [
        (1, "submitted", 0, None, None, None),
        (3, "cancelled", 0, None, why, None),
        (4, "retried", 0, None, None, None),
    ]


async def test_a_delayed_dependent_says_when_it_may_run(store: Store) -> None:
    """deps.lua after_place (a waiting job's first mark) ↔ model.new_job: a dependent with a
    delay starts with the same mark whether it waits or is cancelled by its prerequisite."""
    await attach(store)
    first = await submit_one(store, spec(max_attempts=1))
    waiting = await submit_one(store, spec(after=[first.id], delay=60), T0 + 1)
    job = await store.get(waiting.id)
    assert job is not None and job.state is JobState.WAITING
    assert marks(job) == [(1, "submitted", 0, None, None, T0 + 61)]
    assert [timeline.state_after(m) for m in job.timeline] == [JobState.SCHEDULED]
    token = await claim_token(store, "w1", T0 + 2)
    await store.fail(first.id, token, "boom", T0 + 3)
    cancelled = await submit_one(store, spec(after=[first.id], delay=60), T0 + 4)  # cancelled at once
    why = f"prerequisite {first.id} ended failed"
    assert marks(await store.get(waiting.id)) == [
        (1, "submitted", 0, None, None, T0 + 61),
        (3, "cancelled", 0, None, why, None),
    ]
    assert marks(await store.get(cancelled.id)) == [
        (4, "submitted", 0, None, None, T0 + 64),
        (4, "cancelled", 0, None, why, None),
    ]
