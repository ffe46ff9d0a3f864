"""Groups in the embedded stores (memory, SQLite): the rules of ``core/workflow.py`` applied in
the same step as the member transitions that trigger them.

Every job end goes through ``EmbeddedStore._finish``; for a member (or a finalize job) it calls
:meth:`_group_end`, which records it on its group, and when :func:`~jobq.core.workflow.record_end` says so it
creates the finalize job in that same step. Everything happens in one event-loop turn, so on
SQLite the member's end, the group's row and the finalize job's row share one commit: a hub
killed before it loses all three (the member runs again and triggers finalize then), after it
finds ``finalize_id`` set. Groups are kept in memory (SQLite reads them back at start).

Retention: a member of a group that has not ended is not forgotten (the tick that reaches its
``expires_at`` puts it off, by its ttl again), and once the group has ended it is kept its ttl
from the group's end (:meth:`_kept_until`, called by the stores' ``_purge``). A group that has
ended is forgotten its ttl after its end (``result_ttl``; ``failed_ttl`` for a failed one).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import msgspec

from jobq.core.matching import Shape
from jobq.core.model import Job, JobSpec, new_job
from jobq.core.states import CANCELLED, FAILED, QUARANTINED, JobState
from jobq.core.workflow import (
    Group,
    GroupState,
    MemberOutcome,
    cancel_group,
    finalize_input,
    is_member,
    member_ids,
    record_end,
    record_finalize,
    record_finalize_end,
    record_retry,
)
from jobq.errors import NotFound
from jobq.store.embedded import EmbeddedStore
from jobq.store.reports import TickResult
from jobq.store.shapes import shape_for

#: Seconds at least between two looks at a member of a running group whose retention is due.
RECHECK = 60.0


class GroupRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A group as an embedded store keeps it: the group, the workers that claimed one of its
    members (to be told FINISHED), whether they were told, and its idempotency key."""

    group: Group
    workers: list[str] = msgspec.field(default_factory=list)
    notified: bool = False
    key: str | None = None


class EmbeddedGroups(EmbeddedStore):
    """The group operations of the store contract, for the embedded stores."""

    def __init__(self, **options: float) -> None:
        super().__init__(**options)
        self._groups: dict[int, GroupRecord] = {}
        self._group_keys: dict[str, int] = {}
        #: (when it may be forgotten, group id) of ended groups; checked again when due.
        self._group_expiry: list[tuple[float, int]] = []

    # ------------------------------------------------------------------ hooks

    def _save_group(self, record: GroupRecord, *, urgent: bool = True) -> None:
        """Persist a group's change (with this turn's commit)."""

    def _load_members(self, ids: range) -> dict[int, Job]:
        """These jobs (members of a group), live or finished."""
        out = {}
        for job_id in ids:
            job = self._live.get(job_id) or self._load(job_id)
            if job is not None:
                out[job_id] = job
        return out

    def _drop_group(self, group_id: int) -> None:
        """A group was forgotten (its retention ended): persist that."""

    def _adopt_group(self, record: GroupRecord) -> None:
        """Take a group read back at start-up."""
        self._groups[record.group.id] = record
        self._group_ended(record.group)
        if record.key is not None:
            self._group_keys[record.key] = record.group.id
        finalize = record.group.finalize_id or 0
        self._next_id = max(self._next_id, record.group.id + record.group.total + 1, finalize + 1)

    # ------------------------------------------------------------------ groups

    async def submit_group(
        self, group: Group, members: Sequence[JobSpec], now: float, key: str | None = None
    ) -> tuple[Group, list[Job], bool]:
        if key is not None and (known := self._group_keys.get(key)) is not None:
            return self._groups[known].group, [], False
        shapes = [shape_for(spec) for spec in members]  # a bad requirement refuses the group
        group_id = self._next_id
        self._next_id += 1 + len(members)
        group = msgspec.structs.replace(group, id=group_id, total=len(members))
        record = GroupRecord(group=group, key=key)
        self._groups[group_id] = record
        if key is not None:
            self._group_keys[key] = group_id
        jobs = []
        for index, (spec, shape) in enumerate(zip(members, shapes, strict=True)):
            jobs.append(self._create(spec, shape, group_id + 1 + index, group_id, now))
        self._save_group(record)
        await self._durable()
        return group, jobs, True

    def _create(self, spec: JobSpec, shape: Shape, job_id: int, group_id: int, now: float) -> Job:
        job = new_job(spec, job_id, now)
        job.group = group_id
        self._live[job_id] = job
        self._shapes[job_id] = shape
        if job.run_at is not None:
            heapq.heappush(self._scheduled, (job.run_at, job_id))
        else:
            self.index.add(job_id, shape, job.priority, job_id, now)
        self._counts[(job.service, job.state)] += 1
        self._save(job, new=True)
        return job

    async def get_group(self, group_id: int) -> tuple[Group, dict[str, int]] | None:
        """The group and its live members counted per state."""
        record = self._groups.get(group_id)
        if record is None:
            return None
        group = record.group
        live: dict[str, int] = {}
        if sum(group.ended.values()) < group.total:
            for job_id in member_ids(group):
                job = self._live.get(job_id)
                if job is not None:
                    live[job.state.value] = live.get(job.state.value, 0) + 1
        return group, live

    async def cancel_group(self, group_id: int, now: float) -> tuple[Group, list[tuple[Job, str | None]]]:
        """Cancel a group that has not ended: its live members and its finalize job. Returns the
        jobs cancelled, each with the worker that ran it (to be told to stop)."""
        record = self._groups.get(group_id)
        if record is None:
            raise NotFound(f"no group {group_id}")
        step = cancel_group(record.group, now)
        record.group = step.group
        stopped: list[tuple[Job, str | None]] = []
        ids = [*member_ids(step.group), *([step.group.finalize_id] if step.group.finalize_id else [])]
        for job_id in ids:
            job = self._live.get(job_id)
            if job is not None:
                stopped.append((job, self._cancel_live(job, f"cancelled with group {group_id}", now)))
        self._save_group(record)
        self._group_ended(record.group)
        await self._durable()
        return record.group, stopped

    async def finished_groups(self, group_ids: Sequence[int]) -> list[tuple[int, list[str]]]:
        """Of these groups, those that have ended and whose workers were not told yet: each
        with the workers that ran one of its members. Marks them told."""
        out = []
        for group_id in group_ids:
            record = self._groups.get(group_id)
            if record is None or record.notified or not record.group.state.ended:
                continue
            record.notified = True
            self._save_group(record)
            out.append((group_id, list(record.workers)))
        return out

    async def group_records(self, group_ids: Sequence[int]) -> list[Group]:
        return [record.group for g in group_ids if (record := self._groups.get(g)) is not None]

    def notify_finished(self, group_id: int, workers: list[str]) -> None:
        """One hub only: it told its workers itself."""

    # ------------------------------------------------------------------ retention

    def _group_ended(self, group: Group) -> None:
        """The group has ended (or was read back ended): it is forgotten after its ttl."""
        if group.state.ended and group.ended_at is not None:
            ttl = self.failed_ttl if group.state is GroupState.FAILED else self.result_ttl
            heapq.heappush(self._group_expiry, (group.ended_at + ttl, group.id))

    def _kept_until(self, job: Job, now: float) -> float | None:
        """A finished member (or finalize job) whose retention is due: when to look at it again
        (its group has not ended, or ended less than its ttl ago), or None to forget it now."""
        record = self._groups.get(job.group or 0)
        if record is None:
            return None
        group = record.group
        ttl = self.failed_ttl if job.state in (FAILED, QUARANTINED) else self._ttl(job)
        if not group.state.ended or group.ended_at is None:
            return now + max(ttl, RECHECK)
        later = group.ended_at + ttl
        return later if later > now else None

    async def tick(self, now: float) -> TickResult:
        result = await super().tick(now)
        expiry = self._group_expiry
        while expiry and expiry[0][0] <= now:
            _, group_id = heapq.heappop(expiry)
            record = self._groups.get(group_id)
            if record is None or not record.group.state.ended:
                continue  # forgotten already, or running again (an operator's retry)
            group = record.group
            ttl = self.failed_ttl if group.state is GroupState.FAILED else self.result_ttl
            if group.ended_at is None or group.ended_at + ttl > now:
                continue  # ended again later: a later entry stands for that end
            del self._groups[group_id]
            if record.key is not None and self._group_keys.get(record.key) == group_id:
                del self._group_keys[record.key]
            self._drop_group(group_id)
        return result

    # ------------------------------------------------------------------ the hooks into jobs

    def _group_end(self, job: Job, state: JobState, now: float) -> None:
        """A member (or the finalize job) of group ``job.group`` ended (``EmbeddedStore._finish``,
        once the job's own end is done)."""
        record = self._groups.get(job.group or 0)
        if record is None:
            return
        group = record.group
        if is_member(group, job.id):
            step = record_end(group, job.id - group.id - 1, state, now)
        else:
            step = record_finalize_end(group, state, now, job.error)
        group = step.group
        if step.submit_finalize and group.finalize is not None:
            group = self._submit_finalize(group, now)
        record.group = group
        self._save_group(record)
        if step.ended:
            self._group_ended(group)

    def _submit_finalize(self, group: Group, now: float) -> Group:
        assert group.finalize is not None
        found = self._load_members(member_ids(group))
        outcomes = []
        for index, job_id in enumerate(member_ids(group)):
            member = found.get(job_id)
            state = member.state if member is not None else CANCELLED
            result = member.result if member is not None else None
            error = (
                (member.error if member is not None else "gone") if state is not JobState.COMPLETED else None
            )
            outcomes.append(MemberOutcome(index=index, id=job_id, state=state, result=result, error=error))
        payload = finalize_input(group, outcomes)
        spec = msgspec.structs.replace(group.finalize, payload=payload)
        finalize_id = self._next_id
        self._next_id += 1
        self._create(spec, shape_for(spec), finalize_id, group.id, now)
        return record_finalize(group, finalize_id)

    def _group_claimed(self, job: Job, worker_id: str) -> None:
        """A job of group ``job.group`` was claimed (``EmbeddedStore.claim``): a member's worker
        is told FINISHED when the group ends."""
        record = self._groups.get(job.group or 0)
        if record is not None and is_member(record.group, job.id) and worker_id not in record.workers:
            record.workers.append(worker_id)
            self._save_group(record, urgent=False)

    async def retry(self, job_id: int, now: float) -> Job:
        job = self._live.get(job_id) or self._load(job_id)
        record = None if job is None or job.group is None else self._groups.get(job.group)
        if job is not None and record is not None and job.state in (FAILED, CANCELLED, QUARANTINED):
            group = record.group
            index = job.id - group.id - 1 if is_member(group, job.id) else None
            record.group = record_retry(group, index, job.state)  # refuses what may not be retried
            record.notified = False  # it runs again: its next end is told (FINISHED, group_ended)
            self._save_group(record)  # in the same commit as the job's retry
        return await super().retry(job_id, now)
