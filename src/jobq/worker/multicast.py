"""The ``multicast`` handler: streams each word of a job to a UDP multicast group, one datagram
per word, ``word_delay`` seconds apart, as the work-queue system's worker did (PROTOCOLS.md §2).

``jobq listen GROUP:PORT`` prints what it sends.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

from jobq.errors import InvalidRequest
from jobq.worker.context import HandlerError, HandlerFn, JobContext

DEFAULT_GROUP = "239.0.0.1"
DEFAULT_PORT = 5007
DEFAULT_TTL = 32
DEFAULT_WORD_DELAY = 0.25


def parse_group(text: str, *, default_port: int | None = DEFAULT_PORT) -> tuple[str, int]:
    """``GROUP:PORT`` (or ``GROUP`` when a default port is given) → a checked (group, port)."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep:
        host, port_text = text.strip(), "" if default_port is None else str(default_port)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidRequest(f"{text!r} is not GROUP:PORT with a port from 1 to 65535")
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        raise InvalidRequest(f"{host!r} is not an IPv4 address") from None
    if not address.is_multicast:
        raise InvalidRequest(f"{host} is not a multicast group (224.0.0.0 to 239.255.255.255)")
    return host, int(port_text)


@dataclass(frozen=True, slots=True)
class MulticastOptions:
    group: str = DEFAULT_GROUP
    port: int = DEFAULT_PORT
    #: Routers a datagram may cross (1 keeps it on the local network; 0 on this host).
    ttl: int = DEFAULT_TTL
    #: Seconds between two words of a job.
    word_delay: float = DEFAULT_WORD_DELAY
    #: Address of the interface to send from (None: the system's choice).
    interface: str | None = None

    def __post_init__(self) -> None:
        parse_group(f"{self.group}:{self.port}")
        if not 0 <= self.ttl <= 255:
            raise InvalidRequest("the multicast TTL must be between 0 and 255")
        if not 0 <= self.word_delay <= 3600:
            raise InvalidRequest("the word delay must be between 0 and 3600 seconds")
        if self.interface is not None:
            try:
                ipaddress.IPv4Address(self.interface)
            except ValueError:
                raise InvalidRequest(f"interface {self.interface!r} is not an IPv4 address") from None


def open_sender(options: MulticastOptions) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, options.ttl)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)  # listeners on this host hear it
    if options.interface is not None:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(options.interface))
    sock.setblocking(False)
    return sock


def open_receiver(group: str, port: int, interface: str = "0.0.0.0") -> socket.socket:
    """A socket that has joined ``group`` on ``interface`` and receives what is sent to ``port``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((group, port))  # the group address: only datagrams for this group
    membership = socket.inet_aton(group) + socket.inet_aton(interface)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    return sock


async def _send(sock: socket.socket, data: bytes, to: tuple[str, int]) -> None:
    # A plain non-blocking sendto: uvloop has no loop.sock_sendto, and a datagram only waits
    # when the socket's send buffer is full.
    for _ in range(1000):
        try:
            sock.sendto(data, to)
            return
        except BlockingIOError:
            await asyncio.sleep(0.001)
        except OSError as exc:
            raise HandlerError(f"sending to {to[0]}:{to[1]} failed: {exc}") from exc
    raise HandlerError(f"sending to {to[0]}:{to[1]} failed: the send buffer stayed full")


def multicast(options: MulticastOptions) -> HandlerFn:
    """A handler sending the job's words to ``options.group:options.port``."""

    async def stream_words(payload: bytes, ctx: JobContext) -> bytes:
        try:
            words = payload.decode().split()
        except UnicodeDecodeError:
            raise HandlerError("the multicast handler needs a text payload", retryable=False) from None
        with open_sender(options) as sock:
            for i, word in enumerate(words):
                if i:
                    await ctx.sleep(options.word_delay)  # wakes up (raising) if cancelled
                ctx.check()
                await _send(sock, word.encode(), (options.group, options.port))
                ctx.progress(100.0 * (i + 1) / len(words), word)
        return f"{len(words)} words sent to {options.group}:{options.port}".encode()

    return stream_words
