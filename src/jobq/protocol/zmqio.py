"""A ZeroMQ socket driven by the asyncio event loop, without a future per message.

The socket's file descriptor is edge-triggered: it signals "something changed", not "a message
is waiting". So every wake-up drains the socket until it would block, and every send pokes a
drain on the next turn (a send can swallow the edge a waiting message raised).

A ROUTER that needs to know where each message came from asks for libzmq's message
``properties`` (``Peer-Address``, ``User-Id``: what a ZAP handler said of a CURVE client): they
are read from each message's first frame and are ``last_properties`` while its handler runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence

import zmq

log = logging.getLogger("jobq.zmq")

#: Messages handled per wake-up before yielding to the rest of the loop.
DRAIN_BATCH = 512

# pyzmq's enum flags cost more than the send itself on small messages: use plain ints.
_NOBLOCK = int(zmq.NOBLOCK)
_SENDMORE = int(zmq.SNDMORE) | _NOBLOCK
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


class AsyncSocket:
    def __init__(
        self,
        sock: zmq.Socket[bytes],
        on_message: Callable[[list[bytes]], None],
        *,
        on_batch_end: Callable[[], None] | None = None,
        drop_when_full: bool = False,
        properties: Sequence[str] = (),
    ) -> None:
        self.sock = sock
        self.on_message = on_message
        self.on_batch_end = on_batch_end
        #: A ROUTER drops what it cannot deliver now; a DEALER keeps it for later.
        self.drop_when_full = drop_when_full
        self.dropped = 0
        self._backlog: deque[Sequence[bytes]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fd: int = sock.FD
        self._drain_scheduled = False
        self._closed = False
        #: The message properties asked for, of the message being handled (None: not set).
        self.properties = tuple(properties)
        self.last_properties: tuple[str | None, ...] = (None,) * len(self.properties)
        if self.properties:
            self._recv = self._recv_with_properties  # type: ignore[method-assign]

    def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        loop.add_reader(self._fd, self._drain)
        self.poke()

    def close(self, linger: int = 0) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        self.sock.close(linger=linger)

    @property
    def closed(self) -> bool:
        return self._closed

    def poke(self) -> None:
        if not self._drain_scheduled and self._loop is not None and not self._closed:
            self._drain_scheduled = True
            self._loop.call_soon(self._drain)

    def send(self, frames: Sequence[bytes]) -> bool:
        """Queue a message; False if a ROUTER had to drop it (peer gone or too slow)."""
        if self._closed:
            return False
        if self._backlog:
            self._backlog.append(frames)
            return True
        try:
            self._send(frames)
        except zmq.Again:
            if self.drop_when_full:
                self.dropped += 1
                return False
            self._backlog.append(frames)
        except zmq.ZMQError as exc:
            if exc.errno == zmq.EHOSTUNREACH:  # a ROUTER peer that has gone away
                self.dropped += 1
                return False
            raise
        self.poke()
        return True

    def _send(self, frames: Sequence[bytes]) -> None:
        # Only the first part of a message can hit the high-water mark: the rest always follow.
        send = self.sock.send
        last = len(frames) - 1
        for i, frame in enumerate(frames):
            send(frame, _SENDMORE if i < last else _NOBLOCK)

    def _recv(self) -> list[bytes]:
        recv = self.sock.recv
        part = recv(_NOBLOCK, copy=False)
        frames = [part.bytes]
        while part.more:
            part = recv(_NOBLOCK, copy=False)
            frames.append(part.bytes)
        return frames

    def _recv_with_properties(self) -> list[bytes]:
        recv = self.sock.recv
        part = recv(_NOBLOCK, copy=False)
        self.last_properties = tuple(_property(part, name) for name in self.properties)
        frames = [part.bytes]
        while part.more:
            part = recv(_NOBLOCK, copy=False)
            frames.append(part.bytes)
        return frames

    def _readable(self) -> bool:
        events: int = self.sock.getsockopt(_EVENTS)  # type: ignore[assignment]
        return bool(events & _POLLIN)

    def _flush_backlog(self) -> None:
        while self._backlog:
            try:
                self._send(self._backlog[0])
            except zmq.Again:
                return
            self._backlog.popleft()

    def _drain(self) -> None:
        self._drain_scheduled = False
        if self._closed:
            return
        if self._backlog:
            self._flush_backlog()
        handled = 0
        recv = self._recv
        try:
            # Read until EAGAIN: a waiting message costs no system call to read, and the final
            # EAGAIN processes the socket's commands, which re-arms the edge-triggered descriptor.
            while handled < DRAIN_BATCH:
                try:
                    frames = recv()
                except zmq.Again:
                    break
                handled += 1
                try:
                    self.on_message(frames)
                except Exception:
                    log.exception("a message handler failed; the message was dropped")
                if self._closed:
                    return
        except zmq.ZMQError:
            if self._closed:
                return
            raise
        if handled and self.on_batch_end is not None:
            self.on_batch_end()
        if handled >= DRAIN_BATCH:
            self.poke()  # more is waiting: come back on the next turn
        elif self._backlog and self._loop is not None:
            self._loop.call_later(0.002, self.poke)  # the peer is slow: retry the backlog soon


def _property(frame: zmq.Frame, name: str) -> str | None:
    """A message property libzmq knows (or None: not set, as ``User-Id`` without ZAP)."""
    try:
        value = frame.get(name)
    except zmq.ZMQError:
        return None
    return value if isinstance(value, str) else None
