"""The ZeroMQ door: ROUTER sockets, one per kind of listener; the header frame picks the protocol.

The sockets are jobq's own ZMTP implementation on the event loop by default (``engine``
``asyncio``), or pyzmq's (``libzmq``); peers cannot tell them apart.

The router knows no protocol: the composition root (:mod:`jobq.app`) installs each one (the
native protocol, ``[identity, b"JQ1", body]``, and Majordomo), and a protocol sees the router
only as a :class:`Sender`. A message no protocol takes is counted as malformed and dropped: a
ROUTER cannot answer a peer whose framing it does not know.

Listeners (``--zmq`` endpoints, :mod:`jobq.listeners`) may carry options: ``?trusted=ROLE...``
(peers without a credential act as that principal) and ``?curve`` (CurveZMQ, client keys from
the auth file). Plain listeners share one socket, as before; each listener with options gets a
socket of its own, so the router knows which listener every message came through
(:meth:`ZmqRouter.peer`). With several sockets a protocol's *route* to a peer is the socket's
number (one byte) before the peer's ZeroMQ identity; with one socket it is the identity itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import zmq

from jobq.errors import InvalidRequest
from jobq.listeners import Listener, parse_listener
from jobq.protocol import curve
from jobq.protocol.admission import Admission
from jobq.protocol.inflight import InflightBudget
from jobq.protocol.zmqio import AsyncSocket
from jobq.protocol.zmtp_io import RouterSocket

log = logging.getLogger("jobq.doors.zmq.router")

P = TypeVar("P")

#: Given a CURVE client's long-term public key (32 raw bytes): what it stands for (None: refused).
CurveAuthenticate = Callable[[bytes], object]

#: Connections remembered per route at most before the memo starts over (libzmq reports no
#: disconnects, so its entries are never dropped one by one).
MAX_PEERS = 100_000
#: libzmq's ZAP endpoint: the handler that lets CURVE clients in (RFC 27).
ZAP_ENDPOINT = "inproc://zeromq.zap.01"


class Sender(Protocol):
    """What a protocol needs of the sockets it is installed on."""

    @property
    def closed(self) -> bool: ...

    def send(self, identity: bytes, frames: Sequence[bytes]) -> bool:
        """Queue a message for a peer; False when it is gone or too far behind."""
        ...

    def peer(self, identity: bytes) -> Peer:
        """The connection a message being handled came from (see :meth:`ZmqRouter.peer`)."""
        ...

    def connection(self, identity: bytes) -> Peer | None:
        """The connection the route leads to now, if the router can tell."""
        ...

    def on_disconnect(self, callback: Callable[[bytes], None]) -> None:
        """Call ``callback(route)`` when a peer's connection closes (both engines: jobq's ZMTP
        sees the close; with libzmq, the socket monitor tells it, see ``protocol/zmqio.py``).
        Not when another connection took the route over."""
        ...


class FrameProtocol(Protocol):
    """A protocol on the router's sockets."""

    def handle(self, identity: bytes, frames: list[bytes]) -> bool:
        """Given the frames after the identity, True when the message is this protocol's."""
        ...

    def end_of_batch(self) -> None:
        """The messages that arrived together have all been handed to ``handle``."""
        ...

    def start(self) -> None:
        """The socket is bound: start what runs on the event loop (timers)."""
        ...


@dataclass(slots=True, eq=False)
class Peer:
    """One connection: the listener it came through, its address, and its CURVE identity. The
    router gives the same object for every message of one connection, and a new one for the
    next connection on the same route (a reconnect, or another peer taking the identity over)."""

    listener: Listener
    #: ``host:port`` (libzmq knows the host only); "" for ``ipc://`` or when unknown.
    address: str = ""
    #: What the CURVE check returned for the client's key (None on a NULL connection).
    curve: object = None


@dataclass(slots=True)
class _Socket:
    index: int
    listener: Listener
    io: AsyncSocket | RouterSocket | None = None


class ZmqRouter:
    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        max_message: int,
        engine: str = "asyncio",
        curve_secret: str | None = None,
        curve_authenticate: CurveAuthenticate | None = None,
        handover: bool = True,
        budget: InflightBudget | None = None,
        handshake_timeout: float = 10.0,
        max_connections: int = 0,
        max_per_peer: int = 0,
    ) -> None:
        """``curve_secret``: the hub's CURVE secret key (Z85), needed by ``?curve`` listeners;
        ``curve_authenticate``: which client keys they let in (None: any key, encryption only).
        ``handover``: with libzmq, whether a connection may take over an identity in use (jobq's
        ZMTP always hands over; the door then tells the connections apart). ``budget``: the hub's
        budget of partly received bytes, which messages still arriving reserve (jobq's ZMTP;
        libzmq buffers them itself, each at most ``max_message``). ``handshake_timeout``: seconds
        a connection has to be through its greeting and handshake (both engines);
        ``max_connections``, ``max_per_peer``: connections at most in all and per client address,
        every socket together (jobq's ZMTP; 0: no limit)."""
        self.requested = list(endpoints)
        self.listeners = [parse_listener(endpoint) for endpoint in self.requested]
        for listener in self.listeners:
            if listener.tls:
                raise InvalidRequest(f"{listener.address}: ZeroMQ listeners encrypt with ?curve, not ?tls")
            if listener.curve and curve_secret is None:
                raise InvalidRequest(f"{listener.address}?curve needs --curve-secret (the hub key)")
        self.endpoints: list[str] = []
        self.max_message = max_message
        self.budget = budget
        self.handshake_timeout = handshake_timeout
        #: Who holds the connections (jobq's ZMTP): refused ones are counted in ``limits.refused``.
        self.limits = Admission(max_connections, max_per_peer)
        #: ``asyncio``: jobq's ZMTP on the event loop; ``libzmq``: pyzmq (see docs/architecture.md).
        self.engine = engine
        self.curve_secret = curve_secret
        self.curve_authenticate = curve_authenticate
        self.handover = handover
        self.context: zmq.Context[zmq.Socket[bytes]] | None = None
        self.malformed = 0
        self.protocols: list[FrameProtocol] = []
        # Plain listeners share a socket; each listener with options has its own.
        self._sockets: list[_Socket] = []
        self._socket_of: list[_Socket] = []
        for listener in self.listeners:
            shared = next((s for s in self._sockets if _plain(listener) and _plain(s.listener)), None)
            if shared is None:
                shared = _Socket(len(self._sockets), listener)
                self._sockets.append(shared)
            self._socket_of.append(shared)
        if len(self._sockets) > 255:
            raise InvalidRequest("at most 255 ZeroMQ listeners with options")
        self._single = len(self._sockets) == 1
        self._peers: dict[bytes, tuple[object, Peer]] = {}
        self._disconnect_callbacks: list[Callable[[bytes], None]] = []
        self._zap: AsyncSocket | None = None

    @property
    def io(self) -> AsyncSocket | RouterSocket | None:
        """The first socket (the only one unless listeners have options)."""
        return self._sockets[0].io if self._sockets else None

    def install(self, protocol: FrameProtocol) -> None:
        """Offer every message to ``protocol`` (after those installed before it)."""
        self.protocols.append(protocol)

    def protocol(self, kind: type[P]) -> P:
        """The installed protocol of this type (tests use it to look inside)."""
        for protocol in self.protocols:
            if isinstance(protocol, kind):
                return protocol
        raise LookupError(f"no {kind.__name__} is installed")

    def on_disconnect(self, callback: Callable[[bytes], None]) -> None:
        self._disconnect_callbacks.append(callback)

    # ------------------------------------------------------------------ sockets

    async def start(self) -> None:
        if self.engine not in ("asyncio", "libzmq"):
            raise ValueError(f"unknown ZeroMQ engine {self.engine!r}: asyncio or libzmq")
        for sock in self._sockets:
            sock.io = self._libzmq_router(sock) if self.engine == "libzmq" else self._asyncio_router(sock)
        for listener, sock in zip(self.listeners, self._socket_of, strict=True):
            io = sock.io
            if isinstance(io, RouterSocket):
                self.endpoints.append(await io.bind(listener.address))
            else:
                assert io is not None
                io.sock.bind(listener.address)
                self.endpoints.append(io.sock.getsockopt_string(zmq.LAST_ENDPOINT))
        for protocol in self.protocols:
            protocol.start()
        for sock in self._sockets:
            if isinstance(sock.io, AsyncSocket):
                sock.io.start()
        log.info("ZeroMQ door on %s (%s)", ", ".join(self.endpoints), self.engine)
        if any(listener.curve for listener in self.listeners) and self.curve_secret is not None:
            public = curve.encode_key(curve.public_key_for(self.curve_secret))
            log.info("CURVE listeners' public key (give it to clients): %s", public)

    def _receiver(self, sock: _Socket) -> Callable[[list[bytes]], None]:
        if self._single:
            return self._on_frames
        prefix = bytes([sock.index])
        on_frames = self._on_frames

        def receive(frames: list[bytes]) -> None:
            frames[0] = prefix + frames[0]
            on_frames(frames)

        return receive

    def _route(self, sock: _Socket, identity: bytes) -> bytes:
        return identity if self._single else bytes([sock.index]) + identity

    def _split(self, route: bytes) -> tuple[_Socket | None, bytes]:
        if self._single:
            return self._sockets[0], route
        if not route or route[0] >= len(self._sockets):
            return None, b""
        return self._sockets[route[0]], route[1:]

    def _asyncio_router(self, sock: _Socket) -> RouterSocket:
        def disconnected(identity: bytes) -> None:
            self._disconnected(self._route(sock, identity))

        curve = sock.listener.curve
        return RouterSocket(
            self._receiver(sock),
            on_batch_end=self._on_batch_end,
            on_disconnect=disconnected,
            max_message=self.max_message,
            curve_server=self.curve_secret if curve else None,
            curve_authenticate=self.curve_authenticate if curve else None,
            budget=self.budget,
            handshake_timeout=self.handshake_timeout,
            limits=self.limits,
        )

    def _libzmq_router(self, sock: _Socket) -> AsyncSocket:
        if self.context is None:
            self.context = zmq.Context()
        io: zmq.Socket[bytes] = self.context.socket(zmq.ROUTER)
        io.setsockopt(zmq.LINGER, 0)
        io.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a vanished peer raises, so it can be counted
        # A reconnecting worker keeps its identity (unless the hub authenticates: then an
        # identity in use is refused to another connection, which libzmq cannot tell apart).
        io.setsockopt(zmq.ROUTER_HANDOVER, int(self.handover))
        io.setsockopt(zmq.RCVHWM, 100_000)
        io.setsockopt(zmq.SNDHWM, 100_000)
        io.setsockopt(zmq.MAXMSGSIZE, self.max_message)
        timeout = self.handshake_timeout
        io.setsockopt(zmq.HANDSHAKE_IVL, max(1, round(timeout * 1000)) if timeout > 0 else 0)
        if sock.listener.curve:
            assert self.curve_secret is not None
            io.setsockopt(zmq.CURVE_SERVER, 1)
            io.setsockopt(zmq.CURVE_SECRETKEY, self.curve_secret.encode())
            io.setsockopt(zmq.ZAP_DOMAIN, b"jobq")
            if self.curve_authenticate is not None and self._zap is None:
                self._zap = self._zap_handler()
        properties = ("Peer-Address", "User-Id") if sock.listener.curve else ("Peer-Address",)

        def disconnected(identity: bytes) -> None:
            self._disconnected(self._route(sock, identity))

        return AsyncSocket(
            io,
            self._receiver(sock),
            on_batch_end=self._on_batch_end,
            drop_when_full=True,
            properties=properties,
            on_disconnect=disconnected,
        )

    def _zap_handler(self) -> AsyncSocket:
        """libzmq asks this handler (RFC 27, ZAP) about every CURVE client: let in the keys
        ``curve_authenticate`` accepts; the key is the connection's ``User-Id``."""
        assert self.context is not None
        rep: zmq.Socket[bytes] = self.context.socket(zmq.REP)
        rep.setsockopt(zmq.LINGER, 0)
        rep.bind(ZAP_ENDPOINT)
        handler: AsyncSocket

        def answer(frames: list[bytes]) -> None:
            status, text, user = b"400", b"key not allowed", b""
            key = frames[6] if len(frames) >= 7 and frames[5] == b"CURVE" else b""
            if len(key) == curve.KEY_SIZE and self._allowed(key):
                status, text, user = b"200", b"OK", curve.encode_key(key).encode()
            request_id = frames[1] if len(frames) > 1 else b""
            handler.send([b"1.0", request_id, status, text, user, b""])

        handler = AsyncSocket(rep, answer)
        handler.start()
        return handler

    def _allowed(self, key: bytes) -> object:
        if self.curve_authenticate is None:
            return True
        try:
            found = self.curve_authenticate(key)
        except Exception:
            log.exception("curve_authenticate failed: the client is refused")
            return None
        return None if found is False else found

    @property
    def closed(self) -> bool:
        return not self._sockets or all(s.io is None or s.io.closed for s in self._sockets)

    @property
    def dropped(self) -> int:
        """Messages for peers that were gone or too far behind."""
        return sum(s.io.dropped for s in self._sockets if s.io is not None)

    async def stop(self) -> None:
        for sock in self._sockets:
            if sock.io is not None:
                sock.io.close()
        if self._zap is not None:
            self._zap.close()
        if self.context is not None:
            self.context.term()

    def send(self, identity: bytes, frames: Sequence[bytes]) -> bool:
        sock, target = self._split(identity)
        if sock is None or sock.io is None:
            return False
        return sock.io.send([target, *frames])

    # ------------------------------------------------------------------ who is there

    def peer(self, route: bytes) -> Peer:
        """The connection behind ``route``, as of the message being handled (libzmq tells a
        message's properties only while it is handled)."""
        sock, identity = self._split(route)
        if sock is None:
            return Peer(Listener(address=""))
        io = sock.io
        if isinstance(io, RouterSocket):
            stream = io.peers.get(identity)
            cached = self._peers.get(route)
            if cached is not None and cached[0] is stream:
                return cached[1]
            if stream is None:  # gone already
                return Peer(sock.listener)
            credentials = stream.credentials
            transport = stream.transport
            found = Peer(
                sock.listener,
                _address(transport.get_extra_info("peername") if transport is not None else None),
                credentials.principal if credentials is not None else None,
            )
            return self._remember(route, stream, found)
        assert io is not None
        key = io.last_properties
        cached = self._peers.get(route)
        if cached is not None and cached[0] == key:
            return cached[1]
        address = key[0] or ""
        user = key[1] if len(key) > 1 else None
        found = Peer(sock.listener, address, self._allowed(curve.decode_key(user)) if user else None)
        return self._remember(route, key, found)

    def connection(self, route: bytes) -> Peer | None:
        """The connection ``route`` leads to now (None: none). jobq's ZMTP knows; with libzmq
        it is the one last heard from."""
        sock, identity = self._split(route)
        if sock is None:
            return None
        if isinstance(sock.io, RouterSocket):
            return self.peer(route) if identity in sock.io.peers else None
        cached = self._peers.get(route)
        return None if cached is None else cached[1]

    def _remember(self, route: bytes, key: object, peer: Peer) -> Peer:
        if len(self._peers) >= MAX_PEERS:
            self._peers.clear()
        self._peers[route] = (key, peer)
        return peer

    def close_where(self, predicate: Callable[[object], bool]) -> int:
        """Close the CURVE connections whose principal (what ``curve_authenticate`` returned)
        matches (jobq's ZMTP only: libzmq cannot close one peer; its messages are refused)."""
        closed = 0
        for sock in self._sockets:
            if not isinstance(sock.io, RouterSocket):
                continue
            for stream in list(sock.io.peers.values()):
                if stream.credentials is not None and predicate(stream.credentials.principal):
                    stream.close()
                    closed += 1
        return closed

    def _disconnected(self, route: bytes) -> None:
        self._peers.pop(route, None)
        for callback in self._disconnect_callbacks:
            try:
                callback(route)
            except Exception:
                log.exception("a disconnect handler failed")

    # ------------------------------------------------------------------ messages

    def _on_frames(self, frames: list[bytes]) -> None:
        identity, rest = frames[0], frames[1:]
        if rest:
            for protocol in self.protocols:
                if protocol.handle(identity, rest):
                    return
        self.malformed += 1
        log.debug("dropped a message with an unknown header from %r", identity)

    def _on_batch_end(self) -> None:
        for protocol in self.protocols:
            protocol.end_of_batch()


def _plain(listener: Listener) -> bool:
    return listener.trusted is None and not listener.curve


def _address(name: object) -> str:
    """``host:port`` of a socket address (``[v6]:port``); "" for a Unix socket."""
    if isinstance(name, tuple) and len(name) >= 2:
        host, port = name[0], name[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return ""
