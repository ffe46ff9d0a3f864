"""The client SDK: submit jobs, follow them, get their results. Async first.

Submits made in the same event-loop turn travel to the hub as one message, so a producer that
keeps many submits in flight pays for one round trip per batch, not per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import msgspec

from jobq.client.connection import Connection
from jobq.config import DEFAULT_HUB
from jobq.core.model import JSON, TEXT, Frames, Job, JobEvent, JobFilter, JobSpec
from jobq.core.states import COMPLETED, JobState
from jobq.errors import InvalidRequest, JobFailed, JobqError, Timeout
from jobq.protocol import native as jqp
from jobq.store.base import WorkerInfo

PayloadLike = bytes | bytearray | memoryview | str | Sequence[bytes] | Mapping[str, Any] | None

#: Most jobs in one submit message.
SUBMIT_BATCH = 5000


def to_frames(payload: PayloadLike, content_type: str | None = None) -> tuple[Frames, str | None]:
    """bytes → one frame; str → UTF-8 text; a list of bytes → frames; a dict → JSON."""
    if payload is None:
        return [], content_type
    if isinstance(payload, bytes | bytearray | memoryview):
        return [bytes(payload)], content_type
    if isinstance(payload, str):
        return [payload.encode()], content_type or TEXT
    if isinstance(payload, Mapping):
        return [json.dumps(payload).encode()], content_type or JSON
    frames = list(payload)
    if not all(isinstance(f, bytes) for f in frames):
        raise InvalidRequest("a payload list must hold bytes frames")
    return frames, content_type


def make_spec(service: str, payload: PayloadLike = None, **options: Any) -> JobSpec:
    """A JobSpec from friendly arguments (``requires``, ``priority``, ``customer_id``...)."""
    frames, content_type = to_frames(payload, options.pop("content_type", None))
    try:
        return JobSpec(service=service, payload=frames, content_type=content_type, **options)
    except TypeError as exc:
        raise InvalidRequest(f"unknown job option: {exc}") from None


class Client:
    """A connection to a hub for submitting and following jobs.

    ``hub`` is an endpoint or a list of them (tried in order on failover).
    """

    def __init__(
        self,
        hub: str | Sequence[str] = DEFAULT_HUB,
        *,
        timeout: float = 10.0,
        credential: str | None = None,
    ) -> None:
        self.conn = Connection(hub, on_push=self._on_push, timeout=timeout)
        self.credential = credential
        self._opened = False
        self._batch: list[tuple[JobSpec, asyncio.Future[tuple[int, str, bool]]]] = []
        self._batch_watch = False
        self._finished: dict[int, asyncio.Future[JobEvent]] = {}
        self._streams: list[asyncio.Queue[JobEvent]] = []
        self._pinger: asyncio.Task[None] | None = None
        #: Watched submits not yet answered: their jobs' ends may arrive before the answer.
        self._watch_inflight = 0

    # ------------------------------------------------------------------ connection

    async def connect(self) -> Client:
        if not self._opened:
            self.conn.open()
            self._opened = True
        return self

    async def close(self) -> None:
        if self._pinger is not None:
            self._pinger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pinger
        if self._opened:
            self.conn.close()
            self._opened = False

    async def __aenter__(self) -> Client:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def ping(self, timeout: float | None = None) -> str:
        await self.connect()
        reply = await self.conn.request(jqp.Ping(rid=self.conn.next_rid()), timeout)
        assert isinstance(reply, jqp.Pong)
        return reply.hub

    # ------------------------------------------------------------------ submitting

    async def submit(self, service: str, payload: PayloadLike = None, **options: Any) -> int:
        """Submit one job; returns its id once the hub has durably accepted it."""
        job_id, _state, _created = await self.submit_spec(make_spec(service, payload, **options))
        return job_id

    async def submit_spec(self, spec: JobSpec, *, watch: bool = False) -> tuple[int, str, bool]:
        """Submit a spec; returns (id, state, created). Batched with other submits of this turn."""
        await self.connect()
        if watch:
            self._ensure_pinger()
        future: asyncio.Future[tuple[int, str, bool]] = asyncio.get_running_loop().create_future()
        if not self._batch:
            asyncio.get_running_loop().call_soon(self._send_batch)
        self._batch.append((spec, future))
        self._batch_watch = self._batch_watch or watch
        if len(self._batch) >= SUBMIT_BATCH:
            self._send_batch()
        if not watch:
            return await future
        self._watch_inflight += 1
        try:
            result = await future
        finally:
            self._watch_inflight -= 1
        self._finished.setdefault(result[0], asyncio.get_running_loop().create_future())
        return result

    def _send_batch(self) -> None:
        batch, self._batch = self._batch, []
        watch, self._batch_watch = self._batch_watch, False
        if not batch:
            return

        def settle(outcome: jqp.Outbound | JobqError) -> None:
            if isinstance(outcome, jqp.Accepted) and len(outcome.jobs) == len(batch):
                for (_, future), accepted in zip(batch, outcome.jobs, strict=True):
                    if not future.done():
                        future.set_result(tuple(accepted))  # type: ignore[arg-type]
                return
            error = outcome if isinstance(outcome, JobqError) else JobqError(f"unexpected reply {outcome!r}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)

        message = jqp.Submit(
            rid=self.conn.next_rid(),
            jobs=[spec for spec, _ in batch],
            watch=watch,
            credential=self.credential,
        )
        self.conn.call(message, settle)

    async def submit_many(
        self, specs: Iterable[JobSpec], *, watch: bool = False
    ) -> list[tuple[int, str, bool]]:
        """Submit many specs in as few messages as possible; returns (id, state, created) each."""
        await self.connect()
        specs = list(specs)
        out: list[tuple[int, str, bool]] = []
        self._watch_inflight += watch
        try:
            for start in range(0, len(specs), SUBMIT_BATCH):
                chunk = specs[start : start + SUBMIT_BATCH]
                reply = await self.conn.request(
                    jqp.Submit(rid=self.conn.next_rid(), jobs=chunk, watch=watch, credential=self.credential)
                )
                assert isinstance(reply, jqp.Accepted)
                out.extend(tuple(item) for item in reply.jobs)  # type: ignore[misc]
        finally:
            self._watch_inflight -= watch
        if watch:
            self._ensure_pinger()
            loop = asyncio.get_running_loop()
            for job_id, _, _ in out:
                self._finished.setdefault(job_id, loop.create_future())
        return out

    async def run(self, service: str, payload: PayloadLike = None, **options: Any) -> JobEvent:
        """Submit a job and wait for its end (pushed by the hub, no polling): the final event."""
        timeout = options.pop("wait_timeout", None)
        job_id, _, _ = await self.submit_spec(make_spec(service, payload, **options), watch=True)
        return await self.finished(job_id, timeout)

    async def finished(self, job_id: int, timeout: float | None = None) -> JobEvent:
        """The final event of a job submitted with ``watch=True``."""
        future = self._finished.get(job_id)
        if future is None:
            raise InvalidRequest(f"job {job_id} was not submitted with watch=True by this client")
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise Timeout(f"job {job_id} did not end within {timeout}s") from None
        finally:
            if future.done():
                self._finished.pop(job_id, None)

    # ------------------------------------------------------------------ following

    async def _jobs(self, message: jqp.Inbound, timeout: float | None = None) -> list[Job | None]:
        await self.connect()
        reply = await self.conn.request(message, timeout)
        assert isinstance(reply, jqp.Jobs)
        return reply.jobs

    async def status(self, job_id: int, *, payload: bool = False) -> Job | None:
        (job,) = await self._jobs(jqp.Get(rid=self.conn.next_rid(), ids=[job_id], payload=payload))
        return job

    async def wait(self, job_id: int, timeout: float | None = None) -> Job:
        """The job once it has ended (any way); raises Timeout."""
        reply_timeout = None if timeout is None else timeout + self.conn.timeout
        (job,) = await self._jobs(
            jqp.Wait(rid=self.conn.next_rid(), ids=[job_id], timeout=timeout), reply_timeout or 1e9
        )
        assert job is not None
        return job

    async def result(self, job_id: int, timeout: float | None = None) -> bytes:
        """The job's result bytes; raises JobFailed if it failed or was cancelled."""
        job = await self.wait(job_id, timeout)
        if job.state is not COMPLETED:
            raise JobFailed(f"job {job_id} {job.state}: {job.error or ''}".rstrip(": "))
        return job.result_bytes

    async def cancel(self, job_id: int) -> Job:
        (job,) = await self._jobs(jqp.Cancel(rid=self.conn.next_rid(), ids=[job_id]))
        assert job is not None
        return job

    async def retry(self, job_id: int) -> Job:
        (job,) = await self._jobs(jqp.Retry(rid=self.conn.next_rid(), ids=[job_id]))
        assert job is not None
        return job

    async def jobs(
        self,
        *,
        state: str | Sequence[str] | None = None,
        service: str | None = None,
        customer_id: str | None = None,
        worker: str | None = None,
        limit: int = 100,
        offset: int = 0,
        blocked: bool = False,
    ) -> list[Job]:
        states = [state] if isinstance(state, str) else list(state or [])
        query = JobFilter(
            states=[JobState(s) for s in states],
            service=service,
            customer_id=customer_id,
            worker=worker,
            limit=limit,
            offset=offset,
        )
        found = await self._jobs(jqp.ListJobs(rid=self.conn.next_rid(), query=query, blocked=blocked))
        return [job for job in found if job is not None]

    async def _info(self, what: str, job_id: int = 0) -> Any:
        await self.connect()
        reply = await self.conn.request(jqp.Info(rid=self.conn.next_rid(), what=what, id=job_id))
        assert isinstance(reply, jqp.Reply)
        return reply.value

    async def workers(self) -> list[WorkerInfo]:
        return msgspec.convert(await self._info("workers"), list[WorkerInfo])

    async def services(self) -> list[jqp.ServiceInfo]:
        return msgspec.convert(await self._info("services"), list[jqp.ServiceInfo])

    async def stats(self) -> dict[str, Any]:
        value = await self._info("stats")
        assert isinstance(value, dict)
        return value

    async def explain(self, job_id: int) -> jqp.ExplainInfo:
        return msgspec.convert(await self._info("explain", job_id), jqp.ExplainInfo)

    async def events(self, ids: Sequence[int] = ()) -> AsyncIterator[JobEvent]:
        """Events of these jobs (or of every job) as they happen."""
        await self.connect()
        queue: asyncio.Queue[JobEvent] = asyncio.Queue()
        self._streams.append(queue)
        self._ensure_pinger()
        try:
            await self.conn.request(jqp.Subscribe(rid=self.conn.next_rid(), ids=list(ids)))
            while True:
                event = await queue.get()
                if not ids or event.id in ids:
                    yield event
        finally:
            self._streams.remove(queue)
            if self._opened:
                with contextlib.suppress(Exception):
                    await self.conn.request(jqp.Unsubscribe(rid=self.conn.next_rid(), ids=list(ids)), 1.0)

    # ------------------------------------------------------------------ pushes

    def _on_push(self, message: jqp.Outbound) -> None:
        if not isinstance(message, jqp.Events):
            return
        for event in message.events:
            if event.state.terminal:
                future = self._finished.get(event.id)
                if future is None and self._watch_inflight:
                    # Ended before our submit's answer was read: keep it for ``finished``.
                    future = self._finished[event.id] = asyncio.get_running_loop().create_future()
                if future is not None and not future.done():
                    future.set_result(event)
            for queue in self._streams:
                queue.put_nowait(event)

    def _ensure_pinger(self) -> None:
        """While we listen for events, tell the hub we are still here."""
        if self._pinger is None or self._pinger.done():
            self._pinger = asyncio.ensure_future(self._ping_forever())

    async def _ping_forever(self) -> None:
        while True:
            await asyncio.sleep(10.0)
            with contextlib.suppress(Exception):
                await self.conn.request(jqp.Ping(rid=self.conn.next_rid()), 5.0)
