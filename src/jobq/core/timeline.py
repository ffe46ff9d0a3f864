"""A job's timeline (``Job.timeline``): what happened to it, kept with the job, on every store.

Each mark is added in the same write as the change it records (the embedded stores through
``store/embedded_timeline.py``; the Redis store in its Lua scripts, ``mark`` in
``store/lua/prelude.lua``), so a job's whole life is there whether or not anybody watched, and
it is kept (and forgotten) with the job. The kinds, and the state each one leaves the job in:

=============  ==========  ===================================================================
kind           state       attempt, worker, detail, value
=============  ==========  ===================================================================
submitted      queued      value: when it may first run, if later (then ``scheduled``)
started        running     the attempt and the worker it went to
progress       running     the attempt; value: percent; detail: the message (sampled, below)
completed      completed   the attempt and its worker
retrying       scheduled   the attempt that failed (or timed out), its worker; detail: the
                           error; value: when the retry may run (after its backoff)
failed         failed      the last attempt, its worker; detail: the error
cancelled      cancelled   the attempt and worker if it was running; detail: why, when it was
                           not an operator (a prerequisite that did not complete)
lost           queued      the attempt and its worker (it died, left, let its lease expire);
                           detail: why. The job goes back to the front of the queue.
released       queued      an attempt given back unstarted (it does not count); detail: why
quarantined    quarantined the attempt lost last, its worker; detail: the reason
retried        queued      an operator's retry (attempts count from 1 again)
=============  ==========  ===================================================================

Bounds: at most ``MARKS_KEPT`` marks; once full, each new one drops the oldest mark after the
first ``FIRST_KEPT`` (so a job keeps how it began and its most recent history). Progress is
sampled: a progress mark is added only ``PROGRESS_EVERY`` seconds or more after the attempt's
previous one, and at most ``PROGRESS_MARKS`` per attempt. A detail keeps its first
``DETAIL_LIMIT`` bytes of UTF-8 (the whole error is in ``Job.error`` / ``attempt_errors``).
"""

from __future__ import annotations

from jobq.core.model import Job, Mark
from jobq.core.states import JobState

#: Marks a job keeps at most, and how many of its first ones are always kept.
MARKS_KEPT = 64
FIRST_KEPT = 8
#: Seconds between two progress marks of one attempt, at least; progress marks per attempt.
PROGRESS_EVERY = 1.0
PROGRESS_MARKS = 10
#: Bytes (UTF-8) of an error, reason or message kept in a mark.
DETAIL_LIMIT = 512

SUBMITTED = "submitted"
STARTED = "started"
PROGRESS = "progress"
COMPLETED = "completed"
RETRYING = "retrying"
FAILED = "failed"
CANCELLED = "cancelled"
LOST = "lost"
RELEASED = "released"
QUARANTINED = "quarantined"
RETRIED = "retried"

_STATE_AFTER = {
    STARTED: JobState.RUNNING,
    PROGRESS: JobState.RUNNING,
    COMPLETED: JobState.COMPLETED,
    RETRYING: JobState.SCHEDULED,
    FAILED: JobState.FAILED,
    CANCELLED: JobState.CANCELLED,
    LOST: JobState.QUEUED,
    RELEASED: JobState.QUEUED,
    QUARANTINED: JobState.QUARANTINED,
    RETRIED: JobState.QUEUED,
}


def state_after(mark: Mark) -> JobState:
    """The state a mark left its job in (``queued`` for a kind this version does not know)."""
    if mark.kind == SUBMITTED:
        return JobState.SCHEDULED if mark.value is not None else JobState.QUEUED
    return _STATE_AFTER.get(mark.kind, JobState.QUEUED)


def cut(text: str | None, limit: int = DETAIL_LIMIT) -> str | None:
    """``text``'s first ``limit`` bytes of UTF-8 (a character cut in two is left out); None for
    no text."""
    if not text:
        return None
    raw = text.encode()
    return text if len(raw) <= limit else raw[:limit].decode(errors="ignore")


def add(marks: list[Mark], mark: Mark) -> None:
    """Append ``mark``; when full, the oldest mark after the first ``FIRST_KEPT`` goes."""
    while len(marks) >= MARKS_KEPT:
        del marks[FIRST_KEPT]
    marks.append(mark)


def progress_due(marks: list[Mark], now: float) -> bool:
    """Whether progress reported ``now`` gets a mark: fewer than ``PROGRESS_MARKS`` progress marks
    end the timeline (the running attempt's), the last of them ``PROGRESS_EVERY`` s ago or more."""
    count, last = 0, None
    for mark in reversed(marks):
        if mark.kind != PROGRESS:
            break
        count += 1
        last = last if last is not None else mark.at
    if count >= PROGRESS_MARKS:
        return False
    return last is None or now - last >= PROGRESS_EVERY


# --------------------------------------------------------------------------- at each change


def started(job: Job, now: float) -> None:
    """A claim handed the job's attempt ``job.attempts`` to ``job.worker``."""
    marks, mark = job.timeline, Mark(at=now, kind=STARTED, attempt=job.attempts, worker=job.worker)
    if len(marks) < MARKS_KEPT:  # add's common case, inline: every job passes here
        marks.append(mark)
    else:
        add(marks, mark)


def progress(job: Job, now: float, value: float | None, message: str | None) -> None:
    """The running attempt reported progress (kept if due: ``progress_due``)."""
    if progress_due(job.timeline, now):
        mark = Mark(at=now, kind=PROGRESS, attempt=job.attempts, detail=cut(message), value=value)
        add(job.timeline, mark)


def ended(job: Job, state: JobState, now: float) -> None:
    """The job ends in ``state``; called before it moves (``job.state`` is still the one it ends
    from: the attempt and its worker are named if it was running)."""
    running = job.state is JobState.RUNNING
    said = job.error != "cancelled" or state is not JobState.CANCELLED  # (an operator's cancel)
    detail = cut(job.error) if state is not JobState.COMPLETED and said else None
    mark = Mark(
        at=now,
        kind=state,  # a StrEnum: the same string on the wire and in stores, without .value's call
        attempt=job.attempts if running else 0,
        worker=job.worker if running else None,
        detail=detail,
    )
    marks = job.timeline
    if len(marks) < MARKS_KEPT:  # add's common case, inline: every job passes here
        marks.append(mark)
    else:
        add(marks, mark)


def retrying(job: Job, now: float) -> None:
    """Its attempt failed (``job.error``) and it runs again at ``job.run_at``."""
    mark = Mark(
        at=now,
        kind=RETRYING,
        attempt=job.attempts,
        worker=job.worker,
        detail=cut(job.error),
        value=job.run_at,
    )
    add(job.timeline, mark)


def requeued(job: Job, now: float, attempt: int, worker: str | None, why: str, lost: bool) -> None:
    """Attempt ``attempt`` (on ``worker``) went back to the queue: lost, or given back unstarted."""
    mark = Mark(at=now, kind=LOST if lost else RELEASED, attempt=attempt, worker=worker, detail=cut(why))
    add(job.timeline, mark)


def retried(job: Job, now: float) -> None:
    """An operator queued the ended job again."""
    add(job.timeline, Mark(at=now, kind=RETRIED))


__all__ = [
    "DETAIL_LIMIT",
    "FIRST_KEPT",
    "MARKS_KEPT",
    "PROGRESS_EVERY",
    "PROGRESS_MARKS",
    "add",
    "cut",
    "ended",
    "progress",
    "progress_due",
    "requeued",
    "retried",
    "retrying",
    "started",
    "state_after",
]
