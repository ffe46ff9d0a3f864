"""Helpers for tests of the HTTP door: a real hub process with HTTP (or HTTPS) on a free port,
and a small JSON WebSocket peer (with a token in its handshake or as its first message)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from tests.helpers import DOORS_OFF, Proc, free_port, jobq_command

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

FAST = ["--heartbeat", "0.2", "--liveness", "5", "--lease-ttl", "5"]

#: Debian's chromium (installed by ``make install``; Playwright never downloads a browser here).
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextlib.contextmanager
def chromium() -> Iterator[Browser]:
    """A headless :data:`CHROMIUM` driven by Playwright, closed afterwards."""
    from playwright.sync_api import sync_playwright  # only the dashboard's tests need it

    assert CHROMIUM.exists(), "Debian's chromium is missing: run `make install`"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def page_errors(page: Page) -> list[str]:
    """What ``page`` reports from now on: its uncaught exceptions and console errors, but the
    browser's own line for each failed request (a 4xx the page was meant to get)."""
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    return errors


@dataclass
class HttpHub:
    proc: Proc
    endpoint: str  # ZeroMQ
    url: str  # http://127.0.0.1:PORT (https:// with --tls-cert)

    @property
    def ws(self) -> str:
        return self.url.replace("http", "ws", 1)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


def start_http_hub(
    tmp: Path, extra: list[str] | None = None, name: str = "hub", verify: ssl.SSLContext | None = None
) -> HttpHub:
    """A hub process with its HTTP door on a free port, once ``/health`` answers (over HTTPS,
    checked with ``verify``, when ``extra`` has ``--tls-cert``)."""
    port, zmq_port = free_port(), free_port()
    endpoint = f"tcp://127.0.0.1:{zmq_port}"
    args = jobq_command("hub", "--store", "memory://", "--zmq", endpoint, *DOORS_OFF, "--name", name)
    proc = Proc([*args, "--http", f"127.0.0.1:{port}", *FAST, *(extra or [])], tmp / f"{name}-{zmq_port}.log")
    url = f"{'https' if verify else 'http'}://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(url + "/health", timeout=2, verify=verify or True).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if not proc.alive() or time.monotonic() > deadline:
            proc.close()
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
    async def open(
        cls, url: str, *, token: str | None = None, auth: str | None = None, **kwargs: Any
    ) -> Peer:
        """Connected and admitted: ``token`` goes in the handshake's Authorization header,
        ``auth`` in a first ``{"type": "auth"}`` message (as a browser does)."""
        kwargs.setdefault("close_timeout", 1)  # a peer with a backlog answers a close late
        if token is not None:
            kwargs["additional_headers"] = {"Authorization": f"Bearer {token}"}
        peer = cls(await websockets.connect(url, **kwargs))
        cls.opened.append(peer)
        if auth is not None:
            await peer.send({"type": "auth", "token": auth})
        hello = await peer.recv()
        assert hello["type"] == "connection_established", hello
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
