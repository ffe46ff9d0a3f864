"""What the WebSocket streams share: the message envelope, decoding, replies and the socket loop.

Messages are JSON objects with a ``type`` (EmProps style); unknown extra fields such as
``timestamp`` or ``source`` are ignored, a request's ``id`` comes back as ``request_id``.
A bad message gets an ``error`` message naming the field and the connection stays open.

Who speaks (:func:`admit`): the ``Authorization: Bearer`` header of the handshake (checked by
the gate, ``gate.py``), or, since browsers cannot set headers on a WebSocket, a first message
``{"type": "auth", "token": "..."}``. With authentication on, a connection that sends anything
else first, or nothing within :data:`AUTH_TIMEOUT` seconds, is closed with code 4401 and the
reason; a caller the stream refuses outright is closed with 4403. An ``auth`` message later on
is answered with ``authenticated`` (who the connection speaks for) and changes nothing.
The streams themselves are :mod:`~jobq.doors.http.ws_client`, :mod:`~jobq.doors.http.ws_worker`
and :mod:`~jobq.doors.http.ws_monitor`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, cast

import msgspec
from litestar import WebSocket
from litestar.exceptions import WebSocketDisconnect

from jobq.core.auth import Caller
from jobq.doors.http import models as m
from jobq.doors.http.gate import peer_of
from jobq.doors.http.state import CALLER, door_of
from jobq.doors.http.streams import Outbox, encode, now_ms
from jobq.errors import InvalidRequest, JobqError, NotFound, Unauthorized

log = logging.getLogger("jobq.doors.http.app")

JobRef = Annotated[int, msgspec.Meta(ge=1, le=m.MAX_ID)] | Annotated[str, msgspec.Meta(max_length=20)]
#: A fencing token (any id-sized number: tokens may grow beyond the attempt count).
Token = Annotated[int, msgspec.Meta(ge=0, le=m.MAX_ID)]


class Incoming(msgspec.Struct, tag_field="type", kw_only=True):
    #: Any id the sender chose; replies carry it back as ``request_id``.
    id: int | str | None = None


class Ping(Incoming, tag="ping"):
    pass


class Auth(Incoming, tag="auth"):
    """Who speaks: the first message of a connection whose handshake had no token."""

    token: Annotated[str, msgspec.Meta(max_length=512)]


#: Seconds a connection without a token in its handshake has to send its ``auth`` message.
AUTH_TIMEOUT = 10.0
#: Close codes (the 4000s are the application's): no or bad token, and a token refused here.
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403

_auth = msgspec.json.Decoder(Auth)


class DoorSocket(WebSocket[Any, Any, Any]):
    """Litestar's WebSocket (the door's ``websocket_class``) whose ``receive`` and ``send``
    wrappers do not hold the socket itself: Litestar's close over it, a reference cycle that
    keeps every closed connection (its protocol, buffers and compressor) until the hub's cycle
    collector runs, which is seldom (``process.py``). The wrappers behave as Litestar's."""

    def receive_wrapper(self, receive: Any) -> Any:
        this = weakref.ref(self)

        async def wrapped_receive() -> Any:
            socket = this()
            if socket is not None and socket.connection_state == "disconnect":
                raise WebSocketDisconnect(detail="connection is disconnected")
            message = await receive()
            if socket is not None:
                kind = message["type"]
                socket.connection_state = (
                    "connect"
                    if kind == "websocket.connect"
                    else "receive"
                    if kind == "websocket.receive"
                    else "disconnect"
                )
            return message

        return wrapped_receive

    def send_wrapper(self, send: Any) -> Any:
        this = weakref.ref(self)

        async def wrapped_send(message: Any) -> None:
            socket = this()
            if socket is not None and socket.connection_state == "disconnect":
                raise WebSocketDisconnect(detail="connection is disconnected")
            await send(message)

        return wrapped_send


async def admit(socket: WebSocket[Any, Any, Any]) -> Caller | None:
    """Accept the connection and establish who speaks on it; None when it was closed instead.
    The caller is registered with the door, which closes the connection if its token is
    revoked (``unregister`` when it ends)."""
    await socket.accept()
    caller: Caller | None = cast(dict[str, Any], socket.scope).get(CALLER)
    if caller is None:
        caller = await _first_message(socket)
        if caller is None:
            return None
    door = door_of(socket)
    if not door.hub.guard.still_valid(caller.principal):  # revoked meanwhile
        await close(socket, CLOSE_UNAUTHORIZED, "not authorized: token revoked")
        return None
    door.sockets[socket] = caller
    return caller


async def _first_message(socket: WebSocket[Any, Any, Any]) -> Caller | None:
    hub = door_of(socket).hub
    peer = peer_of(cast(dict[str, Any], socket.scope))
    try:
        text = await asyncio.wait_for(receive(socket), AUTH_TIMEOUT)
    except TimeoutError:
        text, reason = b"", f"not authorized: no auth message within {AUTH_TIMEOUT:g}s"
    else:
        reason = 'not authorized: send {"type": "auth", "token": "..."} first'
    if text is None:
        return None
    try:
        token = _auth.decode(text).token if text and m.nesting_ok(text) else None
    except (msgspec.DecodeError, msgspec.ValidationError):
        token = None
    if token is None:
        action = f"WEBSOCKET {socket.url.path}"
        hub.guard.audit.write("refused", None, action, reason=reason, door="ws", peer=peer)
        await close(socket, CLOSE_UNAUTHORIZED, reason)
        return None
    try:
        return hub.authenticate(token, door="ws", peer=peer)
    except Unauthorized as exc:  # the hub's guard wrote it to the audit log
        await close(socket, CLOSE_UNAUTHORIZED, exc.message)
        return None


def unregister(socket: WebSocket[Any, Any, Any]) -> None:
    door_of(socket).sockets.pop(socket, None)


def authenticated(caller: Caller, request: Incoming | None) -> str:
    """The answer to an ``auth`` message once the connection is admitted."""
    return reply("authenticated", request, principal=caller.name, role=caller.principal.role)


def decode(decoder: msgspec.json.Decoder[Any], text: str | bytes) -> Any:
    """A message, or the 400 naming the field at fault."""
    m.check_nesting(text, "the message")
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
    """A job id given as a number or a numeric string (1 .. 2^53-1, else a 400; a string that
    is no number names no job)."""
    if isinstance(ref, int):
        return ref
    if ref.isascii() and ref.isdigit():
        if 1 <= int(ref) <= m.MAX_ID:
            return int(ref)
        raise m.FieldError(f"job_id out of range (1 .. {m.MAX_ID})", ["job_id"])
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
    "AUTH_TIMEOUT",
    "CLOSE_FORBIDDEN",
    "CLOSE_UNAUTHORIZED",
    "Auth",
    "DoorSocket",
    "Incoming",
    "JobRef",
    "Ping",
    "Token",
    "admit",
    "authenticated",
    "close",
    "decode",
    "error",
    "job_id_of",
    "pump",
    "receive",
    "reply",
    "unregister",
]
