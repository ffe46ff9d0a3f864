"""Groups in the Redis store: several hubs, one finalize job per group (``docs/redis.md``).

A member's end is recorded on its group by the script that ends it (``lua/groups.lua``, the
Lua twin of ``core/workflow.record_end``, called from the prelude's ``finish``): Redis runs one
script at a time, so of two hubs completing the last two members only one sees "all ended",
and it takes the finalize job's id then (``fid``) and puts the group in ``gheld``. The finalize
job's payload (every member's outcome, in member order: ``core/workflow.finalize_input``) is
built here, by the hub that ended the member (``finished_groups``, right after) or by any hub's
tick (a hub that died in between); ``finalize.lua`` makes the job only if the group is still in
``gheld``, so it is made once. A group is the hash ``g:<id>`` (layout in ``lua/groups.lua``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import msgspec

from jobq.core.model import Job, JobFilter, JobSpec, new_job
from jobq.core.states import JobState
from jobq.core.workflow import Group, GroupState, MemberOutcome, finalize_input, member_ids
from jobq.errors import Conflict, NotFound
from jobq.store.redis_client import RedisClient
from jobq.store.redis_codec import frame, num
from jobq.store.redis_jobs import JobOps
from jobq.store.redis_scripts import Scripts
from jobq.store.redis_shapes import ShapeRegistry
from jobq.store.shapes import shape_for

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Group).decode
_ENDS = ("completed", "failed", "cancelled", "quarantined")
#: Members whose states are read per round trip (live counts).
PAGE = 5000


class RedisGroups:
    """The group operations of :class:`~jobq.store.redis.RedisStore` (a base class of it)."""

    client: RedisClient
    scripts: Scripts
    instance: str
    _jobs: JobOps
    _shapes: ShapeRegistry

    async def submit_group(
        self, group: Group, members: Sequence[JobSpec], now: float, key: str | None = None
    ) -> tuple[Group, list[Job], bool]:
        decided = [shape_for(spec) for spec in members]
        shapes = [self._shapes.encoded(shape) for shape in decided]
        await self._shapes.ensure_shapes(
            {sid: (shape, blob, meta) for shape, (sid, blob, meta) in zip(decided, shapes, strict=True)}
        )
        values: list[bytes | str] = []
        for spec, (sid, _, _) in zip(members, shapes, strict=True):
            values += self._jobs.submit_values(spec, sid, now)
        reply = await self.scripts.call(
            "group", self.instance, num(now), len(members), frame(values), key or "",
            _encode(group), group.policy, "1" if group.finalize is not None else "0",
        )  # fmt: skip
        group_id, created = int(reply[0]), reply[1] == 1
        if not created:
            found = await self.get_group(group_id)
            if found is None:
                raise NotFound(f"no group {group_id}")
            return found[0], [], False
        jobs = []
        for spec, job_id in zip(members, reply[2:], strict=True):
            job = new_job(spec, int(job_id), now)
            job.group = group_id
            jobs.append(job)
        return msgspec.structs.replace(group, id=group_id, total=len(members)), jobs, True

    async def _group(self, group_id: int) -> Group | None:
        return _parse(group_id, await self.client.cmd("HGETALL", self.client.key("g", group_id)))

    async def group_records(self, group_ids: Sequence[int]) -> list[Group]:
        key = self.client.key
        replies = await self.client.pipeline([("HGETALL", key("g", g)) for g in group_ids])
        found = (_parse(g, fields) for g, fields in zip(group_ids, replies, strict=True))
        return [group for group in found if group is not None]

    async def get_group(self, group_id: int) -> tuple[Group, dict[str, int]] | None:
        group = await self._group(group_id)
        if group is None:
            return None
        live: dict[str, int] = {}
        if sum(group.ended.values()) < group.total:
            ids = member_ids(group)
            for start in range(0, len(ids), PAGE):
                key = self.client.key
                states = await self.client.pipeline(
                    [("HGET", key("job", i), "state") for i in ids[start : start + PAGE]]
                )
                for raw in states:
                    if raw is not None and raw.decode() not in _ENDS:
                        live[raw.decode()] = live.get(raw.decode(), 0) + 1
        return group, live

    async def cancel_group(self, group_id: int, now: float) -> tuple[Group, list[tuple[Job, str | None]]]:
        reply = await self.scripts.call("gcancel", group_id, num(now), "cancelled")
        if reply[0] == b"missing":
            raise NotFound(f"no group {group_id}")
        if reply[0] == b"ended":
            raise Conflict(f"group {group_id} has already ended ({reply[1].decode()})")
        group = await self._group(group_id)
        assert group is not None
        ids = list(member_ids(group)) + ([int(reply[1])] if reply[1] else [])
        stopped: list[tuple[Job, str | None]] = []
        for start in range(0, len(ids), PAGE):
            key = self.client.key
            states = await self.client.pipeline(
                [("HGET", key("job", i), "state") for i in ids[start : start + PAGE]]
            )
            for job_id, raw in zip(ids[start : start + PAGE], states, strict=True):
                if raw is None or raw.decode() in _ENDS:
                    continue
                try:
                    stopped.append(await self._jobs.cancel(job_id, now))
                except (Conflict, NotFound):
                    continue  # ended meanwhile (through another hub)
        found = await self._group(group_id)
        return found or group, stopped

    async def finished_groups(self, group_ids: Sequence[int]) -> list[tuple[int, list[str]]]:
        held = {int(g) for g in await self.client.cmd("SMEMBERS", self.client.key("gheld"))}
        for group_id in group_ids:
            if group_id in held:
                await self._make_finalize(group_id)
        out = []
        for group_id in group_ids:
            state = await self.client.cmd("HGET", self.client.key("g", group_id), "state")
            if state is None or not GroupState(state.decode()).ended:
                continue
            if await self.client.cmd("HSETNX", self.client.key("g", group_id), "nt", "1") == 1:
                workers = await self.client.cmd("SMEMBERS", self.client.key("gw", group_id))
                out.append((group_id, sorted(w.decode() for w in workers)))
        return out

    async def finish_held(self, now: float) -> int:
        """Make the finalize jobs whose ids were taken but that no hub made yet (the tick)."""
        held = [int(g) for g in await self.client.cmd("SMEMBERS", self.client.key("gheld"))]
        made = 0
        for group_id in held:
            made += await self._make_finalize(group_id, now)
        return made

    async def _make_finalize(self, group_id: int, now: float | None = None) -> int:
        group = await self._group(group_id)
        if group is None or group.finalize is None or group.state is not GroupState.FINALIZING:
            return 0
        jobs = await self._jobs.jobs(list(member_ids(group)))
        outcomes = []
        for index, (job_id, job) in enumerate(zip(member_ids(group), jobs, strict=True)):
            if job is None:
                outcomes.append(MemberOutcome(index=index, id=job_id, state=JobState.CANCELLED, error="gone"))
                continue
            error = None if job.state is JobState.COMPLETED else job.error
            outcomes.append(
                MemberOutcome(index=index, id=job_id, state=job.state, result=job.result, error=error)
            )
        spec = msgspec.structs.replace(group.finalize, payload=finalize_input(group, outcomes))
        shape = shape_for(spec)
        sid, blob, meta = self._shapes.encoded(shape)
        await self._shapes.ensure_shapes({sid: (shape, blob, meta)})
        when = time.time() if now is None else now  # the finalize job's submit
        values = self._jobs.submit_values(spec, sid, when)
        reply = await self.scripts.call("finalize", self.instance, num(when), group_id, frame(values))
        return int(reply)

    async def _note_group_workers(self, worker_id: str, jobs: Sequence[Job]) -> None:
        """The worker claimed these jobs: it takes part in their groups (FINISHED goes to it)."""
        groups = {job.group: job.id for job in jobs if job.group is not None}
        if not groups:
            return
        key = self.client.key
        totals = await self.client.pipeline([("HGET", key("g", g), "total") for g in groups])
        await self.client.pipeline(
            [
                ("SADD", key("gw", g), worker_id)
                for (g, job_id), total in zip(groups.items(), totals, strict=True)
                if total is not None and g < job_id <= g + int(total)
            ]
        )

    async def _group_query(self, query: JobFilter) -> JobFilter:
        """A listing of a group's jobs, by their ids (members, then its finalize job)."""
        if query.group is None or query.ids:
            return query
        group = await self._group(query.group)
        if group is None:
            return msgspec.structs.replace(query, ids=[-1])
        ids: list[Any] = list(member_ids(group))[-(query.offset + query.limit) :]
        if group.finalize_id is not None:
            ids.append(group.finalize_id)
        return msgspec.structs.replace(query, ids=ids)


def _parse(group_id: int, fields: dict[bytes, bytes]) -> Group | None:
    """A group from its hash (``lua/groups.lua``), None when there is none."""
    if not fields or b"d" not in fields:
        return None
    group = _decode(fields[b"d"])
    ended = {s: int(fields[f"e:{s}".encode()]) for s in _ENDS if f"e:{s}".encode() in fields}
    end = fields.get(b"end")
    return msgspec.structs.replace(
        group, id=group_id, state=GroupState(fields[b"state"].decode()), ended=ended,
        finalize_id=int(fields[b"fid"]) if b"fid" in fields else None,
        ended_at=float(end) if end is not None else None,
        reason=fields[b"why"].decode() if b"why" in fields else None,
    )  # fmt: skip
