"""Majordomo frames ↔ messages (ZeroMQ RFC 7 MDP/0.1, RFC 18 MDP/0.2, and PyPI majortomo).

No I/O: :func:`parse` turns the frames a ROUTER received after the peer's identity into one
message; the ``*_frames`` functions turn messages back into frames. Frames are opaque bytes
and their boundaries are kept: a body is a list of frames, any bytes, empty frames allowed.

Rules
-----
- A message is ours when its first frame is an MDP header (``MDPC01``, ``MDPW01``,
  ``MDPC02``, ``MDPW02``), or when its first frame is empty and the second is one. Anything
  else is not Majordomo: :func:`parse` returns None and another protocol may take it.
- The leading empty frame is what REQ sockets and the RFC 7 peers send; RFC 18 peers leave it
  out, majortomo keeps it. Both are accepted, for every version, and recorded in the message's
  :class:`Framing` so the answer goes back in the form the peer used.
- MDP/0.2 clients: RFC 18 numbers REQUEST ``\\x01`` (then PARTIAL ``\\x02``, FINAL ``\\x03``,
  each with the service frame); majortomo numbers REQUEST ``\\x02`` (then PARTIAL ``\\x03``,
  FINAL ``\\x04``, without a service frame). The command a client's REQUEST used picks the
  dialect of its answers.
- Worker commands (the two versions agree on numbers up to REQUEST)::

      MDP/0.1   READY 1  REQUEST 2  REPLY 3             HEARTBEAT 4  DISCONNECT 5
      MDP/0.2   READY 1  REQUEST 2  PARTIAL 3  FINAL 4  HEARTBEAT 5  DISCONNECT 6

- A message with an MDP header that breaks these rules (no command, an unknown command, a
  command only the broker sends, a missing service or address) parses to :class:`Invalid`:
  the broker answers a worker with DISCONNECT and drops a client's (it has no service frame to
  answer on). Bodies may be empty (zero frames) although the RFCs ask for one or more: being
  lenient costs nothing and loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

C01 = b"MDPC01"
W01 = b"MDPW01"
C02 = b"MDPC02"
W02 = b"MDPW02"

CLIENT_HEADERS = frozenset({C01, C02})
WORKER_HEADERS = frozenset({W01, W02})
HEADERS = CLIENT_HEADERS | WORKER_HEADERS

# Worker commands: (MDP/0.1, MDP/0.2)
READY = b"\x01"
REQUEST = b"\x02"
REPLY_01 = b"\x03"
PARTIAL_W02 = b"\x03"
FINAL_W02 = b"\x04"
HEARTBEAT_01 = b"\x04"
DISCONNECT_01 = b"\x05"
HEARTBEAT_02 = b"\x05"
DISCONNECT_02 = b"\x06"

# MDP/0.2 client commands: RFC 18 and majortomo
RFC_REQUEST, RFC_PARTIAL, RFC_FINAL = b"\x01", b"\x02", b"\x03"
MT_REQUEST, MT_PARTIAL, MT_FINAL = b"\x02", b"\x03", b"\x04"


@dataclass(frozen=True, slots=True)
class Framing:
    """How a peer frames its messages, so it is answered the same way."""

    #: 1 for MDP/0.1, 2 for MDP/0.2.
    version: int
    #: Whether its messages start with an empty frame.
    lead: bool
    #: An MDP/0.2 client numbering commands as majortomo does (answers carry no service frame).
    majortomo: bool = False

    @property
    def label(self) -> str:
        dialect = " (majortomo)" if self.majortomo else ""
        return f"MDP/0.{self.version}{dialect}{'' if self.lead else ' without leading empty frame'}"


@dataclass(slots=True)
class Request:
    """A client asks ``service`` to handle ``body``."""

    framing: Framing
    service: bytes
    body: list[bytes]


@dataclass(slots=True)
class Ready:
    """A worker offers to serve ``service``."""

    framing: Framing
    service: bytes


@dataclass(slots=True)
class Reply:
    """A worker's answer to the request it got with ``address``; ``final`` is False for an
    MDP/0.2 PARTIAL."""

    framing: Framing
    address: bytes
    body: list[bytes]
    final: bool = True


@dataclass(slots=True)
class Heartbeat:
    framing: Framing


@dataclass(slots=True)
class Disconnect:
    framing: Framing


@dataclass(slots=True)
class Invalid:
    """An MDP header with a message the broker cannot accept."""

    framing: Framing
    worker: bool
    reason: str


Message = Request | Ready | Reply | Heartbeat | Disconnect | Invalid

_WORKER_COMMANDS: dict[int, dict[bytes, str]] = {
    1: {
        READY: "ready",
        REQUEST: "request",
        REPLY_01: "final",
        HEARTBEAT_01: "heartbeat",
        DISCONNECT_01: "bye",
    },
    2: {
        READY: "ready",
        REQUEST: "request",
        PARTIAL_W02: "partial",
        FINAL_W02: "final",
        HEARTBEAT_02: "heartbeat",
        DISCONNECT_02: "bye",
    },
}


def parse(frames: list[bytes]) -> Message | None:
    """The message in ``frames`` (what follows the identity), or None when it is not MDP."""
    if not frames:
        return None
    lead = False
    head = frames[0]
    if head == b"" and len(frames) > 1 and frames[1] in HEADERS:
        lead = True
        head = frames[1]
    elif head not in HEADERS:
        return None
    rest = frames[2:] if lead else frames[1:]
    if head == C01:
        framing = Framing(1, lead)
        if not rest:
            return Invalid(framing, False, "a request needs a service frame")
        return Request(framing, rest[0], rest[1:])
    if head == C02:
        return _client_02(lead, rest)
    return _worker(Framing(1 if head == W01 else 2, lead), rest)


def _client_02(lead: bool, rest: list[bytes]) -> Message:
    if not rest:
        return Invalid(Framing(2, lead), False, "a request needs a command frame")
    command = rest[0]
    if command not in (RFC_REQUEST, MT_REQUEST):
        return Invalid(Framing(2, lead), False, f"unexpected client command {command[:8]!r}")
    framing = Framing(2, lead, majortomo=command == MT_REQUEST)
    if len(rest) < 2:
        return Invalid(framing, False, "a request needs a service frame")
    return Request(framing, rest[1], rest[2:])


def _worker(framing: Framing, rest: list[bytes]) -> Message:
    if not rest:
        return Invalid(framing, True, "a worker message needs a command frame")
    kind = _WORKER_COMMANDS[framing.version].get(rest[0])
    args = rest[1:]
    if kind == "ready":
        if not args or not args[0]:
            return Invalid(framing, True, "READY needs a service name")
        return Ready(framing, args[0])
    if kind in ("final", "partial"):
        if len(args) < 2 or args[1] != b"":
            return Invalid(framing, True, "a reply needs a client address and an empty frame")
        return Reply(framing, args[0], args[2:], final=kind == "final")
    if kind == "heartbeat":
        return Heartbeat(framing)
    if kind == "bye":
        return Disconnect(framing)
    if kind == "request":
        return Invalid(framing, True, "REQUEST is sent by the broker, not by a worker")
    return Invalid(framing, True, f"unknown worker command {rest[0][:8]!r}")


# ---------------------------------------------------------------- broker → peer


def _lead(framing: Framing) -> list[bytes]:
    return [b""] if framing.lead else []


def reply_frames(
    framing: Framing, service: bytes, body: list[bytes], *, final: bool = True
) -> list[bytes] | None:
    """A reply to a client; None for a PARTIAL to an MDP/0.1 client, which has no such message."""
    if framing.version == 1:
        return [*_lead(framing), C01, service, *body] if final else None
    if framing.majortomo:
        return [*_lead(framing), C02, MT_FINAL if final else MT_PARTIAL, *body]
    return [*_lead(framing), C02, RFC_FINAL if final else RFC_PARTIAL, service, *body]


def request_frames(framing: Framing, address: bytes, body: list[bytes]) -> list[bytes]:
    """A request handed to a worker; ``address`` comes back in its reply."""
    return [*_lead(framing), W01 if framing.version == 1 else W02, REQUEST, address, b"", *body]


def heartbeat_frames(framing: Framing) -> list[bytes]:
    if framing.version == 1:
        return [*_lead(framing), W01, HEARTBEAT_01]
    return [*_lead(framing), W02, HEARTBEAT_02]


def disconnect_frames(framing: Framing) -> list[bytes]:
    if framing.version == 1:
        return [*_lead(framing), W01, DISCONNECT_01]
    return [*_lead(framing), W02, DISCONNECT_02]


# ---------------------------------------------------------------- peer → broker (tests, tools)


def client_request_frames(framing: Framing, service: bytes, body: list[bytes]) -> list[bytes]:
    if framing.version == 1:
        return [*_lead(framing), C01, service, *body]
    command = MT_REQUEST if framing.majortomo else RFC_REQUEST
    return [*_lead(framing), C02, command, service, *body]


def ready_frames(framing: Framing, service: bytes) -> list[bytes]:
    return [*_lead(framing), W01 if framing.version == 1 else W02, READY, service]


def worker_reply_frames(
    framing: Framing, address: bytes, body: list[bytes], *, final: bool = True
) -> list[bytes]:
    if framing.version == 1:
        if not final:
            raise ValueError("MDP/0.1 has no PARTIAL")
        return [*_lead(framing), W01, REPLY_01, address, b"", *body]
    return [*_lead(framing), W02, FINAL_W02 if final else PARTIAL_W02, address, b"", *body]


def worker_heartbeat_frames(framing: Framing) -> list[bytes]:
    return heartbeat_frames(framing)


def worker_disconnect_frames(framing: Framing) -> list[bytes]:
    return disconnect_frames(framing)
