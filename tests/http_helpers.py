"""Helpers for tests of the HTTP door: a real hub process with HTTP on a free port, and a
small JSON WebSocket peer."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from tests.helpers import Proc, free_port, start_hub

FAST = ["--heartbeat", "0.2", "--liveness", "5", "--lease-ttl", "5"]


@dataclass
class HttpHub:
    proc: Proc
    endpoint: str  # ZeroMQ
    url: str  # http://127.0.0.1:PORT

    @property
    def ws(self) -> str:
        return self.url.replace("http://", "ws://")


def start_http_hub(tmp: Path, extra: list[str] | None = None, name: str = "hub") -> HttpHub:
    port = free_port()
    proc, endpoint = start_hub(
        tmp, store="memory://", extra=["--http", f"127.0.0.1:{port}", *FAST, *(extra or [])], name=name
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if not proc.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"no HTTP door at {url}: {proc.output()}")
        time.sleep(0.05)
    return HttpHub(proc, endpoint, url)


class Peer:
    """A WebSocket peer that speaks the door's JSON messages."""

    #: Every peer a test opened, so a fixture can close them whatever happened.
    opened: ClassVar[list[Peer]] = []

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def close_all(cls) -> None:
        while cls.opened:
            await cls.opened.pop().close()

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> Peer:
        kwargs.setdefault("close_timeout", 1)  # a peer with a backlog answers a close late
        peer = cls(await websockets.connect(url, **kwargs))
        cls.opened.append(peer)
        hello = await peer.recv()
        assert hello["type"] == "connection_established"
        return peer

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def recv(self, timeout: float = 10.0) -> dict[str, Any]:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        return message

    async def expect(self, kind: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        """The next message of this type (and these field values); others are skipped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind} {match or ''} within {timeout}s")
            message = await self.recv(left)
            if message.get("type") == kind and all(message.get(k) == v for k, v in match.items()):
                return message

    async def request(self, message: dict[str, Any], reply: str) -> dict[str, Any]:
        await self.send(message)
        return await self.expect(reply)

    async def close(self) -> None:
        await self.ws.close()
