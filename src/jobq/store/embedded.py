"""The store logic shared by the embedded stores (memory, SQLite).

Live jobs (queued, scheduled, running) are kept in memory with the ready index; every change
goes through ``_save`` so a subclass can persist it. Finished jobs are handed to ``_retire``
(the memory store keeps them in a dict, SQLite on disk only). Subclasses implement the
persistence hooks; everything the contract promises is decided here, once.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Sequence

from jobq.core import retry, timeline
from jobq.core.explain import Explanation
from jobq.core.index import ReadyIndex
from jobq.core.lease import (
    DEFAULT_LEASE_TTL,
    attempt_deadline,
    holds_lease,
    lease_deadline,
    next_token,
    reached,
)
from jobq.core.matching import Profile, Shape
from jobq.core.model import (
    Completion,
    Job,
    JobEvent,
    JobFilter,
    JobSpec,
    StoreStats,
    Submitted,
    WorkerInfo,
)
from jobq.core.retention import DEFAULT_FAILED_TTL, DEFAULT_RESULT_TTL, expires_at, result_ttl
from jobq.core.states import (
    CANCELLED,
    COMPLETED,
    FAILED,
    QUARANTINED,
    QUEUED,
    RUNNING,
    SCHEDULED,
    JobState,
    check_transition,
)
from jobq.errors import Conflict, InvalidRequest, LeaseLost, NotFound
from jobq.store.embedded_deps import EmbeddedDependencies
from jobq.store.reports import TickResult
from jobq.store.shapes import shape_for


class EmbeddedStore(EmbeddedDependencies):
    url = "embedded://"
    #: One hub owns an embedded store.
    shared = False

    def __init__(
        self, *, result_ttl: float = DEFAULT_RESULT_TTL, failed_ttl: float = DEFAULT_FAILED_TTL
    ) -> None:
        self.result_ttl = result_ttl
        self.failed_ttl = failed_ttl
        self.index = ReadyIndex()
        self._live: dict[int, Job] = {}
        self._shapes: dict[int, Shape] = {}
        self._running: set[int] = set()
        self._scheduled: list[tuple[float, int]] = []
        self._idempotent: dict[str, int] = {}
        self._workers: dict[str, WorkerInfo] = {}
        self._counts: Counter[tuple[str, str]] = Counter()
        self._next_id = 1
        #: Folded into every fencing token this store hands out (``core/lease.py``): a durable
        #: store sets it when it opens.
        self.epoch = 0

    # ------------------------------------------------------------------ hooks

    def _save(self, job: Job, *, new: bool = False, urgent: bool = True) -> None:
        """Persist a change of a live job. ``urgent=False``: it may ride along with the next
        commit (within a tick); losing it in a crash only means work is done again."""

    def _retire(self, job: Job) -> None:
        """A job ended: keep it where finished jobs are kept."""

    def _revive(self, job: Job) -> None:
        """A finished job is being queued again (an operator's retry)."""

    def _load(self, job_id: int) -> Job | None:
        """A finished job, from wherever finished jobs are kept."""
        return None

    def _query(self, query: JobFilter) -> list[Job]:
        """Finished jobs matching ``query`` (newest first, at most offset+limit of them)."""
        return []

    def _purge(self, now: float) -> list[Job]:
        """Forget finished jobs whose retention ended; returns them."""
        return []

    async def _durable(self) -> None:
        """Wait until every change made so far is as durable as the store promises."""

    # ------------------------------------------------------------------ life cycle

    async def open(self, now: float, lease_ttl: float = DEFAULT_LEASE_TTL) -> None:
        pass

    async def close(self) -> None:
        pass

    def _adopt_loaded(self, job: Job, now: float, lease_ttl: float) -> None:
        """Take a live job read back at start-up into memory."""
        shape = shape_for(job)
        job.token = max(job.token, job.attempts)  # written before tokens were kept apart
        self._live[job.id] = job
        self._shapes[job.id] = shape
        self._next_id = max(self._next_id, job.id + 1)
        if job.idempotency_key:
            self._idempotent[job.idempotency_key] = job.id
        if job.state is QUEUED:
            self._queue(job, job.submitted_at)
        elif job.state is SCHEDULED:
            heapq.heappush(self._scheduled, (job.run_at or now, job.id))
        elif job.state is RUNNING:
            # Its worker may come back and adopt it; if not, the lease runs out.
            job.lease_expires = lease_deadline(now, lease_ttl)
            self._running.add(job.id)

    # ------------------------------------------------------------------ state changes

    def _move(self, job: Job, state: JobState) -> None:
        check_transition(job.state, state)
        self._counts[(job.service, job.state)] -= 1
        self._counts[(job.service, state)] += 1
        job.state = state

    def _finish(self, job: Job, state: JobState, now: float, ttl: float) -> None:
        timeline.ended(job, state, now)  # before the move: it names a running attempt
        self._move(job, state)
        job.finished_at = now
        job.lease_expires = None
        job.expires_at = expires_at(now, ttl)
        self._live.pop(job.id, None)
        self._shapes.pop(job.id, None)
        self._running.discard(job.id)
        self._retire(job)
        self._ended(job, now)  # its dependents (store/embedded_deps.py)
        if job.group is not None:
            self._group_end(job, state, now)  # store/embedded_groups.py

    def _enqueue(self, job: Job, now: float) -> None:
        self._move(job, QUEUED)
        job.run_at = None
        self._queue(job, now)

    def _queue(self, job: Job, since: float) -> None:
        suspect = retry.is_suspect(job.losses)
        self.index.add(job.id, self._shapes[job.id], job.priority, job.seq, since, job.avoid_worker, suspect)

    # ------------------------------------------------------------------ jobs

    async def submit(self, specs: Sequence[JobSpec], now: float) -> list[Submitted]:
        # Shapes first: a bad requirement refuses the whole batch before anything is created.
        shapes = [shape_for(spec) for spec in specs]
        out: list[Submitted] = []
        for spec, shape in zip(specs, shapes, strict=True):
            key = spec.idempotency_key
            if key is not None:
                known = self._idempotent.get(key)
                existing = None if known is None else await self.get(known)
                if existing is not None:
                    out.append(Submitted(job=existing, created=False))
                    continue
            job_id = self._next_id
            self._next_id += 1
            job = self._new_job(specs, out, job_id, now)  # refs of this batch resolved
            self._live[job_id] = job
            self._shapes[job_id] = shape
            if key is not None:
                self._idempotent[key] = job_id
            self._counts[(job.service, job.state)] += 1
            if job.state is QUEUED:  # the plain case, inline
                self.index.add(job_id, shape, job.priority, job.seq, now)
            else:  # scheduled, waiting, or (a prerequisite failed) cancelled
                self._place(job, now)
            self._save(job, new=True)
            out.append(Submitted(job=job, created=True))
        await self._durable()
        return out

    async def get(self, job_id: int) -> Job | None:
        job = self._live.get(job_id)
        return job if job is not None else self._load(job_id)

    async def list_jobs(self, query: JobFilter) -> list[Job]:
        live = [job for job in self._live.values() if query.matches(job)]
        live_only = query.states and not any(state.terminal for state in query.states)
        finished = [] if live_only else self._query(query)
        merged = sorted(live + finished, key=lambda j: j.id, reverse=True)
        return merged[query.offset : query.offset + query.limit]

    async def cancel(self, job_id: int, now: float) -> tuple[Job, str | None]:
        job = self._live.get(job_id)
        if job is None:
            finished = self._load(job_id)
            if finished is None:
                raise NotFound(f"no job {job_id}")
            raise Conflict(f"job {job_id} already ended {finished.state}")
        worker = self._cancel_live(job, "cancelled", now)  # embedded_deps.py
        await self._durable()
        return job, worker

    async def retry(self, job_id: int, now: float) -> Job:
        job = self._live.get(job_id) or self._load(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        if job.state not in (FAILED, CANCELLED, QUARANTINED):
            raise Conflict(
                f"only failed, quarantined or cancelled jobs can be retried; job {job_id} is {job.state}"
            )
        job.attempts = job.failures = job.losses = 0
        job.error = None
        job.result = None
        job.finished_at = job.expires_at = None
        job.avoid_worker = None
        self._revive(job)
        self._live[job_id] = job
        self._shapes[job_id] = shape_for(job)
        self._requeue(job, now)  # queued, or waiting again for its prerequisites
        self._save(job)
        await self._durable()
        return job

    async def stats(self) -> StoreStats:
        by_state: Counter[str] = Counter()
        by_service: dict[str, dict[str, int]] = {}
        for (service, state), count in self._counts.items():
            if count:
                by_state[state] += count
                by_service.setdefault(service, {})[state] = count
        return StoreStats(by_state=dict(by_state), by_service=by_service)

    async def set_customer_weight(self, customer: str, weight: float) -> None:
        if not weight > 0:
            raise InvalidRequest(f"the weight of customer {customer} must be positive")
        self.index.set_weight(customer, weight)

    def claim_scope(self, worker_id: str) -> str | None:
        return None  # a claim here costs no round trip: asking is as cheap as knowing

    def claimed_empty(self, worker_id: str) -> bool:
        return False

    def has_queued(self) -> bool:
        return len(self.index) > 0

    def _ttl(self, job: Job) -> float:
        return result_ttl(job.result_ttl, self.result_ttl)

    # ------------------------------------------------------------------ workers

    async def attach_worker(self, info: WorkerInfo, now: float) -> None:
        profile = Profile.build(info.serving(), info.capabilities)
        self.index.attach(info.id, profile, info.slots)
        info.last_seen = now
        self._workers[info.id] = info
        # Jobs the store still runs for this worker (read back after a restart, or left from
        # its previous connection) count against it: its heartbeats keep their leases, and the
        # hub gives back those the worker does not claim as held.
        for job_id in self._running:
            job = self._live.get(job_id)
            if job is not None and job.worker == info.id:
                self.index.adopt(info.id, job_id, self._shapes[job_id], retry.is_suspect(job.losses))

    async def detach_worker(
        self, worker_id: str, now: float, unreached_after: float | None = None
    ) -> list[Job]:
        self._workers.pop(worker_id, None)
        released = []
        for job_id in self.index.detach(worker_id):
            job = self._live.get(job_id)
            if job is not None and job.state is RUNNING:
                lost = reached(job.started_at, unreached_after)
                self._release(job, now, "its worker went away", lost=lost)
                released.append(job)
        if released:
            await self._durable()
        return released

    async def touch_worker(
        self, worker_id: str, now: float, lease_ttl: float, metrics: dict[str, float] | None = None
    ) -> None:
        info = self._workers.get(worker_id)
        if info is not None:
            info.last_seen = now
            if metrics is not None:
                info.metrics = metrics
        deadline = lease_deadline(now, lease_ttl)
        for job_id in self.index.running_on(worker_id):
            job = self._live.get(job_id)
            if job is not None:
                job.lease_expires = deadline

    async def list_workers(self) -> list[WorkerInfo]:
        out = []
        for info in self._workers.values():
            info.running = self.index.running_on(info.id)
            out.append(info)
        return out

    # ------------------------------------------------------------------ running jobs

    async def claim(self, worker_id: str, limit: int, now: float, lease_ttl: float) -> list[Job]:
        claimed = self.index.claim(worker_id, limit, now)
        if not claimed:
            return []
        deadline = lease_deadline(now, lease_ttl)
        jobs = []
        for c in claimed:
            job = self._live[c.job_id]
            self._move(job, RUNNING)
            job.attempts += 1
            job.token = next_token(job.token, self.epoch)
            job.worker, job.holder = worker_id, self._workers[worker_id].principal
            job.started_at = now
            job.lease_expires = deadline
            job.progress = job.progress_message = None
            self._running.add(job.id)
            timeline.started(job, now)
            if job.group is not None:
                self._group_claimed(job, worker_id)  # store/embedded_groups.py
            # A claim is not acknowledged to anyone: if the hub dies before it reaches the disk,
            # the job is simply queued again (at least once), so it does not wait for a commit.
            self._save(job, urgent=False)
            jobs.append(job)
        return jobs

    async def adopt(
        self, worker_id: str, held: Sequence[tuple[int, int]], now: float, lease_ttl: float
    ) -> list[int]:
        kept = []
        for job_id, token in held:
            job = self._live.get(job_id)
            if job is None or not holds_lease(job, token):
                continue
            if job.worker != worker_id:
                continue
            self.index.adopt(worker_id, job_id, self._shapes[job_id], retry.is_suspect(job.losses))
            job.lease_expires = lease_deadline(now, lease_ttl)
            kept.append(job_id)
        return kept

    def _holding(self, job_id: int, token: int) -> Job:
        job = self._live.get(job_id)
        if job is None or not holds_lease(job, token):
            raise LeaseLost(f"attempt {token} of job {job_id} no longer holds its lease")
        return job

    async def progress(
        self, job_id: int, token: int, value: float | None, message: str | None, now: float
    ) -> Job:
        job = self._holding(job_id, token)
        if value is not None:
            job.progress = value
        if message is not None:
            job.progress_message = message
        return job

    async def complete(self, results: Sequence[Completion], now: float) -> list[Job | Exception]:
        out: list[Job | Exception] = []
        for item in results:
            try:
                job = self._holding(item.job_id, item.token)
            except LeaseLost as exc:
                out.append(exc.with_traceback(None))  # no cycle through this frame
                continue
            self._stop_running(job)
            job.result = item.result
            job.progress = 100.0 if job.progress is not None else None
            self._finish(job, COMPLETED, now, self._ttl(job))
            out.append(job)
        await self._durable()
        return out

    async def fail(
        self,
        job_id: int,
        token: int,
        error: str,
        now: float,
        *,
        retryable: bool = True,
        rand: float = 0.5,
        traceback: str | None = None,
    ) -> Job:
        job = self._holding(job_id, token)
        self._stop_running(job)
        job.note_failure(error, now, traceback)
        self._after_failed_attempt(job, now, retryable, rand)
        await self._durable()
        return job

    def _after_failed_attempt(self, job: Job, now: float, retryable: bool, rand: float) -> None:
        job.avoid_worker = job.worker
        job.failures += 1
        decision = retry.decide(
            attempts=job.failures,
            max_attempts=job.max_attempts,
            now=now,
            rand=rand,
            backoff=job.backoff,
            retryable=retryable,
        )
        if isinstance(decision, retry.Retry):
            self._move(job, SCHEDULED)
            job.run_at = decision.at
            heapq.heappush(self._scheduled, (decision.at, job.id))
            self._save(job)
        else:
            self._finish(job, FAILED, now, self.failed_ttl)

    async def release(self, job_id: int, token: int, now: float) -> Job:
        job = self._holding(job_id, token)
        self._release(job, now, "released by its worker", lost=False)
        await self._durable()
        return job

    def _release(self, job: Job, now: float, why: str, *, lost: bool) -> None:
        """Back to the front of the queue. An attempt given back unstarted (``lost=False``)
        costs nothing and is not counted as run. A lost one (its worker died, left or let its
        lease expire) costs the ``max_losses`` budget, never ``max_attempts``; the last one
        quarantines the job (``core/retry.py``), kept as long as a failed one."""
        self._stop_running(job)
        if not lost:
            job.attempts = max(0, job.attempts - 1)
        else:
            job.losses += 1
            job.avoid_worker = job.worker
            verdict = retry.after_loss(losses=job.losses, max_losses=job.max_losses, why=why)
            if verdict is not None:
                job.error = verdict.reason
                self._finish(job, QUARANTINED, now, self.failed_ttl)
                return
        self._enqueue(job, job.submitted_at)
        self._save(job)

    # ------------------------------------------------------------------ time

    async def tick(self, now: float) -> TickResult:
        result = TickResult()
        while self._scheduled and self._scheduled[0][0] <= now:
            at, job_id = heapq.heappop(self._scheduled)
            job = self._live.get(job_id)
            if job is not None and job.state is SCHEDULED and job.run_at == at:
                self._enqueue(job, at)
                self._save(job)
                result.promoted += 1
        for job_id in list(self._running):
            job = self._live[job_id]
            worker = job.worker
            deadline = attempt_deadline(job.started_at, job.timeout) if job.started_at else None
            if deadline is not None and now > deadline:
                self._stop_running(job)
                job.note_failure(f"timed out after {job.timeout:g}s", now)
                self._after_failed_attempt(job, now, True, 0.5)
                result.expired.append((job, worker))
            elif job.lease_expires is not None and job.lease_expires < now:
                self._release(job, now, "its lease expired", lost=True)
                result.expired.append((job, worker))
        purged = self._purge(now)
        for job in purged:
            self._counts[(job.service, job.state)] -= 1
            if job.idempotency_key and self._idempotent.get(job.idempotency_key) == job.id:
                del self._idempotent[job.idempotency_key]
        result.purged = len(purged)
        if result.promoted or result.expired or purged:
            await self._durable()
        return result

    def broadcast(self, event: JobEvent) -> None:
        """One hub only: nobody else to tell."""

    def notify_stop(self, worker_id: str, job_ids: list[int]) -> None:
        """One hub only: the worker is connected here or nowhere."""

    async def next_due(self) -> float | None:
        return self._scheduled[0][0] if self._scheduled else None

    # ------------------------------------------------------------------ explaining

    async def explain(self, job_id: int, now: float) -> Explanation | None:
        return self.index.explain(job_id, now)

    async def blocked(self) -> list[tuple[int, str]]:
        return self.index.blocked()
