"""The hub's answers about the cluster: stats, workers and their health, services, explain.

Part of :class:`~jobq.hub.hub.Hub` (the state is declared in ``WorkerSide`` and set up by
``Hub.__init__``); every figure is a function of ``core/views.py`` filled in here.
"""

from __future__ import annotations

import time

from jobq.core.auth import LOCAL_CALLER, Action, Caller
from jobq.core.model import Job, JobFilter, StoreStats, WorkerInfo
from jobq.core.states import RUNNING, TERMINAL
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
from jobq.hub.workers import WorkerSide


class ClusterViews(WorkerSide):
    _access: Access
    _started_at: float

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
        return await self._store.list_workers()

    async def worker_statuses(self, *, caller: Caller = LOCAL_CALLER) -> list[WorkerStatus]:
        """Every registered worker with its health, by id."""
        if not caller.unrestricted:
            self._access.require(caller, Action.VIEW, "workers")
        now = self.clock()
        heartbeat, silence = self.config.heartbeat, self.config.worker_silence
        out = []
        for info in await self._store.list_workers():
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
        return services_of(await self._store.list_workers(), await self._store.stats())

    async def explain(self, job_id: int, *, caller: Caller = LOCAL_CALLER) -> ExplainInfo:
        job = await self.get(job_id, caller=caller)
        now = self.clock()
        if job.state is RUNNING:
            return ExplainInfo(id=job.id, state=job.state, summary=f"running on {job.worker}")
        if job.state in TERMINAL:
            return ExplainInfo(id=job.id, state=job.state, summary=f"ended {job.state}")
        if job.state != "queued":
            when = "" if job.run_at is None else f" until {time.ctime(job.run_at)}"
            return ExplainInfo(id=job.id, state=job.state, summary=f"waiting{when}")
        found = await self._store.explain(job_id, now)
        if found is None:
            return ExplainInfo(id=job.id, state=job.state, summary="queued")
        rate = self._counters["completed"] / max(1.0, now - self._started_at)
        info = ExplainInfo(
            id=job.id,
            state=job.state,
            summary=queued_summary(found.blocked, len(found.eligible), found.free_slots, found.ahead),
            eligible=found.eligible,
            ineligible=found.ineligible,
            position=found.ahead + 1,
            estimated_start=estimated_start(found.ahead, len(found.eligible), rate, now),
            blocked=found.blocked,
        )
        return with_health(info, job.service, await self._store.list_workers())


__all__ = ["ClusterViews"]
