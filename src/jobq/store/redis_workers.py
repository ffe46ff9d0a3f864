"""The worker registry in Redis: workers attached through any hub of the namespace.

Each hub instance registers the workers attached through it (``w:<worker>``, listed in
``workers`` in the order they attached, ``iw:<instance>`` per hub) with its profile, slots and
what it runs (``wrun``, ``wload``). A hub silent for ``hub_ttl`` has its workers taken out of the
registry by another hub's tick (not their jobs: their leases decide); a hub that was only slow
finds its workers gone at their next heartbeat and registers them again.
"""

from __future__ import annotations

import logging

from jobq.core.explain import Candidate
from jobq.core.lease import lease_deadline
from jobq.core.matching import Load, Profile
from jobq.core.model import Job, WorkerInfo
from jobq.store.redis_client import RedisClient
from jobq.store.redis_codec import encode_info, encode_metrics, info_of, job_of_flat, num
from jobq.store.redis_scripts import Scripts
from jobq.store.redis_shapes import ShapeRegistry

log = logging.getLogger("jobq.store.redis")

#: A registered worker as the queries see it: (its profile id, the worker).
Registered = tuple[str, Candidate]


class WorkerRegistry:
    def __init__(self, client: RedisClient, scripts: Scripts, shapes: ShapeRegistry, instance: str) -> None:
        self.client = client
        self.scripts = scripts
        self.shapes = shapes
        self.instance = instance
        #: Workers attached through this instance (registered again if another hub swept them).
        self.mine: dict[str, WorkerInfo] = {}
        #: The profile id of each of them (which shape queues its claims look at).
        self.profiles: dict[str, str] = {}

    async def attach(self, info: WorkerInfo, now: float) -> None:
        profile = Profile.build(info.serving(), info.capabilities)
        pid = await self.shapes.ensure_profile(profile)
        info.last_seen = now
        await self.scripts.call(
            "attach",
            self.instance,
            info.id,
            encode_info(info),
            pid,
            str(info.slots),
            num(profile.gpu_memory),
            str(profile.max_customers or ""),
            num(now),
            info.principal or "",
        )
        self.mine[info.id] = info
        self.profiles[info.id] = pid

    async def detach(self, worker_id: str, now: float, unreached_after: float | None = None) -> list[Job]:
        self.mine.pop(worker_id, None)
        self.profiles.pop(worker_id, None)
        reply = await self.scripts.call("detach", self.instance, worker_id, num(now), num(unreached_after))
        return [job_of_flat(flat) for flat in reply]

    async def touch(
        self, worker_id: str, now: float, lease_ttl: float, metrics: dict[str, float] | None = None
    ) -> None:
        args = (self.instance, worker_id, num(now), num(lease_deadline(now, lease_ttl)))
        blob = encode_metrics(metrics) if metrics is not None else ""
        running = await self.scripts.call("touch", *args, blob)
        info = self.mine.get(worker_id)
        if running == -1 and info is not None:
            # Another hub took this one for dead and swept its workers: register it again.
            log.warning(
                "worker %s was taken out of the registry by another hub; registering it again", worker_id
            )
            await self.attach(info, now)
            await self.scripts.call("touch", *args, blob)

    async def _ids(self) -> list[str]:
        """Registered worker ids, in the order they attached."""
        return [i.decode() for i in await self.client.cmd("ZRANGE", self.client.key("workers"), 0, -1)]

    async def infos(self) -> list[WorkerInfo]:
        key = self.client.key
        ids = await self._ids()
        replies = await self.client.pipeline(
            [cmd for i in ids for cmd in (("HGETALL", key("w", i)), ("HKEYS", key("wrun", i)))]
        )
        out = []
        for n in range(len(ids)):
            fields, running = replies[2 * n], replies[2 * n + 1]
            if fields:
                out.append(info_of(fields, running))
        return out

    async def snapshot(self) -> list[Registered]:
        """Every registered worker (whose profile is known) with its profile, free slots and
        load, in the order they attached."""
        key = self.client.key
        ids = await self._ids()
        replies = await self.client.pipeline(
            [
                cmd
                for i in ids
                for cmd in (
                    ("HMGET", key("w", i), "prof", "slots"),
                    ("HLEN", key("wrun", i)),
                    ("HGETALL", key("wload", i)),
                )
            ]
        )
        profiles = await self.shapes.profiles(r[0].decode() for r in replies[0::3] if r[0] is not None)
        out = []
        for n, worker_id in enumerate(ids):
            (prof, slots), running, loaded = replies[3 * n], replies[3 * n + 1], replies[3 * n + 2]
            pid = None if prof is None else prof.decode()
            profile = None if pid is None else profiles.get(pid)
            if pid is None or profile is None:
                continue
            load = Load(gpu_in_use=float(loaded.get(b"gpu", b"0")))
            for field, value in loaded.items():
                if field.startswith(b"c:") and int(value) > 0:
                    load.customers[field[2:].decode()] = int(value)
            free = max(0, int(slots or 0) - int(running))
            out.append((pid, Candidate(worker_id, profile, free, load)))
        return out
