"""``memory://``: everything in the hub's memory. Fast, and gone when the hub stops."""

from __future__ import annotations

import heapq

from jobq.core.model import Job, JobFilter
from jobq.store.embedded_groups import EmbeddedGroups
from jobq.store.embedded_query import EmbeddedLookups
from jobq.store.embedded_schedules import ScheduledEmbeddedStore
from jobq.store.embedded_timeline import EmbeddedTimeline
from jobq.store.history_memory import MemoryHistory
from jobq.store.paused import PausedServices


# paused services: store/paused.py; groups: store/embedded_groups.py
class MemoryStore(
    MemoryHistory, PausedServices, EmbeddedGroups, EmbeddedLookups, EmbeddedTimeline, ScheduledEmbeddedStore
):
    url = "memory://"

    def __init__(self, **options: float) -> None:
        super().__init__(**options)
        self._finished: dict[int, Job] = {}
        self._expiry: list[tuple[float, int]] = []

    def _retire(self, job: Job) -> None:
        self._finished[job.id] = job
        if job.expires_at is not None:
            heapq.heappush(self._expiry, (job.expires_at, job.id))

    def _revive(self, job: Job) -> None:
        self._finished.pop(job.id, None)

    def _load(self, job_id: int) -> Job | None:
        return self._finished.get(job_id)

    def _query(self, query: JobFilter) -> list[Job]:
        out = []
        for job_id in sorted(self._finished, reverse=True):
            job = self._finished[job_id]
            if query.matches(job):
                out.append(job)
                if len(out) >= query.offset + query.limit:
                    break
        return out

    def _purge(self, now: float) -> list[Job]:
        gone = []
        while self._expiry and self._expiry[0][0] <= now:
            at, job_id = heapq.heappop(self._expiry)
            job = self._finished.get(job_id)
            if job is not None and job.expires_at == at:
                if job.group is not None and (later := self._kept_until(job, now)) is not None:
                    job.expires_at = later  # its group has not ended long enough ago
                    heapq.heappush(self._expiry, (later, job_id))
                    continue
                del self._finished[job_id]
                gone.append(job)
        return gone
