"""Lease rules: a running job belongs to one attempt of one worker until its lease ends.

The fencing token of an attempt is the job's attempt number: it only ever grows, is kept with
the job, and so survives a hub restart. A result or progress report carries the token it was
given; anything from an older attempt is refused.
"""

from __future__ import annotations

from jobq.core.model import Job
from jobq.core.states import RUNNING

#: Seconds a lease lasts without a heartbeat from its worker.
DEFAULT_LEASE_TTL = 30.0


def holds_lease(job: Job, token: int, worker: str | None = None) -> bool:
    """Whether the attempt ``token`` (of ``worker``, when given) still owns the running job."""
    if job.state is not RUNNING or job.attempts != token:
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
