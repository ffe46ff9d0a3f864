"""``/ws/worker``: workers over WebSocket, pushed work (or pulling it with ``claim_job``).

Each connection is the hub's ``WorkerLink`` for its worker (attached with a ``WorkerHello``);
the door's worker directory (``DoorState.workers``) says which worker a connection speaks for.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec
from litestar import WebSocket, websocket

from jobq.core.auth import Caller
from jobq.core.model import Completion, Job, assignment_of
from jobq.core.views import WorkerHello
from jobq.doors.http import models as m
from jobq.doors.http.state import door_of
from jobq.doors.http.streams import Outbox, encode
from jobq.doors.http.ws_common import (
    Auth,
    Incoming,
    JobRef,
    Ping,
    Token,
    admit,
    authenticated,
    close,
    decode,
    error,
    job_id_of,
    log,
    pump,
    receive,
    reply,
    unregister,
)
from jobq.errors import JobqError, NotFound

#: Most jobs one ``claim_job`` may take.
MAX_CLAIM = 100


class RegisterWorker(Incoming, tag="register_worker"):
    worker_id: m.Name
    #: Services served; also read from ``capabilities.services``.
    services: list[m.Name] = msgspec.field(default_factory=list)
    capabilities: dict[str, Any] = msgspec.field(default_factory=dict)
    slots: Annotated[int, msgspec.Meta(ge=0, le=100_000)] = 1
    name: m.Name | None = None
    #: True: the worker asks with ``claim_job``; false: the hub pushes ``job_assigned`` while
    #: the worker has free slots.
    pull: bool = False
    #: ``raw``: payloads always as base64, so the bytes arrive exactly as submitted.
    payload_format: Literal["auto", "raw"] = "auto"
    #: (job id, token) attempts still running from a previous connection.
    held: list[tuple[m.JobId, Token]] = msgspec.field(default_factory=list)
    schemas: dict[str, Any] = msgspec.field(default_factory=dict)


class WorkerHeartbeat(Incoming, tag="worker_heartbeat"):
    metrics: dict[str, float] = msgspec.field(default_factory=dict)


class ClaimJob(Incoming, tag="claim_job"):
    count: Annotated[int, msgspec.Meta(ge=1, le=MAX_CLAIM)] = 1


class UpdateJobProgress(Incoming, tag="update_job_progress"):
    job_id: JobRef
    #: The attempt's fencing token from ``job_assigned`` (the door remembers it if omitted).
    token: Token | None = None
    progress: float | None = None
    message: Annotated[str, msgspec.Meta(max_length=4000)] | None = None


class CompleteJob(Incoming, tag="complete_job"):
    job_id: JobRef
    token: Token | None = None
    result: Any = msgspec.UNSET
    result_encoding: m.Encoding = "json"


class JobResult(msgspec.Struct, kw_only=True):
    job_id: JobRef
    token: Token | None = None
    result: Any = msgspec.UNSET
    result_encoding: m.Encoding = "json"


class CompleteJobs(Incoming, tag="complete_jobs"):
    results: Annotated[list[JobResult], msgspec.Meta(max_length=10_000)]


class FailJob(Incoming, tag="fail_job"):
    job_id: JobRef
    token: Token | None = None
    error: Annotated[str, msgspec.Meta(max_length=4000)] = "failed"
    #: False: do not retry, the job ends failed now.
    retry: bool = True
    #: The handler's traceback, kept with the attempt (cut to its last TRACEBACK_LIMIT bytes).
    traceback: str | None = None


class ReleaseJobs(Incoming, tag="release_jobs"):
    jobs: list[tuple[m.JobId, Token]] = msgspec.field(default_factory=list)


class SetSlots(Incoming, tag="set_slots"):
    slots: Annotated[int, msgspec.Meta(ge=0, le=100_000)]


class UnregisterWorker(Incoming, tag="unregister_worker"):
    pass


WorkerMessage = (
    RegisterWorker
    | WorkerHeartbeat
    | ClaimJob
    | UpdateJobProgress
    | CompleteJob
    | CompleteJobs
    | FailJob
    | ReleaseJobs
    | SetSlots
    | UnregisterWorker
    | Ping
    | Auth
)


class JobAssigned(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Hub → worker: an attempt to run."""

    type: Literal["job_assigned"]
    job_id: int
    token: int
    attempt: int
    max_attempts: int
    service: str
    job_type: str
    payload: Any
    payload_encoding: m.Encoding
    content_type: str | None = None
    timeout: float | None = None
    customer_id: str | None = None
    priority: int = 0


#: The messages a worker sends, for the OpenAPI document (``JobAssigned`` is the one it gets).
MESSAGE_MODELS: list[Any] = [*WorkerMessage.__args__]

_decoder = msgspec.json.Decoder(WorkerMessage)


class WorkerConn:
    """One ``/ws/worker`` connection: the hub's WorkerLink for it."""

    def __init__(self, socket: WebSocket[Any, Any, Any], caller: Caller) -> None:
        self.socket = socket
        self.caller = caller
        self.door = door_of(socket)
        self.hub = self.door.hub
        self.outbox = Outbox(self.door.config.http_monitor_queue)
        self.pushes = True
        self.raw = False
        #: job id → fencing token of the attempts handed over this connection.
        self.tokens: dict[int, int] = {}
        #: Set once the hub dropped this connection (expired, replaced, shutting down).
        self.gone = False

    # WorkerLink

    def deliver(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self.tokens[job.id] = job.token
            a = assignment_of(job)
            payload, encoding = (
                m.raw_frames(a.payload) if self.raw else m.frames_to_wire(a.payload, a.content_type)
            )
            message = JobAssigned(
                type="job_assigned",
                job_id=a.id,
                token=a.token,
                attempt=a.attempt,
                max_attempts=a.max_attempts,
                service=a.service,
                job_type=a.service,
                payload=payload,
                payload_encoding=encoding,
                content_type=a.content_type,
                timeout=a.timeout,
                customer_id=a.customer_id,
                priority=job.priority,
            )
            self.outbox.put(encode(message))

    def stop(self, job_ids: Sequence[int]) -> None:
        for job_id in job_ids:
            self.tokens.pop(job_id, None)
            self.outbox.put(reply("cancel_job", None, job_id=job_id, reason="stop this attempt"))

    def group_finished(self, group_id: int) -> None:
        """FINISHED: a group this worker ran members of has ended (``hub/groups.py``)."""
        if not self.gone:
            self.outbox.put(reply("group_finished", None, group_id=group_id))

    def disconnect(self, reason: str) -> None:
        self.gone = True
        self.outbox.put(reply("disconnect", None, reason=reason))
        self.outbox.close()

    # WorkerPeer

    def register_required(self) -> None:
        self.outbox.put(reply("register_required", None, reason="unknown worker; send register_worker"))

    # messages

    @property
    def worker_id(self) -> str | None:
        return self.door.workers.peek(self)

    async def handle(self, text: str | bytes) -> None:
        request: Incoming | None = None
        try:
            request = decode(_decoder, text)
            await self._dispatch(request)
        except JobqError as exc:
            self.outbox.put(error(exc, request))
        except Exception as exc:
            log.exception("worker message failed")
            self.outbox.put(error(JobqError(f"internal error: {type(exc).__name__}"), request))

    def _known(self) -> str | None:
        """The worker this connection speaks for, if the hub knows it (else the peer is told
        to register)."""
        worker_id = self.door.workers.worker_of(self)
        if worker_id is not None and not self.hub.seen(worker_id):
            self.register_required()
            return None
        return worker_id

    async def _token(self, ref: int | str, token: int | None) -> tuple[int, int]:
        job_id = job_id_of(ref)
        if token is not None:
            return job_id, token
        if job_id in self.tokens:
            return job_id, self.tokens[job_id]
        unknown = m.FieldError(f"job {job_id} is not running on this worker; give its token", ["token"])
        if self.worker_id is None:
            raise unknown
        try:  # the door's own lookup: its answer says no more than "not yours"
            job = await self.hub.get(job_id)
        except NotFound:
            raise unknown from None
        if job.worker != self.worker_id:
            raise unknown
        return job_id, job.token

    async def _dispatch(self, msg: Any) -> None:
        hub = self.hub
        worker = self.worker_id or ""
        if isinstance(msg, RegisterWorker):
            await self._register(msg)
        elif isinstance(msg, WorkerHeartbeat):
            known = self._known()
            if known is not None and await hub.heartbeat(known, msg.metrics or None):
                self.outbox.put(reply("worker_heartbeat_ack", msg))
        elif isinstance(msg, ClaimJob):
            known = self._known()
            if known is None:
                return
            jobs = await hub.claim(known, msg.count)
            if jobs:
                self.deliver(jobs)
            else:
                self.outbox.put(reply("no_job_available", msg))
        elif isinstance(msg, UpdateJobProgress):
            job_id, token = await self._token(msg.job_id, msg.token)
            await hub.progress(worker, job_id, token, msg.progress, msg.message)
        elif isinstance(msg, CompleteJob | CompleteJobs):
            await self._complete(msg, worker)
        elif isinstance(msg, FailJob):
            job_id, token = await self._token(msg.job_id, msg.token)
            self.tokens.pop(job_id, None)
            job = await hub.fail(
                worker, job_id, token, msg.error, retryable=msg.retry, traceback=msg.traceback
            )
            self.outbox.put(reply("job_failed_ack", msg, job_id=job_id, status=job.state.value))
        elif isinstance(msg, ReleaseJobs):
            for job_id, _ in msg.jobs:
                self.tokens.pop(job_id, None)
            await hub.release(worker, msg.jobs)
        elif isinstance(msg, SetSlots):
            known = self._known()
            if known is not None:
                await hub.set_slots(known, msg.slots)
        elif isinstance(msg, UnregisterWorker):
            await self.leave("unregistered")
            self.outbox.put(reply("worker_unregistered", msg))
        elif isinstance(msg, Auth):
            self.outbox.put(authenticated(self.caller, msg))
        else:
            self.outbox.put(reply("pong", msg))

    async def _complete(self, msg: CompleteJob | CompleteJobs, worker: str) -> None:
        items = [msg] if isinstance(msg, CompleteJob) else msg.results
        completions = []
        for item in items:
            job_id, token = await self._token(item.job_id, item.token)
            frames: list[bytes] = []
            if item.result is not msgspec.UNSET:
                frames, _ = m.frames_from_wire(item.result, item.result_encoding, "result")
            completions.append(Completion(job_id, token, frames))
        outcomes = await self.hub.complete(worker, completions)
        done = [c.job_id for c, o in zip(completions, outcomes, strict=True) if not isinstance(o, Exception)]
        refused = {
            c.job_id: str(o) for c, o in zip(completions, outcomes, strict=True) if isinstance(o, Exception)
        }
        for job_id in (c.job_id for c in completions):
            self.tokens.pop(job_id, None)
        if isinstance(msg, CompleteJob):
            if refused:
                reason = next(iter(refused.values()))
                self.outbox.put(reply("error", msg, error="lease_lost", message=reason, fields=["token"]))
            else:
                self.outbox.put(reply("job_completed_ack", msg, job_id=done[0]))
        else:
            self.outbox.put(reply("jobs_completed_ack", msg, job_ids=done, refused=refused))

    async def _register(self, msg: RegisterWorker) -> None:
        m.check_ints(msg.capabilities, "capabilities")
        m.check_ints(msg.schemas, "schemas")
        capabilities = dict(msg.capabilities)
        services = list(msg.services)
        listed = capabilities.pop("services", None)
        if isinstance(listed, list):
            services += [s for s in listed if isinstance(s, str) and s not in services]
        if self.worker_id is not None and self.worker_id != msg.worker_id:
            await self.leave("registered again under another id")
        self.pushes = not msg.pull
        self.raw = msg.payload_format == "raw"
        hello = WorkerHello(
            id=msg.worker_id,
            services=services,
            capabilities=capabilities,
            slots=msg.slots,
            name=msg.name,
            door="http",
            schemas=msg.schemas,
        )
        welcome = await self.hub.attach(hello, self, held=msg.held, caller=self.caller)
        self.door.workers.bind(self, msg.worker_id)
        self.outbox.put(
            reply(
                "worker_registered",
                msg,
                worker_id=msg.worker_id,
                status="connected",
                heartbeat=welcome.heartbeat,
                lease_ttl=welcome.lease_ttl,
                kept=welcome.kept,
                hub=welcome.hub,
            )
        )

    async def leave(self, reason: str) -> None:
        """This connection no longer speaks for its worker: the hub lets the worker go, unless
        the hub dropped this connection first (then it has already, or another connection of
        the same worker replaced this one)."""
        worker_id = self.door.workers.forget(self)
        if worker_id is not None and not self.gone:
            await self.hub.detach(worker_id, reason)


@websocket("/ws/worker")
async def worker_stream(socket: WebSocket[Any, Any, Any]) -> None:
    caller = await admit(socket)
    if caller is None:
        return
    conn = WorkerConn(socket, caller)
    streams = conn.door.streams
    streams.connections["worker"] += 1
    sender = asyncio.create_task(pump(socket, conn.outbox))
    # Dropped by the hub (expired, replaced, shutting down): close once the notice is out.
    closer: list[asyncio.Task[None]] = []
    sender.add_done_callback(
        lambda _: (
            closer.append(asyncio.ensure_future(close(socket, 1001, "disconnected by the hub")))
            if conn.gone
            else None
        )
    )
    conn.outbox.put(
        reply(
            "connection_established",
            None,
            message="jobq worker stream",
            hub=conn.hub.config.name,
            principal=caller.name,
            role=caller.principal.role,
        )
    )
    try:
        while not conn.gone:
            await conn.outbox.room()
            text = await receive(socket)
            if text is None:
                break
            await conn.handle(text)
    finally:
        unregister(socket)
        streams.connections["worker"] -= 1
        with contextlib.suppress(JobqError):
            await conn.leave("websocket closed")
        conn.outbox.close()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        for task in closer:
            await task


HANDLERS = [worker_stream]
