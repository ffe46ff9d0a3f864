"""When a failed attempt is tried again: a pure decision from the job, the error and ``now``.

Two budgets, because two different things went wrong:

- ``max_attempts`` (the job's, default 3) counts attempts that the *handler* failed or that
  overran the job's ``timeout``: :func:`decide`. When it is spent the job ends ``failed``.
- ``max_losses`` (the job's, default :data:`DEFAULT_MAX_LOSSES`) counts attempts lost with
  their *worker*: it died, disconnected, went silent, or its lease expired. Such an attempt
  goes back to the front of the queue and costs nothing of ``max_attempts``; when this larger
  budget is spent the job ends ``quarantined`` (:func:`after_loss`): a job that has taken
  down that many workers most likely kills its workers itself, and is never handed to
  another one. An attempt given back unstarted (a draining worker's prefetched jobs) costs
  neither budget.

Backoff is exponential with "equal jitter": half of the delay is fixed so retries never bunch
at zero, the other half is spread by ``rand`` (a number in [0, 1) the caller draws) so a burst
of failures does not come back as a burst.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BACKOFF = 1.0
BACKOFF_FACTOR = 2.0
BACKOFF_CAP = 300.0

#: Worker losses a job survives before it is quarantined. Infrastructure failures are spread
#: over many jobs (100 worker kills among 5,000 jobs hit no job 5 times), while a job that kills
#: every worker it reaches is stopped after at most this many deaths.
DEFAULT_MAX_LOSSES = 5

#: Losses from which a job is a *suspect*: a worker runs at most one suspect at a time
#: (``core/index.py``). A worker that dies holding several jobs costs each a loss, though
#: likely one of them killed it; from its second loss on, a job that kills its workers is kept
#: apart from every other suspect, so no bystander loses more than 2 workers to it (fewer than
#: ``max_losses``), while jobs lost once, as many are when one worker dies, run as usual.
SUSPECT_LOSSES = 2


@dataclass(frozen=True, slots=True)
class Retry:
    """Try again, no earlier than ``at``."""

    at: float


@dataclass(frozen=True, slots=True)
class GiveUp:
    """No attempt is left (or the error is final): the job ends ``failed`` (``quarantined``
    when it comes from :func:`after_loss`)."""

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
    """Decide what follows failed attempt number ``attempts`` (the job's handler failures and
    timeouts so far, this one included) of a job allowed ``max_attempts``."""
    if not retryable:
        return GiveUp("the error is not retryable")
    if attempts >= max_attempts:
        return GiveUp(f"attempts exhausted ({attempts} of {max_attempts})")
    base = DEFAULT_BACKOFF if backoff is None else backoff
    return Retry(now + backoff_delay(attempts, base, rand))


def after_loss(*, losses: int, max_losses: int, why: str) -> GiveUp | None:
    """What follows losing the worker of an attempt; ``losses`` counts this one. ``None``: back
    to the front of the queue; ``GiveUp``: the job is quarantined, for the reason given."""
    if losses < max_losses:
        return None
    return GiveUp(
        f"quarantined after losing its worker on {losses} attempt(s) (max_losses {max_losses}); last: {why}"
    )


def is_suspect(losses: int) -> bool:
    """Whether a job that lost its worker ``losses`` times is kept apart from other suspects."""
    return losses >= SUSPECT_LOSSES
