"""Cron schedules in the Redis store: several hubs fire each firing exactly once.

A schedule is the hash ``sched:<name>`` (``b``: the :class:`Schedule`, msgpack; ``cur``: its
cursor; ``p``: ``1`` while paused) and its score in the sorted set ``schedules:next`` (its next
firing, ``+inf`` while paused or never), so a tick reads only the due ones. Changes are
``schedule.lua``; a firing is ``fire.lua``: the cursor's compare-and-set and the job's creation
(submit.lua's code) in one script (``docs/workflows.md``, "Exactly-once firings"). The next
firing is computed here (the cron rules are Python's, ``core/schedule.py``) and passed in.
"""

from __future__ import annotations

from typing import Any

import msgspec

from jobq.core.model import Submitted, new_job
from jobq.core.schedule import MAX_SCHEDULES, Schedule, firing_spec, next_at, next_firing
from jobq.errors import Conflict
from jobq.store.redis_client import RedisClient
from jobq.store.redis_codec import frame, num
from jobq.store.redis_jobs import JobOps
from jobq.store.redis_scripts import Scripts
from jobq.store.redis_shapes import ShapeRegistry
from jobq.store.shapes import shape_for

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Schedule).decode
NEVER = "+inf"


def _score(at: float | None) -> str:
    return NEVER if at is None else num(at)


def _schedule(fields: list[Any]) -> Schedule | None:
    """A schedule from ``HMGET b cur p`` (None: no such schedule)."""
    body, cursor, paused = fields
    if body is None:
        return None
    schedule = _decode(body)
    return msgspec.structs.replace(schedule, cursor=float(cursor), paused=paused == b"1")


class RedisSchedules:
    """The schedule operations of :class:`~jobq.store.redis.RedisStore` (a base class of it)."""

    client: RedisClient
    scripts: Scripts
    instance: str
    _shapes: ShapeRegistry
    _jobs: JobOps

    def _sched_key(self, name: str) -> str:
        return self.client.key("sched", name)

    async def _read(self, names: list[str]) -> list[Schedule | None]:
        replies = await self.client.pipeline([("HMGET", self._sched_key(n), "b", "cur", "p") for n in names])
        return [_schedule(reply) for reply in replies]

    async def put_schedule(self, schedule: Schedule) -> Schedule:
        reply = await self.scripts.call(
            "schedule",
            "put",
            schedule.name,
            _encode(msgspec.structs.replace(schedule, paused=False)),
            num(schedule.cursor),
            _score(next_at(schedule)),
            MAX_SCHEDULES,
        )
        if int(reply) < 0:
            raise Conflict(f"there are {MAX_SCHEDULES} schedules already (the limit); remove some first")
        return schedule

    async def get_schedule(self, name: str) -> Schedule | None:
        (found,) = await self._read([name])
        return found

    async def list_schedules(self) -> list[tuple[Schedule, float | None]]:
        flat = await self.client.cmd("ZRANGE", self.client.key("schedules:next"), 0, -1, "WITHSCORES")
        names = sorted(name.decode() for name, _ in flat)
        following = {name.decode(): float(score) for name, score in flat}
        out = []
        for schedule in await self._read(names):
            if schedule is not None:
                at = following.get(schedule.name, float("inf"))
                out.append((schedule, None if at == float("inf") else at))
        return out

    async def pause_schedule(self, name: str, now: float) -> Schedule | None:
        await self.scripts.call("schedule", "pause", name)
        return await self.get_schedule(name)

    async def resume_schedule(self, name: str, now: float) -> Schedule | None:
        found = await self.get_schedule(name)
        if found is None or not found.paused:
            return found
        cursor = max(found.cursor, now)
        following = next_firing(found.cron, found.tz, cursor)
        await self.scripts.call("schedule", "resume", name, num(cursor), _score(following))
        return await self.get_schedule(name)

    async def remove_schedule(self, name: str) -> bool:
        return int(await self.scripts.call("schedule", "remove", name)) > 0

    async def due_schedules(self, now: float, limit: int = 1000) -> list[Schedule]:
        names = await self.client.cmd(
            "ZRANGEBYSCORE", self.client.key("schedules:next"), "-inf", num(now), "LIMIT", 0, limit
        )
        found = await self._read([name.decode() for name in names])
        return [s for s in found if s is not None and not s.paused]

    async def fire(self, schedule: Schedule, at: float, now: float) -> Submitted | None:
        spec = firing_spec(schedule, at)
        shape = shape_for(spec)
        sid, blob, meta = self._shapes.encoded(shape)
        await self._shapes.ensure_shapes({sid: (shape, blob, meta)})
        values = frame(self._jobs.submit_values(spec, sid, now))
        following = _score(next_firing(schedule.cron, schedule.tz, at))
        reply = await self.scripts.call(
            "fire", self.instance, num(now), schedule.name, num(at), following, values
        )
        job_id, created = int(reply[0]), int(reply[1]) == 1
        if job_id == 0:
            return None
        if created:
            return Submitted(job=new_job(spec, job_id, now), created=True)
        existing = await self._jobs.get(job_id)  # its key was known: the cursor had been reset
        return None if existing is None else Submitted(job=existing, created=False)

    async def advance_schedule(self, name: str, cursor: float) -> bool:
        found = await self.get_schedule(name)
        if found is None or found.paused or not found.cursor < cursor:
            return False
        following = _score(next_firing(found.cron, found.tz, cursor))
        return int(await self.scripts.call("schedule", "advance", name, num(cursor), following)) == 1
