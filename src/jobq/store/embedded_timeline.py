"""Each job's timeline on the embedded stores (memory, SQLite): ``core/timeline.py``'s marks,
added at ``EmbeddedStore``'s hooks, before the change is written, so a mark rides in the same
write (SQLite's commit of that turn) as the change it records, never in a write of its own.

The Redis store adds the same marks in its Lua scripts (``mark`` in ``store/lua/prelude.lua``);
``tests/contract/test_timeline.py`` holds every store to the same timeline.
"""

from __future__ import annotations

from jobq.core import timeline
from jobq.core.model import Job
from jobq.core.states import QUEUED, SCHEDULED, JobState
from jobq.store.embedded import EmbeddedStore


class EmbeddedTimeline(EmbeddedStore):
    def _finish(self, job: Job, state: JobState, now: float, ttl: float) -> None:
        timeline.ended(job, state, now)  # before the move: it names a running attempt
        super()._finish(job, state, now, ttl)

    def _after_failed_attempt(self, job: Job, now: float, retryable: bool, rand: float) -> None:
        super()._after_failed_attempt(job, now, retryable, rand)
        if job.state is SCHEDULED:  # (an end is marked by _finish)
            timeline.retrying(job, now)

    def _release(self, job: Job, now: float, why: str, *, lost: bool) -> None:
        attempt, worker = job.attempts, job.worker
        super()._release(job, now, why, lost=lost)
        if job.state is QUEUED:  # (a quarantine is marked by _finish)
            timeline.requeued(job, now, attempt, worker, why, lost)

    def _requeue(self, job: Job, now: float) -> None:
        timeline.retried(job, now)  # an operator's retry (queued, or waiting again)
        super()._requeue(job, now)

    async def claim(self, worker_id: str, limit: int, now: float, lease_ttl: float) -> list[Job]:
        jobs = await super().claim(worker_id, limit, now, lease_ttl)
        for job in jobs:  # written with the claim's own (lazy) write
            timeline.started(job, now)
        return jobs

    async def progress(
        self, job_id: int, token: int, value: float | None, message: str | None, now: float
    ) -> Job:
        job = await super().progress(job_id, token, value, message, now)
        timeline.progress(job, now, value, message)  # written with the job's next change
        return job
