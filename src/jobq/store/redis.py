"""``redis://HOST:PORT/DB`` (``rediss://`` for TLS): several hubs on one Redis are one queue.

The truth of the queue lives in Redis, laid out as the embedded stores lay it out in memory
(``core/index.py``): one sorted set per requirement shape, a set of eligible shapes per worker
profile, a running set and a load per worker. Every change of a job is one Lua script
(``store/lua``), so claim, complete, fail, release and the rest are atomic across hubs; rules
that need Python (matching, the retry decision) are decided in Python and applied by a script
that first checks the fencing token. The key layout, cluster readiness, memory figures and the
map of which Lua function mirrors which Python function are in ``docs/redis.md``.

This module puts the store together from parts of one concept each:

- ``redis_client``: connections, timeouts, what an unreachable Redis turns into;
- ``redis_scripts``: the Lua scripts, loaded once and called by digest;
- ``redis_shapes``: shapes, worker profiles and which profile satisfies which shape;
- ``redis_workers``: the registry of workers attached through every hub;
- ``redis_jobs``: the job operations and the tick;
- ``redis_queries``: explain, blocked and stats (the rules are ``core/explain.py``'s);
- ``redis_bus``: notifications between hubs; ``redis_codec``: how things are written.

Several hubs: each hub instance registers the workers attached through it and ticks; a hub
silent for ``hub_ttl`` seconds has its workers taken out of the registry by another hub (their
jobs stay theirs until their leases run out, so a worker that reconnects elsewhere keeps them).
Hubs tell each other about runnable jobs, events and stops through a stream (``redis_bus``).

Failures: every Redis call has a timeout; while Redis cannot be reached each call raises
:class:`~jobq.errors.Unavailable` with the reason, the outage is logged once, and the store
recovers by itself (connections are re-made on the next call, scripts re-loaded if Redis lost
them, and the hub is told to dispatch when Redis answers again).

URL options (``?prefix=...&timeout=...``): ``prefix`` (key namespace, default ``jobq``),
``timeout`` (seconds per Redis call, default 2), ``hub_ttl`` (seconds, default 15),
``lease_pause`` (seconds without any tick after which leases are pushed back, default 10),
``max_connections`` (default 64). Other options go to redis-py (``ssl_cert_reqs=...``).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from jobq.core.explain import Explanation
from jobq.core.history import HistoryRow
from jobq.core.lease import DEFAULT_LEASE_TTL
from jobq.core.matching import DEFAULT_RESERVE_AFTER
from jobq.core.model import Completion, Job, JobEvent, JobFilter, JobSpec, StoreStats, Submitted, WorkerInfo
from jobq.core.operations import MAX_PAUSED
from jobq.core.retention import DEFAULT_FAILED_TTL, DEFAULT_RESULT_TTL
from jobq.errors import InvalidRequest, JobqError, Unavailable
from jobq.store.history_redis import RedisHistory
from jobq.store.redis_bus import BLOCK_MS, Bus
from jobq.store.redis_client import RedisClient
from jobq.store.redis_codec import num
from jobq.store.redis_groups import RedisGroups
from jobq.store.redis_jobs import JobOps
from jobq.store.redis_queries import Queries
from jobq.store.redis_schedules import RedisSchedules
from jobq.store.redis_scripts import Scripts
from jobq.store.redis_shapes import ShapeRegistry
from jobq.store.redis_workers import WorkerRegistry
from jobq.store.reports import StoreListener, TickResult

log = logging.getLogger("jobq.store.redis")

#: The key layout (docs/redis.md). Hubs with another layout refuse a namespace stamped with this.
LAYOUT = "1"
#: Our own URL options, with their defaults.
OPTIONS: dict[str, float | str] = {
    "prefix": "jobq",
    "timeout": 2.0,
    "hub_ttl": 15.0,
    "lease_pause": 10.0,
    "max_connections": 64,
}


class RedisStore(RedisGroups, RedisSchedules):  # groups: redis_groups.py; cron schedules: redis_schedules.py
    #: Several hubs share it: events and stops cross between them.
    shared = True

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "jobq",
        timeout: float = 2.0,
        hub_ttl: float = 15.0,
        lease_pause: float = 10.0,
        max_connections: int = 64,
        result_ttl: float = DEFAULT_RESULT_TTL,
        failed_ttl: float = DEFAULT_FAILED_TTL,
        reserve_after: float = DEFAULT_RESERVE_AFTER,
    ) -> None:
        if not prefix or any(ch in prefix for ch in "{}"):
            raise InvalidRequest("the redis key prefix must be non-empty and without braces")
        if timeout <= 0 or hub_ttl <= 0 or lease_pause <= 0 or max_connections < 2:
            raise InvalidRequest("redis store options must be positive (max_connections at least 2)")
        self.redis_url = url
        self.prefix = prefix
        self.timeout = timeout
        self.hub_ttl = hub_ttl
        self.lease_pause = lease_pause
        self.max_connections = max_connections
        self.result_ttl = result_ttl
        self.failed_ttl = failed_ttl
        self.reserve_after = reserve_after
        #: This hub process's id in the registry (a restarted hub is a new instance).
        self.instance = uuid.uuid4().hex[:12]
        self.client = RedisClient(
            url,
            # Every key starts with this: the hash tag keeps the namespace on one cluster slot.
            tag="{" + prefix + "}:",
            timeout=timeout,
            max_connections=max_connections,
            name=f"jobq-{self.instance}",
            block=BLOCK_MS / 1000,
        )
        self.tag = self.client.tag
        self.where = self.client.where
        shown = f"{urlsplit(url).scheme}://{self.where}"
        self.url = shown + (f"?prefix={prefix}" if prefix != "jobq" else "")
        # fail.lua, release: FAILED_TTL; groups.lua: a group is kept RESULT_TTL (FAILED_TTL) after its end
        self.scripts = Scripts(self.client, failed_ttl=failed_ttl, result_ttl=result_ttl)
        self._shapes = ShapeRegistry(self.client, self.scripts)
        self._workers = WorkerRegistry(self.client, self.scripts, self._shapes, self.instance)
        self._jobs = JobOps(
            self.client,
            self.scripts,
            self._shapes,
            self.instance,
            result_ttl=result_ttl,
            reserve_after=reserve_after,
            hub_ttl=hub_ttl,
            lease_pause=lease_pause,
        )
        self._queries = Queries(self.client, self._shapes, self._workers)
        self._history = RedisHistory(self.client)  # store/history_redis.py
        self._bus: Bus | None = None
        self._listener: StoreListener | None = None
        #: The worker of the last claim, if that claim found its profile's queues empty.
        self._emptied_for: str | None = None

    @classmethod
    def from_url(
        cls, url: str, *, result_ttl: float = DEFAULT_RESULT_TTL, failed_ttl: float = DEFAULT_FAILED_TTL
    ) -> RedisStore:
        """``redis://host:port/db?prefix=...``: our options are taken out, the rest is redis-py's;
        ``result_ttl``, ``failed_ttl``: the hub's retention settings."""
        parts = urlsplit(url)
        ours: dict[str, Any] = {}
        theirs = []
        for key, value in parse_qsl(parts.query):
            if key in OPTIONS:
                default = OPTIONS[key]
                try:
                    ours[key] = type(default)(value)
                except ValueError:
                    raise InvalidRequest(f"redis store option {key}={value!r} is not a number") from None
            else:
                theirs.append((key, value))
        url = urlunsplit(parts._replace(query=urlencode(theirs)))
        return cls(url, **ours, result_ttl=result_ttl, failed_ttl=failed_ttl)

    def key(self, *parts: str | int) -> str:
        return self.client.key(*parts)

    # ------------------------------------------------------------------ life cycle

    async def open(self, now: float, lease_ttl: float = DEFAULT_LEASE_TTL) -> None:
        self.client.connect()
        try:
            await self.client.cmd("PING")
            await self.scripts.load()
            await self.client.cmd("SET", self.key("layout"), LAYOUT, "NX")
            layout = await self.client.cmd("GET", self.key("layout"))
            # Alive from now on (tick.lua keeps it so): the other hubs' scripts write the bus
            # entries this hub reads only while they see another hub alive (prelude.lua heard).
            await self.client.cmd("ZADD", self.key("inst"), num(now), self.instance)
        except JobqError as exc:
            await self.client.close()
            raise Unavailable(f"cannot use redis at {self.where}: {exc.message}") from None
        if layout != LAYOUT.encode():
            await self.client.close()
            raise InvalidRequest(
                f"the keys under prefix {self.prefix!r} are laid out for another version of jobq"
                f" (layout {layout!r}, this one writes {LAYOUT}): use another prefix"
            )
        self._bus = Bus(
            self.key("bus"),
            lambda job_id: self.key("job", job_id),
            self.instance,
            self.client.call,  # XADD, XREVRANGE, HGET: raw replies, on the pipelined connection
            self.client.read,
        )
        if self._listener is not None:
            self._bus.start(self._listener)

    async def close(self) -> None:
        if not self.client.connected:
            return
        try:
            await self.scripts.call("sweep", self.instance)
        except JobqError as exc:
            log.debug("could not unregister this hub's workers: %s", exc.message)
        if self._bus is not None:
            await self._bus.close()
            self._bus = None
        await self.client.close()

    # ------------------------------------------------------------------ jobs

    async def submit(self, specs: Sequence[JobSpec], now: float) -> list[Submitted]:
        return await self._jobs.submit(specs, now)

    async def get(self, job_id: int) -> Job | None:
        return await self._jobs.get(job_id)

    async def list_jobs(self, query: JobFilter) -> list[Job]:
        return await self._jobs.list_jobs(await self._group_query(query))

    async def cancel(self, job_id: int, now: float) -> tuple[Job, str | None]:
        return await self._jobs.cancel(job_id, now)

    async def retry(self, job_id: int, now: float) -> Job:
        return await self._jobs.retry(job_id, now)  # a member's group: group_retry in retry.lua

    async def stats(self) -> StoreStats:
        return await self._queries.stats()

    async def set_customer_weight(self, customer: str, weight: float) -> None:
        await self._jobs.set_customer_weight(customer, weight)

    # ------------------------------------------------------------------ workers

    async def attach_worker(self, info: WorkerInfo, now: float) -> None:
        await self._workers.attach(info, now)

    async def detach_worker(
        self, worker_id: str, now: float, unreached_after: float | None = None
    ) -> list[Job]:
        return await self._workers.detach(worker_id, now, unreached_after)

    async def touch_worker(
        self, worker_id: str, now: float, lease_ttl: float, metrics: dict[str, float] | None = None
    ) -> None:
        await self._workers.touch(worker_id, now, lease_ttl, metrics)

    async def list_workers(self) -> list[WorkerInfo]:
        return await self._workers.infos()

    # ------------------------------------------------------------------ running jobs

    async def claim(self, worker_id: str, limit: int, now: float, lease_ttl: float) -> list[Job]:
        jobs = await self._jobs.claim(worker_id, limit, now, lease_ttl)
        self._emptied_for = worker_id if self._jobs.emptied else None
        await self._note_group_workers(worker_id, jobs)  # FINISHED goes to it: redis_groups.py
        return jobs

    async def adopt(
        self, worker_id: str, held: Sequence[tuple[int, int]], now: float, lease_ttl: float
    ) -> list[int]:
        return await self._jobs.adopt(worker_id, held, now, lease_ttl)

    async def progress(
        self, job_id: int, token: int, value: float | None, message: str | None, now: float
    ) -> Job:
        return await self._jobs.progress(job_id, token, value, message, now)

    async def complete(self, results: Sequence[Completion], now: float) -> list[Job | Exception]:
        return await self._jobs.complete(results, now)

    async def fail(
        self,
        job_id: int,
        token: int,
        error: str,
        now: float,
        *,
        retryable: bool = True,
        rand: float = 0.5,
        traceback: str | None = None,
    ) -> Job:
        return await self._jobs.fail(job_id, token, error, now, retryable, rand, traceback)

    async def release(self, job_id: int, token: int, now: float) -> Job:
        return await self._jobs.release(job_id, token, now)

    # ------------------------------------------------------------------ time

    async def tick(self, now: float) -> TickResult:
        result = TickResult()
        try:
            await self._jobs.tick(now, result)
            result.promoted += await self.finish_held(now)  # finalize jobs a hub left: redis_groups.py
        except Unavailable:
            # Logged once by the client; the clock goes on and the next tick catches up.
            return result
        bus = self._bus
        if bus is not None:
            bus.alone = self._jobs.hubs_alive <= 1
            for job, worker in result.expired:
                if worker is not None and worker not in self._workers.mine:
                    bus.stop(worker, [job.id])
        return result

    async def next_due(self) -> float | None:
        return await self._jobs.next_due()

    # ------------------------------------------------------------------ explaining

    async def explain(self, job_id: int, now: float) -> Explanation | None:
        return await self._queries.explain(job_id, now)

    async def blocked(self) -> list[tuple[int, str]]:
        return await self._queries.blocked()

    # ------------------------------------------------------------------ history

    async def record_history(self, rows: Sequence[HistoryRow], now: float) -> None:
        await self._history.record(rows, now)

    async def read_history(
        self, since: int, until: int, resolution: int, service: str | None = None
    ) -> list[HistoryRow]:
        return await self._history.read(since, until, resolution, service)

    # ------------------------------------------------------------------ paused services

    async def set_paused(self, service: str, paused: bool) -> bool:
        """The set ``paused`` of the namespace; the other hubs hear of a change on the bus."""
        key = self.key("paused")
        if paused and await self.client.cmd("SCARD", key) >= MAX_PAUSED:
            raise InvalidRequest(f"at most {MAX_PAUSED} services may be paused at once")
        changed = bool(await self.client.cmd("SADD" if paused else "SREM", key, service))
        if changed and self._bus is not None:
            await self._bus.paused()
        return changed

    async def paused_services(self) -> list[str]:
        return sorted(name.decode() for name in await self.client.cmd("SMEMBERS", self.key("paused")))

    # ------------------------------------------------------------------ several hubs

    def has_queued(self) -> bool:
        """Other hubs queue jobs too: always worth asking Redis."""
        return True

    def claim_scope(self, worker_id: str) -> str | None:
        """The worker's profile id: workers of one profile look at the same shape queues."""
        return self._workers.profiles.get(worker_id)

    def claimed_empty(self, worker_id: str) -> bool:
        # Read once, by the dispatcher right after the claim: a later question about a worker
        # whose claim never reached the store (drained, suspended) must not see this answer.
        emptied, self._emptied_for = self._emptied_for == worker_id, None
        return emptied

    def listen(self, listener: StoreListener) -> None:
        self._listener = listener
        self.client.on_ready = listener.on_ready
        if self._bus is not None:
            self._bus.start(listener)

    def broadcast(self, event: JobEvent) -> None:
        if self._bus is not None:
            self._bus.event(event)

    def notify_stop(self, worker_id: str, job_ids: list[int]) -> None:
        if self._bus is not None:
            self._bus.stop(worker_id, job_ids)

    def notify_finished(self, group_id: int, workers: list[str]) -> None:
        if self._bus is not None and workers:
            self._bus.finished(group_id, workers)


__all__ = ["RedisStore"]
