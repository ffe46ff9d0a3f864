"""One ZMTP connection on asyncio (the streams under :mod:`jobq.protocol.zmtp_io`'s sockets).

``Stream`` speaks NULL: greeting and READY, then message frames. ``CurveStream`` speaks CURVE
(:mod:`jobq.protocol.curve`): greeting, the CurveZMQ handshake, then MESSAGE boxes. Each is a
whole class of its own, so a NULL connection pays nothing for CURVE. The ROUTER's and the
DEALER's streams (in zmtp_io) subclass them with what differs: how a connection opens, whom it
talks to, what happens to its messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

from jobq.protocol import curve, zmtp
from jobq.protocol.inflight import InflightBudget

log = logging.getLogger("jobq.zmtp")


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """Who a ROUTER's CURVE peer proved to be."""

    #: The client's long-term public key, 32 raw bytes (``public_key_z85`` for the text form).
    public_key: bytes
    #: What ``curve_authenticate`` returned for it (None when the socket has no callback).
    principal: object = None

    @property
    def public_key_z85(self) -> str:
        return curve.encode_key(self.public_key)


def parse_endpoint(endpoint: str) -> tuple[str, str, int]:
    """``tcp://host:port`` → ("tcp", host, port); ``ipc://path`` → ("ipc", path, 0)."""
    scheme, sep, rest = endpoint.partition("://")
    if not sep or scheme not in ("tcp", "ipc"):
        raise ValueError(f"unsupported endpoint {endpoint!r}: use tcp://HOST:PORT or ipc://PATH")
    if scheme == "ipc":
        return "ipc", rest, 0
    host, _, port = rest.rpartition(":")
    host = host.strip("[]")
    if host in ("*", ""):
        host = "0.0.0.0"
    if port == "*":
        return "tcp", host, 0
    if not port.isdigit():
        raise ValueError(f"bad port in endpoint {endpoint!r}")
    return "tcp", host, int(port)


def _nodelay(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Stream(asyncio.Protocol):
    """One ZMTP connection: greeting, READY exchange, then messages."""

    #: Closes the connection unless its handshake is through in time (a ROUTER's streams, and
    #: every CURVE stream: :meth:`_handshake_late`).
    _timer: asyncio.TimerHandle | None = None

    def __init__(
        self,
        socket_type: bytes,
        accepts: frozenset[bytes],
        identity: bytes,
        max_message: int,
        budget: InflightBudget | None = None,
    ) -> None:
        """``budget``: where a message still arriving reserves its bytes (``zmtp.Parser``)."""
        self.socket_type = socket_type
        self.accepts = accepts
        self.identity = identity
        self.parser = zmtp.Parser(max_message=max_message, budget=budget)
        self.transport: asyncio.Transport | None = None
        self.ready = False
        self.peer_identity = b""
        #: A message's frames → bytes on the wire (boxes, once a CURVE connection is secured).
        self.encode: Callable[[Sequence[bytes]], bytes] = zmtp.encode_message
        self.credentials: PeerCredentials | None = None

    # -- hooks for the socket that owns the stream
    def on_ready(self) -> None: ...

    def on_messages(self, messages: list[list[bytes]]) -> None: ...

    def on_closed(self) -> None: ...

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = transport = cast(asyncio.Transport, transport)
        _nodelay(transport)
        transport.write(zmtp.greeting(as_server=False) + zmtp.ready(self.socket_type, self.identity))

    def data_received(self, data: bytes) -> None:
        try:
            commands, messages = self.parser.feed(data)
            for command in commands:
                self._command(command)
        except zmtp.ProtocolViolation as exc:
            self.fail(str(exc))
            return
        if messages:
            if not self.ready:
                self.fail("a message before the READY command")
                return
            self.on_messages(messages)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.parser.discard()
        self.on_closed()

    # -- protocol
    def _command(self, command: zmtp.Command) -> None:
        name = command.name
        if name == b"READY":
            props = zmtp.parse_properties(command.body)
            peer_type = props.get(b"socket-type", b"")
            if peer_type not in self.accepts:
                raise zmtp.ProtocolViolation(
                    f"a {self.socket_type.decode()} does not talk to a {peer_type!r}"
                )
            self.peer_identity = props.get(b"identity", b"")
            self.ready = True
            self.on_ready()
        elif name == b"PING":
            # ZMTP 3.1 heartbeat: answer with the context the peer sent (after its 2-byte TTL).
            self.write(zmtp.encode_command(b"PONG", command.body[2:]))
        elif name == b"ERROR":
            reason = command.body[1 : 1 + command.body[0]] if command.body else b""
            log.debug("peer reported an error: %r", reason)
            self.close()

    def fail(self, reason: str) -> None:
        log.info("closing a ZeroMQ connection%s: %s", self._from(), reason)
        self.parser.discard()
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.write(
                    zmtp.encode_command(b"ERROR", bytes([min(len(reason), 255)]) + reason.encode()[:255])
                )
        self.close()

    def _from(self) -> str:
        name = None if self.transport is None else self.transport.get_extra_info("peername")
        return f" from {name[0]}:{name[1]}" if isinstance(name, tuple) and len(name) >= 2 else ""

    def write(self, data: bytes) -> None:
        # Straight to the transport: it sends at once when the socket can take it (lowest
        # latency) and buffers otherwise. Callers already batch what goes out together.
        if self.transport is not None:
            self.transport.write(data)

    def queued_bytes(self) -> int:
        return 0 if self.transport is None else self.transport.get_write_buffer_size()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class CurveStream(Stream):
    """A CURVE connection: greeting, the handshake (one command at a time), then MESSAGE boxes.

    Subclasses (with the ROUTER's or the DEALER's stream) say how it opens and run their side
    of the handshake; whatever goes wrong closes the connection (no ERROR: libzmq sends none
    for a broken handshake or MESSAGE, only to refuse a client key)."""

    codec: curve.MessageCodec | None = None
    handshake_timeout = 30.0

    def _secure(self, timeout: float) -> None:
        self.parser = zmtp.Parser(
            max_message=self.parser.max_message,
            mechanism=zmtp.MECHANISM_CURVE,
            commands_only=True,
            one_command=True,
            max_frame=curve.MAX_HANDSHAKE_COMMAND,
            budget=self.parser.budget,
        )
        self.handshake_timeout = timeout

    # -- hooks
    def _opening(self) -> bytes:
        raise NotImplementedError

    def _handshake_command(self, command: zmtp.Command) -> None:
        raise NotImplementedError

    def _failed(self, reason: str) -> None:
        log.info("closing a CURVE connection%s: %s", self._from(), reason)
        self.parser.discard()
        self.close()

    def _handshake_late(self) -> None:
        self._timer = None
        self._failed("the handshake took too long")

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport = cast(asyncio.Transport, transport)
        _nodelay(transport)
        if self.handshake_timeout > 0:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.handshake_timeout, self._handshake_late)
        transport.write(self._opening())

    def data_received(self, data: bytes) -> None:
        messages: list[list[bytes]] = []
        try:
            commands, _ = self.parser.feed(data)
            while commands and self.codec is None:
                self._handshake_command(commands[0])
                if self.transport is None or self.transport.is_closing():
                    return
                commands, _ = self.parser.feed(b"")
            if commands and self.codec is not None:
                messages, boxed = self.codec.unbox(commands)
                for command in boxed:
                    self._boxed_command(command)
        except zmtp.ProtocolViolation as exc:
            self._failed(str(exc))
            return
        except Exception:
            log.exception("a CURVE connection broke")
            self._failed("an internal error")
            return
        if messages:
            self.on_messages(messages)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().connection_lost(exc)

    # -- protocol
    def _check_peer_type(self, props: dict[bytes, bytes]) -> None:
        peer_type = props.get(b"socket-type", b"")
        if peer_type not in self.accepts:
            raise zmtp.ProtocolViolation(f"a {self.socket_type.decode()} does not talk to a {peer_type!r}")

    def _secured(self, codec: curve.MessageCodec, props: dict[bytes, bytes]) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.codec = codec
        self.encode = codec.encode
        self.parser.one_command = False
        self.parser.max_frame = self.parser.max_message + curve.MESSAGE_OVERHEAD
        self.peer_identity = props.get(b"identity", b"")
        self.ready = True
        self.on_ready()

    def _boxed_command(self, command: zmtp.Command) -> None:
        if command.name == b"PING" and self.codec is not None:
            self.write(self.codec.encode_command(b"PONG", command.body[2:18]))
        elif command.name == b"ERROR":
            self._failed(f"the peer reported an error: {curve.error_reason(command.body)!r}")
