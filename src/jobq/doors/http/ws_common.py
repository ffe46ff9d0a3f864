"""What the WebSocket streams share: the message envelope, decoding, replies and the socket loop.

Messages are JSON objects with a ``type`` (EmProps style); unknown extra fields such as
``timestamp`` or ``source`` are ignored, a request's ``id`` comes back as ``request_id``.
A bad message gets an ``error`` message naming the field and the connection stays open.
The streams themselves are :mod:`~jobq.doors.http.ws_client`, :mod:`~jobq.doors.http.ws_worker`
and :mod:`~jobq.doors.http.ws_monitor`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import msgspec
from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect

from jobq.doors.http import models as m
from jobq.doors.http.streams import Outbox, encode, now_ms
from jobq.errors import InvalidRequest, JobqError, NotFound

log = logging.getLogger("jobq.doors.http.app")

JobRef = Annotated[int, msgspec.Meta(ge=1, le=m.MAX_ID)] | Annotated[str, msgspec.Meta(max_length=20)]
Token = Annotated[int, msgspec.Meta(ge=0, le=2**31)]


class Incoming(msgspec.Struct, tag_field="type", kw_only=True):
    #: Any id the sender chose; replies carry it back as ``request_id``.
    id: int | str | None = None


class Ping(Incoming, tag="ping"):
    pass


def decode(decoder: msgspec.json.Decoder[Any], text: str | bytes) -> Any:
    """A message, or the 400 naming the field at fault."""
    try:
        return decoder.decode(text)
    except msgspec.ValidationError as exc:
        name = m.field_of(exc)
        raise m.FieldError(
            f"invalid {name or 'message'}: {str(exc).split(' - at ')[0]}", [name or "type"]
        ) from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"not a JSON message: {exc}") from None


def job_id_of(ref: int | str) -> int:
    """A job id given as a number or a numeric string."""
    if isinstance(ref, int):
        return ref
    if ref.isdigit() and 1 <= int(ref) <= m.MAX_ID:
        return int(ref)
    raise NotFound(f"no job {ref[:20]}")


def reply(kind: str, request: Incoming | None, **fields: Any) -> str:
    body: dict[str, Any] = {"type": kind, "timestamp": now_ms(), **fields}
    if request is not None and request.id is not None:
        body["request_id"] = request.id
    return encode(body)


def error(exc: JobqError, request: Incoming | None = None) -> str:
    return reply(
        "error",
        request,
        error=exc.code,
        message=exc.message,
        fields=list(getattr(exc, "fields", [])),
    )


async def receive(socket: WebSocket[Any, Any, Any]) -> str | bytes | None:
    """The next message, or None once the peer has gone."""
    try:
        event = await socket.receive()
    except WebSocketDisconnect:
        return None
    if event["type"] != "websocket.receive":
        return None
    text = event.get("text")
    return text if text is not None else (event.get("bytes") or b"")


async def pump(
    socket: WebSocket[Any, Any, Any],
    outbox: Outbox,
    on_drop: Callable[[], Awaitable[list[str]]] | None = None,
) -> None:
    """Send what the outbox holds until it is closed or the socket fails; after events were
    dropped, ``on_drop`` says what to send first."""
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


async def close(socket: WebSocket[Any, Any, Any], code: int = 1000, reason: str = "") -> None:
    with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
        await socket.close(code, reason[:120])


__all__ = [
    "Incoming",
    "JobRef",
    "Ping",
    "Token",
    "close",
    "decode",
    "error",
    "job_id_of",
    "pump",
    "receive",
    "reply",
]
