"""``/ws/monitor``: a snapshot on request, then every job event and the figures every second
(the fan-out and the figures are :class:`~jobq.doors.http.streams.Streams`)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any

import msgspec
from litestar import WebSocket, websocket

from jobq.doors.http import models as m
from jobq.doors.http.state import door_of
from jobq.doors.http.streams import Monitor, encode
from jobq.doors.http.ws_common import Incoming, Ping, decode, error, pump, receive, reply
from jobq.errors import JobqError


class RequestFullState(Incoming, tag="request_full_state"):
    jobs_limit: Annotated[int, msgspec.Meta(ge=0, le=m.MAX_LIST)] = 200


MonitorMessage = RequestFullState | Ping

#: The messages of this stream, for the OpenAPI document.
MESSAGE_MODELS: list[Any] = [RequestFullState]

_decoder = msgspec.json.Decoder(MonitorMessage)


@websocket("/ws/monitor")
async def monitor_stream(socket: WebSocket[Any, Any, Any]) -> None:
    await socket.accept()
    door = door_of(socket)
    streams = door.streams
    batch = socket.query_params.get("batch", "") in ("1", "true", "yes")
    monitor = Monitor(door.config.http_monitor_queue, batch)
    outbox = monitor.outbox

    async def resync() -> list[str]:
        dropped = outbox.dropped
        outbox.dropped = 0
        notice = reply(
            "resync_required",
            None,
            reason="this monitor fell behind; its backlog was dropped and a fresh snapshot follows",
            dropped=dropped,
        )
        return [notice, encode(await streams.snapshot())]

    streams.connections["monitor"] += 1
    streams.add_monitor(monitor)
    sender = asyncio.create_task(pump(socket, outbox, resync))
    outbox.put(reply("connection_established", None, message="jobq monitor stream", hub=door.hub.config.name))
    try:
        while True:
            text = await receive(socket)
            if text is None:
                break
            request: Incoming | None = None
            try:
                request = decode(_decoder, text)
                if isinstance(request, RequestFullState):
                    outbox.put(encode(await streams.snapshot(request.jobs_limit)))
                else:
                    outbox.put(reply("pong", request))
            except JobqError as exc:
                outbox.put(error(exc, request))
    finally:
        streams.connections["monitor"] -= 1
        streams.remove_monitor(monitor)
        with contextlib.suppress(asyncio.CancelledError):
            await sender


HANDLERS = [monitor_stream]
