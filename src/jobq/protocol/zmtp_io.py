"""ZeroMQ ROUTER and DEALER sockets on asyncio, speaking ZMTP 3.1 (:mod:`jobq.protocol.zmtp`).

They behave as libzmq's, as far as jobq and its peers can tell:

- ``RouterSocket`` binds ``tcp://HOST:PORT`` (``*`` for any address or a free port) and
  ``ipc://PATH``; each connected peer gets a routing identity (its own when it set one, else a
  generated one); an incoming message is ``[identity, *frames]``; sending ``[identity, *frames]``
  to an unknown or too slow peer drops the message (and counts it), as a ROUTER does; a peer
  that connects with an identity in use takes it over (ROUTER_HANDOVER).
- ``DealerSocket`` connects to one endpoint, reconnecting with backoff; messages sent while it
  is not connected wait (up to a high-water mark) and go out once it is.

What is left out: security mechanisms other than NULL, and socket types jobq does not use.
Why jobq does not use libzmq here: docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
from collections import deque
from collections.abc import Callable, Sequence
from typing import cast

from jobq.protocol import zmtp

log = logging.getLogger("jobq.zmtp")

#: Bytes queued for one peer beyond which messages to it are dropped (a ROUTER's high-water mark).
DEFAULT_HWM_BYTES = 64 * 1024 * 1024
#: Messages a DEALER keeps while it is not connected.
DEFAULT_HWM_MESSAGES = 100_000

OnMessage = Callable[[list[bytes]], None]


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


class _Stream(asyncio.Protocol):
    """One ZMTP connection: greeting, READY exchange, then messages."""

    def __init__(
        self, socket_type: bytes, accepts: frozenset[bytes], identity: bytes, max_message: int
    ) -> None:
        self.socket_type = socket_type
        self.accepts = accepts
        self.identity = identity
        self.parser = zmtp.Parser(max_message=max_message)
        self.transport: asyncio.Transport | None = None
        self.ready = False
        self.peer_identity = b""

    # -- hooks for the socket that owns the stream
    def on_ready(self) -> None: ...

    def on_messages(self, messages: list[list[bytes]]) -> None: ...

    def on_closed(self) -> None: ...

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
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
        log.info("closing a ZeroMQ connection: %s", reason)
        if self.transport is not None:
            with contextlib.suppress(Exception):
                self.transport.write(
                    zmtp.encode_command(b"ERROR", bytes([min(len(reason), 255)]) + reason.encode()[:255])
                )
        self.close()

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


class _RouterStream(_Stream):
    def __init__(self, router: RouterSocket) -> None:
        super().__init__(b"ROUTER", zmtp.ROUTER_PEERS, b"", router.max_message)
        self.router = router
        self.routing_id = b""

    def on_ready(self) -> None:
        self.routing_id = self.router._register(self)

    def on_messages(self, messages: list[list[bytes]]) -> None:
        self.router._deliver(self.routing_id, messages)

    def on_closed(self) -> None:
        self.router._unregister(self)


class RouterSocket:
    def __init__(
        self,
        on_message: OnMessage,
        *,
        on_batch_end: Callable[[], None] | None = None,
        max_message: int = 64 * 1024 * 1024,
        hwm_bytes: int = DEFAULT_HWM_BYTES,
    ) -> None:
        self.on_message = on_message
        self.on_batch_end = on_batch_end
        self.max_message = max_message
        self.hwm_bytes = hwm_bytes
        self.dropped = 0
        self.peers: dict[bytes, _RouterStream] = {}
        self._servers: list[asyncio.Server] = []
        self._ids = itertools.count(1)
        self._batch_end_scheduled = False
        self._ipc_paths: list[str] = []
        self.closed = False

    async def bind(self, endpoint: str) -> str:
        """Listen on ``endpoint``; returns it with the actual port."""
        kind, host, port = parse_endpoint(endpoint)
        loop = asyncio.get_running_loop()
        if kind == "ipc":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(host)
            server = await loop.create_unix_server(lambda: _RouterStream(self), host)
            self._ipc_paths.append(host)
            self._servers.append(server)
            return f"ipc://{host}"
        server = await loop.create_server(lambda: _RouterStream(self), host, port, reuse_address=True)
        self._servers.append(server)
        bound = server.sockets[0].getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        return f"tcp://{shown}:{bound[1]}"

    def close(self) -> None:
        self.closed = True
        for server in self._servers:
            server.close()
        for peer in list(self.peers.values()):
            peer.close()
        self.peers.clear()
        for path in self._ipc_paths:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _register(self, stream: _RouterStream) -> bytes:
        identity = stream.peer_identity
        if identity and identity[0] == 0:
            raise zmtp.ProtocolViolation("identities starting with a zero byte are reserved")
        if not identity:
            identity = b"\x00" + next(self._ids).to_bytes(4, "big")
        old = self.peers.get(identity)
        if old is not None and old is not stream:
            old.routing_id = b""  # handed over: the old connection no longer owns the identity
            old.close()
        self.peers[identity] = stream
        return identity

    def _unregister(self, stream: _RouterStream) -> None:
        if stream.routing_id and self.peers.get(stream.routing_id) is stream:
            del self.peers[stream.routing_id]

    def _deliver(self, identity: bytes, messages: list[list[bytes]]) -> None:
        for frames in messages:
            try:
                self.on_message([identity, *frames])
            except Exception:
                log.exception("a message handler failed; the message was dropped")
        if self.on_batch_end is not None and not self._batch_end_scheduled:
            # Messages from every connection read in this turn make one batch.
            self._batch_end_scheduled = True
            asyncio.get_running_loop().call_soon(self._batch_end)

    def _batch_end(self) -> None:
        self._batch_end_scheduled = False
        if self.on_batch_end is not None:
            self.on_batch_end()

    def send(self, frames: Sequence[bytes]) -> bool:
        """Send ``[identity, *frames]``; False if the peer is gone or too far behind."""
        peer = self.peers.get(frames[0])
        if peer is None or not peer.ready or peer.queued_bytes() > self.hwm_bytes:
            self.dropped += 1
            return False
        peer.write(zmtp.encode_message(frames[1:]))
        return True


class _DealerStream(_Stream):
    def __init__(self, dealer: DealerSocket) -> None:
        super().__init__(b"DEALER", zmtp.DEALER_PEERS, dealer.identity, dealer.max_message)
        self.dealer = dealer

    def on_ready(self) -> None:
        self.dealer._connected(self)

    def on_messages(self, messages: list[list[bytes]]) -> None:
        for frames in messages:
            try:
                self.dealer.on_message(frames)
            except Exception:
                log.exception("a message handler failed; the message was dropped")

    def on_closed(self) -> None:
        self.dealer._lost(self)


class DealerSocket:
    def __init__(
        self,
        endpoint: str,
        on_message: OnMessage,
        *,
        identity: bytes = b"",
        on_connect: Callable[[], None] | None = None,
        on_disconnect: Callable[[], None] | None = None,
        reconnect: float = 0.1,
        reconnect_max: float = 2.0,
        hwm: int = DEFAULT_HWM_MESSAGES,
        max_message: int = 64 * 1024 * 1024,
    ) -> None:
        self.endpoint = endpoint
        self.on_message = on_message
        self.identity = identity
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.reconnect = reconnect
        self.reconnect_max = reconnect_max
        self.hwm = hwm
        self.max_message = max_message
        self.dropped = 0
        self._stream: _DealerStream | None = None
        self._waiting: deque[bytes] = deque()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._wake = asyncio.Event()

    @property
    def connected(self) -> bool:
        return self._stream is not None and self._stream.ready

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._keep_connected())

    def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._waiting.clear()

    def send(self, frames: Sequence[bytes]) -> bool:
        data = zmtp.encode_message(frames)
        stream = self._stream
        if stream is not None and stream.ready and not self._waiting:
            stream.write(data)
            return True
        if len(self._waiting) >= self.hwm:
            self.dropped += 1
            return False
        self._waiting.append(data)
        return True

    def _connected(self, stream: _DealerStream) -> None:
        while self._waiting:
            stream.write(self._waiting.popleft())
        if self.on_connect is not None:
            self.on_connect()

    def _lost(self, stream: _DealerStream) -> None:
        if self._stream is stream:
            self._stream = None
            self._wake.set()
            if stream.ready and self.on_disconnect is not None and not self._closed:
                self.on_disconnect()

    async def _keep_connected(self) -> None:
        kind, host, port = parse_endpoint(self.endpoint)
        loop = asyncio.get_running_loop()
        delay = self.reconnect
        while not self._closed:
            try:
                if kind == "ipc":
                    _, stream = await loop.create_unix_connection(lambda: _DealerStream(self), host)
                else:
                    _, stream = await loop.create_connection(lambda: _DealerStream(self), host, port)
            except OSError:
                await asyncio.sleep(delay)
                delay = min(self.reconnect_max, delay * 2)
                continue
            delay = self.reconnect
            self._stream = stream
            self._wake.clear()
            await self._wake.wait()
            if not self._closed:
                await asyncio.sleep(self.reconnect)
