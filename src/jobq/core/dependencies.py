"""Dependencies between jobs (``after``): the rules, pure.

A store calls :func:`after_decision` in the same atomic step as a submit with ``after`` and as
each prerequisite's end; :func:`order_batch` orders a batch whose specs name each other by
``ref``. ``docs/workflows.md`` has the rules for users.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from jobq.core.errors import InvalidRequest
from jobq.core.states import JobState

AfterPolicy = Literal["completed", "always"]
AFTER_POLICIES: tuple[str, ...] = ("completed", "always")

#: Most prerequisites one job may name.
MAX_AFTER = 1000


@dataclass(frozen=True, slots=True)
class Wait:
    """Not runnable yet: these prerequisites have not ended (in ``after`` order)."""

    pending: tuple[tuple[int, JobState], ...]

    @property
    def reason(self) -> str:
        named = ", ".join(f"{job_id} ({state})" for job_id, state in self.pending[:5])
        more = f" and {len(self.pending) - 5} more" if len(self.pending) > 5 else ""
        return f"waits for job{'s' if len(self.pending) > 1 else ''} {named}{more}"


@dataclass(frozen=True, slots=True)
class Runnable:
    """Every prerequisite is done: queue it (or schedule it, if its start is later)."""


@dataclass(frozen=True, slots=True)
class CancelDependent:
    """A prerequisite ended without completing: the dependent ends ``cancelled``."""

    prerequisite: int
    reason: str


AfterDecision = Wait | Runnable | CancelDependent


def after_decision(
    prerequisites: Sequence[tuple[int, JobState | None]], policy: str = "completed"
) -> AfterDecision:
    """What a dependent does, given its prerequisites' states in ``after`` order (``None``:
    the job is gone, forgotten after its retention). ``completed``: cancel as soon as one
    ended otherwise (or is gone), run when all completed. ``always``: run once all ended."""
    pending: list[tuple[int, JobState]] = []
    for job_id, state in prerequisites:
        if state is None or state.terminal:
            if policy == "completed" and state is not JobState.COMPLETED:
                what = "is gone" if state is None else f"ended {state}"
                return CancelDependent(job_id, f"prerequisite {job_id} {what}")
        else:
            pending.append((job_id, state))
    return Wait(tuple(pending)) if pending else Runnable()


def check_after(after: Sequence[int | str], policy: str = "completed") -> None:
    """The rules of one spec's ``after`` list: at most :data:`MAX_AFTER` entries, no
    duplicates, ids are positive integers, refs non-empty strings, a known policy."""
    if policy not in AFTER_POLICIES:
        raise InvalidRequest(f"after_policy must be one of {', '.join(AFTER_POLICIES)}")
    if len(after) > MAX_AFTER:
        raise InvalidRequest(f"after names {len(after)} jobs; at most {MAX_AFTER}")
    seen: set[int | str] = set()
    for item in after:
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise InvalidRequest("after holds job ids (integers) or refs (strings)")
        if (isinstance(item, int) and item < 1) or item == "":
            raise InvalidRequest(f"after: {item!r} names no job")
        if item in seen:
            raise InvalidRequest(f"after names {item!r} twice")
        seen.add(item)


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One spec of a batch: its batch-local ``ref`` (if others name it) and its ``after``
    (ints: existing jobs; strings: refs of specs in the same batch)."""

    ref: str | None
    after: Sequence[int | str] = ()


def order_batch(items: Sequence[BatchItem]) -> list[int]:
    """The order to create a batch's specs in (indexes into ``items``): each after the specs
    it waits for, otherwise in submit order. Refuses unknown or duplicate refs, a spec that
    waits for itself, and cycles, naming the path (``a → b → a``: a waits for b ...)."""
    by_ref: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.ref is not None and (not item.ref or by_ref.setdefault(item.ref, i) != i):
            raise InvalidRequest(f"ref {item.ref!r} is empty or names two specs")
    needs: list[list[int]] = []
    for i, item in enumerate(items):
        check_after(item.after)
        deps = []
        for dep in item.after:
            if isinstance(dep, str):
                if dep not in by_ref:
                    raise InvalidRequest(f"after: no spec in this batch has ref {dep!r}")
                if by_ref[dep] == i:
                    raise InvalidRequest(f"{_name(items, i)} waits for itself")
                deps.append(by_ref[dep])
        needs.append(deps)
    waiting = [len(deps) for deps in needs]
    dependents: list[list[int]] = [[] for _ in items]
    for i, deps in enumerate(needs):
        for dep in deps:
            dependents[dep].append(i)
    ready = [i for i, n in enumerate(waiting) if n == 0]  # ascending: already a heap
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for j in dependents[i]:
            waiting[j] -= 1
            if not waiting[j]:
                heapq.heappush(ready, j)
    if len(order) < len(items):  # the rest wait on a cycle: follow waits until a spec repeats
        done = set(order)
        at, path = next(i for i in range(len(items)) if i not in done), dict[int, int]()
        while at not in path:
            path[at] = len(path)
            at = next(dep for dep in needs[at] if dep not in done)
        cycle = [*list(path)[path[at] :], at]
        raise InvalidRequest("dependency cycle: " + " → ".join(_name(items, i) for i in cycle))
    return order


def _name(items: Sequence[BatchItem], i: int) -> str:
    ref = items[i].ref
    return repr(ref) if ref is not None else f"spec #{i}"
