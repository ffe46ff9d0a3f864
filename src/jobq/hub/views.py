"""The hub's answers about the cluster: stats, workers and their health, services, explain,
and the hub's own health (its store answers, it takes work) for liveness and readiness probes.

Part of :class:`~jobq.hub.hub.Hub` (the state is declared in ``WorkerSide`` and set up by
``Hub.__init__``); every figure is a function of ``core/views.py`` filled in here.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

from jobq.core.auth import LOCAL_CALLER, Action, Caller
from jobq.core.errors import InvalidRequest, JobqError
from jobq.core.history import History
from jobq.core.model import Job, JobFilter, StoreStats, WorkerInfo
from jobq.core.operations import mark_paused
from jobq.core.states import RUNNING, TERMINAL, WAITING
from jobq.core.validate import MAX_NAME
from jobq.core.views import (
    ClusterStats,
    DoorLoad,
    ExplainInfo,
    ServiceInfo,
    WorkerStatus,
    estimated_start,
    queued_summary,
    services_of,
    with_health,
    worker_health,
)
from jobq.hub.access import Access
from jobq.hub.dependencies import waits_for
from jobq.hub.workers import WorkerSide

#: Seconds the store has to answer the health probe before it counts as down.
STORE_PROBE_TIMEOUT = 2.0
#: Seconds a probe's answer is reused: a flood of health checks costs the store one call a second.
STORE_PROBE_EVERY = 1.0


@dataclass(frozen=True, slots=True)
class HubHealth:
    """Whether the hub lives, its store answers and it takes work (``ClusterViews.health``)."""

    #: ``ok``; ``draining`` (shutting down: no new work); ``store_down`` (its store does not answer).
    status: str
    store_ok: bool
    draining: bool
    #: Why it is not ``ok`` (the store's error, or that the hub shuts down); None when ok.
    reason: str | None
    uptime: float

    @property
    def ready(self) -> bool:
        """It takes work: the store answers and the hub is not shutting down."""
        return self.store_ok and not self.draining


class ClusterViews(WorkerSide):
    _access: Access
    _started_at: float
    # The store probe of ``health``: its last answer (None: the store answered), when it was
    # made (monotonic), and the probe under way, shared by every caller meanwhile.
    _store_trouble: str | None = None
    _store_probed: float = -math.inf
    _store_probe: asyncio.Task[str | None] | None = None

    async def health(self) -> HubHealth:
        """The hub's health for liveness and readiness probes, the same for every door. The
        store is asked with one cheap read (the job with id 0, which never exists), with a
        timeout, at most once per :data:`STORE_PROBE_EVERY` seconds whoever asks."""
        if time.monotonic() - self._store_probed >= STORE_PROBE_EVERY:
            probe = self._store_probe
            if probe is None:
                probe = self._store_probe = asyncio.ensure_future(self._probe_store())
            # shielded: a caller that gives up does not cancel the probe the others wait for
            await asyncio.shield(probe)
        trouble = self._store_trouble
        if self._draining:
            status, reason = "draining", "the hub is shutting down"
        elif trouble is not None:
            status, reason = "store_down", trouble
        else:
            status, reason = "ok", None
        return HubHealth(
            status=status,
            store_ok=trouble is None,
            draining=self._draining,
            reason=reason,
            uptime=max(0.0, self.clock() - self._started_at),
        )

    async def _probe_store(self) -> str | None:
        try:
            async with asyncio.timeout(STORE_PROBE_TIMEOUT):
                await self._store.get(0)
        except TimeoutError:
            trouble: str | None = f"the store did not answer within {STORE_PROBE_TIMEOUT:g}s"
        except JobqError as exc:
            trouble = exc.message
        except Exception as exc:  # the store's own failure (a disk error...), named, not raised
            trouble = f"the store failed: {type(exc).__name__}: {exc}"
        else:
            trouble = None
        self._store_trouble = None if trouble is None else trouble[:300]
        self._store_probed = time.monotonic()
        self._store_probe = None
        return trouble

    # Defined by Hub (the client half), used here.
    async def get(self, job_id: int, *, caller: Caller = LOCAL_CALLER) -> Job:
        raise NotImplementedError

    async def list_jobs(
        self, query: JobFilter, *, blocked: bool = False, caller: Caller = LOCAL_CALLER
    ) -> list[Job]:
        raise NotImplementedError

    async def stats(self, *, caller: Caller = LOCAL_CALLER) -> ClusterStats:
        """The cluster's figures; a client's job counts are those of the jobs it may see."""
        if not caller.unrestricted:
            self._access.require(caller, Action.VIEW, "stats")
        now = self.clock()
        by_door: dict[str, DoorLoad] = {}
        for session in self._sessions.values():
            load = by_door.setdefault(session.info.door, DoorLoad())
            load.workers += 1
            load.slots += session.info.slots
            load.free += max(0, session.info.slots - len(session.held))
        return ClusterStats(
            hub=self.config.name,
            uptime=max(0.0, now - self._started_at),
            draining=self._draining,
            jobs=await self._job_stats(caller),
            counters=dict(self._counters) if caller.principal.role in ("admin", "monitor") else {},
            workers=len(self._sessions),
            slots=sum(load.slots for load in by_door.values()),
            slots_free=sum(load.free for load in by_door.values()),
            by_door=by_door,
        )

    async def history(
        self, minutes: int, service: str | None = None, *, caller: Caller = LOCAL_CALLER
    ) -> History:
        """Per-bucket counts, queue depth and latency percentiles of the last ``minutes``
        (``core/history.py``; kept by ``hub/history.py``): for admins and monitors."""
        self._access.history(caller)
        if service is not None and not 0 < len(service.encode()) <= MAX_NAME:
            raise InvalidRequest(f"service must be 1 to {MAX_NAME} bytes long")
        return await self._history.read(minutes, service)

    async def _job_stats(self, caller: Caller) -> StoreStats:
        if caller.principal.role in ("admin", "monitor"):
            return await self._store.stats()
        # A client's own jobs, counted from the newest it may see (at most 10,000).
        by_state: dict[str, int] = {}
        by_service: dict[str, dict[str, int]] = {}
        for job in await self.list_jobs(JobFilter(limit=10_000), caller=caller):
            by_state[job.state.value] = by_state.get(job.state.value, 0) + 1
            states = by_service.setdefault(job.service, {})
            states[job.state.value] = states.get(job.state.value, 0) + 1
        return StoreStats(by_state=by_state, by_service=by_service)

    async def workers(self, *, caller: Caller = LOCAL_CALLER) -> list[WorkerInfo]:
        """Every registered worker, as the store's registry shows it (all hubs on a shared store)."""
        if not caller.unrestricted:
            self._access.require(caller, Action.VIEW, "workers")
        return self._marked(await self._store.list_workers())  # drained ones with why (control.py)

    async def worker_statuses(self, *, caller: Caller = LOCAL_CALLER) -> list[WorkerStatus]:
        """Every registered worker with its health, by id."""
        if not caller.unrestricted:
            self._access.require(caller, Action.VIEW, "workers")
        now = self.clock()
        heartbeat, silence = self.config.heartbeat, self.config.worker_silence
        out = []
        for info in self._marked(await self._store.list_workers()):
            session = self._sessions.get(info.id)
            last_seen = max(info.last_seen, session.last_seen if session is not None else 0.0)
            age = max(0.0, now - last_seen) if last_seen else 0.0
            out.append(
                WorkerStatus(
                    info=info,
                    health=worker_health(age, heartbeat, silence),
                    last_seen=last_seen,
                    running=len(info.running),
                    local=session is not None,
                )
            )
        return sorted(out, key=lambda status: status.info.id)

    def connected(self) -> list[str]:
        """Ids of the workers connected to this hub now."""
        return list(self._sessions)

    async def serves(self, service: str) -> bool:
        """Whether any registered worker serves ``service``."""
        return any(service in info.services for info in await self._store.list_workers())

    async def services(self, *, caller: Caller = LOCAL_CALLER) -> list[ServiceInfo]:
        if not caller.unrestricted:
            self._access.require(caller, Action.VIEW, "services")
        found = services_of(await self._store.list_workers(), await self._store.stats())
        return mark_paused(found, await self._store.paused_services())  # core/operations.py

    async def explain(self, job_id: int, *, caller: Caller = LOCAL_CALLER) -> ExplainInfo:
        job = await self.get(job_id, caller=caller)
        now = self.clock()
        if job.state is RUNNING:
            return ExplainInfo(id=job.id, state=job.state, summary=f"running on {job.worker}")
        if job.state in TERMINAL:
            return ExplainInfo(id=job.id, state=job.state, summary=f"ended {job.state}")
        if job.state is WAITING:  # for its prerequisites (hub/dependencies.py)
            return ExplainInfo(id=job.id, state=job.state, summary=await waits_for(job, self._store.get))
        if job.state != "queued":
            when = "" if job.run_at is None else f" until {time.ctime(job.run_at)}"
            return ExplainInfo(id=job.id, state=job.state, summary=f"waiting{when}")
        found = await self._store.explain(job_id, now)
        if found is None:
            return ExplainInfo(id=job.id, state=job.state, summary="queued")
        rate = self._counters["completed"] / max(1.0, now - self._started_at)
        eligible, ineligible = self._undrained(found.eligible, found.ineligible)  # hub/control.py
        info = ExplainInfo(
            id=job.id,
            state=job.state,
            summary=queued_summary(found.blocked, len(eligible), found.free_slots, found.ahead),
            eligible=eligible,
            ineligible=ineligible,
            position=found.ahead + 1,
            estimated_start=estimated_start(found.ahead, len(eligible), rate, now),
            blocked=found.blocked,
        )
        workers = await self._store.list_workers()
        info = with_health(info, job.service, workers)
        return self._paused_explained(info, job.service, workers)  # hub/queue_control.py


__all__ = ["STORE_PROBE_EVERY", "STORE_PROBE_TIMEOUT", "ClusterViews", "HubHealth"]
