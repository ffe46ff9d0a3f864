"""``/ws/client``: submit jobs, follow their progress and end, ask their status, cancel them."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
from litestar import WebSocket, websocket

from jobq.core.auth import Caller
from jobq.core.model import Job, JobEvent
from jobq.core.states import TERMINAL
from jobq.doors.http import models as m
from jobq.doors.http.state import door_of
from jobq.doors.http.streams import Outbox, encode, event_message
from jobq.doors.http.views import job_view
from jobq.doors.http.ws_common import (
    Auth,
    Incoming,
    JobRef,
    Ping,
    admit,
    authenticated,
    decode,
    error,
    job_id_of,
    log,
    pump,
    receive,
    reply,
    unregister,
)
from jobq.errors import InvalidRequest, JobqError

#: Requests one client connection may have in progress at once (then reading pauses).
CLIENT_IN_FLIGHT = 64
#: Jobs one client connection may follow at once.
MAX_FOLLOWED = 10_000


class SubmitJob(Incoming, tag="submit_job"):
    """The job's fields inline (``job_type`` for ``type``) or as ``job``; see JobRequest."""

    #: The job as one object (JobRequest); empty when its fields are inline.
    job: msgspec.Raw = msgspec.field(default_factory=msgspec.Raw)
    job_type: str | None = None
    #: Receive this job's progress and end (default true).
    subscribe: bool = True


class SubscribeProgress(Incoming, tag="subscribe_progress"):
    job_id: JobRef


class UnsubscribeProgress(Incoming, tag="unsubscribe_progress"):
    job_id: JobRef


class GetJobStatus(Incoming, tag="get_job_status"):
    job_id: JobRef


class RequestJobStatus(Incoming, tag="request_job_status"):
    job_id: JobRef


class CancelJob(Incoming, tag="cancel_job"):
    job_id: JobRef


ClientMessage = (
    SubmitJob
    | SubscribeProgress
    | UnsubscribeProgress
    | GetJobStatus
    | RequestJobStatus
    | CancelJob
    | Ping
    | Auth
)

#: The messages of this stream, for the OpenAPI document.
MESSAGE_MODELS: list[Any] = [*ClientMessage.__args__]

_decoder = msgspec.json.Decoder(ClientMessage)
_fields = msgspec.json.Decoder(dict[str, msgspec.Raw])
_ENVELOPE = frozenset({"type", "id", "timestamp", "source", "job_type", "subscribe", "job", "message_id"})


def _status(job: Job, request: Incoming | None) -> str:
    """``job_status``: the job as ``GET /api/jobs/{id}`` shows it, less the payload."""
    view = job_view(job, full=job.state in TERMINAL)
    view.payload = view.payload_encoding = None
    head = reply("job_status", request)
    return head[:-1] + "," + msgspec.json.encode(view).decode()[1:]


def _names(job_id: int, state: str) -> dict[str, Any]:
    """A job's id and state under jobq's names and EmProps' (docs/http.md, *Field names*)."""
    return {"id": job_id, "job_id": job_id, "state": state, "status": state}


def _inline_job(text: str | bytes) -> bytes:
    """``{"type": "submit_job", "job_type": "x", "payload": ...}`` → the job's own JSON object."""
    fields = _fields.decode(text)
    parts = [b'"type":' + bytes(fields["job_type"])] if "job_type" in fields else []
    for key, raw in fields.items():
        if key not in _ENVELOPE:
            parts.append(msgspec.json.encode(key) + b":" + bytes(raw))
    return b"{" + b",".join(parts) + b"}"


def _job_request(msg: SubmitJob, text: str | bytes) -> m.JobRequest:
    if given := bytes(msg.job):
        return m.decode_job_request(given)
    try:
        return m.decode_job_request(_inline_job(text))
    except m.FieldError as exc:  # inline, the service is called job_type
        fields = ["job_type" if f == "type" else f for f in exc.fields]
        raise m.FieldError(exc.message.replace(": type", ": job_type"), fields, hint=exc.hint) from None


class ClientConn:
    """One ``/ws/client`` connection; the hub's subscriber for the jobs it follows."""

    def __init__(self, socket: WebSocket[Any, Any, Any], caller: Caller) -> None:
        self.socket = socket
        self.caller = caller
        self.door = door_of(socket)
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

    async def resync(self) -> list[str]:
        ids = sorted(self.outbox.dropped_ids)
        text = reply("resync_required", None, dropped=self.outbox.dropped, job_ids=ids)
        self.outbox.dropped = 0
        self.outbox.dropped_ids.clear()
        self.door.streams.resyncs += 1
        return [text]

    def follow(self, job: Job) -> None:
        """Every event of the job from now on; its end at once if it has ended."""
        if job.state in TERMINAL:
            self.hub.watch_ends(self, [job], caller=self.caller)
        elif job.id not in self.watched:
            if len(self.watched) >= MAX_FOLLOWED:
                raise InvalidRequest(f"this connection already follows {MAX_FOLLOWED} jobs")
            self.watched.add(job.id)
            self.hub.watch(self, [job.id], caller=self.caller)

    async def handle(self, text: str | bytes) -> None:
        request: Incoming | None = None
        try:
            request = decode(_decoder, text)
            await self._dispatch(request, text)
        except JobqError as exc:
            self.outbox.put(error(exc, request))
        except Exception as exc:
            log.exception("client message failed")
            self.outbox.put(error(JobqError(f"internal error: {type(exc).__name__}"), request))

    async def _dispatch(self, msg: Any, text: str | bytes) -> None:
        hub = self.hub
        caller = self.caller
        if isinstance(msg, SubmitJob):
            spec = m.spec_of(_job_request(msg, text), hub.config.max_payload)
            # From the submit on nothing here waits, so the reply goes out before any event
            # of the job (the hub reads the queue for the position before it submits).
            [(done, position)] = await hub.submit_placed([spec], caller=caller)
            if isinstance(done, JobqError):
                raise done
            if done.created:
                self.door.streams.log.submitted([done.job], hub.clock())
            self.outbox.put(
                reply(
                    "job_submitted",
                    msg,
                    **_names(done.job.id, done.job.state.value),
                    queue_position=position,
                    created=done.created,
                )
            )
            if msg.subscribe:
                self.follow(done.job)
        elif isinstance(msg, SubscribeProgress):
            job = await hub.get(job_id_of(msg.job_id), caller=caller)
            self.outbox.put(reply("subscription_confirmed", msg, **_names(job.id, job.state.value)))
            self.follow(job)
        elif isinstance(msg, UnsubscribeProgress):
            job_id = job_id_of(msg.job_id)
            self.watched.discard(job_id)
            hub.unwatch(self, [job_id])
            self.outbox.put(reply("unsubscribed", msg, id=job_id, job_id=job_id))
        elif isinstance(msg, GetJobStatus | RequestJobStatus):
            self.outbox.put(_status(await hub.get(job_id_of(msg.job_id), caller=caller), msg))
        elif isinstance(msg, CancelJob):
            job = await hub.cancel(job_id_of(msg.job_id), caller=caller)
            self.outbox.put(reply("job_cancelled", msg, **_names(job.id, job.state.value)))
        elif isinstance(msg, Auth):
            self.outbox.put(authenticated(caller, msg))
        else:
            self.outbox.put(reply("pong", msg))


@websocket("/ws/client")
async def client_stream(socket: WebSocket[Any, Any, Any]) -> None:
    caller = await admit(socket)
    if caller is None:
        return
    conn = ClientConn(socket, caller)
    streams = conn.door.streams
    streams.connections["client"] += 1
    sender = asyncio.create_task(pump(socket, conn.outbox, conn.resync))
    tasks: set[asyncio.Task[None]] = set()
    limit = asyncio.Semaphore(CLIENT_IN_FLIGHT)
    conn.outbox.put(
        reply(
            "connection_established",
            None,
            message="jobq client stream",
            hub=conn.hub.config.name,
            principal=caller.name,
            role=caller.principal.role,
        )
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
            text = await receive(socket)
            if text is None:
                break
            task = asyncio.create_task(run(text))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        unregister(socket)
        streams.connections["client"] -= 1
        conn.hub.unwatch(conn)
        for task in list(tasks):
            task.cancel()
        conn.outbox.close()
        with contextlib.suppress(asyncio.CancelledError):
            await sender


HANDLERS = [client_stream]
