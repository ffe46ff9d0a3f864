"""``/ws/monitor``: a snapshot on request, then every job event and the figures every second
(the fan-out is :class:`~jobq.doors.http.streams.Streams`, the figures
:mod:`~jobq.doors.http.figures`), all as the connection's caller may see them."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

import msgspec
from litestar import WebSocket, websocket

from jobq.doors.http import models as m
from jobq.doors.http.state import door_of
from jobq.doors.http.streams import Monitor, encode
from jobq.doors.http.ws_common import (
    CLOSE_FORBIDDEN,
    Auth,
    Incoming,
    Ping,
    admit,
    authenticated,
    close,
    decode,
    error,
    pump,
    receive,
    reply,
    unregister,
)
from jobq.errors import Forbidden, JobqError


class RequestFullState(Incoming, tag="request_full_state"):
    jobs_limit: Annotated[int, msgspec.Meta(ge=0, le=m.MAX_LIST)] = 200


MonitorMessage = RequestFullState | Ping | Auth

#: The messages of this stream, for the OpenAPI document.
MESSAGE_MODELS: list[Any] = [RequestFullState]

_decoder = msgspec.json.Decoder(MonitorMessage)


@websocket("/ws/monitor")
async def monitor_stream(socket: WebSocket[Any, Any, Any]) -> None:
    caller = await admit(socket)
    if caller is None:
        return
    door = door_of(socket)
    streams = door.streams
    batch = socket.query_params.get("batch", "") in ("1", "true", "yes")
    monitor = Monitor(door.config.http_monitor_queue, batch)
    outbox = monitor.outbox
    try:
        streams.add_monitor(monitor, caller)
    except Forbidden as exc:
        unregister(socket)
        await close(socket, CLOSE_FORBIDDEN, exc.message)
        return

    async def resync() -> list[str]:
        dropped = outbox.dropped
        outbox.dropped = 0
        notice = reply(
            "resync_required",
            None,
            reason="this monitor fell behind; its backlog was dropped and a fresh snapshot follows",
            dropped=dropped,
        )
        return [notice, encode(await streams.snapshot(monitor))]

    streams.connections["monitor"] += 1
    sender = asyncio.create_task(pump(socket, outbox, resync))
    outbox.put(
        reply(
            "connection_established",
            None,
            message="jobq monitor stream",
            hub=door.hub.config.name,
            principal=caller.name,
            role=caller.principal.role,
        )
    )
    try:
        while True:
            text = await receive(socket)
            if text is None:
                break
            request: Incoming | None = None
            try:
                request = decode(_decoder, text)
                if isinstance(request, RequestFullState):
                    outbox.put(encode(await streams.snapshot(monitor, request.jobs_limit)))
                elif isinstance(request, Auth):
                    outbox.put(authenticated(caller, request))
                else:
                    outbox.put(reply("pong", request))
            except JobqError as exc:
                outbox.put(error(exc, request))
    finally:
        unregister(socket)
        streams.connections["monitor"] -= 1
        streams.remove_monitor(monitor)
        with contextlib.suppress(asyncio.CancelledError):
            await sender


HANDLERS = [monitor_stream]
