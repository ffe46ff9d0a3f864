"""The hub: one async API that every door calls, over one store.

It owns what is about connections and time: worker sessions and their liveness, pushing work
to workers with free slots (credit-based, like Majordomo's READY), the clock that makes
scheduled jobs due and leases expire, and the event bus clients subscribe to. Rules about jobs
live in the core and are applied by the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from jobq.config import HubConfig
from jobq.core.model import (
    Completion,
    Frames,
    Job,
    JobEvent,
    JobFilter,
    JobSpec,
    StoreStats,
    Submitted,
    WorkerInfo,
)
from jobq.core.states import RUNNING, TERMINAL
from jobq.core.validate import validate_spec
from jobq.errors import InvalidRequest, JobqError, NotFound, Timeout, Unavailable
from jobq.hub.events import EventBus, event_of
from jobq.hub.metrics import HubMetrics
from jobq.hub.schemas import SchemaRegistry
from jobq.hub.sessions import Liveness, WorkerLink, WorkerSession
from jobq.protocol.native import ExplainInfo, ServiceInfo
from jobq.store.base import Store

log = logging.getLogger("jobq.hub")

#: Jobs a worker is offered per round of a dispatch (rounds go on while workers take them all).
DISPATCH_CHUNK = 16


class Hub:
    def __init__(
        self,
        store: Store,
        config: HubConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.config = config or HubConfig()
        self.clock = clock
        self.rand = rand
        self.events = EventBus()
        self.metrics = HubMetrics()
        self.schemas = SchemaRegistry()
        self.sessions: dict[str, WorkerSession] = {}
        #: Several hubs share the store: events and cancellations cross between them.
        self._shared = bool(getattr(store, "shared", False))
        self.draining = False
        self.started_at = 0.0
        self.counters: dict[str, int] = {
            "submitted": 0,
            "completed": 0,
            "failed": 0,
            "retried": 0,
            "cancelled": 0,
            "requeued": 0,
            "claimed": 0,
            "lease_lost": 0,
        }
        self._dispatching = False
        self._kicked = False
        self._timer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._stopped = asyncio.Event()

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        self.started_at = self.clock()
        await self.store.open(self.started_at)
        self.store.listen(self)
        for customer, weight in self.config.customer_weights.items():
            await self.store.set_customer_weight(customer, weight)
        self._timer = asyncio.create_task(self._clock_loop(), name="jobq-hub-clock")
        self.kick()

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking submits and work, let running jobs finish for up to ``grace`` seconds,
        then close the store. Running jobs left over are re-queued after the next start (or
        kept by their workers if they reconnect in time)."""
        self.draining = True
        grace = self.config.grace if grace is None else grace
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self._running_count():
            await asyncio.sleep(0.05)
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        for session in list(self.sessions.values()):
            session.link.disconnect("the hub is shutting down")
        for task in list(self._tasks):
            task.cancel()
        await self.store.close()
        self._stopped.set()

    def _running_count(self) -> int:
        """Jobs this hub's workers are running (on a shared store, other hubs' are not ours to
        wait for)."""
        return sum(session.busy for session in self.sessions.values())

    def spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        """Run a coroutine in the background, keeping a reference so it is not collected."""
        task: asyncio.Task[object] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, JobqError):
                log.error("background task failed", exc_info=exc)

    # ------------------------------------------------------------------ clients

    def _check_open(self) -> None:
        if self.draining:
            raise Unavailable("the hub is shutting down and takes no new jobs")

    async def submit(self, specs: Sequence[JobSpec]) -> list[Submitted]:
        self._check_open()
        if not specs:
            return []
        now = self.clock()
        for spec in specs:
            validate_spec(spec, self.config.max_payload)
            self.schemas.check(spec)
        done = await self.store.submit(specs, now)
        created = 0
        for item in done:
            if item.created:
                created += 1
                self._announce(item.job, "submitted", now)
        if created:
            self.counters["submitted"] += created
            self.kick()
        return done

    async def get(self, job_id: int) -> Job:
        job = await self.store.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return job

    async def wait(self, job_id: int, timeout: float | None) -> Job:
        """The job once it has ended; raises Timeout after ``timeout`` seconds."""
        timeout = self.config.max_wait if timeout is None else min(timeout, self.config.max_wait)
        waiter = self.events.waiter(job_id)
        try:
            job = await self.get(job_id)
            if job.state in TERMINAL:
                return job
            try:
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
            except TimeoutError:
                raise Timeout(f"job {job_id} did not end within {timeout:g}s") from None
            return await self.get(job_id)
        finally:
            self.events.drop_waiter(job_id, waiter)

    async def cancel(self, job_id: int) -> Job:
        now = self.clock()
        job, worker = await self.store.cancel(job_id, now)
        self.counters["cancelled"] += 1
        if worker is not None:
            session = self.sessions.get(worker)
            if session is not None:
                session.link.stop([job_id])
                session.busy = max(0, session.busy - 1)
                self.kick()
            elif self._shared:
                self.store.notify_stop(worker, [job_id])
        self._announce(job, "cancelled", now)
        return job

    async def retry(self, job_id: int) -> Job:
        self._check_open()
        now = self.clock()
        job = await self.store.retry(job_id, now)
        self._announce(job, "requeued", now)
        self.kick()
        return job

    async def list_jobs(self, query: JobFilter, *, blocked: bool = False) -> list[Job]:
        if query.limit < 0 or query.offset < 0 or query.limit > 10_000:
            raise InvalidRequest("limit must be 0..10000 and offset non-negative")
        if not blocked:
            return await self.store.list_jobs(query)
        ids = [job_id for job_id, _ in await self.store.blocked()]
        if not ids:
            return []
        chosen = ids[::-1][query.offset : query.offset + query.limit]
        return await self.store.list_jobs(JobFilter(ids=chosen, limit=len(chosen)))

    async def stats(self) -> StoreStats:
        return await self.store.stats()

    async def workers(self) -> list[WorkerInfo]:
        return await self.store.list_workers()

    async def services(self) -> list[ServiceInfo]:
        stats = await self.store.stats()
        found: dict[str, ServiceInfo] = {}
        for info in await self.store.list_workers():
            for name in info.services:
                entry = found.setdefault(
                    name, ServiceInfo(name=name, workers=0, slots=0, queued=0, running=0)
                )
                entry.workers += 1
                entry.slots += info.slots
                if name in info.schemas:
                    entry.schema = info.schemas[name]
        for name, states in stats.by_service.items():
            entry = found.setdefault(name, ServiceInfo(name=name, workers=0, slots=0, queued=0, running=0))
            entry.queued = states.get("queued", 0) + states.get("scheduled", 0)
            entry.running = states.get("running", 0)
        return sorted(found.values(), key=lambda s: s.name)

    async def explain(self, job_id: int) -> ExplainInfo:
        job = await self.get(job_id)
        now = self.clock()
        if job.state is RUNNING:
            return ExplainInfo(id=job.id, state=job.state, summary=f"running on {job.worker}")
        if job.state in TERMINAL:
            return ExplainInfo(id=job.id, state=job.state, summary=f"ended {job.state}")
        if job.state != "queued":
            when = "" if job.run_at is None else f" until {time.ctime(job.run_at)}"
            return ExplainInfo(id=job.id, state=job.state, summary=f"waiting{when}")
        found = await self.store.explain(job_id, now)
        if found is None:
            return ExplainInfo(id=job.id, state=job.state, summary="queued")
        if found.blocked:
            summary = f"blocked: {found.blocked}"
        elif not found.eligible:
            summary = "no eligible worker is connected"
        elif found.free_slots and not found.ahead:
            summary = "about to start"
        else:
            summary = f"waiting behind {found.ahead} job(s) for {len(found.eligible)} eligible worker(s)"
        return ExplainInfo(
            id=job.id,
            state=job.state,
            summary=summary,
            eligible=found.eligible,
            ineligible=found.ineligible,
            position=found.ahead + 1,
            estimated_start=self._estimate_start(found.ahead, len(found.eligible), now),
            blocked=found.blocked,
        )

    def _estimate_start(self, ahead: int, workers: int, now: float) -> float | None:
        if not workers:
            return None
        elapsed = max(1.0, now - self.started_at)
        rate = self.counters["completed"] / elapsed  # jobs per second, hub lifetime average
        return now if ahead == 0 else (now + ahead / rate if rate > 0 else None)

    # ------------------------------------------------------------------ workers

    async def attach(
        self,
        info: WorkerInfo,
        link: WorkerLink,
        *,
        held: Sequence[tuple[int, int]] = (),
        liveness: Liveness | None = None,
    ) -> list[int]:
        """A worker connected (or reconnected). Returns the held attempts it may keep."""
        if self.draining:
            raise Unavailable("the hub is shutting down")
        if not info.services:
            raise InvalidRequest("a worker must serve at least one service")
        if info.slots < 0 or info.slots > 100_000:
            raise InvalidRequest("slots must be between 0 and 100000")
        now = self.clock()
        self.schemas.advertise(info.schemas)
        old = self.sessions.get(info.id)
        info.connected_at = now
        info.hub = self.config.name
        await self.store.attach_worker(info, now)
        kept = await self.store.adopt(info.id, held, now, self.config.lease_ttl) if held else []
        if old is not None and old.link is not link:
            old.link.disconnect("replaced by a new connection of the same worker")
        self.sessions[info.id] = WorkerSession(
            info=info,
            link=link,
            liveness=liveness or Liveness(self.config.worker_silence, self.config.worker_silence),
            last_seen=now,
            busy=len(kept),
        )
        self.kick()
        return kept

    async def detach(self, worker_id: str, reason: str = "disconnected") -> None:
        """The worker is gone: its running jobs go back to the front of the queue."""
        session = self.sessions.pop(worker_id, None)
        now = self.clock()
        released = await self.store.detach_worker(worker_id, now)
        if session is not None:
            log.info("worker %s left (%s); %d job(s) re-queued", worker_id, reason, len(released))
        self.counters["requeued"] += len(released)
        for job in released:
            kind = "failed" if job.state in TERMINAL else "requeued"
            self._announce(job, kind, now)
        if released:
            self.kick()

    def seen(self, worker_id: str) -> WorkerSession | None:
        session = self.sessions.get(worker_id)
        if session is not None:
            session.last_seen = self.clock()
        return session

    async def heartbeat(self, worker_id: str, metrics: dict[str, float] | None = None) -> bool:
        """Renew the worker's leases. False when the hub does not know the worker."""
        session = self.seen(worker_id)
        if session is None:
            return False
        await self.store.touch_worker(worker_id, session.last_seen, self.config.lease_ttl, metrics)
        return True

    async def set_slots(self, worker_id: str, slots: int) -> None:
        session = self.sessions.get(worker_id)
        if session is None:
            raise NotFound(f"no worker {worker_id}")
        session.info.slots = max(0, slots)
        await self.store.attach_worker(session.info, self.clock())
        self.kick()

    async def claim(self, worker_id: str, limit: int) -> list[Job]:
        """Pull-style doors ask for work here; push doors are served by the dispatcher."""
        if self.draining:
            return []
        session = self.seen(worker_id)
        if session is None:
            raise NotFound(f"no worker {worker_id}")
        return await self._claim_for(session, limit)

    async def _claim_for(self, session: WorkerSession, limit: int) -> list[Job]:
        now = self.clock()
        jobs = await self.store.claim(session.worker_id, limit, now, self.config.lease_ttl)
        if jobs:
            session.busy += len(jobs)
            self.counters["claimed"] += len(jobs)
            for job in jobs:
                self.metrics.job_started(job.service, now - (job.run_at or job.submitted_at))
                self._announce(job, "started", now)
        return jobs

    async def complete(self, worker_id: str, results: Sequence[Completion]) -> list[Job | Exception]:
        session = self.seen(worker_id)
        now = self.clock()
        outcomes = await self.store.complete(results, now)
        finished = 0
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                self.counters["lease_lost"] += 1
                continue
            finished += 1
            self.metrics.job_finished(outcome.service, now - (outcome.started_at or now))
            self._announce(outcome, "completed", now, with_result=True)
        self.counters["completed"] += finished
        if session is not None:
            session.busy = max(0, session.busy - len(results))
        self.kick()
        return outcomes

    async def fail(
        self, worker_id: str, job_id: int, token: int, error: str, *, retryable: bool = True
    ) -> Job:
        session = self.seen(worker_id)
        now = self.clock()
        try:
            job = await self.store.fail(job_id, token, error, now, retryable=retryable, rand=self.rand())
        finally:
            if session is not None:
                session.busy = max(0, session.busy - 1)
            self.kick()
        self._after_attempt(job, now)
        return job

    def _after_attempt(self, job: Job, now: float) -> None:
        """Count and announce what followed a failed or lost attempt."""
        if job.state in TERMINAL:
            self.counters["failed"] += 1
            self._announce(job, "failed", now)
        else:
            self.counters["retried"] += 1
            self._announce(job, "retrying", now)

    async def progress(
        self,
        worker_id: str,
        job_id: int,
        token: int,
        value: float | None,
        message: str | None,
        data: Frames | None = None,
    ) -> Job:
        """Progress of a running attempt; ``data`` is a partial result passed on to listeners
        (Majordomo PARTIAL replies) and not kept."""
        self.seen(worker_id)
        now = self.clock()
        job = await self.store.progress(job_id, token, value, message, now)
        self._announce(job, "progress", now, partial=data)
        return job

    async def release(self, worker_id: str, attempts: Sequence[tuple[int, int]]) -> None:
        session = self.seen(worker_id)
        now = self.clock()
        for job_id, token in attempts:
            with contextlib.suppress(JobqError):
                job = await self.store.release(job_id, token, now)
                self.counters["requeued"] += 1
                self._announce(job, "requeued" if job.state not in TERMINAL else "failed", now)
                if session is not None:
                    session.busy = max(0, session.busy - 1)
        self.kick()

    # ------------------------------------------------------------------ dispatch

    # ------------------------------------------------------------------ events

    def _announce(
        self,
        job: Job,
        kind: str,
        now: float,
        *,
        with_result: bool = False,
        partial: Frames | None = None,
    ) -> None:
        """Tell whoever listens. Events are only built when someone may want them; on a store
        shared by several hubs every event also goes to the other hubs."""
        if not (self._shared or self.events.wants(job.id, job.state in TERMINAL)):
            return
        event = event_of(job, kind, now, with_result=with_result, partial=partial)
        self.events.publish(event)
        if self._shared:
            self.store.broadcast(event)

    # The store calls these when other hubs sharing it change something (StoreListener).

    def on_ready(self) -> None:
        """Jobs may have become runnable through another hub."""
        self.kick()

    def on_event(self, event: JobEvent) -> None:
        """An event that happened at another hub."""
        self.events.publish(event)

    def on_stop(self, worker_id: str, job_ids: list[int]) -> None:
        """Another hub cancelled jobs that a worker connected here is running."""
        session = self.sessions.get(worker_id)
        if session is not None:
            session.link.stop(job_ids)
            self.kick()

    def kick(self) -> None:
        """Something changed that may let a worker take a job: dispatch at the end of the turn
        (everything that arrived in the turn goes out together, one message per worker)."""
        if not self.store.has_queued():
            return  # nothing could be handed out: spare the dispatcher (hot path)
        self._kicked = True
        if not self._dispatching:
            self._dispatching = True
            self.spawn(self._dispatch())

    async def _dispatch(self) -> None:
        try:
            while self._kicked and not self.draining:
                self._kicked = False
                sessions = [s for s in self.sessions.values() if s.link.pushes and s.info.slots > 0]
                if len(sessions) > 1:
                    # Rotate so that the same worker is not always offered work first.
                    shift = int(self.rand() * len(sessions))
                    sessions = sessions[shift:] + sessions[:shift]
                handed: dict[str, list[Job]] = {}
                more = True
                while more:
                    # Round-robin in chunks, so a burst is shared between the workers.
                    more = False
                    for session in sessions:
                        if self.sessions.get(session.worker_id) is not session:
                            continue
                        if not self.store.has_queued():
                            break
                        jobs = await self._claim_for(session, DISPATCH_CHUNK)
                        if jobs:
                            handed.setdefault(session.worker_id, []).extend(jobs)
                            more = more or len(jobs) == DISPATCH_CHUNK
                for worker_id, jobs in handed.items():
                    taker = self.sessions.get(worker_id)
                    if taker is not None:
                        taker.link.deliver(jobs)
        finally:
            self._dispatching = False

    # ------------------------------------------------------------------ the clock

    async def _clock_loop(self) -> None:
        while True:
            try:
                await self._on_tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("clock tick failed")
            now = self.clock()
            due = await self.store.next_due()
            delay = self.config.tick if due is None else min(self.config.tick, max(0.0, due - now))
            await asyncio.sleep(max(delay, 0.001))

    async def _on_tick(self) -> None:
        now = self.clock()
        for session in list(self.sessions.values()):
            if session.expired(now):
                session.link.disconnect("no heartbeat")
                await self.detach(session.worker_id, "expired: no heartbeat")
        result = await self.store.tick(now)
        for job, worker in result.expired:
            holder = self.sessions.get(worker) if worker is not None else None
            if holder is not None:
                holder.link.stop([job.id])
                holder.busy = max(0, holder.busy - 1)
            if job.state == "queued":
                self.counters["requeued"] += 1
                self._announce(job, "requeued", now)
            else:
                self._after_attempt(job, now)
        if result.promoted or result.expired:
            self.kick()

    async def serve_forever(self) -> None:
        await self._stopped.wait()


__all__ = ["Hub"]
