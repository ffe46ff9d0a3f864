"""WebSocket streams of the HTTP door: ``/ws/client``, ``/ws/worker`` and ``/ws/monitor``.

Messages are JSON objects with a ``type`` (EmProps style); unknown extra fields such as
``timestamp`` or ``source`` are ignored, a request's ``id`` comes back as ``request_id``.
A bad message gets an ``error`` message naming the field and the connection stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Annotated, Any, Literal

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect

from jobq.core.model import Completion, Job, JobEvent, WorkerInfo, assignment_of
from jobq.core.states import TERMINAL
from jobq.doors.http import models as m
from jobq.doors.http.app import door_of
from jobq.doors.http.streams import Monitor, Outbox, encode, event_message, now_ms
from jobq.errors import InvalidRequest, JobqError, NotFound
from jobq.hub.events import event_of

log = logging.getLogger("jobq.doors.http.app")

#: Requests one client connection may have in progress at once (then reading pauses).
CLIENT_IN_FLIGHT = 64
#: Most jobs one ``claim_job`` may take.
MAX_CLAIM = 100

JobRef = Annotated[int, msgspec.Meta(ge=1, le=m.MAX_ID)] | Annotated[str, msgspec.Meta(max_length=20)]
Token = Annotated[int, msgspec.Meta(ge=0, le=2**31)]


class _In(msgspec.Struct, tag_field="type", kw_only=True):
    #: Any id the sender chose; replies carry it back as ``request_id``.
    id: int | str | None = None


# -------------------------------------------------------------------- /ws/client


class SubmitJob(_In, tag="submit_job"):
    """The job's fields inline (``job_type`` for ``type``) or as ``job``; see JobRequest."""

    #: The job as one object (JobRequest); empty when its fields are inline.
    job: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    job_type: str | None = None
    #: Receive this job's progress and end (default true).
    subscribe: bool = True


class SubscribeProgress(_In, tag="subscribe_progress"):
    job_id: JobRef


class UnsubscribeProgress(_In, tag="unsubscribe_progress"):
    job_id: JobRef


class GetJobStatus(_In, tag="get_job_status"):
    job_id: JobRef


class RequestJobStatus(_In, tag="request_job_status"):
    job_id: JobRef


class CancelJob(_In, tag="cancel_job"):
    job_id: JobRef


class Ping(_In, tag="ping"):
    pass


ClientMessage = (
    SubmitJob | SubscribeProgress | UnsubscribeProgress | GetJobStatus | RequestJobStatus | CancelJob | Ping
)

# -------------------------------------------------------------------- /ws/worker


class RegisterWorker(_In, tag="register_worker"):
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
    held: list[tuple[int, int]] = msgspec.field(default_factory=list)
    schemas: dict[str, Any] = msgspec.field(default_factory=dict)


class WorkerHeartbeat(_In, tag="worker_heartbeat"):
    metrics: dict[str, float] = msgspec.field(default_factory=dict)


class ClaimJob(_In, tag="claim_job"):
    count: Annotated[int, msgspec.Meta(ge=1, le=MAX_CLAIM)] = 1


class UpdateJobProgress(_In, tag="update_job_progress"):
    job_id: JobRef
    #: The attempt's fencing token from ``job_assigned`` (the door remembers it if omitted).
    token: Token | None = None
    progress: float | None = None
    message: Annotated[str, msgspec.Meta(max_length=4000)] | None = None


class CompleteJob(_In, tag="complete_job"):
    job_id: JobRef
    token: Token | None = None
    result: Any = msgspec.UNSET
    result_encoding: m.Encoding = "json"


class JobResult(msgspec.Struct, kw_only=True):
    job_id: JobRef
    token: Token | None = None
    result: Any = msgspec.UNSET
    result_encoding: m.Encoding = "json"


class CompleteJobs(_In, tag="complete_jobs"):
    results: Annotated[list[JobResult], msgspec.Meta(max_length=10_000)]


class FailJob(_In, tag="fail_job"):
    job_id: JobRef
    token: Token | None = None
    error: Annotated[str, msgspec.Meta(max_length=4000)] = "failed"
    #: False: do not retry, the job ends failed now.
    retry: bool = True


class ReleaseJobs(_In, tag="release_jobs"):
    jobs: list[tuple[int, int]] = msgspec.field(default_factory=list)


class SetSlots(_In, tag="set_slots"):
    slots: Annotated[int, msgspec.Meta(ge=0, le=100_000)]


class UnregisterWorker(_In, tag="unregister_worker"):
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
)

# -------------------------------------------------------------------- /ws/monitor


class RequestFullState(_In, tag="request_full_state"):
    jobs_limit: Annotated[int, msgspec.Meta(ge=0, le=m.MAX_LIST)] = 200


MonitorMessage = RequestFullState | Ping


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


MESSAGE_MODELS: list[Any] = [*ClientMessage.__args__, *WorkerMessage.__args__, RequestFullState, JobAssigned]

_client_decoder = msgspec.json.Decoder(ClientMessage)
_worker_decoder = msgspec.json.Decoder(WorkerMessage)
_monitor_decoder = msgspec.json.Decoder(MonitorMessage)
_fields = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ENVELOPE = frozenset({"type", "id", "timestamp", "source", "job_type", "subscribe", "job", "message_id"})


def _decode(decoder: msgspec.json.Decoder[Any], text: str | bytes) -> Any:
    try:
        return decoder.decode(text)
    except msgspec.ValidationError as exc:
        name = m.field_of(exc)
        raise m.FieldError(
            f"invalid {name or 'message'}: {str(exc).split(' - at ')[0]}", [name or "type"]
        ) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"not a JSON message: {exc}") from None


def _job_id(ref: int | str) -> int:
    if isinstance(ref, int):
        return ref
    if ref.isdigit() and 1 <= int(ref) <= m.MAX_ID:
        return int(ref)
    raise NotFound(f"no job {ref[:20]}")


def _reply(kind: str, request: _In | None, **fields: Any) -> str:
    body: dict[str, Any] = {"type": kind, "timestamp": now_ms(), **fields}
    if request is not None and request.id is not None:
        body["request_id"] = request.id
    return encode(body)


def _error(exc: JobqError, request: _In | None = None) -> str:
    return _reply(
        "error",
        request,
        error=exc.code,
        message=exc.message,
        fields=list(getattr(exc, "fields", [])),
    )


async def _receive(socket: WebSocket[Any, Any, Any]) -> str | bytes | None:
    """The next message, or None once the peer has gone."""
    try:
        event = await socket.receive()
    except WebSocketDisconnect:
        return None
    if event["type"] != "websocket.receive":
        return None
    text = event.get("text")
    return text if text is not None else (event.get("bytes") or b"")


async def _pump(socket: WebSocket[Any, Any, Any], outbox: Outbox, on_drop: Any = None) -> None:
    """Send what the outbox holds until it is closed or the socket fails."""
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        while True:
            await outbox.next()
            if outbox.dropped and on_drop is not None:
                for text in await on_drop():
                    await socket.send_data(text)
            while outbox.queue:
                await socket.send_data(outbox.queue.popleft())
                outbox.sent()
            if outbox.closed:
                return


async def _close(socket: WebSocket[Any, Any, Any], code: int = 1000, reason: str = "") -> None:
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        await socket.close(code, reason[:120])


def _status(job: Job, request: _In | None) -> str:
    """``job_status``: the job as ``GET /api/jobs/{id}`` shows it, less the payload."""
    view = m.job_view(job, full=job.state in TERMINAL)
    view.payload = view.payload_encoding = None
    head = _reply("job_status", request)
    return head[:-1] + "," + msgspec.json.encode(view).decode()[1:]


# -------------------------------------------------------------------- clients


class ClientConn:
    """One ``/ws/client`` connection; the bus subscriber for the jobs it follows."""

    def __init__(self, socket: WebSocket[Any, Any, Any]) -> None:
        self.socket = socket
        self.door = door_of(socket)  # type: ignore[arg-type]
        self.hub = self.door.hub
        self.outbox = Outbox(self.door.config.http_monitor_queue)
        self.watched: set[int] = set()

    def push(self, events: list[JobEvent]) -> None:
        texts = [encode(event_message(e)) for e in events]
        if not self.outbox.offer(texts, (e.id for e in events)):
            self.door.streams.dropped += len(texts)
        for event in events:
            if event.state in TERMINAL:
                self.watched.discard(event.id)

    async def _resync(self) -> list[str]:
        ids = sorted(self.outbox.dropped_ids)
        text = _reply("resync_required", None, dropped=self.outbox.dropped, job_ids=ids)
        self.outbox.dropped = 0
        self.outbox.dropped_ids.clear()
        self.door.streams.resyncs += 1
        return [text]

    def follow(self, job: Job) -> None:
        if job.state in TERMINAL:
            self.push([event_of(job, job.state.value, self.hub.clock(), with_result=True)])
        elif job.id not in self.watched:
            if len(self.watched) >= 10_000:
                raise InvalidRequest("this connection already follows 10000 jobs")
            self.watched.add(job.id)
            self.hub.events.watch(self, [job.id])

    async def handle(self, text: str | bytes) -> None:
        request: _In | None = None
        try:
            request = _decode(_client_decoder, text)
            await self._dispatch(request, text)
        except JobqError as exc:
            self.outbox.put(_error(exc, request))
        except Exception as exc:
            log.exception("client message failed")
            self.outbox.put(_error(JobqError(f"internal error: {type(exc).__name__}"), request))

    async def _dispatch(self, msg: Any, text: str | bytes) -> None:
        hub = self.hub
        if isinstance(msg, SubmitJob):
            if given := bytes(msg.job):
                request = m.decode_job_request(given)
            else:
                try:
                    request = m.decode_job_request(_inline_job(text))
                except m.FieldError as exc:  # inline, the service is called job_type
                    fields = ["job_type" if f == "type" else f for f in exc.fields]
                    raise m.FieldError(
                        exc.message.replace(": type", ": job_type"), fields, hint=exc.hint
                    ) from None
            spec = m.spec_of(request, hub.config.max_payload)
            # The estimate is taken first: from the submit on, nothing here may wait, so that
            # the reply goes out before any event of the job.
            stats = await hub.stats()
            [done] = await hub.submit([spec])
            if done.created:
                self.door.streams.log.submitted([done.job], hub.clock())
            position = stats.by_service.get(done.job.service, {}).get("queued", 0) + int(done.created)
            self.outbox.put(
                _reply(
                    "job_submitted",
                    msg,
                    job_id=done.job.id,
                    status=done.job.state.value,
                    queue_position=position if done.job.state.value == "queued" else None,
                    created=done.created,
                )
            )
            if msg.subscribe:
                self.follow(done.job)
        elif isinstance(msg, SubscribeProgress):
            job = await hub.get(_job_id(msg.job_id))
            self.outbox.put(_reply("subscription_confirmed", msg, job_id=job.id, status=job.state.value))
            self.follow(job)
        elif isinstance(msg, UnsubscribeProgress):
            job_id = _job_id(msg.job_id)
            self.watched.discard(job_id)
            hub.events.unsubscribe(self, [job_id])
            self.outbox.put(_reply("unsubscribed", msg, job_id=job_id))
        elif isinstance(msg, GetJobStatus | RequestJobStatus):
            self.outbox.put(_status(await hub.get(_job_id(msg.job_id)), msg))
        elif isinstance(msg, CancelJob):
            job = await hub.cancel(_job_id(msg.job_id))
            self.outbox.put(_reply("job_cancelled", msg, job_id=job.id, status=job.state.value))
        else:
            self.outbox.put(_reply("pong", msg))


def _inline_job(text: str | bytes) -> bytes:
    """``{"type": "submit_job", "job_type": "x", "payload": ...}`` → the job's own JSON object."""
    fields = _fields.decode(text)
    parts = [b'"type":' + bytes(fields["job_type"])] if "job_type" in fields else []
    for key, raw in fields.items():
        if key not in _ENVELOPE:
            parts.append(msgspec.json.encode(key) + b":" + bytes(raw))
    return b"{" + b",".join(parts) + b"}"


@websocket("/ws/client")
async def client_stream(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    conn = ClientConn(socket)
    streams = conn.door.streams
    streams.connections["client"] += 1
    sender = asyncio.create_task(_pump(socket, conn.outbox, conn._resync))
    tasks: set[asyncio.Task[None]] = set()
    limit = asyncio.Semaphore(CLIENT_IN_FLIGHT)
    conn.outbox.put(
        _reply("connection_established", None, message="jobq client stream", hub=conn.hub.config.name)
    )

    async def run(text: str | bytes) -> None:
        try:
            await conn.handle(text)
        finally:
            limit.release()

    try:
        while True:
            await conn.outbox.room()
            await limit.acquire()
            text = await _receive(socket)
            if text is None:
                break
            task = asyncio.create_task(run(text))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        streams.connections["client"] -= 1
        conn.hub.events.unsubscribe(conn)
        for task in list(tasks):
            task.cancel()
        conn.outbox.close()
        with contextlib.suppress(asyncio.CancelledError):
            await sender


# -------------------------------------------------------------------- workers


class WorkerConn:
    """One ``/ws/worker`` connection: the hub's WorkerLink for it."""

    def __init__(self, socket: WebSocket[Any, Any, Any]) -> None:
        self.socket = socket
        self.door = door_of(socket)  # type: ignore[arg-type]
        self.hub = self.door.hub
        self.outbox = Outbox(self.door.config.http_monitor_queue)
        self.worker_id: str | None = None
        self.pushes = True
        self.raw = False
        #: job id → fencing token of the attempts handed over this connection.
        self.tokens: dict[int, int] = {}
        self.gone = False

    # WorkerLink

    def deliver(self, jobs: Sequence[Job]) -> None:
        for job in jobs:
            self.tokens[job.id] = job.attempts
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
            self.outbox.put(_reply("cancel_job", None, job_id=job_id, reason="stop this attempt"))

    def disconnect(self, reason: str) -> None:
        self.gone = True
        self.outbox.put(_reply("disconnect", None, reason=reason))
        self.outbox.close()

    # messages

    async def handle(self, text: str | bytes) -> None:
        request: _In | None = None
        try:
            request = _decode(_worker_decoder, text)
            await self._dispatch(request)
        except JobqError as exc:
            self.outbox.put(_error(exc, request))
        except Exception as exc:
            log.exception("worker message failed")
            self.outbox.put(_error(JobqError(f"internal error: {type(exc).__name__}"), request))

    def _known(self) -> str | None:
        if self.worker_id is None or self.hub.sessions.get(self.worker_id) is None:
            self.outbox.put(_reply("register_required", None, reason="unknown worker; send register_worker"))
            return None
        return self.worker_id

    async def _token(self, ref: int | str, token: int | None) -> tuple[int, int]:
        job_id = _job_id(ref)
        if token is not None:
            return job_id, token
        if job_id in self.tokens:
            return job_id, self.tokens[job_id]
        job = await self.hub.get(job_id)
        if self.worker_id is None or job.worker != self.worker_id:
            raise m.FieldError(f"job {job_id} is not running on this worker; give its token", ["token"])
        return job_id, job.attempts

    async def _dispatch(self, msg: Any) -> None:
        hub = self.hub
        worker = self.worker_id or ""
        if isinstance(msg, RegisterWorker):
            await self._register(msg)
        elif isinstance(msg, WorkerHeartbeat):
            known = self._known()
            if known is not None and await hub.heartbeat(known, msg.metrics or None):
                self.outbox.put(_reply("worker_heartbeat_ack", msg))
        elif isinstance(msg, ClaimJob):
            known = self._known()
            if known is None:
                return
            jobs = await hub.claim(known, msg.count)
            if jobs:
                self.deliver(jobs)
            else:
                self.outbox.put(_reply("no_job_available", msg))
        elif isinstance(msg, UpdateJobProgress):
            job_id, token = await self._token(msg.job_id, msg.token)
            await hub.progress(worker, job_id, token, msg.progress, msg.message)
        elif isinstance(msg, CompleteJob | CompleteJobs):
            items = [msg] if isinstance(msg, CompleteJob) else msg.results
            completions = []
            for item in items:
                job_id, token = await self._token(item.job_id, item.token)
                frames: list[bytes] = []
                if item.result is not msgspec.UNSET:
                    frames, _ = m.frames_from_wire(item.result, item.result_encoding, "result")
                completions.append(Completion(job_id, token, frames))
            outcomes = await hub.complete(worker, completions)
            done = [
                c.job_id for c, o in zip(completions, outcomes, strict=True) if not isinstance(o, Exception)
            ]
            refused = {
                c.job_id: str(o)
                for c, o in zip(completions, outcomes, strict=True)
                if isinstance(o, Exception)
            }
            for job_id in (c.job_id for c in completions):
                self.tokens.pop(job_id, None)
            if isinstance(msg, CompleteJob):
                if refused:
                    reason = next(iter(refused.values()))
                    self.outbox.put(
                        _reply("error", msg, error="lease_lost", message=reason, fields=["token"])
                    )
                else:
                    self.outbox.put(_reply("job_completed_ack", msg, job_id=done[0]))
            else:
                self.outbox.put(_reply("jobs_completed_ack", msg, job_ids=done, refused=refused))
        elif isinstance(msg, FailJob):
            job_id, token = await self._token(msg.job_id, msg.token)
            self.tokens.pop(job_id, None)
            job = await hub.fail(worker, job_id, token, msg.error, retryable=msg.retry)
            self.outbox.put(_reply("job_failed_ack", msg, job_id=job_id, status=job.state.value))
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
            self.outbox.put(_reply("worker_unregistered", msg))
        else:
            self.outbox.put(_reply("pong", msg))

    async def _register(self, msg: RegisterWorker) -> None:
        capabilities = dict(msg.capabilities)
        services = list(msg.services)
        listed = capabilities.pop("services", None)
        if isinstance(listed, list):
            services += [s for s in listed if isinstance(s, str) and s not in services]
        if self.worker_id is not None and self.worker_id != msg.worker_id:
            await self.leave("registered again under another id")
        self.pushes = not msg.pull
        self.raw = msg.payload_format == "raw"
        info = WorkerInfo(
            id=msg.worker_id,
            services=services,
            capabilities=capabilities,
            slots=msg.slots,
            name=msg.name,
            door="http",
            schemas=msg.schemas,
        )
        kept = await self.hub.attach(info, self, held=msg.held)
        self.worker_id = msg.worker_id
        config = self.hub.config
        self.outbox.put(
            _reply(
                "worker_registered",
                msg,
                worker_id=msg.worker_id,
                status="connected",
                heartbeat=config.heartbeat,
                lease_ttl=config.lease_ttl,
                kept=kept,
                hub=config.name,
            )
        )

    async def leave(self, reason: str) -> None:
        worker_id, self.worker_id = self.worker_id, None
        if worker_id is None:
            return
        session = self.hub.sessions.get(worker_id)
        if session is not None and session.link is self:
            await self.hub.detach(worker_id, reason)


@websocket("/ws/worker")
async def worker_stream(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    conn = WorkerConn(socket)
    streams = conn.door.streams
    streams.connections["worker"] += 1
    sender = asyncio.create_task(_pump(socket, conn.outbox))
    # Dropped by the hub (expired, replaced, shutting down): close once the notice is out.
    closer: list[asyncio.Task[None]] = []
    sender.add_done_callback(
        lambda _: (
            closer.append(asyncio.ensure_future(_close(socket, 1001, "disconnected by the hub")))
            if conn.gone
            else None
        )
    )
    conn.outbox.put(
        _reply("connection_established", None, message="jobq worker stream", hub=conn.hub.config.name)
    )
    try:
        while not conn.gone:
            await conn.outbox.room()
            text = await _receive(socket)
            if text is None:
                break
            await conn.handle(text)
    finally:
        streams.connections["worker"] -= 1
        with contextlib.suppress(JobqError):
            await conn.leave("websocket closed")
        conn.outbox.close()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        for task in closer:
            await task


# -------------------------------------------------------------------- monitors


@websocket("/ws/monitor")
async def monitor_stream(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    door = door_of(socket)  # type: ignore[arg-type]
    streams = door.streams
    batch = socket.query_params.get("batch", "") in ("1", "true", "yes")
    monitor = Monitor(door.config.http_monitor_queue, batch)
    outbox = monitor.outbox

    async def resync() -> list[str]:
        dropped = outbox.dropped
        outbox.dropped = 0
        notice = _reply(
            "resync_required",
            None,
            reason="this monitor fell behind; its backlog was dropped and a fresh snapshot follows",
            dropped=dropped,
        )
        return [notice, encode(await streams.snapshot())]

    streams.connections["monitor"] += 1
    streams.add_monitor(monitor)
    sender = asyncio.create_task(_pump(socket, outbox, resync))
    outbox.put(
        _reply("connection_established", None, message="jobq monitor stream", hub=door.hub.config.name)
    )
    try:
        while True:
            text = await _receive(socket)
            if text is None:
                break
            request: _In | None = None
            try:
                request = _decode(_monitor_decoder, text)
                if isinstance(request, RequestFullState):
                    outbox.put(encode(await streams.snapshot(request.jobs_limit)))
                else:
                    outbox.put(_reply("pong", request))
            except JobqError as exc:
                outbox.put(_error(exc, request))
    finally:
        streams.connections["monitor"] -= 1
        streams.remove_monitor(monitor)
        with contextlib.suppress(asyncio.CancelledError):
            await sender


HANDLERS = [client_stream, worker_stream, monitor_stream]
