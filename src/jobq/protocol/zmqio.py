"""A ZeroMQ socket driven by the asyncio event loop, without a future per message.

The socket's file descriptor is edge-triggered: it signals "something changed", not "a message
is waiting". So every wake-up drains the socket until it would block, and every send pokes a
drain on the next turn (a send can swallow the edge a waiting message raised).
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


class AsyncSocket:
    def __init__(
        self,
        sock: zmq.Socket[bytes],
        on_message: Callable[[list[bytes]], None],
        *,
        on_batch_end: Callable[[], None] | None = None,
        drop_when_full: bool = False,
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
            self.sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
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

    def _readable(self) -> bool:
        events: int = self.sock.getsockopt(zmq.EVENTS)  # type: ignore[assignment]
        return bool(events & zmq.POLLIN)

    def _flush_backlog(self) -> None:
        while self._backlog:
            try:
                self.sock.send_multipart(self._backlog[0], zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._backlog.popleft()

    def _drain(self) -> None:
        self._drain_scheduled = False
        if self._closed:
            return
        sock = self.sock
        if self._backlog:
            self._flush_backlog()
        handled = 0
        try:
            while handled < DRAIN_BATCH:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                handled += 1
                try:
                    self.on_message(frames)
                except Exception:
                    log.exception("a message handler failed; the message was dropped")
        except zmq.ZMQError:
            if self._closed:
                return
            raise
        if handled and self.on_batch_end is not None:
            self.on_batch_end()
        if handled >= DRAIN_BATCH or (not self._closed and self._readable()):
            self.poke()  # more is waiting: come back on the next turn
        elif self._backlog and self._loop is not None:
            self._loop.call_later(0.002, self.poke)  # the peer is slow: retry the backlog soon
