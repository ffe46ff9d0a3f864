"""``redis://HOST:PORT/DB`` (``rediss://`` for TLS): several hubs on one Redis are one queue.

The truth of the queue lives in Redis, laid out as the embedded stores lay it out in memory
(``core/index.py``): one sorted set per requirement shape, a set of eligible shapes per worker
profile, a running set and a load per worker. Every change of a job is one Lua script
(``store/lua``), so claim, complete, fail, release and the rest are atomic across hubs; rules
that need Python (matching, the retry decision) are decided here and applied by a script that
first checks the fencing token. The key layout, cluster readiness and memory figures are in
``docs/redis.md``.

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

import asyncio
import contextlib
import functools
import hashlib
import logging
import uuid
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobq.core import retry
from jobq.core.index import DEFAULT_RESERVE_AFTER, Explanation
from jobq.core.lease import lease_deadline
from jobq.core.matching import Load, Profile, Shape, first_miss, load_miss, shape_of
from jobq.core.model import (
    Completion,
    Job,
    JobEvent,
    JobFilter,
    JobSpec,
    StoreStats,
    Submitted,
    WorkerInfo,
    new_job,
    start_time,
)
from jobq.core.states import JobState
from jobq.errors import Conflict, InvalidRequest, JobqError, LeaseLost, NotFound, Unavailable
from jobq.store.base import StoreListener, TickResult
from jobq.store.embedded import DEAD_LETTER_TTL, DEFAULT_RESULT_TTL
from jobq.store.redis_bus import BLOCK_MS, BUS_AGE, BUS_LENGTH, Bus
from jobq.store.redis_codec import (
    decode_profile,
    decode_shape,
    decode_static,
    encode_frames,
    encode_info,
    encode_metrics,
    encode_profile,
    encode_shape,
    encode_static,
    frame,
    info_of,
    job_of,
    job_of_flat,
    num,
    priority_prefix,
)

log = logging.getLogger("jobq.store.redis")

SCRIPTS = (
    "submit",
    "claim",
    "complete",
    "fail",
    "release",
    "cancel",
    "retry",
    "progress",
    "attach",
    "detach",
    "touch",
    "adopt",
    "register",
    "sweep",
    "tick",
)
#: The key layout (docs/redis.md). Hubs with another layout refuse a namespace stamped with this.
LAYOUT = "1"
#: Most due items one tick handles per kind (the rest wait for the next tick).
TICK_LIMIT = 1000
#: Tries to register a new shape or profile while other hubs keep registering others.
REGISTER_TRIES = 20
#: Our own URL options, with their defaults.
OPTIONS: dict[str, float | str] = {
    "prefix": "jobq",
    "timeout": 2.0,
    "hub_ttl": 15.0,
    "lease_pause": 10.0,
    "max_connections": 64,
}

#: Errors that mean Redis cannot be reached (or cannot answer) right now.
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError)


@functools.cache
def _load_scripts() -> dict[str, str]:
    """Each script is the shared prelude (with our constants filled in) and its own body."""
    folder = resources.files("jobq.store") / "lua"
    prelude = folder.joinpath("prelude.lua").read_text()
    for name, value in (
        ("@DEAD_LETTER_TTL@", num(DEAD_LETTER_TTL)),
        ("@BUS_LENGTH@", str(BUS_LENGTH)),
        ("@BUS_AGE@", num(BUS_AGE)),
    ):
        prelude = prelude.replace(name, value)
    # Each body runs as main(); what it left for its end (counts, fairness) is written after.
    return {
        name: f"{prelude}\nlocal function main()\n{folder.joinpath(f'{name}.lua').read_text()}\nend\n"
        "local result = main()\nflush()\nreturn result\n"
        for name in SCRIPTS
    }


def _shape_for(job: JobSpec) -> Shape:
    return shape_of(job.service, job.requires, job.must_not, job.customer_id, job.isolation, job.payload)


class RedisStore:
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
        reserve_after: float = DEFAULT_RESERVE_AFTER,
    ) -> None:
        if not prefix or any(ch in prefix for ch in "{}"):
            raise InvalidRequest("the redis key prefix must be non-empty and without braces")
        if timeout <= 0 or hub_ttl <= 0 or lease_pause <= 0 or max_connections < 2:
            raise InvalidRequest("redis store options must be positive (max_connections at least 2)")
        parts = urlsplit(url)
        self.redis_url = url
        self.where = f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"
        shown = f"{parts.scheme}://{self.where}"
        self.url = shown + (f"?prefix={prefix}" if prefix != "jobq" else "")
        self.prefix = prefix
        #: Every key starts with this: the hash tag keeps the namespace on one cluster slot.
        self.tag = "{" + prefix + "}:"
        self.timeout = timeout
        self.hub_ttl = hub_ttl
        self.lease_pause = lease_pause
        self.max_connections = max_connections
        self.result_ttl = result_ttl
        self.reserve_after = reserve_after
        #: This hub process's id in the registry (a restarted hub is a new instance).
        self.instance = uuid.uuid4().hex[:12]
        self._sources = _load_scripts()
        self._shas = {name: hashlib.sha1(src.encode()).hexdigest() for name, src in self._sources.items()}
        self._redis: Redis | None = None
        self._reader: Redis | None = None
        self._bus: Bus | None = None
        self._listener: StoreListener | None = None
        self._healthy = True
        self._shapes: dict[str, Shape] = {}
        self._encodings: dict[Shape, tuple[str, bytes, str]] = {}
        self._profiles: dict[str, Profile] = {}
        #: Workers attached through this instance (registered again if another hub swept them).
        self._mine: dict[str, WorkerInfo] = {}

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        """``redis://host:port/db?prefix=...``: our options are taken out, the rest is redis-py's."""
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
        return cls(urlunsplit(parts._replace(query=urlencode(theirs))), **ours)

    def key(self, *parts: str | int) -> str:
        return self.tag + ":".join(str(p) for p in parts)

    # ------------------------------------------------------------------ talking to Redis

    def _pool(self, size: int, read_timeout: float) -> Redis:
        pool = BlockingConnectionPool.from_url(
            self.redis_url,
            max_connections=size,
            timeout=self.timeout,
            socket_timeout=read_timeout,
            socket_connect_timeout=self.timeout,
            # No retries inside redis-py: a script whose reply was lost may have run, and only
            # the caller (with its idempotency key or fencing token) can retry it safely.
            retry=Retry(NoBackoff(), 0),
            client_name=f"jobq-{self.instance}",
        )
        return Redis(connection_pool=pool)

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise Unavailable("the redis store is not open")
        return self._redis

    def _unreachable(self, exc: BaseException) -> Unavailable:
        reason = str(exc) or type(exc).__name__
        if self._healthy:
            self._healthy = False
            log.warning("redis at %s is unreachable: %s", self.where, reason)
        return Unavailable(
            f"the store is unavailable: redis at {self.where} did not answer ({reason})",
            hint="the hub recovers by itself when redis is back; try again later",
        )

    def _answered(self) -> None:
        if not self._healthy:
            self._healthy = True
            log.info("redis at %s answers again", self.where)
            if self._listener is not None:
                self._listener.on_ready()

    async def _run(self, client: Redis, args: Sequence[Any], timeout: float) -> Any:
        try:
            async with asyncio.timeout(timeout):
                reply = await client.execute_command(*args)  # type: ignore[no-untyped-call]
        except NoScriptError:
            raise
        except ResponseError as exc:
            if str(exc).startswith(("BUSY", "LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN")):
                raise self._unreachable(exc) from None
            raise JobqError(f"redis refused a command: {exc}") from None
        except _UNREACHABLE as exc:
            await self._forget_connections(client)
            raise self._unreachable(exc) from None
        self._answered()
        return reply

    @staticmethod
    async def _forget_connections(client: Redis) -> None:
        """Close the idle pooled connections: after an outage they are dead, and a call that
        took one would fail once more (redis-py retries nothing here, on purpose)."""
        with contextlib.suppress(Exception):
            await client.connection_pool.disconnect(inuse_connections=False)

    async def _cmd(self, *args: Any) -> Any:
        return await self._run(self.redis, args, self.timeout)

    async def _read(self, *args: Any) -> Any:
        """A blocking read of the bus, on its own connection."""
        if self._reader is None:
            raise Unavailable("the redis store is not open")
        return await self._run(self._reader, args, self.timeout + BLOCK_MS / 1000)

    async def _pipeline(self, commands: Sequence[Sequence[Any]], *, transaction: bool = False) -> list[Any]:
        if not commands:
            return []
        try:
            async with asyncio.timeout(self.timeout):
                pipe = self.redis.pipeline(transaction=transaction)
                for command in commands:
                    pipe.execute_command(*command)
                replies = await pipe.execute()
        except ResponseError as exc:
            raise JobqError(f"redis refused a command: {exc}") from None
        except _UNREACHABLE as exc:
            await self._forget_connections(self.redis)
            raise self._unreachable(exc) from None
        self._answered()
        return replies

    async def _script(self, name: str, *args: Any) -> Any:
        command = ("EVALSHA", self._shas[name], 1, self.tag, *args)
        try:
            return await self._run(self.redis, command, self.timeout)
        except NoScriptError:
            # Redis restarted (or flushed its scripts): load it again, once.
            await self._cmd("SCRIPT", "LOAD", self._sources[name])
            return await self._run(self.redis, command, self.timeout)

    # ------------------------------------------------------------------ life cycle

    async def open(self, now: float) -> None:
        self._redis = self._pool(self.max_connections, self.timeout)
        self._reader = self._pool(2, self.timeout + BLOCK_MS / 1000)
        try:
            await self._cmd("PING")
            await self._pipeline([("SCRIPT", "LOAD", source) for source in self._sources.values()])
            await self._cmd("SET", self.key("layout"), LAYOUT, "NX")
            layout = await self._cmd("GET", self.key("layout"))
        except JobqError as exc:
            await self._close_clients()
            raise Unavailable(f"cannot use redis at {self.where}: {exc.message}") from None
        if layout != LAYOUT.encode():
            await self._close_clients()
            raise InvalidRequest(
                f"the keys under prefix {self.prefix!r} are laid out for another version of jobq"
                f" (layout {layout!r}, this one writes {LAYOUT}): use another prefix"
            )
        self._bus = Bus(
            self.key("bus"), lambda job_id: self.key("job", job_id), self.instance, self._cmd, self._read
        )
        if self._listener is not None:
            self._bus.start(self._listener)

    async def close(self) -> None:
        if self._redis is None:
            return
        try:
            await self._script("sweep", self.instance)
        except JobqError as exc:
            log.debug("could not unregister this hub's workers: %s", exc.message)
        if self._bus is not None:
            await self._bus.close()
            self._bus = None
        await self._close_clients()

    async def _close_clients(self) -> None:
        for client in (self._redis, self._reader):
            if client is not None:
                await client.aclose(close_connection_pool=True)
        self._redis = self._reader = None

    # ------------------------------------------------------------------ shapes and profiles

    async def _register(
        self, shapes: Mapping[str, tuple[Shape, bytes, str]], profiles: Mapping[str, tuple[Profile, bytes]]
    ) -> None:
        """Make new shapes and profiles known, each with the pairs that match. The pairs are
        computed against a snapshot of the registry; the script refuses if it changed since."""
        for _ in range(REGISTER_TRIES):
            gen, shape_blobs, profile_blobs = await self._pipeline(
                [
                    ("GET", self.key("gen")),
                    ("HGETALL", self.key("shapes")),
                    ("HGETALL", self.key("profiles")),
                ],
                transaction=True,
            )
            known_shapes = self._decode_shapes(shape_blobs)
            known_profiles = self._decode_profiles(profile_blobs)
            new_shapes = {sid: v for sid, v in shapes.items() if sid not in known_shapes}
            new_profiles = {pid: v for pid, v in profiles.items() if pid not in known_profiles}
            if not new_shapes and not new_profiles:
                return
            all_shapes = {**known_shapes, **{sid: v[0] for sid, v in new_shapes.items()}}
            all_profiles = {**known_profiles, **{pid: v[0] for pid, v in new_profiles.items()}}
            pairs: list[str] = []
            for sid, shape in all_shapes.items():
                for pid, profile in all_profiles.items():
                    if (sid in new_shapes or pid in new_profiles) and first_miss(shape, profile) is None:
                        pairs += [sid, pid]
            args: list[Any] = [gen or b"0", len(new_shapes)]
            for sid, (_, blob, meta) in new_shapes.items():
                args += [sid, blob, meta]
            args.append(len(new_profiles))
            for pid, (_, blob) in new_profiles.items():
                args += [pid, blob]
            args += [len(pairs) // 2, *pairs]
            if await self._script("register", *args) == 1:
                self._shapes.update({sid: v[0] for sid, v in new_shapes.items()})
                self._profiles.update({pid: v[0] for pid, v in new_profiles.items()})
                return
        raise Unavailable("could not register a new job shape or worker profile: try again")

    def _decode_shapes(self, blobs: Mapping[bytes, bytes]) -> dict[str, Shape]:
        out = {}
        for raw_id, blob in blobs.items():
            sid = raw_id.decode()
            shape = self._shapes.get(sid)
            if shape is None:
                shape = self._shapes[sid] = decode_shape(blob)
            out[sid] = shape
        return out

    def _decode_profiles(self, blobs: Mapping[bytes, bytes]) -> dict[str, Profile]:
        out = {}
        for raw_id, blob in blobs.items():
            pid = raw_id.decode()
            profile = self._profiles.get(pid)
            if profile is None:
                profile = self._profiles[pid] = decode_profile(blob)
            out[pid] = profile
        return out

    async def _ensure_shapes(self, shapes: Mapping[str, tuple[Shape, bytes, str]]) -> None:
        unknown = [sid for sid in shapes if sid not in self._shapes]
        if not unknown:
            return
        metas = await self._cmd("HMGET", self.key("smeta"), *unknown)
        for sid, meta in zip(unknown, metas, strict=True):
            if meta is not None:
                self._shapes[sid] = shapes[sid][0]
        missing = {sid: shapes[sid] for sid in unknown if sid not in self._shapes}
        if missing:
            await self._register(missing, {})

    def _encoded(self, shape: Shape) -> tuple[str, bytes, str]:
        """(id, blob, meta) of a shape, computed once per distinct shape."""
        found = self._encodings.get(shape)
        if found is None:
            if len(self._encodings) > 10_000:
                self._encodings.clear()
            found = self._encodings[shape] = encode_shape(shape)
        return found

    async def _shape(self, sid: str) -> Shape | None:
        shape = self._shapes.get(sid)
        if shape is None:
            blob = await self._cmd("HGET", self.key("shapes"), sid)
            if blob is None:
                return None
            shape = self._shapes[sid] = decode_shape(blob)
        return shape

    # ------------------------------------------------------------------ jobs

    async def submit(self, specs: Sequence[JobSpec], now: float) -> list[Submitted]:
        if not specs:
            return []
        # Shapes first: a bad requirement refuses the whole batch before anything is created.
        decided = [_shape_for(spec) for spec in specs]
        shapes = [self._encoded(shape) for shape in decided]
        await self._ensure_shapes(
            {sid: (shape, blob, meta) for shape, (sid, blob, meta) in zip(decided, shapes, strict=True)}
        )
        values: list[bytes | str] = []
        for spec, (sid, _, _) in zip(specs, shapes, strict=True):
            run_at = start_time(spec, now)
            scheduled = run_at is not None
            values += [
                spec.idempotency_key or "",
                sid,
                priority_prefix(spec.priority),
                spec.service,
                spec.customer_id or "",
                "scheduled" if scheduled else "queued",
                num(run_at) if scheduled else "",
                encode_static(spec, now),
                encode_frames(spec.payload) if spec.payload else "",
                num(self.result_ttl if spec.result_ttl is None else spec.result_ttl),
                str(spec.max_attempts),
                num(spec.timeout),
            ]
        reply = await self._script("submit", self.instance, num(now), len(specs), frame(values))
        out: list[Submitted | None] = []
        existing: list[int] = []
        for i, spec in enumerate(specs):
            job_id, created = int(reply[2 * i]), reply[2 * i + 1] == 1
            if not created:
                existing.append(job_id)
                out.append(None)
                continue
            out.append(Submitted(job=new_job(spec, job_id, now), created=True))
        if existing:
            found = dict(zip(existing, await self._jobs(existing), strict=True))
            for i, item in enumerate(out):
                if item is None:
                    job = found[int(reply[2 * i])]
                    if job is None:  # purged in between: the key is free again, so ask again
                        return await self.submit(specs, now)
                    out[i] = Submitted(job=job, created=False)
        return [item for item in out if item is not None]

    async def _jobs(self, ids: Sequence[int]) -> list[Job | None]:
        """Jobs by id (None for unknown ones): each is its hash, its payload and its result."""
        replies = await self._pipeline(
            [
                cmd
                for i in ids
                for cmd in (
                    ("HGETALL", self.key("job", i)),
                    ("GET", self.key("p", i)),
                    ("GET", self.key("r", i)),
                )
            ]
        )
        out: list[Job | None] = []
        for n, job_id in enumerate(ids):
            fields, payload, result = replies[3 * n : 3 * n + 3]
            if not fields:
                out.append(None)
                continue
            if payload is not None:
                fields[b"p"] = payload
            if result is not None:
                fields[b"res"] = result
            out.append(job_of(job_id, fields))
        return out

    async def get(self, job_id: int) -> Job | None:
        (job,) = await self._jobs([job_id])
        return job

    async def list_jobs(self, query: JobFilter) -> list[Job]:
        want = query.offset + query.limit
        if want <= 0:
            return []
        if query.ids:
            ids = sorted(set(query.ids), reverse=True)
            jobs = [j for j in await self._jobs(ids) if j is not None and query.matches(j)]
            return jobs[query.offset : want]
        states = query.states or list(JobState)
        indexes = [self.key("st", state.value) for state in states]
        found: dict[int, Job] = {}
        for index in indexes:
            for job in await self._walk(index, query, want):
                found[job.id] = job
        ordered = sorted(found.values(), key=lambda j: j.id, reverse=True)
        return ordered[query.offset : want]

    async def _walk(self, index: str, query: JobFilter, want: int) -> list[Job]:
        """Up to ``want`` jobs of one index (newest first) that match ``query``."""
        matched: list[Job] = []
        page = min(max(want, 100), 1000)
        top = "+inf"
        while len(matched) < want:
            ids = await self._cmd("ZREVRANGEBYSCORE", index, top, "-inf", "LIMIT", 0, page)
            if not ids:
                break
            numbers = [int(i) for i in ids]
            matched.extend(j for j in await self._jobs(numbers) if j is not None and query.matches(j))
            if len(ids) < page:
                break
            top = f"({numbers[-1]}"
        return matched[:want]

    async def cancel(self, job_id: int, now: float) -> tuple[Job, str | None]:
        reply = await self._script("cancel", self.instance, job_id, num(now))
        if reply[0] == b"missing":
            raise NotFound(f"no job {job_id}")
        if reply[0] == b"ended":
            raise Conflict(f"job {job_id} already ended {reply[1].decode()}")
        worker = reply[1].decode() or None
        return job_of_flat(reply[2]), worker

    async def retry(self, job_id: int, now: float) -> Job:
        reply = await self._script("retry", self.instance, job_id, num(now))
        if reply[0] == b"missing":
            raise NotFound(f"no job {job_id}")
        if reply[0] == b"conflict":
            raise Conflict(
                f"only failed or cancelled jobs can be retried; job {job_id} is {reply[1].decode()}"
            )
        return job_of_flat(reply[1])

    async def stats(self) -> StoreStats:
        counts = await self._cmd("HGETALL", self.key("counts"))
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

    async def set_customer_weight(self, customer: str, weight: float) -> None:
        if not weight > 0:
            raise InvalidRequest(f"the weight of customer {customer} must be positive")
        await self._cmd("HSET", self.key("fair"), f"w:{customer}", num(float(weight)))

    # ------------------------------------------------------------------ workers

    async def attach_worker(self, info: WorkerInfo, now: float) -> None:
        profile = Profile.build(info.services, info.capabilities)
        pid, blob = encode_profile(profile)
        if pid not in self._profiles and await self._cmd("HEXISTS", self.key("profiles"), pid) == 0:
            await self._register({}, {pid: (profile, blob)})
        self._profiles.setdefault(pid, profile)
        info.last_seen = now
        await self._script(
            "attach",
            self.instance,
            info.id,
            encode_info(info),
            pid,
            str(info.slots),
            num(profile.gpu_memory),
            str(profile.max_customers or ""),
            num(now),
        )
        self._mine[info.id] = info

    async def detach_worker(self, worker_id: str, now: float) -> list[Job]:
        self._mine.pop(worker_id, None)
        reply = await self._script("detach", self.instance, worker_id, num(now))
        return [job_of_flat(flat) for flat in reply]

    async def touch_worker(
        self, worker_id: str, now: float, lease_ttl: float, metrics: dict[str, float] | None = None
    ) -> None:
        args = (self.instance, worker_id, num(now), num(lease_deadline(now, lease_ttl)))
        blob = encode_metrics(metrics) if metrics is not None else ""
        running = await self._script("touch", *args, blob)
        info = self._mine.get(worker_id)
        if running == -1 and info is not None:
            # Another hub took this one for dead and swept its workers: register it again.
            log.warning(
                "worker %s was taken out of the registry by another hub; registering it again", worker_id
            )
            await self.attach_worker(info, now)
            await self._script("touch", *args, blob)

    async def list_workers(self) -> list[WorkerInfo]:
        ids = await self._cmd("ZRANGE", self.key("workers"), 0, -1)
        replies = await self._pipeline(
            [
                cmd
                for i in ids
                for cmd in (("HGETALL", self.key("w", i.decode())), ("HKEYS", self.key("wrun", i.decode())))
            ]
        )
        out = []
        for n in range(len(ids)):
            fields, running = replies[2 * n], replies[2 * n + 1]
            if fields:
                out.append(info_of(fields, running))
        return out

    async def _registry(self) -> list[tuple[str, str, Profile, int, int, Load]]:
        """Every registered worker: (id, profile id, profile, slots, running, load)."""
        ids = [i.decode() for i in await self._cmd("ZRANGE", self.key("workers"), 0, -1)]
        replies = await self._pipeline(
            [
                cmd
                for i in ids
                for cmd in (
                    ("HMGET", self.key("w", i), "prof", "slots"),
                    ("HLEN", self.key("wrun", i)),
                    ("HGETALL", self.key("wload", i)),
                )
            ]
        )
        unknown = {r[0] for r in replies[0::3] if r[0] is not None and r[0].decode() not in self._profiles}
        if unknown:
            blobs = await self._cmd("HMGET", self.key("profiles"), *unknown)
            for raw, blob in zip(unknown, blobs, strict=True):
                if blob is not None:
                    self._profiles[raw.decode()] = decode_profile(blob)
        out = []
        for n, worker_id in enumerate(ids):
            (prof, slots), running, loaded = replies[3 * n], replies[3 * n + 1], replies[3 * n + 2]
            profile = None if prof is None else self._profiles.get(prof.decode())
            if profile is None:
                continue
            load = Load(gpu_in_use=float(loaded.get(b"gpu", b"0")))
            for field, value in loaded.items():
                if field.startswith(b"c:") and int(value) > 0:
                    load.customers[field[2:].decode()] = int(value)
            out.append((worker_id, prof.decode(), profile, int(slots or 0), int(running), load))
        return out

    # ------------------------------------------------------------------ running jobs

    async def claim(self, worker_id: str, limit: int, now: float, lease_ttl: float) -> list[Job]:
        if limit <= 0:
            return []
        reply = await self._script(
            "claim",
            self.instance,
            worker_id,
            limit,
            num(now),
            num(lease_deadline(now, lease_ttl)),
            num(self.reserve_after),
            "1",
        )
        return [job_of_flat(flat) for flat in reply]

    async def adopt(
        self, worker_id: str, held: Sequence[tuple[int, int]], now: float, lease_ttl: float
    ) -> list[int]:
        if not held:
            return []
        pairs = [str(x) for pair in held for x in pair]
        deadline = num(lease_deadline(now, lease_ttl))
        reply = await self._script("adopt", self.instance, worker_id, deadline, len(held), *pairs)
        return [int(i) for i in reply]

    async def progress(
        self, job_id: int, token: int, value: float | None, message: str | None, now: float
    ) -> Job:
        reply = await self._script(
            "progress",
            self.instance,
            job_id,
            token,
            num(value),
            message or "",
            "0" if message is None else "1",
        )
        if not reply:
            raise LeaseLost(f"attempt {token} of job {job_id} no longer holds its lease")
        return job_of_flat(reply)

    async def complete(self, results: Sequence[Completion], now: float) -> list[Job | Exception]:
        if not results:
            return []
        values: list[bytes | str] = []
        for item in results:
            values += [str(item.job_id), str(item.token), encode_frames(item.result)]
        reply = await self._script("complete", self.instance, num(now), len(results), frame(values))
        out: list[Job | Exception] = []
        for item, flat in zip(results, reply, strict=True):
            if flat:
                job = job_of_flat(flat)
                job.result = item.result  # the script does not send back what we sent it
                out.append(job)
            else:
                out.append(LeaseLost(f"attempt {item.token} of job {item.job_id} no longer holds its lease"))
        return out

    async def fail(
        self,
        job_id: int,
        token: int,
        error: str,
        now: float,
        *,
        retryable: bool = True,
        rand: float = 0.5,
    ) -> Job:
        job = await self._fail_attempt(job_id, token, lambda _: error, now, retryable, rand)
        if job is None:
            raise LeaseLost(f"attempt {token} of job {job_id} no longer holds its lease")
        return job

    async def _fail_attempt(
        self, job_id: int, token: int, error: Any, now: float, retryable: bool, rand: float
    ) -> Job | None:
        """Apply the retry rules to a failed attempt; None when it no longer holds the job.
        ``error`` makes the message from the job's static part."""
        state, attempts, blob = await self._cmd("HMGET", self.key("job", job_id), "state", "att", "d")
        if state != b"running" or int(attempts) != token:
            return None
        static = decode_static(blob)
        decision = retry.decide(
            attempts=token,
            max_attempts=static.max_attempts,
            now=now,
            rand=rand,
            backoff=static.backoff,
            retryable=retryable,
        )
        kind, at = ("retry", num(decision.at)) if isinstance(decision, retry.Retry) else ("fail", "")
        reply = await self._script("fail", self.instance, job_id, token, error(static), num(now), kind, at)
        return job_of_flat(reply) if reply else None

    async def release(self, job_id: int, token: int, now: float) -> Job:
        reply = await self._script(
            "release", self.instance, num(now), "released by its worker", 1, job_id, token
        )
        if not reply[0]:
            raise LeaseLost(f"attempt {token} of job {job_id} no longer holds its lease")
        return job_of_flat(reply[0])

    # ------------------------------------------------------------------ time

    async def tick(self, now: float) -> TickResult:
        result = TickResult()
        try:
            reply = await self._script(
                "tick", self.instance, num(now), num(self.hub_ttl), TICK_LIMIT, num(self.lease_pause)
            )
            result.promoted, result.purged = int(reply[0]), int(reply[1])
            overrun = reply[2]
            for worker, flat in reply[3]:
                result.expired.append((job_of_flat(flat), worker.decode() or None))
            for i in range(0, len(overrun), 2):
                job_id, attempt = int(overrun[i]), int(overrun[i + 1])
                job = await self._fail_attempt(
                    job_id, attempt, lambda s: f"timed out after {s.timeout:g}s", now, True, 0.5
                )
                if job is not None:
                    result.expired.append((job, job.worker))
        except Unavailable:
            # Logged once by _unreachable; the clock goes on and the next tick catches up.
            return result
        bus = self._bus
        if bus is not None:
            for job, worker in result.expired:
                if worker is not None and worker not in self._mine:
                    bus.stop(worker, [job.id])
        return result

    async def next_due(self) -> float | None:
        try:
            found = await self._cmd("ZRANGE", self.key("scheduled"), 0, 0, "WITHSCORES")
        except Unavailable:
            return None
        return float(found[0][1]) if found else None

    # ------------------------------------------------------------------ explaining

    async def explain(self, job_id: int, now: float) -> Explanation | None:
        state, sid, member, since = await self._cmd(
            "HMGET", self.key("job", job_id), "state", "shape", "m", "since"
        )
        if state != b"queued":
            return None
        shape = await self._shape(sid.decode())
        if shape is None:
            return None
        registry = await self._registry()
        eligible: list[str] = []
        ineligible: dict[str, str] = {}
        profiles: set[str] = set()
        free = 0
        for worker_id, pid, profile, slots, running, load in registry:
            miss = first_miss(shape, profile)
            if miss is not None:
                ineligible[worker_id] = miss
                continue
            busy = load_miss(shape, profile, load)
            if busy is not None:
                ineligible[worker_id] = f"eligible, but {busy}"
            eligible.append(worker_id)
            profiles.add(pid)
            free += max(0, slots - running)
        competing = {sid.decode()}
        if profiles:
            for members in await self._pipeline([("SMEMBERS", self.key("elig", p)) for p in profiles]):
                competing.update(m.decode() for m in members)
        prefix = "(" + member.decode()[:20]
        counts = await self._pipeline(
            [("ZLEXCOUNT", self.key("q", s), "-", prefix) for s in sorted(competing)]
        )
        return Explanation(
            eligible=eligible,
            ineligible=ineligible,
            ahead=sum(int(c) for c in counts),
            blocked=self._blocked_reason(shape, registry),
            waited=max(0.0, now - float(since or now)),
            free_slots=free,
        )

    @staticmethod
    def _blocked_reason(
        shape: Shape, registry: Sequence[tuple[str, str, Profile, int, int, Load]]
    ) -> str | None:
        """Why no registered worker could ever run this shape, or None if one could."""
        reasons = []
        for worker_id, _, profile, _, _, _ in registry:
            miss = first_miss(shape, profile)
            if miss is None:
                return None
            if shape.service in profile.services:
                reasons.append(f"{worker_id}: {miss}")
        if not reasons:
            return f"no connected worker serves {shape.service}"
        return "; ".join(reasons[:3])

    async def blocked(self) -> list[tuple[int, str]]:
        shapes = self._decode_shapes(await self._cmd("HGETALL", self.key("shapes")))
        sids = sorted(shapes)
        sizes = await self._pipeline([("ZCARD", self.key("q", s)) for s in sids])
        live = [s for s, size in zip(sids, sizes, strict=True) if size]
        if not live:
            return []
        registry = await self._registry()
        out: list[tuple[int, str]] = []
        for sid in live:
            reason = self._blocked_reason(shapes[sid], registry)
            if reason is not None:
                members = await self._cmd("ZRANGE", self.key("q", sid), 0, -1)
                out.extend((int(m[20:]), reason) for m in members)
        return sorted(out)

    # ------------------------------------------------------------------ several hubs

    def has_queued(self) -> bool:
        """Other hubs queue jobs too: always worth asking Redis."""
        return True

    def listen(self, listener: StoreListener) -> None:
        self._listener = listener
        if self._bus is not None:
            self._bus.start(listener)

    def broadcast(self, event: JobEvent) -> None:
        if self._bus is not None:
            self._bus.event(event)

    def notify_stop(self, worker_id: str, job_ids: list[int]) -> None:
        if self._bus is not None:
            self._bus.stop(worker_id, job_ids)


__all__ = ["RedisStore"]
