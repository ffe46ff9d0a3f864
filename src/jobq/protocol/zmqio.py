"""A ZeroMQ socket driven by the asyncio event loop, without a future per message.

The socket's file descriptor is edge-triggered: it signals "something changed", not "a message
is waiting". So every wake-up drains the socket until it would block, and every send pokes a
drain on the next turn (a send can swallow the edge a waiting message raised).

A ROUTER that needs to know where each message came from asks for libzmq's message
``properties`` (``Peer-Address``, ``User-Id``: what a ZAP handler said of a CURVE client): they
are read from each message's first frame and are ``last_properties`` while its handler runs.

A ROUTER given ``on_disconnect`` is told when a peer's connection closes. libzmq reports no
disconnects on a ROUTER (``ROUTER_NOTIFY`` is a draft option, absent from released builds), so
:class:`_PeerWatch` pieces it together: each message's source descriptor (``SRCFD``) says which
connection an identity speaks on, and the socket monitor's ``DISCONNECTED`` (and ``ACCEPTED``,
should a ``DISCONNECTED`` have been lost) events name the descriptor that closed. An identity
that moved to another connection (a peer reconnecting, ``ROUTER_HANDOVER``) is not reported
when its old connection closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
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
_SRCFD = int(zmq.SRCFD)
_ACCEPTED = int(zmq.EVENT_ACCEPTED)
_DISCONNECTED = int(zmq.EVENT_DISCONNECTED)
#: A monitor event's first frame: the event (16 bits) and its value (32 bits: the descriptor).
_EVENT = struct.Struct("=HI")


class AsyncSocket:
    def __init__(
        self,
        sock: zmq.Socket[bytes],
        on_message: Callable[[list[bytes]], None],
        *,
        on_batch_end: Callable[[], None] | None = None,
        drop_when_full: bool = False,
        properties: Sequence[str] = (),
        on_disconnect: Callable[[bytes], None] | None = None,
    ) -> None:
        """``on_disconnect(identity)`` (a ROUTER): a peer's connection closed (see above)."""
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
        self._watch: _PeerWatch | None = None
        if on_disconnect is not None:
            self._watch = _PeerWatch(sock, on_disconnect)
            self._recv = self._recv_watched  # type: ignore[method-assign]
        elif self.properties:
            self._recv = self._recv_with_properties  # type: ignore[method-assign]

    def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        loop.add_reader(self._fd, self._drain)
        if self._watch is not None:
            loop.add_reader(self._watch.fd, self._watched)
            self._watch.events()
        self.poke()

    def _watched(self) -> None:
        """The monitor has news: the messages that came before a close are handled first."""
        self._drain()
        if self._watch is not None and not self._closed:
            self._watch.events()

    def close(self, linger: int = 0) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
            if self._watch is not None:
                self._loop.remove_reader(self._watch.fd)
        if self._watch is not None:
            self._watch.close(self.sock)
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

    def _recv_watched(self) -> list[bytes]:
        recv = self.sock.recv
        part = recv(_NOBLOCK, copy=False)
        if self.properties:
            self.last_properties = tuple(_property(part, name) for name in self.properties)
        identity = part.bytes
        watch = self._watch
        assert watch is not None
        fd: int = part.get(_SRCFD)
        if watch.identity_of.get(fd) != identity:
            watch.moved(fd, identity)
        frames = [identity]
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


class _PeerWatch:
    """Which connection (descriptor) each identity of a ROUTER speaks on, and the socket
    monitor's word that a descriptor closed: ``on_disconnect(identity)`` then."""

    def __init__(self, sock: zmq.Socket[bytes], on_disconnect: Callable[[bytes], None]) -> None:
        self.on_disconnect = on_disconnect
        self.monitor: zmq.Socket[bytes] = sock.get_monitor_socket(_ACCEPTED | _DISCONNECTED)
        self.fd: int = self.monitor.FD
        #: Descriptor → the identity last heard on it; identity → the descriptor it was last
        #: heard on (a reconnect moves it: its old connection's close is then no news).
        self.identity_of: dict[int, bytes] = {}
        self.fd_of: dict[bytes, int] = {}

    def moved(self, fd: int, identity: bytes) -> None:
        """A message from ``identity`` on a descriptor it was not last seen on: a new
        connection. The monitor's events come first (a descriptor reused by the new connection
        was closed, and said so, before it was accepted again)."""
        self.events()
        old = self.identity_of.get(fd)
        if old is not None and old != identity:
            self._gone(fd, old)
        self.identity_of[fd] = identity
        self.fd_of[identity] = fd

    def events(self) -> None:
        """Read every monitor event waiting (the descriptor is edge-triggered)."""
        recv = self.monitor.recv_multipart
        while True:
            try:
                frames = recv(_NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError:  # closed under us
                return
            if len(frames) < 1 or len(frames[0]) < _EVENT.size:
                continue
            event, fd = _EVENT.unpack_from(frames[0])
            if event in (_DISCONNECTED, _ACCEPTED):  # accepted: whoever had it before is gone
                identity = self.identity_of.pop(fd, None)
                if identity is not None:
                    self._gone(fd, identity)

    def _gone(self, fd: int, identity: bytes) -> None:
        if self.fd_of.get(identity) != fd:
            return  # it speaks on another connection now
        del self.fd_of[identity]
        try:
            self.on_disconnect(identity)
        except Exception:
            log.exception("an on_disconnect handler failed")

    def close(self, sock: zmq.Socket[bytes]) -> None:
        with contextlib.suppress(zmq.ZMQError):
            sock.disable_monitor()
        self.monitor.close(linger=0)


def _property(frame: zmq.Frame, name: str) -> str | None:
    """A message property libzmq knows (or None: not set, as ``User-Id`` without ZAP)."""
    try:
        value = frame.get(name)
    except zmq.ZMQError:
        return None
    return value if isinstance(value, str) else None
