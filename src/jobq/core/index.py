"""The ready index: queued jobs grouped by shape, and who may take which.

Pure data structure (no I/O, no clock: ``now`` is passed in). Embedded stores keep one in
memory; the Redis store keeps the same layout in Redis.

- One priority queue per shape, ordered by (priority desc, seq asc). Removing a job is lazy: its
  heap entry is skipped when it reaches the head.
- Each attached worker has a profile; the shapes a profile satisfies are computed once and
  extended as new shapes appear, so a claim looks at the *heads* of those shapes only. A job a
  million deep that only one rare worker can run is at the head of its own shape queue.
- Between heads of equal priority, customers share by weighted fairness (stride scheduling:
  each customer has a pass that grows by 1/weight per job it is given; the lowest pass goes
  first; a customer coming back from idle starts at the current pass, so idling banks nothing).
- A job needing more GPU memory than is free on the worker is skipped (others backfill) until
  it has waited ``reserve_after`` seconds; then the worker is reserved for it and takes nothing
  smaller until it fits.
- A job is not given back to the worker that failed it last while another eligible worker is
  attached.
- A worker runs at most one *suspect* at a time: a job that has lost its worker (it died, left,
  or let the lease expire) ``retry.SUSPECT_LOSSES`` times. When a worker dies holding several
  jobs each is charged a loss, though most likely one of them killed it; held apart from the
  others, a job that kills every worker it reaches is quarantined (``core/retry.py``) before it
  can take a bystander down often enough to quarantine it too.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field

from jobq.core.explain import (
    Candidate,
    Explanation,
    blocked_queues,
    blocked_reason,
    competing,
    explanation,
    judge,
)
from jobq.core.matching import DEFAULT_RESERVE_AFTER, Load, Profile, Shape, first_miss

__all__ = ["DEFAULT_RESERVE_AFTER", "Claimed", "Explanation", "ReadyIndex", "ShapeQueue"]

#: (-priority, seq, job_id, enqueued_at)
Entry = tuple[int, int, int, float]


class ShapeQueue:
    __slots__ = ("_heap", "counts_customer", "customer", "gpu_demand", "live", "shape", "workers")

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        self.customer = shape.customer
        self.gpu_demand = shape.gpu_demand
        #: Jobs of this shape count toward a worker's max_concurrent_customers.
        self.counts_customer = shape.isolation != "none" and shape.customer is not None
        self._heap: list[Entry] = []
        self.live = 0
        #: How many attached workers may run this shape (0 means blocked).
        self.workers = 0


@dataclass(slots=True)
class _WorkerState:
    profile: Profile
    slots: int
    load: Load = field(default_factory=Load)
    running: dict[int, Shape] = field(default_factory=dict)
    #: The suspects among ``running`` (at most one, unless adopted on a reconnect).
    suspects: set[int] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Claimed:
    job_id: int
    shape: Shape


class ReadyIndex:
    def __init__(self, reserve_after: float = DEFAULT_RESERVE_AFTER) -> None:
        self.reserve_after = reserve_after
        self._queues: dict[Shape, ShapeQueue] = {}
        #: job id → (its queue, its live heap entry); absent once taken or removed.
        self._entries: dict[int, tuple[ShapeQueue, Entry]] = {}
        self._avoid: dict[int, str] = {}
        #: Queued suspects (``retry.SUSPECT_LOSSES``).
        self._suspects: set[int] = set()
        self._workers: dict[str, _WorkerState] = {}
        self._profiles: dict[Profile, int] = {}
        self._eligible: dict[Profile, list[ShapeQueue]] = {}
        self._weights: dict[str | None, float] = {}
        self._pass: dict[str | None, float] = {}
        self._live_by_customer: dict[str | None, int] = {}
        self._vtime = 0.0
        self._garbage = 0
        self._running_on: dict[int, str] = {}

    # ------------------------------------------------------------------ queued jobs

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, job_id: int) -> bool:
        return job_id in self._entries

    def queue(self, shape: Shape) -> ShapeQueue:
        q = self._queues.get(shape)
        if q is None:
            q = self._queues[shape] = ShapeQueue(shape)
            for profile, count in self._profiles.items():
                if first_miss(shape, profile) is None:
                    self._eligible[profile].append(q)
                    q.workers += count
        return q

    def add(
        self,
        job_id: int,
        shape: Shape,
        priority: int,
        seq: int,
        since: float,
        avoid: str | None = None,
        suspect: bool = False,
    ) -> None:
        """Queue a job (again). ``avoid`` names the worker that failed it last; ``suspect``: it
        lost its worker ``retry.SUSPECT_LOSSES`` times."""
        if job_id in self._entries:
            self.discard(job_id)
        q = self.queue(shape)
        entry = (-priority, seq, job_id, since)
        heapq.heappush(q._heap, entry)
        q.live += 1
        self._entries[job_id] = (q, entry)
        if avoid is not None:
            self._avoid[job_id] = avoid
        if suspect:
            self._suspects.add(job_id)
        customer = shape.customer
        live = self._live_by_customer.get(customer, 0)
        if live == 0:
            # Coming back from idle: start at the current virtual time, bank nothing.
            self._pass[customer] = max(self._pass.get(customer, 0.0), self._vtime)
        self._live_by_customer[customer] = live + 1

    def discard(self, job_id: int) -> bool:
        """Take a job out of the queue (cancelled, or claimed elsewhere). Lazy and O(1)."""
        found = self._entries.pop(job_id, None)
        if found is None:
            return False
        q = found[0]
        q.live -= 1
        self._garbage += 1
        self._avoid.pop(job_id, None)
        self._suspects.discard(job_id)
        self._customer_left(q.shape.customer)
        if self._garbage > 1024 and self._garbage > len(self._entries):
            self._compact()
        return True

    def _customer_left(self, customer: str | None) -> None:
        left = self._live_by_customer.get(customer, 0) - 1
        if left > 0:
            self._live_by_customer[customer] = left
        else:
            self._live_by_customer.pop(customer, None)

    def _compact(self) -> None:
        for q in self._queues.values():
            q._heap = [e for e in q._heap if self._is_live(q, e)]
            heapq.heapify(q._heap)
        self._garbage = 0

    def _is_live(self, q: ShapeQueue, entry: Entry) -> bool:
        found = self._entries.get(entry[2])
        return found is not None and found[1] is entry and found[0] is q

    def _head(self, q: ShapeQueue) -> Entry | None:
        heap = q._heap
        while heap:
            entry = heap[0]
            if self._is_live(q, entry):
                return entry
            heapq.heappop(heap)
            self._garbage -= 1
        return None

    # ------------------------------------------------------------------ workers

    def attach(self, worker_id: str, profile: Profile, slots: int) -> None:
        """A worker connected (or changed its capabilities)."""
        old = self._workers.get(worker_id)
        if old is not None:
            self._unlink(old.profile)
            old.profile = profile
            old.slots = slots
        else:
            self._workers[worker_id] = _WorkerState(profile, slots)
        count = self._profiles.get(profile, 0)
        self._profiles[profile] = count + 1
        if count == 0:
            self._eligible[profile] = [
                q for q in self._queues.values() if first_miss(q.shape, profile) is None
            ]
        for q in self._eligible[profile]:
            q.workers += 1

    def detach(self, worker_id: str) -> list[int]:
        """A worker left; returns the ids of jobs it was running (for the caller to requeue)."""
        state = self._workers.pop(worker_id, None)
        if state is None:
            return []
        self._unlink(state.profile)
        for job_id in state.running:
            self._running_on.pop(job_id, None)
        return list(state.running)

    def _unlink(self, profile: Profile) -> None:
        for q in self._eligible[profile]:
            q.workers -= 1
        count = self._profiles[profile] - 1
        if count:
            self._profiles[profile] = count
        else:
            del self._profiles[profile]
            del self._eligible[profile]

    def set_slots(self, worker_id: str, slots: int) -> None:
        state = self._workers.get(worker_id)
        if state is not None:
            state.slots = slots

    def workers(self) -> Iterator[tuple[str, Profile]]:
        for worker_id, state in self._workers.items():
            yield worker_id, state.profile

    def running_on(self, worker_id: str) -> list[int]:
        state = self._workers.get(worker_id)
        return [] if state is None else list(state.running)

    def free_slots(self, worker_id: str) -> int:
        state = self._workers.get(worker_id)
        return 0 if state is None else max(0, state.slots - len(state.running))

    # ------------------------------------------------------------------ claiming

    def claim(self, worker_id: str, limit: int, now: float) -> list[Claimed]:
        """Take up to ``limit`` jobs for the worker, best first; marks them running on it."""
        state = self._workers.get(worker_id)
        if state is None:
            return []
        limit = min(limit, state.slots - len(state.running))
        taken: list[Claimed] = []
        queues = self._eligible[state.profile]
        while len(taken) < limit:
            pick = self._pick(worker_id, state, queues, now)
            if pick is None:
                break
            q, entry = pick
            job_id = entry[2]
            del self._entries[job_id]
            q.live -= 1
            self._avoid.pop(job_id, None)
            if self._suspects and job_id in self._suspects:
                self._suspects.discard(job_id)
                state.suspects.add(job_id)
            if q._heap and q._heap[0] is entry:
                heapq.heappop(q._heap)
            else:
                self._garbage += 1
            customer = q.shape.customer
            self._customer_left(customer)
            passed = self._pass.get(customer, self._vtime)
            self._vtime = max(self._vtime, passed)
            self._pass[customer] = passed + 1.0 / self._weights.get(customer, 1.0)
            state.load.take(q.shape)
            state.running[job_id] = q.shape
            self._running_on[job_id] = worker_id
            taken.append(Claimed(job_id, q.shape))
        return taken

    def _pick(
        self, worker_id: str, state: _WorkerState, queues: list[ShapeQueue], now: float
    ) -> tuple[ShapeQueue, Entry] | None:
        """The best head among ``queues`` this worker can start now: highest priority, then the
        customer with the lowest pass, then the oldest. This loop is the claim's hot path."""
        entries = self._entries
        passes = self._pass
        vtime = self._vtime
        avoid = self._avoid
        # It runs a suspect already: it takes no other now.
        shun = self._suspects if self._suspects and state.suspects else None
        best: tuple[ShapeQueue, Entry] | None = None
        best_prio = best_seq = 0
        best_pass = 0.0
        blocked_key: tuple[int, float, int] | None = None
        profile, load = state.profile, state.load
        # What the worker runs now (the rules of matching.load_miss, inlined for speed):
        gpu_free = profile.gpu_memory - load.gpu_in_use + 1e-9
        running_customers = load.customers
        customers_full = profile.max_customers is not None and len(running_customers) >= profile.max_customers
        for q in queues:
            if not q.live:
                continue
            entry: Entry | None = q._heap[0]
            found = entries.get(entry[2])  # type: ignore[index]
            if found is None or found[1] is not entry:
                entry = self._head(q)
                if entry is None:
                    continue
            if (avoid and avoid.get(entry[2]) == worker_id and q.workers > 1) or (shun and entry[2] in shun):
                entry = self._next_allowed(q, worker_id, shun)
                if entry is None:
                    continue
            prio = entry[0]
            if q.gpu_demand > gpu_free or (
                customers_full and q.counts_customer and q.customer not in running_customers
            ):
                # It does not fit now. Once it has waited long enough it reserves the worker.
                if now - entry[3] >= self.reserve_after:
                    key = (prio, passes.get(q.customer, vtime), entry[1])
                    if blocked_key is None or key < blocked_key:
                        blocked_key = key
                continue
            if best is not None and prio > best_prio:
                continue
            passed = passes.get(q.customer, vtime)
            if (
                best is not None
                and prio == best_prio
                and (passed > best_pass or (passed == best_pass and entry[1] >= best_seq))
            ):
                continue
            best = (q, entry)
            best_prio, best_pass, best_seq = prio, passed, entry[1]
        if blocked_key is not None and (best is None or blocked_key < (best_prio, best_pass, best_seq)):
            return None
        return best

    def _next_allowed(self, q: ShapeQueue, worker_id: str, shun: set[int] | None) -> Entry | None:
        """The best live entry of ``q`` that ``worker_id`` has not failed last (unless it is the
        one worker for it) and, with ``shun``, that is not a suspect (rare path)."""
        avoid = self._avoid if q.workers > 1 else {}
        for entry in sorted(q._heap):
            job_id = entry[2]
            if self._is_live(q, entry) and avoid.get(job_id) != worker_id and not (shun and job_id in shun):
                return entry
        return None

    def finish(self, job_id: int) -> None:
        """A running job ended (or went back to the queue): its worker's load frees up."""
        worker_id = self._running_on.pop(job_id, None)
        state = None if worker_id is None else self._workers.get(worker_id)
        if state is not None:
            shape = state.running.pop(job_id, None)
            if shape is not None:
                state.load.give_back(shape)
            state.suspects.discard(job_id)

    def adopt(self, worker_id: str, job_id: int, shape: Shape, suspect: bool = False) -> None:
        """Count a job the worker already runs (it reconnected holding it)."""
        state = self._workers.get(worker_id)
        if state is not None and job_id not in state.running:
            state.running[job_id] = shape
            state.load.take(shape)
            self._running_on[job_id] = worker_id
            if suspect:
                state.suspects.add(job_id)

    # ------------------------------------------------------------------ fairness

    def set_weight(self, customer: str | None, weight: float) -> None:
        if weight <= 0:
            raise ValueError("a customer's weight must be positive")
        self._weights[customer] = weight

    # ------------------------------------------------------------------ explaining
    # The rules are core/explain.py's (the Redis store applies the same ones); this only
    # gathers what the index holds.

    def shape_of(self, job_id: int) -> Shape | None:
        found = self._entries.get(job_id)
        return None if found is None else found[0].shape

    def blocked_reason(self, shape: Shape) -> str | None:
        """Why no attached worker could ever run this shape, or ``None`` if one could."""
        q = self._queues.get(shape)
        if q is not None and q.workers > 0:
            return None
        return blocked_reason(shape, self.workers())

    def blocked_shapes(self) -> list[ShapeQueue]:
        return [q for q in self._queues.values() if q.live and q.workers == 0]

    def queued_ids(self, q: ShapeQueue) -> list[int]:
        return [e[2] for e in sorted(q._heap) if self._is_live(q, e)]

    def blocked(self) -> list[tuple[int, str]]:
        """Queued jobs no attached worker could ever run, with the reason, by job id."""
        # Only queues no attached worker may take from can be blocked: the rest need no look.
        found = blocked_queues(((q, q.shape) for q in self.blocked_shapes()), list(self.workers()))
        return sorted((job_id, reason) for q, reason in found for job_id in self.queued_ids(q))

    def candidates(self) -> list[Candidate]:
        """The attached workers as ``explain`` sees them, in the order they attached."""
        return [
            Candidate(worker_id, state.profile, max(0, state.slots - len(state.running)), state.load)
            for worker_id, state in self._workers.items()
        ]

    def explain(self, job_id: int, now: float) -> Explanation | None:
        """Eligible and ineligible workers for a queued job, and its place among competitors."""
        found = self._entries.get(job_id)
        if found is None:
            return None
        q, entry = found
        verdict = judge(q.shape, self.candidates())
        queues = competing(q, verdict.eligible, lambda w: self._eligible[self._workers[w].profile])
        return explanation(verdict, self._ahead(entry, queues), entry[3], now)

    def _ahead(self, entry: Entry, queues: list[ShapeQueue]) -> int:
        """Live entries of ``queues`` ordered before ``entry`` (priority, then seq)."""
        key = entry[:2]
        return sum(1 for q in queues for e in q._heap if e[:2] < key and self._is_live(q, e))
