"""The ZeroMQ door: one ROUTER socket; the header frame picks the protocol.

The socket is jobq's own ZMTP implementation on the event loop by default (``engine``
``asyncio``), or pyzmq's (``libzmq``); peers cannot tell them apart.

``[identity, b"JQ1", body]`` is jobq's own protocol (:mod:`jobq.doors.zmq.native`). Other protocols
(Majordomo) register a handler for the frames they start with. Anything else is counted as
malformed and dropped: a ROUTER cannot answer a peer whose framing it does not know.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import zmq

from jobq.hub.hub import Hub
from jobq.protocol.zmqio import AsyncSocket
from jobq.protocol.zmtp_io import RouterSocket

log = logging.getLogger("jobq.doors.zmq.router")

#: Given the frames after the identity, returns True when it took the message.
FrameHandler = Callable[[bytes, list[bytes]], bool]


class ZmqRouter:
    def __init__(
        self,
        hub: Hub,
        endpoints: Sequence[str],
        *,
        max_message: int | None = None,
        engine: str | None = None,
    ) -> None:
        self.hub = hub
        self.requested = list(endpoints)
        self.endpoints: list[str] = []
        self.max_message = hub.config.max_message if max_message is None else max_message
        #: ``asyncio``: jobq's ZMTP on the event loop; ``libzmq``: pyzmq (see docs/architecture.md).
        self.engine = engine or hub.config.zmq_engine
        self.context: zmq.Context[zmq.Socket[bytes]] | None = None
        self.io: AsyncSocket | RouterSocket | None = None
        self.malformed = 0
        self._handlers: list[FrameHandler] = []
        self._batch_end: list[Callable[[], None]] = []

    def add_handler(self, handler: FrameHandler, on_batch_end: Callable[[], None] | None = None) -> None:
        self._handlers.append(handler)
        if on_batch_end is not None:
            self._batch_end.append(on_batch_end)

    async def start(self) -> None:
        from jobq.doors.zmq.mdp import MajordomoDoor
        from jobq.doors.zmq.native import NativeDoor

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
        NativeDoor(self.hub, self).install()
        self.majordomo = MajordomoDoor(self.hub, self)
        self.majordomo.install()
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
            for handler in self._handlers:
                if handler(identity, rest):
                    return
        self.malformed += 1
        log.debug("dropped a message with an unknown header from %r", identity)

    def _on_batch_end(self) -> None:
        for callback in self._batch_end:
            callback()
