"""The Redis store's job operations: submit, read, list, cancel, retry, and the life of an
attempt (claim, adopt, progress, complete, fail, release), and what time makes due (tick).

Every change of a job is one Lua script (``store/lua``), atomic across hubs. Rules that need
Python are decided here and applied by a script that first checks the fencing token: the
retry decision (``core/retry.py``), the shape of a job (``core/matching.py``), its start time
(``core/model.py``) and its retention (``core/retention.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from jobq.core import retry, timeline
from jobq.core.lease import lease_deadline
from jobq.core.model import (
    AttemptError,
    Completion,
    Job,
    JobFilter,
    JobSpec,
    Submitted,
    bound_traceback,
    new_job,
    start_time,
    with_attempt_error,
)
from jobq.core.retention import result_ttl
from jobq.core.states import JobState
from jobq.errors import Conflict, InvalidRequest, LeaseLost, NotFound, Unavailable
from jobq.store.redis_client import RedisClient
from jobq.store.redis_codec import (
    decode_attempt_errors,
    decode_static,
    encode_attempt_errors,
    encode_frames,
    encode_static,
    frame,
    job_of,
    job_of_flat,
    num,
    priority_prefix,
)
from jobq.store.redis_deps import after_value, batch_refs
from jobq.store.redis_scripts import Scripts
from jobq.store.redis_shapes import ShapeRegistry
from jobq.store.reports import TickResult
from jobq.store.shapes import shape_for

#: Most due items one tick handles per kind (the rest wait for the next tick).
TICK_LIMIT = 1000
#: Jobs read per round trip when listing.
LIST_PAGE = 1000


def _lost(job_id: int, token: int) -> LeaseLost:
    return LeaseLost(f"attempt {token} of job {job_id} no longer holds its lease")


class JobOps:
    def __init__(
        self,
        client: RedisClient,
        scripts: Scripts,
        shapes: ShapeRegistry,
        instance: str,
        *,
        result_ttl: float,
        reserve_after: float,
        hub_ttl: float,
        lease_pause: float,
    ) -> None:
        self.client = client
        self.scripts = scripts
        self.shapes = shapes
        self.instance = instance
        self.result_ttl = result_ttl
        self.reserve_after = reserve_after
        self.hub_ttl = hub_ttl
        #: Hubs alive on the namespace at the last tick (until then: assume others).
        self.hubs_alive = 2
        #: The last claim found every queue of the worker's profile empty (claim.lua).
        self.emptied = False
        self.lease_pause = lease_pause

    # ------------------------------------------------------------------ jobs

    async def submit(self, specs: Sequence[JobSpec], now: float) -> list[Submitted]:
        if not specs:
            return []
        # Shapes first: a bad requirement refuses the whole batch before anything is created.
        decided = [shape_for(spec) for spec in specs]
        shapes = [self.shapes.encoded(shape) for shape in decided]
        await self.shapes.ensure_shapes(
            {sid: (shape, blob, meta) for shape, (sid, blob, meta) in zip(decided, shapes, strict=True)}
        )
        values: list[bytes | str] = []
        refs = batch_refs(specs)  # refs in after become '#k' (store/redis_deps.py)
        for spec, (sid, _, _) in zip(specs, shapes, strict=True):
            values += self.submit_values(spec, sid, now, refs)
        reply = await self.scripts.call("submit", self.instance, num(now), len(specs), frame(values))
        if reply and reply[0] == b"missing":
            raise NotFound(f"after: no job {reply[1].decode()}")
        out: list[Submitted | None] = []
        existing: list[int] = []
        for i, spec in enumerate(specs):
            job_id, created = int(reply[2 * i]), reply[2 * i + 1] == 1
            if not created or spec.after:  # a dependent: its state was decided by the script
                existing.append(job_id)
                out.append(None)
                continue
            out.append(Submitted(job=new_job(spec, job_id, now), created=True))
        if existing:
            found = dict(zip(existing, await self.jobs(existing), strict=True))
            for i, item in enumerate(out):
                if item is None:
                    job = found[int(reply[2 * i])]
                    if job is None:  # purged in between: the key is free again, so ask again
                        return await self.submit(specs, now)
                    out[i] = Submitted(job=job, created=reply[2 * i + 1] == 1)
        return [item for item in out if item is not None]

    def submit_values(
        self, spec: JobSpec, sid: str, now: float, refs: dict[str, int] | None = None
    ) -> list[bytes | str]:
        """One job's values as submit.lua takes them (fire.lua too: it runs submit.lua);
        ``refs``: the batch's refs by position (``after`` entries that are refs become '#k')."""
        run_at = start_time(spec, now)
        scheduled = run_at is not None
        return [
            spec.idempotency_key or "",
            sid,
            priority_prefix(spec.priority),
            spec.service,
            spec.customer_id or "",
            "scheduled" if scheduled else "queued",
            num(run_at) if scheduled else "",
            encode_static(spec, now),
            encode_frames(spec.payload) if spec.payload else "",
            num(result_ttl(spec.result_ttl, self.result_ttl)),
            str(spec.max_attempts),
            num(spec.timeout),
            str(spec.max_losses),
            after_value(spec, refs),
            spec.after_policy,
        ]

    async def jobs(self, ids: Sequence[int]) -> list[Job | None]:
        """Jobs by id (None for unknown ones): each is its hash, its payload, its result and its
        timeline."""
        key = self.client.key
        replies = await self.client.pipeline(
            [
                cmd
                for i in ids
                for cmd in (
                    ("HGETALL", key("job", i)),
                    ("GET", key("p", i)),
                    ("GET", key("r", i)),
                    ("GET", key("tl", i)),
                )
            ]
        )
        out: list[Job | None] = []
        for n, job_id in enumerate(ids):
            fields, payload, result, marks = replies[4 * n : 4 * n + 4]
            if not fields:
                out.append(None)
                continue
            if payload is not None:
                fields[b"p"] = payload
            if result is not None:
                fields[b"res"] = result
            if marks is not None:
                fields[b"tl"] = marks
            out.append(job_of(job_id, fields))
        return out

    async def get(self, job_id: int) -> Job | None:
        (job,) = await self.jobs([job_id])
        return job

    async def list_jobs(self, query: JobFilter) -> list[Job]:
        want = query.offset + query.limit
        if want <= 0:
            return []
        if query.ids:
            ids = sorted(set(query.ids), reverse=True)
            rest = msgspec.structs.replace(query, ids=[])  # those ids: the other filters, not O(ids²)
            jobs = [j for j in await self.jobs(ids) if j is not None and rest.matches(j)]
            return jobs[query.offset : want]
        states = query.states or list(JobState)
        indexes = [self.client.key("st", state.value) for state in states]
        found: dict[int, Job] = {}
        for index in indexes:
            for job in await self._walk(index, query, want):
                found[job.id] = job
        ordered = sorted(found.values(), key=lambda j: j.id, reverse=True)
        return ordered[query.offset : want]

    async def _walk(self, index: str, query: JobFilter, want: int) -> list[Job]:
        """Up to ``want`` jobs of one index (newest first) that match ``query``."""
        matched: list[Job] = []
        page = min(max(want, 100), LIST_PAGE)
        top = "+inf" if query.before_id is None else f"({query.before_id}"  # cursor paging
        while len(matched) < want:
            ids = await self.client.cmd("ZREVRANGEBYSCORE", index, top, "-inf", "LIMIT", 0, page)
            if not ids:
                break
            numbers = [int(i) for i in ids]
            matched.extend(j for j in await self.jobs(numbers) if j is not None and query.matches(j))
            if len(ids) < page:
                break
            top = f"({numbers[-1]}"
        return matched[:want]

    async def cancel(self, job_id: int, now: float) -> tuple[Job, str | None]:
        reply = await self.scripts.call("cancel", self.instance, job_id, num(now))
        if reply[0] == b"missing":
            raise NotFound(f"no job {job_id}")
        if reply[0] == b"ended":
            raise Conflict(f"job {job_id} already ended {reply[1].decode()}")
        worker = reply[1].decode() or None
        return job_of_flat(reply[2]), worker

    async def retry(self, job_id: int, now: float) -> Job:
        reply = await self.scripts.call("retry", self.instance, job_id, num(now))
        if reply[0] == b"missing":
            raise NotFound(f"no job {job_id}")
        if reply[0] == b"conflict":
            state = reply[1].decode()
            raise Conflict(
                f"only failed, quarantined or cancelled jobs can be retried; job {job_id} is {state}"
            )
        if reply[0] == b"refused":  # by its group (lua/groups.lua group_retry)
            raise Conflict(reply[1].decode())
        return job_of_flat(reply[1])

    async def set_customer_weight(self, customer: str, weight: float) -> None:
        if not weight > 0:
            raise InvalidRequest(f"the weight of customer {customer} must be positive")
        await self.client.cmd("HSET", self.client.key("fair"), f"w:{customer}", num(float(weight)))

    # ------------------------------------------------------------------ running jobs

    async def claim(self, worker_id: str, limit: int, now: float, lease_ttl: float) -> list[Job]:
        if limit <= 0:
            return []
        reply = await self.scripts.call(
            "claim",
            self.instance,
            worker_id,
            limit,
            num(now),
            num(lease_deadline(now, lease_ttl)),
            num(self.reserve_after),
            "1",
        )
        self.emptied = bool(reply) and reply[-1] == b"empty"
        return [job_of_flat(flat) for flat in (reply[:-1] if self.emptied else reply)]

    async def adopt(
        self, worker_id: str, held: Sequence[tuple[int, int]], now: float, lease_ttl: float
    ) -> list[int]:
        if not held:
            return []
        pairs = [str(x) for pair in held for x in pair]
        deadline = num(lease_deadline(now, lease_ttl))
        reply = await self.scripts.call("adopt", self.instance, worker_id, deadline, len(held), *pairs)
        return [int(i) for i in reply]

    async def progress(
        self, job_id: int, token: int, value: float | None, message: str | None, now: float
    ) -> Job:
        reply = await self.scripts.call(
            "progress",
            self.instance,
            job_id,
            token,
            num(value),
            message or "",
            "0" if message is None else "1",
            num(now),
            timeline.cut(message) or "",
        )
        if not reply:
            raise _lost(job_id, token)
        return job_of_flat(reply)

    async def complete(self, results: Sequence[Completion], now: float) -> list[Job | Exception]:
        if not results:
            return []
        values: list[bytes | str] = []
        for item in results:
            values += [str(item.job_id), str(item.token), encode_frames(item.result)]
        reply = await self.scripts.call("complete", self.instance, num(now), len(results), frame(values))
        out: list[Job | Exception] = []
        for item, flat in zip(results, reply, strict=True):
            if flat:
                job = job_of_flat(flat)
                job.result = item.result  # the script does not send back what we sent it
                out.append(job)
            else:
                out.append(_lost(item.job_id, item.token))
        return out

    async def fail(
        self,
        job_id: int,
        token: int,
        error: str,
        now: float,
        retryable: bool,
        rand: float,
        traceback: str | None = None,
    ) -> Job:
        job = await self._fail_attempt(job_id, token, lambda _: error, now, retryable, rand, traceback)
        if job is None:
            raise _lost(job_id, token)
        return job

    async def _fail_attempt(
        self,
        job_id: int,
        token: int,
        error: Any,
        now: float,
        retryable: bool,
        rand: float,
        traceback: str | None = None,
    ) -> Job | None:
        """Apply the retry rules to a failed attempt; None when it no longer holds the job.
        ``error`` makes the message from the job's static part. The attempt's history entry
        (``Job.note_failure``) is made here too; the script writes it only if the attempt holds."""
        state, tok, attempts, failures, blob, worker, history = await self.client.cmd(
            "HMGET", self.client.key("job", job_id), "state", "tok", "att", "fl", "d", "w", "ae"
        )
        if state != b"running" or int(tok or attempts) != token:
            return None
        static = decode_static(blob)
        message = error(static)
        entry = AttemptError(
            attempt=int(attempts or 0),
            token=token,
            error=message,
            at=now,
            worker=worker.decode() if worker else None,
            traceback=bound_traceback(traceback),
        )
        decision = retry.decide(
            attempts=int(failures or 0) + 1,
            max_attempts=static.max_attempts,
            now=now,
            rand=rand,
            backoff=static.backoff,
            retryable=retryable,
        )
        kind, at = ("retry", num(decision.at)) if isinstance(decision, retry.Retry) else ("fail", "")
        errors = encode_attempt_errors(with_attempt_error(decode_attempt_errors(history), entry))
        detail = timeline.cut(message) or ""  # as the job's timeline keeps it
        reply = await self.scripts.call(
            "fail", self.instance, job_id, token, message, num(now), kind, at, errors, detail
        )
        return job_of_flat(reply) if reply else None

    async def release(self, job_id: int, token: int, now: float) -> Job:
        reply = await self.scripts.call(
            "release", self.instance, num(now), "released by its worker", 1, job_id, token
        )
        if not reply[0]:
            raise _lost(job_id, token)
        return job_of_flat(reply[0])

    # ------------------------------------------------------------------ time

    async def tick(self, now: float, result: TickResult) -> None:
        """Apply what time has made due, for the whole namespace, adding it to ``result``.
        Raises Unavailable while Redis cannot be reached (``result`` then holds what was
        applied before)."""
        reply = await self.scripts.call(
            "tick", self.instance, num(now), num(self.hub_ttl), TICK_LIMIT, num(self.lease_pause)
        )
        result.promoted, result.purged = int(reply[0]), int(reply[1])
        self.hubs_alive = int(reply[4])
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

    async def next_due(self) -> float | None:
        try:
            found = await self.client.cmd("ZRANGE", self.client.key("scheduled"), 0, 0, "WITHSCORES")
        except Unavailable:
            return None
        return float(found[0][1]) if found else None
