"""The job life cycle: every state and every allowed transition, in one table.

Rules
-----
- A job starts ``queued`` (runnable now) or ``scheduled`` (``run_at`` in the future).
- ``scheduled`` becomes ``queued`` when its time comes (a delay, or a retry's backoff).
- Only a ``queued`` job is handed to a worker; it becomes ``running`` under a lease held by
  one attempt of one worker.
- A ``running`` job ends ``completed`` (result), goes back to ``scheduled`` (a failed attempt
  with attempts left, after backoff) or ``queued`` (released: its worker was lost, or gave it
  back unstarted), ends ``failed`` (its handler failed or timed out ``max_attempts`` times, or
  said the error is final: a dead letter, kept), or ends ``quarantined`` (its worker was lost
  ``max_losses`` times: most likely the job itself kills its workers; kept as a dead letter
  and never handed to another worker). The two budgets are ``core/retry.py``'s.
- A job that names prerequisites (``after``) starts ``waiting`` until they are done
  (``core/dependencies.py``): then it becomes ``queued`` (or ``scheduled``), or it ends
  ``cancelled`` when one of them did not complete (and its ``after_policy`` is ``completed``).
  A waiting job is in no ready queue.
- Any job not yet ended may be ``cancelled``. Cancellation is final for that run.
- ``failed``, ``quarantined`` and ``cancelled`` jobs may be retried by an operator: back to
  ``queued`` with fresh budgets (a cancelled dependent whose prerequisites have not all ended
  goes back to ``waiting``). ``completed`` is final.

Anything not in ``TRANSITIONS`` is refused with :class:`~jobq.errors.InvalidTransition`.
"""

from __future__ import annotations

import enum

from jobq.core.errors import InvalidTransition


class JobState(enum.StrEnum):
    QUEUED = "queued"
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    QUARANTINED = "quarantined"
    WAITING = "waiting"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


QUEUED = JobState.QUEUED
SCHEDULED = JobState.SCHEDULED
RUNNING = JobState.RUNNING
COMPLETED = JobState.COMPLETED
FAILED = JobState.FAILED
CANCELLED = JobState.CANCELLED
QUARANTINED = JobState.QUARANTINED
WAITING = JobState.WAITING

TERMINAL: frozenset[JobState] = frozenset({COMPLETED, FAILED, CANCELLED, QUARANTINED})

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    QUEUED: frozenset({RUNNING, CANCELLED}),
    SCHEDULED: frozenset({QUEUED, CANCELLED}),
    RUNNING: frozenset({COMPLETED, SCHEDULED, QUEUED, FAILED, CANCELLED, QUARANTINED}),
    COMPLETED: frozenset(),
    FAILED: frozenset({QUEUED}),
    CANCELLED: frozenset({QUEUED, WAITING}),
    QUARANTINED: frozenset({QUEUED}),
    WAITING: frozenset({QUEUED, SCHEDULED, CANCELLED}),
}


def can_transition(current: JobState, target: JobState) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: JobState, target: JobState) -> None:
    """Refuse a transition the table does not allow."""
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(f"a {current} job cannot become {target}")
