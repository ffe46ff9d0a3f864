"""What the Redis store answers about the queue without changing it: ``explain``, ``blocked``
and ``stats``.

The rules are the core's (``core/explain.py``), the same the embedded stores apply through
``core/index.py``; this module only reads what they need from Redis: the registry of workers
(with their profiles and loads), the job's shape and place, the sizes of the shape queues.
"""

from __future__ import annotations

from jobq.core.explain import Explanation, blocked_queues, competing, explanation, judge
from jobq.core.model import StoreStats
from jobq.store.redis_client import RedisClient
from jobq.store.redis_shapes import ShapeRegistry
from jobq.store.redis_workers import WorkerRegistry

#: Characters of a queue member that order it: 8 of priority, then 12 of seq (docs/redis.md).
ORDER_PREFIX = 20


class Queries:
    def __init__(self, client: RedisClient, shapes: ShapeRegistry, workers: WorkerRegistry) -> None:
        self.client = client
        self.shapes = shapes
        self.workers = workers

    async def explain(self, job_id: int, now: float) -> Explanation | None:
        key = self.client.key
        state, sid, member, since = await self.client.cmd(
            "HMGET", key("job", job_id), "state", "shape", "m", "since"
        )
        if state != b"queued":
            return None
        own = sid.decode()
        shape = await self.shapes.shape(own)
        if shape is None:
            return None
        registry = await self.workers.snapshot()
        verdict = judge(shape, (worker for _, worker in registry))
        profile_of = {worker.id: pid for pid, worker in registry}
        pids = sorted({profile_of[w] for w in verdict.eligible})
        eligible_shapes = await self.client.pipeline([("SMEMBERS", key("elig", p)) for p in pids])
        shapes_of = {
            pid: [m.decode() for m in members] for pid, members in zip(pids, eligible_shapes, strict=True)
        }
        queues = competing(own, verdict.eligible, lambda w: shapes_of[profile_of[w]])
        # Members of a queue sort by priority, then seq: those before this one are ahead of it.
        before = "(" + member.decode()[:ORDER_PREFIX]
        counts = await self.client.pipeline([("ZLEXCOUNT", key("q", s), "-", before) for s in sorted(queues)])
        return explanation(verdict, sum(int(c) for c in counts), float(since or now), now)

    async def blocked(self) -> list[tuple[int, str]]:
        key = self.client.key
        shapes = await self.shapes.all_shapes()
        sids = sorted(shapes)
        sizes = await self.client.pipeline([("ZCARD", key("q", s)) for s in sids])
        live = [s for s, size in zip(sids, sizes, strict=True) if size]
        if not live:
            return []
        workers = [(worker.id, worker.profile) for _, worker in await self.workers.snapshot()]
        out: list[tuple[int, str]] = []
        for sid, reason in blocked_queues(((s, shapes[s]) for s in live), workers):
            members = await self.client.cmd("ZRANGE", key("q", sid), 0, -1)
            out.extend((int(m[ORDER_PREFIX:]), reason) for m in members)
        return sorted(out)

    async def stats(self) -> StoreStats:
        counts = await self.client.cmd("HGETALL", self.client.key("counts"))
        by_state: dict[str, int] = {}
        by_service: dict[str, dict[str, int]] = {}
        for field, raw in counts.items():
            count = int(raw)
            if count <= 0:
                continue
            service, _, state = field.decode().rpartition("\t")
            by_state[state] = by_state.get(state, 0) + count
            by_service.setdefault(service, {})[state] = count
        return StoreStats(by_state=by_state, by_service=by_service)
