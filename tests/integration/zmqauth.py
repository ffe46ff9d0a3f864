"""Support for the ZeroMQ identity tests: an auth file with a token per role, and a raw native
peer (a pyzmq DEALER speaking JQ1 frame by frame, as an attacker would, not through the SDK)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from jobq.app import HubServer
from jobq.authfile import create_token
from jobq.config import HubConfig
from jobq.protocol import native

TIMEOUT = 10.0


@dataclass
class Tokens:
    """An auth file and the secret of each token in it, by name."""

    path: Path
    secrets: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, role: str, customers: list[str] | None = None, **kw: Any) -> str:
        secret, _ = create_token(self.path, role, name=name, customers=customers, **kw)
        self.secrets[name] = secret
        return secret

    def __getitem__(self, name: str) -> str:
        return self.secrets[name]


def standard_tokens(tmp: Path) -> Tokens:
    """admin; clients of customers A and B; a worker of every customer, one of B only; a monitor."""
    tokens = Tokens(tmp / "auth.json")
    tokens.add("admin", "admin")
    tokens.add("client-a", "client", ["A"])
    tokens.add("client-b", "client", ["B"])
    tokens.add("worker-all", "worker")
    tokens.add("worker-b", "worker", ["B"])
    tokens.add("worker-a", "worker", ["A"])
    tokens.add("monitor", "monitor")
    return tokens


@contextlib.asynccontextmanager
async def serving(store: str = "memory://", **config: Any) -> AsyncIterator[HubServer]:
    """A hub in this event loop (ZeroMQ on a free loopback port unless ``zmq`` says otherwise)."""
    settings: dict[str, Any] = {"line": [], "http": "", "zmq": ["tcp://127.0.0.1:*"], **config}
    server = HubServer(HubConfig(store=store, **settings))
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=0)
        server.hub.guard.audit.close()  # the hub's stop leaves its audit file open


def audit_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Raw:
    """A DEALER that sends and reads native messages as they are (no SDK in between)."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        endpoint: str,
        *,
        identity: bytes | None = None,
        curve: tuple[bytes, bytes, bytes] | None = None,
    ) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if identity is not None:
            self.sock.setsockopt(zmq.IDENTITY, identity)
        if curve is not None:
            server, public, secret = curve
            self.sock.curve_serverkey = server
            self.sock.curve_publickey = public
            self.sock.curve_secretkey = secret
        self.sock.connect(endpoint)
        #: Everything received, in order (pushes included).
        self.received: list[native.Outbound] = []
        self._rid = 1000

    def rid(self) -> int:
        self._rid += 1
        return self._rid

    async def send(self, message: native.Inbound, timeout: float = TIMEOUT) -> bool:
        """False when it could not even be queued (a DEALER without a connected peer waits)."""
        try:
            await asyncio.wait_for(self.sock.send_multipart([native.HEADER, native.encode(message)]), timeout)
        except TimeoutError:
            return False
        return True

    async def recv(self, timeout: float = TIMEOUT) -> native.Outbound:
        if not await self.sock.poll(int(timeout * 1000)):
            raise AssertionError(f"nothing received within {timeout}s")
        frames = await self.sock.recv_multipart()
        assert frames[0] == native.HEADER, frames
        message = native.decode_outbound(frames[1])
        self.received.append(message)
        return message

    async def call(self, message: native.Inbound, timeout: float = TIMEOUT) -> native.Outbound:
        """Send a request and return the reply with its rid (pushes in between are kept)."""
        await self.send(message)
        rid = getattr(message, "rid", 0)
        while True:
            reply = await self.recv(timeout)
            if getattr(reply, "rid", None) == rid:
                return reply

    async def drain(self, timeout: float) -> list[native.Outbound]:
        """What arrives within ``timeout`` seconds."""
        got: list[native.Outbound] = []
        with contextlib.suppress(AssertionError):
            while True:
                got.append(await self.recv(timeout))
        return got

    def close(self) -> None:
        self.sock.close(0)


@contextlib.asynccontextmanager
async def peers() -> AsyncIterator[tuple[zmq.asyncio.Context, list[Raw]]]:
    """A context and the raw peers a test opens in it, all closed at the end."""
    ctx = zmq.asyncio.Context()
    opened: list[Raw] = []
    try:
        yield ctx, opened
    finally:
        for peer in opened:
            peer.close()
        ctx.destroy(linger=0)
        await asyncio.sleep(0)


def error_code(reply: native.Outbound) -> str | None:
    return reply.code if isinstance(reply, native.Error) else None
