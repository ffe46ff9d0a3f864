"""The door's connections below the app: uvicorn's HTTP (httptools) and WebSocket (websockets'
Sans-I/O) protocols with jobq's limits (``docs/http.md``, *Limits*).

- **Who holds connections** (:class:`~jobq.doors.http.limits.ConnectionLimits`): a connection
  is counted per client address from the moment it is made until it is lost (an HTTP connection
  that becomes a WebSocket keeps its place); one past ``http_max_per_peer``, or past
  ``http_max_connections`` + ``PROBE_ROOM``, is answered 503 and closed at once.
- **Read timeouts**: a connection has ``http_header_timeout`` seconds to send its request line
  and headers (from its opening, or from the first byte of its next request; an idle kept-alive
  connection is closed after ``http_keepalive``), then 408 and the connection is closed; a
  request body has ``http_body_timeout`` seconds to arrive whole, and so has a WebSocket
  message from its first byte (then close 1008).
- **Partly received WebSocket messages** reserve their bytes in the hub's budget
  (``hub.inflight``, every door together) as they grow, and give them back once complete,
  refused or closed; a message that does not fit closes the stream with 1013 (try again later).
  (Bodies of HTTP requests reserve theirs in the gate.)
- **No reference cycles left behind**, so a connection's memory goes back by reference counting
  at once (the hub's cycle collector runs seldom: ``process.py``). websockets keeps the
  exception that failed a connection, whose traceback holds the frames that raised it, among
  them a decompressed message of up to ``http_max_body`` bytes (an over-size message) and the
  protocol itself; its parser is a generator that holds the protocol; an HTTP protocol that
  became a WebSocket is never told its connection was lost, and its parser holds it. Each of
  these is cut where it is made.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
from types import FrameType
from typing import Any, ClassVar

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from jobq.doors.http.limits import BUSY, PROBE_HEADER_TIMEOUT, RETRY_AFTER, ConnectionLimits

#: WebSocket close codes: a policy violation (a message too slow), try again later (no budget).
CLOSE_POLICY = 1008
CLOSE_TRY_LATER = 1013
#: Seconds a refused connection is read (and what it sends dropped) before it is closed.
LINGER = 0.5


def _answer(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP answer written by the door itself (the app never saw the request)."""
    body = msgspec.json.encode({"error": reason, "message": message})
    head = [
        f"HTTP/1.1 {status} {'Request Timeout' if status == 408 else 'Service Unavailable'}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
    ]
    if status == 503:
        head.append(f"retry-after: {RETRY_AFTER}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _peer(client: tuple[str, int] | None) -> str:
    return client[0] if client else ""


def _cut_traceback(exc: BaseException | None) -> None:
    """Drop the frames an exception holds (and those of the exceptions chained to it)."""
    seen = 0
    while exc is not None and seen < 8:
        exc.__traceback__ = None
        exc = exc.__cause__ or exc.__context__
        seen += 1


#: Code flags of frames that may be suspended (generators, coroutines): never cleared while alive.
_SUSPENDABLE = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR


def drop_frames(exc: BaseException) -> None:
    """Clear the finished frames an exception's traceback holds, and those of the exceptions
    their locals keep. For refusals: Litestar collects the errors of a request's parameters in
    a list that the frames raising them hold, a reference cycle (with the request) per refused
    parameter. Executing frames (the one handling ``exc``) are left alone."""
    running: set[int] = set()
    here: FrameType | None = sys._getframe()
    while here is not None:  # not these: reading their locals would keep them (a snapshot)
        running.add(id(here))
        here = here.f_back
    pending = [exc]
    seen: set[int] = set()
    while pending and len(seen) < 32:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        tb = current.__traceback__
        catcher = True  # the frame that caught it may live on; those it left are finished
        while tb is not None:
            frame = tb.tb_frame
            tb = tb.tb_next
            alive = id(frame) in running or (catcher and frame.f_code.co_flags & _SUSPENDABLE)
            catcher = False
            if alive:
                continue
            snapshot = frame.f_locals  # a dict the frame keeps: emptied too
            for value in snapshot.values():
                pending.extend(_exceptions_in(value))
            try:
                frame.clear()
            except RuntimeError:  # executing elsewhere
                continue
            snapshot.clear()
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def _exceptions_in(value: object, depth: int = 2) -> list[BaseException]:
    if isinstance(value, BaseException):
        return [value]
    if depth and isinstance(value, list | tuple) and len(value) <= 64:
        return [found for item in value for found in _exceptions_in(item, depth - 1)]
    return []


class DoorHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the door's connection limits and read timeouts."""

    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._refused = False
        #: Let in past ``http_max_connections`` (the probe room): one quick request, then closed.
        self._probe_only = False

    # --------------------------------------------------------------------- connections

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        reason = self.limits.admit(transport, _peer(self.client))
        if reason is not None:
            self._refuse(reason)
            return
        self._probe_only = self.limits.full
        self._arm(self._header_timeout(), self._headers_late)

    def _header_timeout(self) -> float:
        return PROBE_HEADER_TIMEOUT if self._probe_only else self.limits.header_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.limits.release(self.transport)
        super().connection_lost(exc)
        self.cycle = None  # type: ignore[assignment]  # it holds on_response_complete: a cycle

    def _refuse(self, reason: str) -> None:
        """503 before anything is read (the peer, or everybody, holds too many), then closed.
        What the peer sends meanwhile is read and dropped for a moment, so that closing does
        not reset the connection before the peer has read the answer."""
        self._refused = True
        transport = self.transport
        transport.write(_answer(503, "unavailable", reason))
        if transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(LINGER, transport.close)
        else:
            transport.close()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)

    # --------------------------------------------------------------------- timeouts

    def _arm(self, seconds: float, then: Any) -> None:
        self._disarm()
        if seconds > 0:
            self._deadline = self.loop.call_later(seconds, then)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:  # the next request on a kept-alive connection
            self._arm(self._header_timeout(), self._headers_late)

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()
        if self._probe_only and self.cycle is not None:
            self.cycle.keep_alive = False  # one answer, then the room is free for the next probe
        self._arm(self.limits.body_timeout, self._body_late)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def _headers_late(self) -> None:
        self._deadline = None
        self._cut(f"no request line and headers within {self._header_timeout():g}s", answer=True)

    def _body_late(self) -> None:
        self._deadline = None
        cycle = self.cycle
        answer = cycle is None or not cycle.response_started
        self._cut(f"the request body did not arrive within {self.limits.body_timeout:g}s", answer=answer)

    def _cut(self, reason: str, *, answer: bool) -> None:
        if self.transport.is_closing():
            return
        self.limits.timed_out += 1
        if answer:
            self.transport.write(_answer(408, "timeout", reason))
        self.transport.close()

    # --------------------------------------------------------------------- WebSocket

    def handle_websocket_upgrade(self) -> None:
        self._disarm()
        super().handle_websocket_upgrade()
        # The transport now speaks to the WebSocket protocol (which took over this
        # connection's place in the limits): nothing calls this one's connection_lost, and
        # its parser holds it.
        self.parser = None  # type: ignore[assignment]


class DoorWebSocket(WebSocketsSansIOProtocol):
    """uvicorn's websockets Sans-I/O protocol, with the budget and timeout of partly received
    messages, and no reference cycle left behind."""

    limits: ClassVar[ConnectionLimits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Bytes of partly received messages this connection holds in the budget.
        self._held = 0
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.limits.adopt(transport, _peer(self.client))

    def connection_lost(self, exc: Exception | None) -> None:
        self._hold(0)
        self._disarm()
        self.limits.release(self.transport)
        super().connection_lost(exc)
        conn = self.conn
        _cut_traceback(conn.parser_exc)
        parser = getattr(conn, "parser", None)
        if parser is not None:  # a generator whose frame holds the protocol
            parser.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        conn = self.conn
        if conn.parser_exc is not None:  # refused (too big, bad frame): keep no frames
            _cut_traceback(conn.parser_exc)
            self._hold(0)
            self._disarm()
            return
        if self.close_sent or self.transport.is_closing():
            self._hold(0)
            return
        partial = len(conn.reader.buffer) + sum(len(frame) for frame in self.frames)
        if not self._hold(partial):
            self.limits.busy += 1
            self._fail(CLOSE_TRY_LATER, BUSY)
            return
        if partial == 0:
            self._disarm()
        elif self._deadline is None and self.handshake_complete:
            self._deadline = self.loop.call_later(self.limits.body_timeout, self._message_late)

    def _hold(self, size: int) -> bool:
        """Hold ``size`` bytes of the budget (more or fewer than now); False if it has no room."""
        budget = self.limits.budget
        if size > self._held:
            if not budget.reserve(size - self._held):
                budget.release(self._held)
                self._held = 0
                return False
        elif size < self._held:
            budget.release(self._held - size)
        self._held = size
        return True

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _message_late(self) -> None:
        self._deadline = None
        if self.read_paused:  # waiting for the app, not for the peer
            self._deadline = self.loop.call_later(self.limits.body_timeout, self._message_late)
            return
        self.limits.timed_out += 1
        self._fail(CLOSE_POLICY, f"message not received whole within {self.limits.body_timeout:g}s")

    def _fail(self, code: int, reason: str) -> None:
        """Close the stream with ``code`` (the app hears it as a disconnect) and drop what was
        partly received."""
        self._hold(0)
        self._disarm()
        if self.transport.is_closing():
            return
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        if self.handshake_complete and not self.close_sent:
            self.conn.fail(code, reason)
            self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.conn.reader.buffer.clear()
        self.frames = []
        self.transport.close()


def protocols(limits: ConnectionLimits) -> tuple[type[DoorHttp], type[DoorWebSocket]]:
    """The protocol classes uvicorn builds for one door (they share its limits)."""
    http = type("DoorHttpBound", (DoorHttp,), {"limits": limits})
    ws = type("DoorWebSocketBound", (DoorWebSocket,), {"limits": limits})
    return http, ws


__all__ = ["CLOSE_POLICY", "CLOSE_TRY_LATER", "DoorHttp", "DoorWebSocket", "drop_frames", "protocols"]
