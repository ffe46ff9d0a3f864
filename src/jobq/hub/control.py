"""Operator control of workers (drain, resume, evict) and the automatic drain.

Part of :class:`~jobq.hub.hub.Hub`: ``WorkerSide`` builds on this class, ``Hub.__init__`` calls
``_init_control``, and the worker half calls two hooks, each one line marked as this module's:
``_claim_for`` hands a drained worker nothing, and ``_attempt_ended`` hears how each attempt of
a worker ended. ``_stop_attempts`` tells a worker, wherever it is attached, to stop cancelled
attempts (``Hub.cancel``, ``GroupSide.cancel_group``; ``on_stop`` for another hub's).

- **drain**: the worker (by id) takes no new jobs. The one claim path of the hub
  (``WorkerSide._claim_for``) is behind both the dispatcher's pushes and the pull-style
  ``claim`` of the line and WebSocket doors, so no door hands it work; what it runs, it
  finishes. The mark lives in this hub while it runs: a drained worker that reconnects is
  still drained.
- **resume** lifts the mark (and starts its count of failures again).
- **evict** drains the worker and detaches it now: its running attempts go back to the queue
  as any lost worker's do (``WorkerSide.detach``; a worker loss, not a handler failure), and it
  is told to stop them and to go (``link.disconnect``). If it says hello again, it is attached
  drained.
- **automatic drain**: a worker whose attempts failed (its handler failed them, retryably, or
  they timed out), or were lost with it (it died, vanished, or lost a lease) ``auto_drain``
  times in a row (``HubConfig.auto_drain``, ``--auto-drain``, default 5; 0: never) is drained.
  A completed attempt starts the count again. A non-retryable failure is a verdict on the job,
  not on the worker: it neither counts nor resets.

Only an admin may drain, resume or evict (``Action.ADMIN``). Every change is a
:class:`~jobq.core.views.WorkerNotice` handed to the listeners of :meth:`on_worker_notice`
(the HTTP door tells monitors), a log line (the worker's id and the reason: never a payload or a
token) and, when an operator made it, a line of the audit log.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

import msgspec

from jobq.core.auth import LOCAL_CALLER, Caller
from jobq.core.model import WorkerInfo
from jobq.core.views import WorkerNotice
from jobq.errors import Conflict, InvalidRequest, NotFound
from jobq.hub.queue_control import QueueControl

log = logging.getLogger("jobq.hub")

WorkerAction = Literal["drain", "resume", "evict"]
#: What an operator may do to a worker.
ACTIONS: tuple[WorkerAction, ...] = ("drain", "resume", "evict")
#: Workers whose drain mark, or count of failures, this hub remembers at most (the least
#: recently changed are forgotten first: ids of workers that never come back).
REMEMBERED = 10_000
#: Longest reason an operator may give (characters).
MAX_REASON = 200

NoticeListener = Callable[[WorkerNotice], None]
V = TypeVar("V")


class WorkerControl(QueueControl):  # pause services, bulk actions: hub/queue_control.py
    # What it uses of the hub beyond QueueControl's.
    _counters: dict[str, int]
    _shared: bool
    #: Drained workers: id → why.
    _drained: dict[str, str]
    #: Failed or lost attempts in a row, by worker id.
    _streaks: dict[str, int]
    #: Workers being evicted now (the loss of their attempts is not theirs to count).
    _evicting: set[str]
    _notice_listeners: list[NoticeListener]

    def _init_control(self) -> None:
        self._drained = {}
        self._streaks = {}
        self._evicting = set()
        self._notice_listeners = []

    # Defined by WorkerSide, used here.
    async def detach(self, worker_id: str, reason: str = "disconnected") -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ the API

    def on_worker_notice(self, listener: NoticeListener) -> None:
        """Call ``listener`` with every change of a worker's standing (drained, resumed,
        evicted), automatic or not. It must not block."""
        self._notice_listeners.append(listener)

    async def control_worker(
        self, action: str, worker: str, *, reason: str | None = None, caller: Caller = LOCAL_CALLER
    ) -> WorkerNotice:
        """``drain``, ``resume`` or ``evict`` the worker (its id, or a name only it has)."""
        if action == "drain":
            return await self.drain_worker(worker, reason, caller=caller)
        if action == "resume":
            return await self.resume_worker(worker, caller=caller)
        if action == "evict":
            return await self.evict_worker(worker, caller=caller)
        raise InvalidRequest(f"unknown worker action {action[:40]!r}: use drain, resume or evict")

    async def drain_worker(
        self, worker: str, reason: str | None = None, *, caller: Caller = LOCAL_CALLER
    ) -> WorkerNotice:
        """No new jobs for the worker; it finishes what it runs. Drained again, it keeps the
        new reason."""
        self._may_control(caller, "drain", worker)
        worker_id = await self._resolve(worker)
        why = " ".join((reason or "").split())[:MAX_REASON] or f"drained by {caller.name}"
        self.guard.audit.write("action", caller, "drain", f"worker {worker_id}", why)
        return self._drain(worker_id, why, by=caller.name)

    async def resume_worker(self, worker: str, *, caller: Caller = LOCAL_CALLER) -> WorkerNotice:
        """The worker takes jobs again (a worker that is not drained is left as it is)."""
        self._may_control(caller, "resume", worker)
        worker_id = await self._resolve(worker)
        self.guard.audit.write("action", caller, "resume", f"worker {worker_id}")
        was = self._drained.pop(worker_id, None)
        self._streaks.pop(worker_id, None)
        if was is not None:
            log.info("worker %s resumed by %s (was drained: %s)", worker_id, caller.name, was)
        notice = WorkerNotice(kind="resumed", worker=worker_id, at=self.clock(), by=caller.name)
        self._notify(notice)
        self.kick()
        return notice

    async def evict_worker(self, worker: str, *, caller: Caller = LOCAL_CALLER) -> WorkerNotice:
        """Drain the worker and detach it now: its running attempts go back to the queue, and
        it is told to stop them and to go."""
        self._may_control(caller, "evict", worker)
        worker_id = await self._resolve(worker, connected=True)
        session = self._sessions[worker_id]
        why = f"evicted by {caller.name}"
        self.guard.audit.write("action", caller, "evict", f"worker {worker_id}")
        self._remember(self._drained, worker_id, why)
        running = list(session.held)
        self._evicting.add(worker_id)
        try:
            await self.detach(worker_id, why)
        finally:
            self._evicting.discard(worker_id)
        if running:
            session.link.stop(running)
        session.link.disconnect("evicted by an operator")
        log.warning("worker %s %s; %d attempt(s) back to the queue", worker_id, why, len(running))
        notice = WorkerNotice(
            kind="evicted",
            worker=worker_id,
            at=self.clock(),
            drained=why,
            by=caller.name,
            requeued=len(running),
        )
        self._notify(notice)
        return notice

    # ------------------------------------------------------------------ hooks of the worker half

    def _attempt_ended(self, worker_id: str | None, ok: bool | None) -> None:
        """An attempt of this worker completed (``ok``), or failed, timed out or was lost with
        the worker: count the failures in a row, and drain the worker at ``auto_drain``. None:
        a non-retryable failure, which says nothing of the worker."""
        if not worker_id or ok is None:
            return
        streaks = self._streaks
        if ok:
            if streaks:
                streaks.pop(worker_id, None)
            return
        if worker_id in self._evicting:
            return
        streak = streaks.get(worker_id, 0) + 1
        self._remember(streaks, worker_id, streak)
        limit = self.config.auto_drain
        if limit > 0 and streak >= limit and worker_id not in self._drained:
            self._counters["auto_drained"] = self._counters.get("auto_drained", 0) + 1
            self._drain(worker_id, f"automatic: {streak} failed or lost attempts in a row", by=None)

    def _marked(self, workers: Sequence[WorkerInfo]) -> list[WorkerInfo]:
        """Workers as listings show them: those drained here with the reason."""
        drained = self._drained
        if not drained:
            return list(workers)
        return [msgspec.structs.replace(w, drained=drained[w.id]) if w.id in drained else w for w in workers]

    def _undrained(self, eligible: list[str], ineligible: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """``explain``'s eligible workers less the drained ones, which are ineligible: why."""
        drained = self._drained
        if not drained or not any(worker in drained for worker in eligible):
            return eligible, ineligible
        out = dict(ineligible)
        for worker in eligible:
            if worker in drained:
                out[worker] = f"drained: {drained[worker]}"
        return [worker for worker in eligible if worker not in drained], out

    # ------------------------------------------------------------------ stopping attempts

    def _stop_here(self, worker_id: str, job_ids: list[int]) -> bool:
        """Tell a worker attached to this hub to stop these attempts (it no longer holds them);
        False if it is not attached here."""
        session = self._sessions.get(worker_id)
        if session is None:
            return False
        session.link.stop(job_ids)
        for job_id in job_ids:
            session.held.pop(job_id, None)
        return True

    def _stop_attempts(self, worker_id: str, job_ids: list[int]) -> None:
        """Cancelled attempts: their worker is told to stop them, here (its slots are free
        again: dispatch) or, on a store several hubs share, by the hub it is attached to."""
        if self._stop_here(worker_id, job_ids):
            self.kick()
        elif self._shared:
            self._store.notify_stop(worker_id, job_ids)

    # ------------------------------------------------------------------ inside

    def _may_control(self, caller: Caller, action: str, worker: str) -> None:
        self._access.operator(caller, action, f"worker {worker[:100]}", "workers")

    async def _resolve(self, worker: str, *, connected: bool = False) -> str:
        """The id of the worker named: its id, or a name only one registered worker has. It
        must be attached to this hub, or (unless ``connected``) drained here."""
        if worker in self._sessions or (not connected and worker in self._drained):
            return worker
        registered = await self._store.list_workers()
        found = [w for w in registered if w.id == worker] or [w for w in registered if w.name == worker]
        if len(found) > 1:
            ids = ", ".join(sorted(w.id for w in found)[:5])
            raise InvalidRequest(f"{len(found)} workers are named {worker[:100]!r}: give an id ({ids})")
        if not found:
            raise NotFound(f"no worker {worker[:100]}")
        info = found[0]
        if info.id in self._sessions or (not connected and info.id in self._drained):
            return info.id
        if info.hub and info.hub != self.config.name:
            raise Conflict(f"worker {info.id} is attached to hub {info.hub}: ask that hub")
        raise NotFound(f"worker {info.id} is not connected")

    def _drain(self, worker_id: str, why: str, *, by: str | None) -> WorkerNotice:
        """Mark the worker drained (``by`` None: the hub itself, automatically)."""
        self._remember(self._drained, worker_id, why)
        if by is None:
            log.warning(
                "worker %s drained: %s (`jobq workers resume %s` gives it jobs again)",
                worker_id,
                why,
                worker_id,
            )
        else:
            log.info("worker %s drained by %s: %s", worker_id, by, why)
        notice = WorkerNotice(kind="drained", worker=worker_id, at=self.clock(), drained=why, by=by or "hub")
        self._notify(notice)
        return notice

    @staticmethod
    def _remember(table: dict[str, V], key: str, value: V) -> None:
        """Set ``key`` as the newest entry; past REMEMBERED entries the oldest is forgotten."""
        table.pop(key, None)
        table[key] = value
        if len(table) > REMEMBERED:
            del table[next(iter(table))]

    def _notify(self, notice: WorkerNotice) -> None:
        for listener in list(self._notice_listeners):
            try:
                listener(notice)
            except Exception:
                log.exception("a worker notice listener failed")


__all__ = ["ACTIONS", "MAX_REASON", "REMEMBERED", "WorkerAction", "WorkerControl"]
