"""ZMTP 3.1 (ZeroMQ's wire protocol, RFC 37/ZMTP) with the NULL mechanism, without I/O.

Bytes in → events out (:class:`Parser`), messages in → bytes out (:func:`encode_message`). The
hub's ROUTER door and the SDK's DEALER connection drive it from asyncio, so a message costs no
hand-off to a ZeroMQ I/O thread (see docs/architecture.md, "Why jobq speaks ZMTP itself").
Peers are ordinary libzmq sockets: what they send and expect is written below.

A connection starts with a 64-byte greeting each way::

    signature  %xFF 8*%x00 %x7F
    version    %x03 %x01            (3.0 is accepted too)
    mechanism  "NULL" padded with zeros to 20 bytes
    as-server  %x00 or %x01
    filler     31*%x00

then each side sends a READY command whose properties say its socket type and, optionally,
its routing identity. After that, messages are frames::

    flags (bit 0 MORE, bit 1 LONG, bit 2 COMMAND), size (1 octet, or 8 with LONG), body

A multi-frame message is its frames with MORE set on all but the last. Commands (PING, PONG,
ERROR, READY) are single frames with COMMAND set.

The CURVE mechanism (:mod:`jobq.protocol.curve`) greets with "CURVE" instead, and on its
connections every frame is a command (HELLO, WELCOME, INITIATE, READY, then MESSAGE boxes):
:class:`Parser` reads them in order with ``commands_only``, without the NULL path paying for it.

Memory: a frame larger than ``max_message`` is refused as soon as its header announces it. A
message still arriving reserves what it holds and has announced (its frames so far, the frame
being read at its announced size) in the hub's :class:`~jobq.protocol.inflight.InflightBudget`,
shared by every connection and door, and gives it back once complete; when the budget cannot
take it, :class:`Busy` is raised and the connection is to be closed (:meth:`Parser.discard`
gives back what it held).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from jobq.protocol.inflight import InflightBudget

SIGNATURE_HEAD = b"\xff\x00\x00\x00\x00\x00\x00\x00\x00\x7f"
GREETING_SIZE = 64
MECHANISM_NULL = b"NULL".ljust(20, b"\x00")
MECHANISM_CURVE = b"CURVE".ljust(20, b"\x00")

MORE = 0x01
LONG = 0x02
COMMAND = 0x04

#: Bytes each frame but a message's last counts against ``max_message`` besides its body (what
#: keeping it costs), so a message of a million empty frames is bounded too.
FRAME_COST = 32

#: Socket types a ROUTER talks to, and the ones a DEALER talks to.
ROUTER_PEERS = frozenset({b"DEALER", b"REQ", b"ROUTER"})
DEALER_PEERS = frozenset({b"ROUTER", b"REP", b"DEALER"})

_LONG_SIZE = struct.Struct(">Q")
_PROPERTY_SIZE = struct.Struct(">I")


class ProtocolViolation(Exception):
    """The peer sent something ZMTP does not allow; the connection must be closed."""


class Busy(ProtocolViolation):
    """The budget of partly received bytes cannot take this message: the connection is closed."""


def greeting(as_server: bool, mechanism: bytes = MECHANISM_NULL) -> bytes:
    return SIGNATURE_HEAD + b"\x03\x01" + mechanism + (b"\x01" if as_server else b"\x00") + bytes(31)


def encode_command(name: bytes, body: bytes = b"") -> bytes:
    data = bytes([len(name)]) + name + body
    if len(data) > 255:
        return bytes([COMMAND | LONG]) + _LONG_SIZE.pack(len(data)) + data
    return bytes([COMMAND, len(data)]) + data


def properties(socket_type: bytes, identity: bytes = b"") -> bytes:
    """The metadata a peer announces: in the NULL READY command, or inside CURVE's boxes."""
    props = [(b"Socket-Type", socket_type)]
    if identity:
        props.append((b"Identity", identity))
    return b"".join(bytes([len(k)]) + k + _PROPERTY_SIZE.pack(len(v)) + v for k, v in props)


def ready(socket_type: bytes, identity: bytes = b"") -> bytes:
    return encode_command(b"READY", properties(socket_type, identity))


def encode_message(frames: Sequence[bytes]) -> bytes:
    """One message (at least one frame) as bytes on the wire."""
    parts: list[bytes] = []
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        more = MORE if i < last else 0
        size = len(frame)
        if size < 256:
            parts.append(bytes((more, size)))
        else:
            parts.append(bytes((more | LONG,)) + _LONG_SIZE.pack(size))
        parts.append(frame)
    return b"".join(parts)


def encode_messages(messages: Iterable[Sequence[bytes]]) -> bytes:
    return b"".join(encode_message(m) for m in messages)


def parse_properties(data: bytes) -> dict[bytes, bytes]:
    props: dict[bytes, bytes] = {}
    pos = 0
    while pos < len(data):
        size = data[pos]
        name = data[pos + 1 : pos + 1 + size]
        pos += 1 + size
        if pos + 4 > len(data):
            raise ProtocolViolation("truncated metadata property")
        (length,) = _PROPERTY_SIZE.unpack_from(data, pos)
        pos += 4
        if pos + length > len(data):
            raise ProtocolViolation("truncated metadata value")
        props[name.lower()] = data[pos : pos + length]
        pos += length
    return props


@dataclass(slots=True)
class Command:
    name: bytes
    body: bytes


@dataclass(slots=True)
class Parser:
    """Feed bytes as they come; take greeting, commands and complete messages out."""

    max_message: int = 64 * 1024 * 1024
    #: The mechanism this side greets with; a peer greeting with another one is refused.
    mechanism: bytes = MECHANISM_NULL
    #: Every frame is a command (an encrypting mechanism): frames come out as commands, in order,
    #: each of at most ``max_frame`` bytes, and never as messages.
    commands_only: bool = False
    #: With ``commands_only``: one command a ``feed`` (a handshake, whose limits change as it goes).
    one_command: bool = False
    max_frame: int = 64 * 1024
    #: Where a message still arriving reserves its bytes (None: nowhere, as on the SDK's side).
    budget: InflightBudget | None = None
    greeted: bool = False
    peer_version: tuple[int, int] = (0, 0)
    _buffer: bytearray = field(default_factory=bytearray)
    _frames: list[bytes] = field(default_factory=list)
    _size: int = 0
    #: Bytes reserved in ``budget`` for the message still arriving.
    _held: int = 0

    def feed(self, data: bytes) -> tuple[list[Command], list[list[bytes]]]:
        """Add received bytes; returns the commands and the complete messages they finished."""
        buffer = self._buffer
        buffer += data
        commands: list[Command] = []
        messages: list[list[bytes]] = []
        pos = 0
        if not self.greeted:
            if len(buffer) >= 1 and buffer[0] != 0xFF:
                raise ProtocolViolation("not a ZMTP 3 peer (bad signature)")
            if len(buffer) >= 10 and buffer[9] != 0x7F:
                raise ProtocolViolation("not a ZMTP 3 peer (bad signature)")
            if len(buffer) >= 11 and buffer[10] < 3:
                raise ProtocolViolation(f"ZMTP {buffer[10]}.x is not supported (3.0 or later)")
            if len(buffer) < GREETING_SIZE:
                return commands, messages
            self.peer_version = (buffer[10], buffer[11])
            mechanism = bytes(buffer[12:32])
            if mechanism != self.mechanism:
                raise ProtocolViolation(
                    f"security mechanism {mechanism.rstrip(bytes(1))!r} is not ours"
                    f" ({self.mechanism.rstrip(bytes(1))!r})"
                )
            self.greeted = True
            pos = GREETING_SIZE
        end = len(buffer)
        view = memoryview(buffer)
        try:
            if self.commands_only:
                pos = self._commands_from(view, pos, end, commands)
            else:
                pos = self._frames_from(view, pos, end, commands, messages)
        finally:
            view.release()
        if pos:
            del buffer[:pos]
        if len(buffer) > self.max_message + 9 and not self.commands_only:
            raise ProtocolViolation(f"message larger than {self.max_message} bytes")
        if self.budget is not None and (buffer or self._size or self._held):
            self._hold(self._partial())
        return commands, messages

    def _partial(self) -> int:
        """Bytes the message still arriving holds or has announced: its frames so far, and the
        frame being read at its announced size (or what has arrived of it, if more)."""
        buffer = self._buffer
        size = len(buffer)
        if size >= 2 and self.greeted:
            if not buffer[0] & LONG:
                return self._size + max(size, 2 + buffer[1])
            if size >= 9:
                announced: int = _LONG_SIZE.unpack_from(buffer, 1)[0]
                return self._size + max(size, 9 + announced)
        return self._size + size

    def _hold(self, need: int) -> None:
        """Hold exactly ``need`` bytes of the budget: reserve more, or give back the rest."""
        budget = self.budget
        assert budget is not None
        held = self._held
        if need > held:
            if not budget.reserve(need - held):
                raise Busy(
                    f"busy: a message of {need} bytes refused, the hub's budget for partly received"
                    f" messages is spent ({budget.used} of {budget.limit} bytes)"
                )
        elif need < held:
            budget.release(held - need)
        self._held = need

    def discard(self) -> None:
        """Drop what has arrived of an unfinished message (its connection is closing) and give
        its bytes back to the budget."""
        if self._held and self.budget is not None:
            self.budget.release(self._held)
        self._held = 0
        self._buffer = bytearray()
        self._frames = []
        self._size = 0

    def _commands_from(self, view: memoryview, pos: int, end: int, commands: list[Command]) -> int:
        limit = self.max_frame
        one = self.one_command
        while end - pos >= 2:
            flags = view[pos]
            if flags & LONG:
                if end - pos < 9:
                    break
                (size,) = _LONG_SIZE.unpack_from(view, pos + 1)
                start = pos + 9
            else:
                size = view[pos + 1]
                start = pos + 2
            if flags & 0xF8:
                raise ProtocolViolation("reserved flag bits set")
            if size > limit:
                raise ProtocolViolation(f"a command larger than {limit} bytes")
            stop = start + size
            if stop > end:
                break
            name_stop = start + 1 + (view[start] if size else 0)
            if not size or name_stop > stop:
                raise ProtocolViolation("a command without a whole name")
            commands.append(Command(view[start + 1 : name_stop].tobytes(), view[name_stop:stop].tobytes()))
            pos = stop
            if one:
                break
        return pos

    def _frames_from(
        self,
        view: memoryview,
        pos: int,
        end: int,
        commands: list[Command],
        messages: list[list[bytes]],
    ) -> int:
        frames = self._frames
        while end - pos >= 2:
            flags = view[pos]
            if flags & LONG:
                if end - pos < 9:
                    break
                (size,) = _LONG_SIZE.unpack_from(view, pos + 1)
                start = pos + 9
            else:
                size = view[pos + 1]
                start = pos + 2
            if flags & 0xF8:
                raise ProtocolViolation("reserved flag bits set")
            if self._size + size > self.max_message:
                raise ProtocolViolation(f"message larger than {self.max_message} bytes")
            stop = start + size
            if stop > end:
                break
            body = view[start:stop].tobytes()
            pos = stop
            if flags & COMMAND:
                if frames:
                    raise ProtocolViolation("command inside a multi-frame message")
                name_size = body[0] if body else 0
                commands.append(Command(body[1 : 1 + name_size], body[1 + name_size :]))
                continue
            frames.append(body)
            if flags & MORE:
                self._size += size + FRAME_COST
            else:
                messages.append(frames)
                frames = self._frames = []
                self._size = 0
        return pos
