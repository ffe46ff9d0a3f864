"""Why a queued job is (not) running, and which jobs no worker could ever run: the rules of
``explain`` and ``blocked``, written once for every store.

Pure functions of data (no I/O, no clock: ``now`` is passed in). A store gathers what it holds
(its attached workers as :class:`Candidate`, the jobs queued in the competing queues) and these
functions decide the answer, so the embedded stores (through ``core/index.py``) and the Redis
store (``store/redis_queries.py``) answer alike by construction:

- A worker is *eligible* when the static rules (:func:`~jobq.core.matching.first_miss`) let it
  run the job's shape; an eligible worker that cannot start it *now* (its free GPU memory, its
  customers: :func:`~jobq.core.matching.load_miss`) is eligible and also listed as ineligible
  with ``"eligible, but ..."``. Every other worker is ineligible with the first rule it misses.
- The job is *blocked* when no attached worker is eligible: the reason names up to three
  workers that serve its service with what each misses, or says that none serves it.
- *Ahead* are the queued jobs the same workers would take first: those ordered before it
  (priority, then seq) in its own queue and in every queue an eligible worker may take from
  (:func:`competing`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from jobq.core.matching import Load, Profile, Shape, first_miss, load_miss

#: How many workers a blocked job's reason names at most.
BLOCKED_REASONS = 3

Q = TypeVar("Q", bound=Hashable)
K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class Explanation:
    """A queued job's answer to ``explain`` (the hub turns it into an ``ExplainInfo``)."""

    eligible: list[str]
    ineligible: dict[str, str]
    #: Queued jobs that the same workers would take first.
    ahead: int
    blocked: str | None
    waited: float
    free_slots: int


@dataclass(frozen=True, slots=True)
class Candidate:
    """An attached worker as ``explain`` sees it."""

    id: str
    profile: Profile
    free_slots: int
    load: Load


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the attached workers make of one shape (all of an Explanation but the queue)."""

    eligible: list[str]
    ineligible: dict[str, str]
    #: Free slots of the eligible workers, summed.
    free_slots: int
    blocked: str | None


def _reason(shape: Shape, misses: Iterable[tuple[str, Profile, str | None]]) -> str | None:
    """The blocked reason from each worker's first miss (``None`` as soon as one has none)."""
    reasons = []
    for worker_id, profile, miss in misses:
        if miss is None:
            return None
        if shape.service in profile.services:
            reasons.append(f"{worker_id}: {miss}")
    if not reasons:
        return f"no connected worker serves {shape.service}"
    return "; ".join(reasons[:BLOCKED_REASONS])


def blocked_reason(shape: Shape, workers: Iterable[tuple[str, Profile]]) -> str | None:
    """Why no attached worker could ever run jobs of ``shape``, or ``None`` if one could."""
    return _reason(
        shape, ((worker_id, profile, first_miss(shape, profile)) for worker_id, profile in workers)
    )


def blocked_queues(
    queues: Iterable[tuple[K, Shape]], workers: Sequence[tuple[str, Profile]]
) -> list[tuple[K, str]]:
    """Of the given queues (each a key and its shape; those with jobs waiting), the ones no
    attached worker could ever run, each with its reason, in the order given."""
    out = []
    for key, shape in queues:
        reason = blocked_reason(shape, workers)
        if reason is not None:
            out.append((key, reason))
    return out


def judge(shape: Shape, workers: Iterable[Candidate]) -> Verdict:
    """Which attached workers may run jobs of ``shape``, which may not and why."""
    eligible: list[str] = []
    ineligible: dict[str, str] = {}
    misses: list[tuple[str, Profile, str | None]] = []
    free = 0
    for worker in workers:
        miss = first_miss(shape, worker.profile)
        misses.append((worker.id, worker.profile, miss))
        if miss is not None:
            ineligible[worker.id] = miss
            continue
        busy = load_miss(shape, worker.profile, worker.load)
        if busy is not None:
            ineligible[worker.id] = f"eligible, but {busy}"
        eligible.append(worker.id)
        free += worker.free_slots
    return Verdict(eligible, ineligible, free, _reason(shape, misses))


def competing(own: Q, eligible: Iterable[str], queues_of: Callable[[str], Iterable[Q]]) -> list[Q]:
    """The queues whose jobs compete with a job of queue ``own``: its own, then every queue an
    eligible worker (``queues_of`` a worker id) may take from, each once, in first-seen order."""
    seen = {own}
    out = [own]
    for worker_id in eligible:
        for queue in queues_of(worker_id):
            if queue not in seen:
                seen.add(queue)
                out.append(queue)
    return out


def waited(now: float, since: float) -> float:
    """Seconds a job queued since ``since`` has waited (never negative: clocks of hubs differ)."""
    return max(0.0, now - since)


def explanation(verdict: Verdict, ahead: int, since: float, now: float) -> Explanation:
    """The answer to ``explain`` for a queued job, from the verdict on its shape and its place."""
    return Explanation(
        eligible=verdict.eligible,
        ineligible=verdict.ineligible,
        ahead=ahead,
        blocked=verdict.blocked,
        waited=waited(now, since),
        free_slots=verdict.free_slots,
    )
