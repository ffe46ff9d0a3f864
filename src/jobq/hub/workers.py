"""The worker half of the hub's API: attaching, attempts and their results, and the clock.

:class:`~jobq.hub.hub.Hub` is this class plus the client half; the state both halves share is
declared here and set up by ``Hub.__init__``. Every worker connection, whatever its door, is a
:class:`~jobq.hub.sessions.WorkerSession` with the attempts it holds (job id → fencing token).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from jobq.config import HubConfig
from jobq.core.auth import LOCAL_CALLER, Caller, may_serve, scoped_capabilities
from jobq.core.lease import reached
from jobq.core.model import Completion, Frames, Job, JobEvent, JobFilter, WorkerInfo
from jobq.core.states import QUARANTINED, QUEUED, RUNNING, TERMINAL
from jobq.core.validate import check_document
from jobq.core.views import Welcome, WorkerHello
from jobq.errors import InvalidRequest, JobqError, LeaseLost, NotFound, Unavailable
from jobq.hub.access import Access
from jobq.hub.control import WorkerControl
from jobq.hub.dispatch import Dispatcher
from jobq.hub.events import EventBus, event_of
from jobq.hub.guard import Guard
from jobq.hub.history import HistoryKeeper
from jobq.hub.metrics import HubMetrics
from jobq.hub.schemas import SchemaRegistry
from jobq.hub.sessions import Liveness, WorkerLink, WorkerSession
from jobq.store.base import Store

log = logging.getLogger("jobq.hub")


class WorkerSide(WorkerControl):  # drain, resume, evict: hub/control.py
    config: HubConfig
    clock: Callable[[], float]
    rand: Callable[[], float]
    metrics: HubMetrics
    _store: Store
    _events: EventBus
    _schemas: SchemaRegistry
    _sessions: dict[str, WorkerSession]
    _counters: dict[str, int]
    _shared: bool
    _draining: bool
    #: Workers that let a lease expire: no new jobs until they are heard from again.
    _suspended: set[str]
    _dispatcher: Dispatcher
    guard: Guard
    _access: Access
    _history: HistoryKeeper

    # ------------------------------------------------------------------ workers

    async def attach(
        self,
        hello: WorkerHello,
        link: WorkerLink,
        *,
        held: Sequence[tuple[int, int]] = (),
        liveness: Liveness | None = None,
        caller: Caller = LOCAL_CALLER,
    ) -> Welcome:
        """A worker connected (or reconnected). The welcome names the held attempts it may keep.
        A restricted caller serves only the services and customers its token names, and may
        not take over a worker id another principal attached."""
        if self._draining:
            raise Unavailable("the hub is shutting down")
        if not hello.id:
            raise InvalidRequest("a worker needs an id")
        if not hello.services:
            raise InvalidRequest("a worker must serve at least one service")
        if hello.slots < 0 or hello.slots > 100_000:
            raise InvalidRequest("slots must be between 0 and 100000")
        capabilities = hello.capabilities
        check_document("capabilities", capabilities)
        old = self._sessions.get(hello.id)
        if not caller.unrestricted:
            capabilities = self._worker_scope(caller, hello)
            await self._refuse_takeover(caller, hello.id, old)
        now = self.clock()
        self._schemas.advertise(hello.schemas)
        info = WorkerInfo(
            id=hello.id,
            services=hello.services,
            capabilities=capabilities,
            slots=hello.slots,
            name=hello.name,
            door=hello.door,
            schemas=hello.schemas,
            unhealthy=hello.unhealthy,
            paused=self._paused_of(hello.services),  # hub/queue_control.py: paused services
            hub=self.config.name,
            connected_at=now,
            principal=caller.name,
        )
        await self._store.attach_worker(info, now)
        kept = await self._store.adopt(info.id, held, now, self.config.lease_ttl) if held else []
        await self._release_unheld(info.id, kept, now)
        if old is not None and old.link is not link:
            old.link.disconnect("replaced by a new connection of the same worker")
        tokens = dict(held)
        self._suspended.discard(info.id)
        self._sessions[info.id] = WorkerSession(
            info=info,
            link=link,
            liveness=liveness or Liveness(self.config.worker_silence, self.config.worker_silence),
            last_seen=now,
            held={job_id: tokens[job_id] for job_id in kept},
            caller=caller,
        )
        self.kick()
        config = self.config
        return Welcome(heartbeat=config.heartbeat, lease_ttl=config.lease_ttl, kept=kept, hub=config.name)

    async def _refuse_takeover(self, caller: Caller, worker_id: str, old: WorkerSession | None) -> None:
        """Forbidden when another principal holds the worker id: its live session here or, after
        a hub restart or through another hub, the attempts the store runs under that id for it
        (``Job.holder``, recorded at claim). Once those have ended or expired, the id is free."""
        if old is not None:
            holders = {old.caller.name}
        else:
            running = await self._store.list_jobs(JobFilter(states=[RUNNING], worker=worker_id))
            holders = {job.holder for job in running if job.holder is not None}
        if holders - {caller.name}:
            what = f"worker {worker_id}"
            raise self._access.refuse(caller, "attach", what, f"{what} is attached by another principal")

    def _worker_scope(self, caller: Caller, hello: WorkerHello) -> dict[str, Any]:
        """The capabilities a restricted worker attaches with, or Forbidden."""
        reason = may_serve(caller.principal, hello.services)
        if reason is None:
            scoped = scoped_capabilities(caller.principal, hello.capabilities)
            if isinstance(scoped, dict):
                return scoped
            reason = scoped
        raise self._access.refuse(caller, "attach", f"worker {hello.id}", reason)

    def _holds(self, worker_id: str, job_id: int, token: int) -> bool:
        """Whether this worker's session holds the attempt. With authentication on, only the
        connection that holds an attempt may finish it; without, any valid fencing token is
        taken (a result that crossed a hub restart still lands)."""
        if not self.guard.enabled:
            return True
        session = self._sessions.get(worker_id)
        return session is not None and session.held.get(job_id) == token

    async def _release_unheld(self, worker_id: str, kept: Sequence[int], now: float) -> None:
        """Attempts the store still runs for this worker id but the (re)connecting worker did
        not claim back are lost to it: they go back to the queue now, instead of holding a
        slot while its heartbeats renew their leases. The worker (the same process: a restarted
        one has a new id) never received them, so they cost the jobs nothing."""
        running = next((w.running for w in await self._store.list_workers() if w.id == worker_id), [])
        for job_id in set(running) - set(kept):
            job = await self._store.get(job_id)
            if job is None or job.state is not RUNNING or job.worker != worker_id:
                continue
            with contextlib.suppress(JobqError):
                self._count_released(await self._store.release(job_id, job.token, now), now, False)
        if running:
            self.kick()

    def _count_released(self, job: Job, now: float, lost: bool) -> None:
        """Count and announce a job given back by its worker unstarted, or ``lost`` with its
        worker (gone, or its lease expired): re-queued, or quarantined when that was the last
        loss its budget allows (``core/retry.py``). A lost worker never fails a job."""
        if lost:
            self._counters["lost"] += 1
        if job.state is QUARANTINED:
            self._counters["quarantined"] += 1
            log.warning("job %d quarantined: %s", job.id, job.error)
            self._announce(job, "quarantined", now)
        else:
            self._counters["requeued"] += 1
            self._announce(job, "requeued", now)

    async def detach(self, worker_id: str, reason: str = "disconnected") -> None:
        """The worker is gone: its running jobs go back to the front of the queue, each a lost
        attempt (the ``max_losses`` budget, never ``max_attempts``), except those it most likely
        never received (``_unreached_after``)."""
        session = self._sessions.pop(worker_id, None)
        self._suspended.discard(worker_id)
        now = self.clock()
        unreached = self._unreached_after(session)
        released = await self._store.detach_worker(worker_id, now, unreached)
        if session is not None:
            log.info("worker %s left (%s); %d job(s) re-queued", worker_id, reason, len(released))
        for job in released:
            self._count_released(job, now, reached(job.started_at, unreached))
        if released:
            self._attempt_ended(worker_id, False)  # hub/control.py: it died holding jobs
            self.kick()

    @staticmethod
    def _unreached_after(session: WorkerSession | None) -> float | None:
        """For a worker found gone: attempts handed to it after this time reached nobody (it
        had been silent for half its liveness window by then, while a live worker heartbeats
        several times in one), so losing them costs the jobs nothing (``core/lease.reached``)."""
        if session is None or session.liveness.idle is None:
            return None
        return session.last_seen + session.liveness.idle / 2

    def seen(self, worker_id: str) -> bool:
        """A sign of life from the worker; False when this hub does not know it."""
        session = self._sessions.get(worker_id)
        if session is None:
            return False
        session.last_seen = self.clock()
        self._alive(worker_id)
        return True

    def _alive(self, worker_id: str) -> None:
        """The worker was heard from: if it had let a lease expire, it takes jobs again."""
        if self._suspended and worker_id in self._suspended:
            self._suspended.discard(worker_id)
            log.info("worker %s is heard from again: it takes jobs again", worker_id)
            self.kick()

    def _suspend(self, worker_id: str, job: Job) -> None:
        """The worker let the lease of ``job`` expire (stalled, cut off, or its heartbeats do
        not arrive): it takes no new jobs until it is heard from again."""
        if worker_id not in self._suspended:
            self._suspended.add(worker_id)
            log.warning(
                "worker %s let the lease of job %d expire: no new jobs until it is heard from",
                worker_id,
                job.id,
            )

    async def heartbeat(
        self,
        worker_id: str,
        metrics: dict[str, float] | None = None,
        unhealthy: dict[str, str] | None = None,
    ) -> bool:
        """Renew the worker's leases, and take note of which of its services' backends are
        down (``unhealthy``: service → reason; None: unchanged). False when the hub does not
        know the worker."""
        session = self._sessions.get(worker_id)
        if session is None:
            return False
        session.last_seen = self.clock()
        self._alive(worker_id)
        if unhealthy is not None and unhealthy != session.info.unhealthy:
            session.info.unhealthy = dict(unhealthy)
            await self._store.attach_worker(session.info, session.last_seen)  # its profile changes
            self.kick()
        await self._store.touch_worker(worker_id, session.last_seen, self.config.lease_ttl, metrics)
        return True

    async def set_slots(self, worker_id: str, slots: int) -> None:
        session = self._sessions.get(worker_id)
        if session is None:
            raise NotFound(f"no worker {worker_id}")
        session.info.slots = max(0, slots)
        await self._store.attach_worker(session.info, self.clock())
        self.kick()

    async def claim(self, worker_id: str, limit: int) -> list[Job]:
        """Pull-style doors ask for work here; push doors are served by the dispatcher."""
        if self._draining:
            return []
        session = self._sessions.get(worker_id)
        if session is None:
            raise NotFound(f"no worker {worker_id}")
        session.last_seen = self.clock()
        self._alive(worker_id)
        return await self._claim_for(session, limit)

    async def _claim_for(self, session: WorkerSession, limit: int) -> list[Job]:
        if session.worker_id in self._drained:  # hub/control.py: a drained worker gets no new jobs
            return []
        if session.worker_id in self._suspended:  # it let a lease expire: nothing until heard from
            return []
        now = self.clock()
        jobs = await self._store.claim(session.worker_id, limit, now, self.config.lease_ttl)
        if jobs:
            self._counters["claimed"] += len(jobs)
            for job in jobs:
                session.held[job.id] = job.token
                self.metrics.job_started(job.service, now - (job.run_at or job.submitted_at))
                self._announce(job, "started", now)
        return jobs

    def _finished(self, worker_id: str, job_ids: Iterable[int]) -> None:
        """The worker no longer runs these attempts (a sign of life too)."""
        session = self._sessions.get(worker_id)
        if session is not None:
            session.last_seen = self.clock()
            self._alive(worker_id)
            for job_id in job_ids:
                session.held.pop(job_id, None)

    async def complete(self, worker_id: str, results: Sequence[Completion]) -> list[Job | Exception]:
        now = self.clock()
        if self.guard.enabled:
            return await self._complete_held(worker_id, results, now)
        self._finished(worker_id, (result.job_id for result in results))
        outcomes = await self._store.complete(results, now)
        return self._completed(outcomes, now)

    async def _complete_held(
        self, worker_id: str, results: Sequence[Completion], now: float
    ) -> list[Job | Exception]:
        """Results of the attempts this worker's session holds; the others are refused."""
        holds = [self._holds(worker_id, r.job_id, r.token) for r in results]
        held = [r for r, ok in zip(results, holds, strict=True) if ok]
        self._finished(worker_id, (result.job_id for result in held))
        stored = iter(await self._store.complete(held, now) if held else [])
        outcomes: list[Job | Exception] = [
            next(stored) if ok else LeaseLost(self._not_held(r.job_id, r.token))
            for r, ok in zip(results, holds, strict=True)
        ]
        return self._completed(outcomes, now)

    @staticmethod
    def _not_held(job_id: int, token: int) -> str:
        return f"attempt {token} of job {job_id} is not held by this connection"

    def _completed(self, outcomes: list[Job | Exception], now: float) -> list[Job | Exception]:
        finished = 0
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                self._counters["lease_lost"] += 1
                continue
            finished += 1
            if self._streaks:  # hub/control.py: a success resets the worker's count of failures
                self._attempt_ended(outcome.worker, True)
            self.metrics.job_finished(outcome.service, now - (outcome.started_at or now))
            self._announce(outcome, "completed", now, with_result=True)
        self._counters["completed"] += finished
        self.kick()
        return outcomes

    async def fail(
        self,
        worker_id: str,
        job_id: int,
        token: int,
        error: str,
        *,
        retryable: bool = True,
        traceback: str | None = None,
    ) -> Job:
        """A failed attempt; ``traceback`` (a Python handler's, from the worker SDK) is kept with
        it, cut to ``TRACEBACK_LIMIT`` bytes (``Job.attempt_errors``)."""
        now = self.clock()
        if not self._holds(worker_id, job_id, token):
            raise LeaseLost(self._not_held(job_id, token))
        self._finished(worker_id, (job_id,))
        try:
            job = await self._store.fail(
                job_id, token, error, now, retryable=retryable, rand=self.rand(), traceback=traceback
            )
        finally:
            self.kick()
        self._attempt_ended(worker_id, False if retryable else None)  # hub/control.py: auto drain
        self._after_attempt(job, now)
        return job

    def _after_attempt(self, job: Job, now: float) -> None:
        """Count and announce what followed a failed or lost attempt."""
        if job.state in TERMINAL:
            self._counters["failed"] += 1
            self._announce(job, "failed", now)
        else:
            self._counters["retried"] += 1
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
        if not self._holds(worker_id, job_id, token):
            raise LeaseLost(self._not_held(job_id, token))
        self.seen(worker_id)
        now = self.clock()
        job = await self._store.progress(job_id, token, value, message, now)
        self._announce(job, "progress", now, partial=data)
        return job

    async def release(self, worker_id: str, attempts: Sequence[tuple[int, int]]) -> None:
        """The worker gives these attempts back unstarted (draining, or it cannot run them)."""
        now = self.clock()
        for job_id, token in attempts:
            if not self._holds(worker_id, job_id, token):
                continue
            with contextlib.suppress(JobqError):
                self._count_released(await self._store.release(job_id, token, now), now, False)
                self._finished(worker_id, (job_id,))
        self.kick()

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
        self._history.note(job, kind, now)  # hub/history.py: counted in memory, flushed later
        ended = job.state in TERMINAL
        if ended and job.group is not None:
            self._group_touched((job.group,))  # hub/groups.py: its group's news, once a turn
        if not (self._shared or self._events.wants(job.id, ended)):
            return
        event = event_of(job, kind, now, with_result=with_result, partial=partial)
        self._events.publish(event)
        if self._shared:
            self._store.broadcast(event)

    def _group_touched(self, group_ids: Iterable[int]) -> None:
        """A member of each of these groups ended (GroupSide, hub/groups.py, hears of it)."""

    # The store calls these when other hubs sharing it change something (StoreListener).

    def on_ready(self) -> None:
        """Jobs may have become runnable through another hub."""
        self.kick()

    def on_event(self, event: JobEvent) -> None:
        """An event that happened at another hub."""
        self._events.publish(event)

    def on_stop(self, worker_id: str, job_ids: list[int]) -> None:
        """Another hub cancelled jobs that a worker connected here is running."""
        if self._stop_here(worker_id, job_ids):
            self.kick()

    def kick(self) -> None:
        """Something changed that may let a worker take a job: dispatch at the end of the turn."""
        self._dispatcher.kick()

    # ------------------------------------------------------------------ the clock

    async def _clock_loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("clock tick failed")
            now = self.clock()
            due = await self._store.next_due()
            delay = self.config.tick if due is None else min(self.config.tick, max(0.0, due - now))
            await asyncio.sleep(max(delay, 0.001))

    async def tick(self) -> None:
        """What time does: silent workers expire (their jobs go back to the front of the
        queue), scheduled jobs become due, leases and timeouts expire, old jobs are retired.
        The clock task calls it; tests call it with an injected clock."""
        self.guard.refresh()  # a revoked token stops working within a tick or two
        now = self.clock()
        for session in list(self._sessions.values()):
            if session.expired(now):
                session.link.disconnect("no heartbeat")
                await self.detach(session.worker_id, "expired: no heartbeat")
        result = await self._store.tick(now)
        for job, worker in result.expired:
            self._attempt_ended(worker, False)  # hub/control.py: timed out, or its lease lost
            holder = self._sessions.get(worker) if worker is not None else None
            if holder is not None:
                holder.link.stop([job.id])
                holder.held.pop(job.id, None)
            if job.state in (QUEUED, QUARANTINED):  # its lease expired: a lost attempt
                if holder is not None:
                    self._suspend(holder.worker_id, job)
                self._count_released(job, now, True)
            else:  # it overran its timeout: a failed attempt
                self._after_attempt(job, now)
        if result.promoted or result.expired:
            self.kick()


__all__ = ["WorkerSide"]
