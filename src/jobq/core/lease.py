"""Lease rules: a running job belongs to one attempt of one worker until its lease ends.

Each attempt has a fencing token, kept with the job (``Job.token``): a result, a failure, a
progress report or a release carries the token it was given, and anything from another attempt
is refused. Tokens strictly increase per job, across crashes and restarts of the hub:

- A claim gives the job ``next_token(job.token, epoch)``: one more than its last token, and at
  least ``epoch << EPOCH_SHIFT``.
- ``epoch`` is the store's: a durable store counts its opens (one commit when it opens, none per
  claim), so every token handed out after a restart is above every token handed out before it,
  even those a crash kept from reaching the disk (SQLite writes claims lazily). A store that
  keeps nothing across restarts (memory) and one whose claims are atomic and durable (Redis)
  use epoch 0: tokens are then 1, 2, 3...
- An operator's retry starts the job's budgets again, never its token.

The token is not the attempt number users see (``Job.attempts``, a small count).
"""

from __future__ import annotations

from jobq.core.model import Job
from jobq.core.states import RUNNING

#: Seconds a lease lasts without a heartbeat from its worker.
DEFAULT_LEASE_TTL = 30.0

#: Bits of a token below its epoch: a job may be claimed 2**32 times per epoch.
EPOCH_SHIFT = 32


def next_token(previous: int, epoch: int) -> int:
    """The fencing token of a job's next attempt."""
    return max(previous + 1, epoch << EPOCH_SHIFT)


def holds_lease(job: Job, token: int, worker: str | None = None) -> bool:
    """Whether the attempt ``token`` (of ``worker``, when given) still owns the running job."""
    if job.state is not RUNNING or job.token != token:
        return False
    return worker is None or job.worker == worker


def lease_deadline(now: float, ttl: float) -> float:
    """When a fresh or renewed lease ends if no heartbeat renews it."""
    return now + ttl


def attempt_deadline(started_at: float, timeout: float | None) -> float | None:
    """When a running attempt has overrun its job's ``timeout``, if it has one (a separate
    limit from the lease: a worker that heartbeats keeps its lease but not past the timeout).
    """
    return None if timeout is None else started_at + timeout


def reached(started_at: float | None, unreached_after: float | None) -> bool:
    """Whether an attempt handed out at ``started_at`` may have reached its worker, for a
    worker found gone that had been silent since before ``unreached_after`` (None: no such
    doubt). An attempt handed out after that is taken as never received: losing it costs the
    job nothing (``core/retry.py``)."""
    return unreached_after is None or started_at is None or started_at <= unreached_after
