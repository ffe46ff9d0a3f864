"""The hub: the one application API that every door calls, over one store.

It owns what is about connections and time: worker sessions and their liveness, pushing work
to workers with free slots (credit-based, like Majordomo's READY), the clock that makes
scheduled jobs due and leases expire, and the event bus clients subscribe to. Rules about jobs
live in the core and are applied by the store; the figures every door shows (stats, health,
queue positions, explain) are the core's functions (``core/views.py``) filled in here.

A door only translates: it never touches the store, the bus, the sessions or the counters,
which are private to this class.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

import msgspec

from jobq.config import HubConfig
from jobq.core.auth import LOCAL_CALLER, Action, Caller, Principal, scoped_spec
from jobq.core.matching import shape_of
from jobq.core.model import Job, JobFilter, JobSpec, Submitted
from jobq.core.states import TERMINAL
from jobq.core.validate import validate_spec
from jobq.core.views import (
    queue_positions,
)
from jobq.errors import InvalidRequest, JobqError, NotFound, Timeout, Unavailable
from jobq.hub.access import Access, scoped, without_data
from jobq.hub.dependencies import check_prerequisites, linked, submit_linked
from jobq.hub.dispatch import Dispatcher
from jobq.hub.events import EventBus, Subscriber, event_of
from jobq.hub.groups import GroupSide
from jobq.hub.guard import Guard
from jobq.hub.history import HistoryKeeper
from jobq.hub.metrics import HubMetrics
from jobq.hub.schedules import ScheduleSide
from jobq.hub.schemas import SchemaRegistry
from jobq.hub.sessions import WorkerSession
from jobq.protocol.inflight import InflightBudget
from jobq.store.base import Store

log = logging.getLogger("jobq.hub")

#: One outcome per submitted spec: the job, or why that spec was refused.
SubmitOutcome = Submitted | JobqError


# cron schedules: hub/schedules.py (on ClusterViews); groups: hub/groups.py
class Hub(GroupSide, ScheduleSide):
    """The one application API: the client half is here, the worker half in ``WorkerSide``."""

    def __init__(
        self,
        store: Store,
        config: HubConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._store = store
        self.config = config or HubConfig()
        self.clock = clock
        self.rand = rand
        self.metrics = HubMetrics()
        self._events = EventBus()
        self._schemas = SchemaRegistry()
        self._sessions: dict[str, WorkerSession] = {}
        #: Several hubs share the store: events and cancellations cross between them.
        self._shared = bool(getattr(store, "shared", False))
        self._draining = False
        self._suspended: set[str] = set()
        self._started_at = 0.0
        self._counters: dict[str, int] = {
            "submitted": 0,
            "completed": 0,
            "failed": 0,
            "retried": 0,
            "cancelled": 0,
            "requeued": 0,
            "lost": 0,
            "quarantined": 0,
            "claimed": 0,
            "lease_lost": 0,
        }
        self._dispatcher = Dispatcher(
            store, self._sessions, self._claim_for, self.spawn, rand, lambda: self._draining
        )
        self._timer: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._stopped = asyncio.Event()
        self.guard = Guard(self.config.auth, self.config.audit)
        #: Bytes of partly received messages, every door together (each door reserves here).
        self.inflight = InflightBudget(self.config.max_inflight)
        self._access = Access(self.guard.audit)
        self.guard.on_revoke(self._revoked)
        self._init_control()  # drained workers, failure counts: hub/control.py
        self._history = HistoryKeeper(store, clock)  # counts per bucket, flushed: hub/history.py

    # ------------------------------------------------------------------ identity

    def authenticate(
        self, token: str | None, *, door: str, peer: str = "", trusted: Principal | None = None
    ) -> Caller:
        """The caller behind what a peer presented (see ``hub/guard.py``); raises Unauthorized."""
        return self.guard.authenticate(token, door=door, peer=peer, trusted=trusted)

    def on_revoke(self, listener: Callable[[set[str]], None]) -> None:
        """Doors close what they opened for a token once it is revoked (its names are given)."""
        self.guard.on_revoke(listener)

    def _revoked(self, names: set[str]) -> None:
        for session in list(self._sessions.values()):
            if session.caller.name in names:
                session.link.disconnect("its token was revoked")
                self.spawn(self.detach(session.worker_id, "token revoked"))

    # ------------------------------------------------------------------ life cycle

    @property
    def draining(self) -> bool:
        """True once the hub shuts down: no new jobs, no new work handed out."""
        return self._draining

    @property
    def uptime(self) -> float:
        """Seconds since the hub started, without asking the store (for liveness probes)."""
        return max(0.0, self.clock() - self._started_at)

    @property
    def store_url(self) -> str:
        return self._store.url

    async def start(self) -> None:
        self._started_at = self.clock()
        await self._store.open(self._started_at, lease_ttl=self.config.lease_ttl)
        await self._load_paused()  # hub/queue_control.py: paused services
        self._store.listen(self)
        for customer, weight in self.config.customer_weights.items():
            await self._store.set_customer_weight(customer, weight)
        self._timer = asyncio.create_task(self._clock_loop(), name="jobq-hub-clock")
        self._history.start()
        self.kick()

    async def stop(self, grace: float | None = None) -> None:
        """Stop taking submits and work, let running jobs finish for up to ``grace`` seconds,
        then close the store. Running jobs left over are re-queued after the next start (or
        kept by their workers if they reconnect in time)."""
        self._draining = True
        grace = self.config.grace if grace is None else grace
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self._running_count():
            await asyncio.sleep(0.05)
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
        for session in list(self._sessions.values()):
            session.link.disconnect("the hub is shutting down")
        for task in list(self._tasks):
            task.cancel()
        await self._history.stop()  # the last flush, before the store closes
        await self._store.close()
        self.guard.audit.close()
        self._stopped.set()

    def _running_count(self) -> int:
        """Jobs this hub's workers are running (on a shared store, other hubs' are not ours to
        wait for)."""
        return sum(len(session.held) for session in self._sessions.values())

    def spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        """Run a coroutine in the background, keeping a reference so it is not collected."""
        task: asyncio.Task[object] = asyncio.get_running_loop().create_task(coro)  # (no isfuture check)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, JobqError):
                log.error("background task failed", exc_info=exc)

    async def serve_forever(self) -> None:
        await self._stopped.wait()

    # ------------------------------------------------------------------ clients

    def _check_open(self) -> None:
        if self._draining:
            raise Unavailable("the hub is shutting down and takes no new jobs")

    async def submit(self, specs: Sequence[JobSpec], *, caller: Caller = LOCAL_CALLER) -> list[SubmitOutcome]:
        """One outcome per spec, in order: a refused spec fails alone, the others are created
        (together, in one commit)."""
        self._check_open()
        if not specs:
            return []
        refused: dict[int, JobqError] = {}
        if not caller.unrestricted:
            specs, refused = self._scoped(specs, caller)
            await check_prerequisites(specs, refused, lambda job_id: self.get(job_id, caller=caller))
        now = self.clock()
        valid = self._all_valid(specs, True)  # None: some spec has a ref or prerequisites
        if valid is None and linked(specs):  # specs naming each other by ref: all or nothing
            done = await submit_linked(specs, refused, self.check, lambda made: self._store.submit(made, now))
        elif refused or not (self._all_valid(specs) if valid is None else valid):
            done = await self._submit_valid_ones(specs, now, refused)  # the rare path: some are refused
        else:
            done = await self._store_submit(specs, now)
        fresh = 0
        for item in done:
            if type(item) is Submitted and item.created:
                fresh += 1
                self._announce(item.job, "submitted", now)
        if fresh:
            self._counters["submitted"] += fresh
            self.kick()
        return done

    def _all_valid(self, specs: Sequence[JobSpec], plain: bool = False) -> bool | None:
        """Whether every spec passes validation (the common case, checked without per-spec
        bookkeeping); ``plain``: None instead of False, and as soon as a spec has a ref or
        prerequisites (the caller looks for links: hub/dependencies.py)."""
        limit, schemas = self.config.max_payload, self._schemas
        try:
            for spec in specs:
                if plain and (spec.ref is not None or spec.after):
                    return None
                validate_spec(spec, limit)
                schemas.check(spec)
        except JobqError:
            return None if plain else False
        return True

    def _scoped(self, specs: Sequence[JobSpec], caller: Caller) -> tuple[list[JobSpec], dict[int, JobqError]]:
        """A restricted caller's specs as its principal may submit them (owner and customer
        filled in), and the reasons of those it may not submit, by index."""
        refused: dict[int, JobqError] = {}
        scoped: list[JobSpec] = []
        principal = caller.principal
        for index, spec in enumerate(specs):
            allowed = scoped_spec(principal, spec)
            if isinstance(allowed, str):
                refused[index] = self._access.refuse(caller, "submit", spec.service, allowed)
                scoped.append(spec)
            else:
                scoped.append(allowed)
        return scoped, refused

    async def _submit_valid_ones(
        self, specs: Sequence[JobSpec], now: float, refused: dict[int, JobqError] | None = None
    ) -> list[SubmitOutcome]:
        """Each refused spec gets its reason, the others are created together."""
        outcomes: list[SubmitOutcome | None] = []
        valid: list[JobSpec] = []
        for index, spec in enumerate(specs):
            if refused and index in refused:
                outcomes.append(refused[index])
                continue
            try:
                validate_spec(spec, self.config.max_payload)
                self._schemas.check(spec)
            except JobqError as exc:
                outcomes.append(exc.with_traceback(None))  # no cycle through this frame
            else:
                outcomes.append(None)
                valid.append(spec)
        created = iter(await self._store_submit(valid, now)) if valid else iter(())
        return [next(created) if outcome is None else outcome for outcome in outcomes]

    async def _store_submit(self, specs: Sequence[JobSpec], now: float) -> list[SubmitOutcome]:
        """The store refuses a whole batch for one spec it cannot take (a requirement it cannot
        index): then each spec is tried alone, so only that one fails."""
        try:
            return list(await self._store.submit(specs, now))
        except JobqError:
            if len(specs) == 1:
                raise
        outcomes: list[SubmitOutcome] = []
        for spec in specs:
            try:
                outcomes.extend(await self._store.submit([spec], now))
            except JobqError as exc:
                outcomes.append(exc.with_traceback(None))  # no cycle through this frame
        return outcomes

    async def submit_one(self, spec: JobSpec, *, caller: Caller = LOCAL_CALLER) -> Submitted:
        """Submit one spec; raises the reason it was refused."""
        [outcome] = await self.submit([spec], caller=caller)
        if isinstance(outcome, JobqError):
            raise outcome
        return outcome

    def check(self, spec: JobSpec) -> None:
        """Raise the reason ``submit`` would refuse ``spec`` (the model's rules, this hub's
        limits, an advertised schema, requirements the store could not index), creating
        nothing: for a door to refuse a bad setting, such as the service its jobs go to, when
        it starts rather than on every submit, or to take a batch all or none."""
        validate_spec(spec, self.config.max_payload)
        self._schemas.check(spec)
        shape_of(spec.service, spec.requires, spec.must_not, spec.customer_id, spec.isolation)

    async def submit_placed(
        self, specs: Sequence[JobSpec], *, caller: Caller = LOCAL_CALLER
    ) -> list[tuple[SubmitOutcome, int | None]]:
        """Submit, each outcome with the job's place in its service's queue. The queue is read
        before the submit, so nothing waits between the submit and the caller's reply: the
        reply goes out before any event of the new jobs."""
        before = await self._store.stats()
        outcomes = await self.submit(specs, caller=caller)
        made = [(o.job, o.created) for o in outcomes if isinstance(o, Submitted)]
        positions = iter(queue_positions(before, made))
        return [(o, next(positions) if isinstance(o, Submitted) else None) for o in outcomes]

    async def get(self, job_id: int, *, caller: Caller = LOCAL_CALLER) -> Job:
        job = await self._store.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        return self._access.readable(caller, job)

    async def find(self, job_id: int, *, caller: Caller = LOCAL_CALLER) -> Job | None:
        """The job, or None when there is no such job (for doors that answer "unknown")."""
        job = await self._store.get(job_id)
        return None if job is None else self._access.readable(caller, job)

    async def wait(self, job_id: int, timeout: float | None, *, caller: Caller = LOCAL_CALLER) -> Job:
        """The job once it has ended; raises Timeout after ``timeout`` seconds."""
        if timeout is not None and not 0 <= timeout < math.inf:  # NaN fails both
            raise InvalidRequest("timeout must be a non-negative number of seconds")
        timeout = self.config.max_wait if timeout is None else min(timeout, self.config.max_wait)
        waiter = self._events.waiter(job_id)
        try:
            job = await self.get(job_id, caller=caller)
            if job.state in TERMINAL:
                return job
            try:
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
            except TimeoutError:
                raise Timeout(f"job {job_id} did not end within {timeout:g}s") from None
            return await self.get(job_id, caller=caller)
        finally:
            self._events.drop_waiter(job_id, waiter)

    async def cancel(self, job_id: int, *, caller: Caller = LOCAL_CALLER) -> Job:
        if not caller.unrestricted:
            self._access.touchable(caller, await self.get(job_id), Action.CANCEL)
        self.guard.audit.write("action", caller, "cancel", f"job {job_id}")
        now = self.clock()
        job, worker = await self._store.cancel(job_id, now)
        self._counters["cancelled"] += 1
        if worker is not None:
            self._stop_attempts(worker, [job_id])  # hub/control.py
        self._announce(job, "cancelled", now)
        return job

    async def retry(self, job_id: int, *, caller: Caller = LOCAL_CALLER) -> Job:
        self._check_open()
        if not caller.unrestricted:
            self._access.touchable(caller, await self.get(job_id), Action.RETRY)
        self.guard.audit.write("action", caller, "retry", f"job {job_id}")
        now = self.clock()
        job = await self._store.retry(job_id, now)
        self._announce(job, "requeued", now)
        self.kick()
        return job

    async def list_jobs(
        self, query: JobFilter, *, blocked: bool = False, caller: Caller = LOCAL_CALLER
    ) -> list[Job]:
        if query.limit < 0 or query.offset < 0 or query.limit > 10_000:
            raise InvalidRequest("limit must be 0..10000 and offset non-negative")
        if query.before_id is not None and not 0 < query.before_id < 2**63:  # cursor paging
            raise InvalidRequest("before must be a job id (1 .. 2**63-1)")
        if not caller.unrestricted:
            query = self._access.scoped_query(caller, query)
        if blocked:
            ids = [job_id for job_id, _ in await self._store.blocked()]
            if not ids:
                return []
            scope = msgspec.structs.replace(query, ids=ids[::-1], limit=10_000, offset=0)
            found = await self._store.list_jobs(scope)
            jobs = sorted(found, key=lambda job: job.id, reverse=True)[
                query.offset : query.offset + query.limit
            ]
        else:
            jobs = await self._store.list_jobs(query)
        if caller.principal.sees_payloads:
            return jobs
        return [without_data(job) for job in jobs]

    # ------------------------------------------------------------------ listening

    def watch(
        self,
        subscriber: Subscriber,
        ids: Iterable[int],
        *,
        ends_only: bool = False,
        caller: Caller = LOCAL_CALLER,
    ) -> None:
        """Events of these jobs until each ends (with ``ends_only``, just the final one); a
        restricted caller hears only of the jobs it may see."""
        self._events.watch(scoped(subscriber, caller), ids, ends_only=ends_only)

    def watch_all(self, subscriber: Subscriber, *, caller: Caller = LOCAL_CALLER) -> None:
        if not caller.unrestricted:
            self._access.require(caller, Action.READ, "events")
        self._events.subscribe_all(scoped(subscriber, caller))

    def unwatch(self, subscriber: Subscriber, ids: Iterable[int] | None = None) -> None:
        """Stop events for ``ids`` (or everything) to this subscriber."""
        self._events.unsubscribe(subscriber, ids)

    def watch_ends(
        self, subscriber: Subscriber, jobs: Iterable[Job], *, caller: Caller = LOCAL_CALLER
    ) -> None:
        """The end of each job: later for those still live, now (pushed at once, with results)
        for those that already ended."""
        jobs = list(jobs)
        live = [job.id for job in jobs if job.state not in TERMINAL]
        self._events.watch(scoped(subscriber, caller), live, ends_only=True)
        ended = [job for job in jobs if job.state in TERMINAL]
        if ended:
            now = self.clock()
            ends = [event_of(job, job.state.value, now, with_result=True) for job in ended]
            scoped(subscriber, caller).push(ends)


__all__ = ["Hub", "SubmitOutcome"]
