"""Operator control of the queue: pause and resume a service, and cancel or retry a filtered
selection of jobs at once (the rules are ``core/operations.py``'s).

Part of :class:`~jobq.hub.hub.Hub`: the base of ``WorkerControl`` (so the worker half may call
its hooks), each hook one line marked as this module's: ``Hub.start`` reads the paused services
(``_load_paused``), ``WorkerSide.attach`` gives each worker its paused services
(``_paused_of``), ``explain`` and ``services`` say which services are paused.

- **pause**: the store keeps the set (durable on SQLite, one set for every hub on a Redis).
  The hub takes the paused services out of every worker's profile as the store sees it
  (``WorkerInfo.paused``, as an unhealthy backend's service is), so no store's claim path, and
  no Lua script, knows about pausing: a paused service's jobs are queued, and none is handed
  out; running attempts finish. Another hub on the same Redis hears of the change on the bus
  (``on_paused``) and re-registers its own workers.
- **bulk**: the jobs a listing's filter selects, for the caller (a client's own jobs only),
  each cancelled or retried as one ``cancel`` or ``retry`` would (its own access check and
  audit line), in rounds of :data:`ROUND` that share a commit.

Pause and resume are admin only (``Action.ADMIN``) and audit-logged; a bulk action needs the
right to cancel (retry) at all, then each job is checked.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any

import msgspec

from jobq.config import HubConfig
from jobq.core.auth import LOCAL_CALLER, Action, Caller
from jobq.core.model import Job, JobFilter, WorkerInfo
from jobq.core.operations import (
    PAUSE_ACTIONS,
    BulkResult,
    BulkSkip,
    ServicePause,
    check_bulk,
    check_service,
    paused_of,
    skip_reason,
    with_paused,
)
from jobq.core.views import ExplainInfo
from jobq.errors import InvalidRequest, JobqError, Unavailable
from jobq.hub.access import Access
from jobq.hub.guard import Guard
from jobq.hub.sessions import WorkerSession
from jobq.store.base import Store

log = logging.getLogger("jobq.hub")

#: Jobs a bulk action acts on together (their changes share one commit).
ROUND = 100


class QueueControl:
    config: HubConfig
    clock: Callable[[], float]
    guard: Guard
    _store: Store
    _sessions: dict[str, WorkerSession]
    _access: Access
    _draining: bool
    #: The paused services as this hub last read them from the store (replaced, never changed).
    _paused: frozenset[str] = frozenset()
    _paused_lock: asyncio.Lock | None = None

    # Defined by the hub, used here.
    def kick(self) -> None:
        raise NotImplementedError

    def spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        raise NotImplementedError

    async def cancel(self, job_id: int, *, caller: Caller = LOCAL_CALLER) -> Job:
        raise NotImplementedError

    async def retry(self, job_id: int, *, caller: Caller = LOCAL_CALLER) -> Job:
        raise NotImplementedError

    async def list_jobs(
        self, query: JobFilter, *, blocked: bool = False, caller: Caller = LOCAL_CALLER
    ) -> list[Job]:
        raise NotImplementedError

    # ------------------------------------------------------------------ pause and resume

    async def control_service(
        self, action: str, service: str, *, caller: Caller = LOCAL_CALLER
    ) -> ServicePause:
        """``pause`` or ``resume`` the queue of ``service`` (a service nobody serves yet may be
        paused too: its jobs wait once they come)."""
        if action not in PAUSE_ACTIONS:
            raise InvalidRequest(f"unknown service action {action[:40]!r}: use pause or resume")
        self._access.operator(caller, action, f"service {service[:100]}", "services")
        check_service(service)
        paused = action == "pause"
        self.guard.audit.write("action", caller, action, f"service {service}")
        changed = await self._store.set_paused(service, paused)
        if changed:
            log.info("service %s %s by %s", service, "paused" if paused else "resumed", caller.name)
        await self._refresh_paused()
        return ServicePause(service=service, paused=paused, changed=changed)

    async def pause_service(self, service: str, *, caller: Caller = LOCAL_CALLER) -> ServicePause:
        """Its jobs are still taken, none is handed out; running attempts finish."""
        return await self.control_service("pause", service, caller=caller)

    async def resume_service(self, service: str, *, caller: Caller = LOCAL_CALLER) -> ServicePause:
        """Its jobs are handed out again."""
        return await self.control_service("resume", service, caller=caller)

    async def paused_services(self) -> list[str]:
        """The paused services, as the store has them (every hub's)."""
        return await self._store.paused_services()

    def on_paused(self) -> None:
        """Another hub sharing the store paused or resumed a service (``StoreListener``)."""
        self.spawn(self._refresh_paused())

    async def _load_paused(self) -> None:
        """At start: the paused services the store kept (hook of ``Hub.start``)."""
        self._paused = frozenset(await self._store.paused_services())

    def _paused_of(self, services: list[str]) -> list[str]:
        """A worker's paused services (hook of ``WorkerSide.attach``)."""
        return paused_of(services, self._paused)

    async def _refresh_paused(self) -> None:
        """Read the paused services and re-register every worker of this hub whose profile
        changes with them (one at a time, so an older read never wins over a newer one)."""
        if self._paused_lock is None:
            self._paused_lock = asyncio.Lock()
        async with self._paused_lock:
            paused = frozenset(await self._store.paused_services())
            if paused == self._paused:
                return
            self._paused = paused
            for session in list(self._sessions.values()):
                want = paused_of(session.info.services, paused)
                if want != session.info.paused:
                    session.info.paused = want
                    await self._store.attach_worker(session.info, session.last_seen)
        self.kick()

    def _paused_explained(self, info: ExplainInfo, service: str, workers: list[WorkerInfo]) -> ExplainInfo:
        """``explain`` of a queued job: its service's pause is the reason it waits (hook)."""
        return with_paused(info, service, workers) if service in self._paused else info

    # ------------------------------------------------------------------ bulk

    async def bulk(
        self, action: str, query: JobFilter, *, blocked: bool = False, caller: Caller = LOCAL_CALLER
    ) -> BulkResult:
        """``cancel`` or ``retry`` the jobs ``query`` selects for ``caller`` (newest first, at
        most ``query.limit``); those the action does not apply to, or that it failed on (the
        job changed meanwhile), are skipped with the reason."""
        check_bulk(action, query, blocked=blocked)
        if action == "retry" and self._draining:
            raise Unavailable("the hub is shutting down and takes no new jobs")
        if not caller.unrestricted:
            self._access.require(caller, Action.CANCEL if action == "cancel" else Action.RETRY, "jobs")
        selection = msgspec.json.encode(query).decode()[:300] + (" blocked" if blocked else "")
        self.guard.audit.write("action", caller, f"bulk {action}", f"jobs {selection}")
        jobs = await self.list_jobs(query, blocked=blocked, caller=caller)
        skipped: list[BulkSkip] = []
        todo: list[int] = []
        for job in jobs:
            reason = skip_reason(action, job)
            if reason is None:
                todo.append(job.id)
            else:
                skipped.append(BulkSkip(id=job.id, reason=reason))
        act = self.cancel if action == "cancel" else self.retry
        done = 0
        for start in range(0, len(todo), ROUND):
            ids = todo[start : start + ROUND]
            outcomes = await asyncio.gather(*(act(i, caller=caller) for i in ids), return_exceptions=True)
            for job_id, outcome in zip(ids, outcomes, strict=True):
                if isinstance(outcome, JobqError):
                    skipped.append(BulkSkip(id=job_id, reason=outcome.message))
                elif isinstance(outcome, BaseException):
                    raise outcome
                else:
                    done += 1
        found = {job.id for job in jobs}
        for job_id in dict.fromkeys(query.ids):
            if job_id not in found:
                skipped.append(BulkSkip(id=job_id, reason="no such job, or it does not match the filter"))
        if jobs:
            log.info("bulk %s by %s: %d of %d job(s)", action, caller.name, done, len(jobs))
        return BulkResult(action=action, matched=len(jobs), done=done, skipped=skipped)


__all__ = ["ROUND", "QueueControl"]
