"""ZeroMQ ROUTER and DEALER sockets on asyncio, speaking ZMTP 3.1 (:mod:`jobq.protocol.zmtp`).

They behave as libzmq's, as far as jobq and its peers can tell:

- ``RouterSocket`` binds ``tcp://HOST:PORT`` (``*`` for any address or a free port) and
  ``ipc://PATH``; each connected peer gets a routing identity (its own when it set one, else a
  generated one); an incoming message is ``[identity, *frames]``; sending ``[identity, *frames]``
  to an unknown or too slow peer drops the message (and counts it), as a ROUTER does; a peer
  that connects with an identity in use takes it over (ROUTER_HANDOVER).
- ``DealerSocket`` connects to one endpoint, reconnecting with backoff; messages sent while it
  is not connected wait (up to a high-water mark) and go out once it is.

A ROUTER's connection not through its greeting and handshake (NULL or CURVE) within
``handshake_timeout`` is closed (libzmq's ``ZMQ_HANDSHAKE_IVL``); with ``limits`` (shared by
several sockets) one past the limit per client address or in all is closed at once.

Security: NULL (ZMTP's default), or CURVE (:mod:`jobq.protocol.curve`, as libzmq's
``curve_server`` / ``curve_serverkey`` options): ``RouterSocket(curve_server=SECRET_KEY,
curve_authenticate=...)`` takes only CURVE clients whose long-term key the callback lets in, and
``router.peer_credentials(identity)`` says which key (and what the callback returned) is behind
an identity; ``DealerSocket(curve_server_key=..., curve_secret_key=...)`` connects with CURVE. A
socket speaks one mechanism: a peer that greets with another is closed. NULL connections go the
way they always did: the CURVE classes below are other classes, not branches on the NULL path.

What is left out: PLAIN and GSSAPI, and socket types jobq does not use.
Why jobq does not use libzmq here: docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections import deque
from collections.abc import Callable, Sequence

from nacl.public import PrivateKey, PublicKey

from jobq.protocol import curve, zmtp
from jobq.protocol.admission import Admission
from jobq.protocol.inflight import InflightBudget
from jobq.protocol.zmtp_stream import CurveStream, PeerCredentials, Stream, parse_endpoint

__all__ = ["Authenticate", "DealerSocket", "PeerCredentials", "RouterSocket", "parse_endpoint"]

log = logging.getLogger("jobq.zmtp")

#: Bytes queued for one peer beyond which messages to it are dropped (a ROUTER's high-water mark).
DEFAULT_HWM_BYTES = 64 * 1024 * 1024
#: Messages a DEALER keeps while it is not connected.
DEFAULT_HWM_MESSAGES = 100_000
#: Seconds a connection has to finish its greeting and handshake (libzmq's ZMQ_HANDSHAKE_IVL is
#: 30 s; the hub passes ``HubConfig.zmq_handshake_timeout``).
DEFAULT_HANDSHAKE_TIMEOUT = 30.0

OnMessage = Callable[[list[bytes]], None]
#: Given a CURVE client's long-term public key (32 raw bytes): None or False to refuse it, any
#: other value to let it in (kept as the peer's ``PeerCredentials.principal``).
Authenticate = Callable[[bytes], object]


class _RouterStream(Stream):
    def __init__(self, router: RouterSocket) -> None:
        super().__init__(b"ROUTER", zmtp.ROUTER_PEERS, b"", router.max_message, router.budget)
        self.router = router
        self.routing_id = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        router = self.router
        if router._admit(self, transport):
            if router.handshake_timeout > 0:
                loop = asyncio.get_running_loop()
                self._timer = loop.call_later(router.handshake_timeout, self._handshake_late)
            super().connection_made(transport)

    def _handshake_late(self) -> None:
        self.router._late(self)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def on_ready(self) -> None:
        self._disarm()
        self.router._handshaking.discard(self)
        self.routing_id = self.router._register(self)

    def on_messages(self, messages: list[list[bytes]]) -> None:
        self.router._deliver(self.routing_id, messages)

    def on_closed(self) -> None:
        self._disarm()
        self.router._unregister(self)


class _CurveRouterStream(CurveStream, _RouterStream):
    def __init__(self, router: RouterSocket, secret: PrivateKey) -> None:
        _RouterStream.__init__(self, router)
        self._secure(router.handshake_timeout)
        self.handshake = curve.ServerHandshake(secret, max_message=router.max_message)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.router._admit(self, transport):
            CurveStream.connection_made(self, transport)  # its timer: _handshake_late

    def _handshake_late(self) -> None:
        self.router._late(self)

    def _opening(self) -> bytes:
        return zmtp.greeting(as_server=True, mechanism=zmtp.MECHANISM_CURVE)

    def _handshake_command(self, command: zmtp.Command) -> None:
        handshake = self.handshake
        reply = handshake.receive(command)
        if reply:
            self.write(reply)
            return
        key = handshake.client_key
        if key is None:
            return
        self._check_peer_type(handshake.peer_properties)
        allowed, principal = self.router._authenticate(key)
        if not allowed:
            self.write(handshake.refuse(b"400"))
            self._failed(f"client key {curve.encode_key(key)} is not allowed")
            return
        self.write(handshake.accept(zmtp.properties(self.socket_type)))
        if handshake.codec is None:  # accept always makes one
            raise curve.CurveError("the handshake ended without keys")
        self.credentials = PeerCredentials(key, principal)
        self._secured(handshake.codec, handshake.peer_properties)

    def _failed(self, reason: str) -> None:
        if not self.ready:
            self.router.refused += 1
        super()._failed(reason)


class RouterSocket:
    def __init__(
        self,
        on_message: OnMessage,
        *,
        on_batch_end: Callable[[], None] | None = None,
        on_disconnect: Callable[[bytes], None] | None = None,
        max_message: int = 64 * 1024 * 1024,
        hwm_bytes: int = DEFAULT_HWM_BYTES,
        curve_server: str | bytes | None = None,
        curve_authenticate: Authenticate | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
        budget: InflightBudget | None = None,
        limits: Admission | None = None,
    ) -> None:
        """``on_disconnect(identity)``: a peer's connection closed (not when another connection
        took its identity over, nor at ``close``). ``curve_server``: this side's CURVE secret key
        (40 Z85 characters or 32 bytes) to take CURVE clients only; ``curve_authenticate``: see
        :data:`Authenticate` (without it every client key is let in: encryption only).
        ``budget``: where messages still arriving, on every connection together, reserve their
        bytes; a connection whose message it cannot take is closed (``zmtp.Busy``).
        ``limits``: connections at most per client address and in all (see the module)."""
        self.on_message = on_message
        self.budget = budget
        self.on_batch_end = on_batch_end
        self.on_disconnect = on_disconnect
        self.max_message = max_message
        self.hwm_bytes = hwm_bytes
        self.handshake_timeout = handshake_timeout
        self.limits = limits
        self.curve_authenticate = curve_authenticate
        self._curve_secret: PrivateKey | None = None
        if curve_server is not None:
            self._curve_secret = PrivateKey(curve.decode_key(curve_server, "CURVE secret key"))
        elif curve_authenticate is not None:
            raise ValueError("curve_authenticate needs curve_server (this side's secret key)")
        self.dropped = 0
        #: Connections closed before their handshake was through (too slow; CURVE: another
        #: mechanism, keys that do not check out, a client key refused) ...
        self.refused = 0
        #: ... of which too slow (no greeting and handshake within ``handshake_timeout``).
        self.timed_out = 0
        self.peers: dict[bytes, _RouterStream] = {}
        #: Connections still in their greeting or handshake (not in ``peers`` yet), closed by
        #: ``close``.
        self._handshaking: set[_RouterStream] = set()
        self._servers: list[asyncio.Server] = []
        self._ids = itertools.count(1)
        self._batch_end_scheduled = False
        self._ipc_paths: list[str] = []
        self.closed = False

    @property
    def curve_public_key(self) -> str | None:
        """The public key (Z85) CURVE clients must be given, or None for a NULL socket."""
        secret = self._curve_secret
        return None if secret is None else curve.encode_key(bytes(secret.public_key))

    def peer_credentials(self, identity: bytes) -> PeerCredentials | None:
        """The CURVE key (and principal) behind a connected identity; None for NULL or unknown."""
        peer = self.peers.get(identity)
        return None if peer is None else peer.credentials

    def _stream(self) -> _RouterStream:
        secret = self._curve_secret
        return _RouterStream(self) if secret is None else _CurveRouterStream(self, secret)

    def _authenticate(self, key: bytes) -> tuple[bool, object]:
        if self.curve_authenticate is None:
            return True, None
        try:
            principal = self.curve_authenticate(key)
        except Exception:
            log.exception("curve_authenticate failed: the client is refused")
            return False, None
        return principal is not None and principal is not False, principal

    async def bind(self, endpoint: str) -> str:
        """Listen on ``endpoint``; returns it with the actual port."""
        kind, host, port = parse_endpoint(endpoint)
        loop = asyncio.get_running_loop()
        if kind == "ipc":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(host)
            server = await loop.create_unix_server(self._stream, host)
            self._ipc_paths.append(host)
            self._servers.append(server)
            return f"ipc://{host}"
        server = await loop.create_server(self._stream, host, port, reuse_address=True)
        self._servers.append(server)
        bound = server.sockets[0].getsockname()
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        return f"tcp://{shown}:{bound[1]}"

    def close(self) -> None:
        self.closed = True
        for server in self._servers:
            server.close()
        for peer in [*self.peers.values(), *self._handshaking]:
            peer.close()
        self.peers.clear()
        self._handshaking.clear()
        for path in self._ipc_paths:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def _admit(self, stream: _RouterStream, transport: asyncio.BaseTransport) -> bool:
        """Count a new connection; past a limit it is closed at once (False)."""
        limits = self.limits
        if limits is not None:
            name = transport.get_extra_info("peername")
            host = str(name[0]) if isinstance(name, tuple) and name else ""
            refusal = limits.admit(stream, host)
            if refusal is not None:
                transport.close()
                reason = limits.explain(refusal, host)
                log.debug("refused a ZeroMQ connection: %s", reason)
                if count := limits.report():
                    log.info("refused %d ZeroMQ connection(s) (the latest: %s)", count, reason)
                return False
        self._handshaking.add(stream)
        return True

    def _late(self, stream: _RouterStream) -> None:
        """A connection is not through its greeting and handshake in time: closed."""
        stream._timer = None
        self.refused += 1
        self.timed_out += 1
        late = f"no greeting and handshake within {self.handshake_timeout:g}s"
        log.debug("closing a ZeroMQ connection%s: %s", stream._from(), late)
        stream.parser.discard()
        stream.close()

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
        self._handshaking.discard(stream)
        if self.limits is not None:
            self.limits.release(stream)
        if stream.routing_id and self.peers.get(stream.routing_id) is stream:
            del self.peers[stream.routing_id]
            if self.on_disconnect is not None:
                try:
                    self.on_disconnect(stream.routing_id)
                except Exception:
                    log.exception("an on_disconnect handler failed")

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
        peer.write(peer.encode(frames[1:]))
        return True


class _DealerStream(Stream):
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


class _CurveDealerStream(CurveStream, _DealerStream):
    def __init__(self, dealer: DealerSocket, server: PublicKey, secret: PrivateKey) -> None:
        _DealerStream.__init__(self, dealer)
        self._secure(dealer.handshake_timeout)
        metadata = zmtp.properties(self.socket_type, self.identity)
        self.handshake = curve.ClientHandshake(server, secret, metadata, max_message=dealer.max_message)
        self._reported = False

    def _opening(self) -> bytes:
        return zmtp.greeting(as_server=False, mechanism=zmtp.MECHANISM_CURVE) + self.handshake.hello()

    def _handshake_command(self, command: zmtp.Command) -> None:
        handshake = self.handshake
        reply = handshake.receive(command)
        if reply:
            self.write(reply)
        elif handshake.codec is not None:
            self._check_peer_type(handshake.peer_properties)
            self._secured(handshake.codec, handshake.peer_properties)

    def _failed(self, reason: str) -> None:
        if not self.ready and not self._reported:
            self._reported = True
            self.dealer.last_error = reason
            log.warning("the CURVE handshake with %s failed: %s", self.dealer.endpoint, reason)
        super()._failed(reason)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready and not self._reported and not self.dealer._closed:
            self._failed("the server closed the connection in the handshake (is this its key?)")
        super().connection_lost(exc)


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
        curve_server_key: str | bytes | None = None,
        curve_public_key: str | bytes | None = None,
        curve_secret_key: str | bytes | None = None,
        handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
    ) -> None:
        """With ``curve_server_key`` (the server's public key) the connection is CURVE, as this
        client's key pair: ``curve_secret_key``, and ``curve_public_key`` if given (it must be
        the secret key's). Keys are 40 Z85 characters (``zmq.curve_keypair()``) or 32 bytes."""
        self._curve: tuple[PublicKey, PrivateKey] | None = None
        if curve_server_key is not None:
            if curve_secret_key is None:
                raise ValueError("a CURVE client needs curve_secret_key (its own key pair)")
            secret = PrivateKey(curve.decode_key(curve_secret_key, "CURVE secret key"))
            public = bytes(secret.public_key)
            if curve_public_key is not None and curve.decode_key(curve_public_key) != public:
                raise ValueError("curve_public_key is not the public key of curve_secret_key")
            self._curve = (PublicKey(curve.decode_key(curve_server_key, "CURVE server key")), secret)
        elif curve_secret_key is not None or curve_public_key is not None:
            raise ValueError("CURVE client keys need curve_server_key (the server's public key)")
        self.handshake_timeout = handshake_timeout
        #: Why the last CURVE handshake failed (the server's ERROR reason: "400" for a key it refused).
        self.last_error: str | None = None
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
        self._waiting: deque[Sequence[bytes]] = deque()
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
        stream = self._stream
        if stream is not None and stream.ready and not self._waiting:
            stream.write(stream.encode(frames))
            return True
        if len(self._waiting) >= self.hwm:
            self.dropped += 1
            return False
        # Kept as frames: a CURVE connection boxes them with its own keys and nonces.
        self._waiting.append(tuple(frames))
        return True

    def _stream_for(self) -> _DealerStream:
        keys = self._curve
        return _DealerStream(self) if keys is None else _CurveDealerStream(self, *keys)

    def _connected(self, stream: _DealerStream) -> None:
        if self._waiting:
            stream.write(b"".join(map(stream.encode, self._waiting)))
            self._waiting.clear()
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
                    _, stream = await loop.create_unix_connection(self._stream_for, host)
                else:
                    _, stream = await loop.create_connection(self._stream_for, host, port)
            except OSError:
                await asyncio.sleep(delay)
                delay = min(self.reconnect_max, delay * 2)
                continue
            self._stream = stream
            self._wake.clear()
            await self._wake.wait()
            if self._closed:
                break
            if stream.ready:
                delay = self.reconnect
                await asyncio.sleep(delay)
            else:  # the handshake failed (a key refused?): back off as from a failed connect
                await asyncio.sleep(delay)
                delay = min(self.reconnect_max, delay * 2)
