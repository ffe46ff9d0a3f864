"""Each job's timeline on the embedded stores (memory, SQLite): ``core/timeline.py``'s marks,
added at ``EmbeddedStore``'s hooks (``started`` and the ends by its ``claim`` and ``_finish``
themselves), before the change is written, so a mark rides in the same write (SQLite's commit
of that turn) as the change it records, never in a write of its own.

The Redis store adds the same marks in its Lua scripts (``mark`` in ``store/lua/prelude.lua``);
``tests/contract/test_timeline.py`` holds every store to the same timeline.
"""

from __future__ import annotations

from jobq.core import timeline
from jobq.core.model import Job
from jobq.core.states import QUEUED, SCHEDULED
from jobq.store.embedded import EmbeddedStore


class EmbeddedTimeline(EmbeddedStore):
    # The marks of every job (started, an end) are added by EmbeddedStore.claim and _finish
    # themselves: the hot path pays no layer of its own for them.

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

    async def progress(
        self, job_id: int, token: int, value: float | None, message: str | None, now: float
    ) -> Job:
        job = await super().progress(job_id, token, value, message, now)
        timeline.progress(job, now, value, message)  # written with the job's next change
        return job
