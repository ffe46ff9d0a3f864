"""The ZeroMQ door: one ROUTER socket; the header frame picks the protocol.

The socket is jobq's own ZMTP implementation on the event loop by default (``engine``
``asyncio``), or pyzmq's (``libzmq``); peers cannot tell them apart.

The router knows no protocol: the composition root (:mod:`jobq.app`) installs each one (the
native protocol, ``[identity, b"JQ1", body]``, and Majordomo), and a protocol sees the router
only as a :class:`Sender`. A message no protocol takes is counted as malformed and dropped: a
ROUTER cannot answer a peer whose framing it does not know.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol, TypeVar

import zmq

from jobq.protocol.zmqio import AsyncSocket
from jobq.protocol.zmtp_io import RouterSocket

log = logging.getLogger("jobq.doors.zmq.router")

P = TypeVar("P")


class Sender(Protocol):
    """What a protocol needs of the socket it is installed on."""

    @property
    def closed(self) -> bool: ...

    def send(self, identity: bytes, frames: Sequence[bytes]) -> bool:
        """Queue a message for a peer; False when it is gone or too far behind."""
        ...


class FrameProtocol(Protocol):
    """A protocol on the router's socket."""

    def handle(self, identity: bytes, frames: list[bytes]) -> bool:
        """Given the frames after the identity, True when the message is this protocol's."""
        ...

    def end_of_batch(self) -> None:
        """The messages that arrived together have all been handed to ``handle``."""
        ...

    def start(self) -> None:
        """The socket is bound: start what runs on the event loop (timers)."""
        ...


class ZmqRouter:
    def __init__(self, endpoints: Sequence[str], *, max_message: int, engine: str = "asyncio") -> None:
        self.requested = list(endpoints)
        self.endpoints: list[str] = []
        self.max_message = max_message
        #: ``asyncio``: jobq's ZMTP on the event loop; ``libzmq``: pyzmq (see docs/architecture.md).
        self.engine = engine
        self.context: zmq.Context[zmq.Socket[bytes]] | None = None
        self.io: AsyncSocket | RouterSocket | None = None
        self.malformed = 0
        self.protocols: list[FrameProtocol] = []

    def install(self, protocol: FrameProtocol) -> None:
        """Offer every message to ``protocol`` (after those installed before it)."""
        self.protocols.append(protocol)

    def protocol(self, kind: type[P]) -> P:
        """The installed protocol of this type (tests use it to look inside)."""
        for protocol in self.protocols:
            if isinstance(protocol, kind):
                return protocol
        raise LookupError(f"no {kind.__name__} is installed")

    async def start(self) -> None:
        if self.engine == "libzmq":
            self.io = self._libzmq_router()
        elif self.engine == "asyncio":
            router = RouterSocket(
                self._on_frames, on_batch_end=self._on_batch_end, max_message=self.max_message
            )
            for endpoint in self.requested:
                self.endpoints.append(await router.bind(endpoint))
            self.io = router
        else:
            raise ValueError(f"unknown ZeroMQ engine {self.engine!r}: asyncio or libzmq")
        for protocol in self.protocols:
            protocol.start()
        if isinstance(self.io, AsyncSocket):
            self.io.start()
        log.info("ZeroMQ door on %s (%s)", ", ".join(self.endpoints), self.engine)

    def _libzmq_router(self) -> AsyncSocket:
        self.context = zmq.Context()
        sock: zmq.Socket[bytes] = self.context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a vanished peer raises, so it can be counted
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnecting worker keeps its identity
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message)
        for endpoint in self.requested:
            sock.bind(endpoint)
            self.endpoints.append(sock.getsockopt_string(zmq.LAST_ENDPOINT))
        return AsyncSocket(sock, self._on_frames, on_batch_end=self._on_batch_end, drop_when_full=True)

    @property
    def closed(self) -> bool:
        return self.io is None or self.io.closed

    @property
    def dropped(self) -> int:
        """Messages for peers that were gone or too far behind."""
        return 0 if self.io is None else self.io.dropped

    async def stop(self) -> None:
        if self.io is not None:
            self.io.close()
        if self.context is not None:
            self.context.term()

    def send(self, identity: bytes, frames: Sequence[bytes]) -> bool:
        if self.io is None:
            return False
        return self.io.send([identity, *frames])

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
