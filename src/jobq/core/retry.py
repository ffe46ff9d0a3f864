"""When a failed attempt is tried again: a pure decision from the job, the error and ``now``.

Backoff is exponential with "equal jitter": half of the delay is fixed so retries never bunch
at zero, the other half is spread by ``rand`` (a number in [0, 1) the caller draws) so a burst
of failures does not come back as a burst.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BACKOFF = 1.0
BACKOFF_FACTOR = 2.0
BACKOFF_CAP = 300.0


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again, no earlier than ``at``."""

    at: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """No attempt is left (or the error is final): the job ends ``failed``."""

    reason: str


RetryDecision = Retry | GiveUp


def backoff_delay(attempt: int, base: float, rand: float, cap: float = BACKOFF_CAP) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    full = min(cap, base * BACKOFF_FACTOR ** max(0, attempt - 1))
    return full / 2 + rand * full / 2


def decide(
    *,
    attempts: int,
    max_attempts: int,
    now: float,
    rand: float,
    backoff: float | None = None,
    retryable: bool = True,
) -> RetryDecision:
    """Decide what follows a failed attempt ``attempts`` of a job allowed ``max_attempts``."""
    if not retryable:
        return GiveUp("the error is not retryable")
    if attempts >= max_attempts:
        return GiveUp(f"attempts exhausted ({attempts} of {max_attempts})")
    base = DEFAULT_BACKOFF if backoff is None else backoff
    return Retry(now + backoff_delay(attempts, base, rand))
