"""What the stand-in servers share: a very small ASGI router served by uvicorn on loopback, and a
record of every request (one JSON line each) that tests read to see what reached the service.

Each stand-in runs as its own process (``python -m tests.standins.NAME --port P --record FILE``)
so that a test can SIGKILL it mid-job like a crashed service.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"


def json_response(value: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(value).encode())


class WebSocket:
    """The server side of one WebSocket, over ASGI messages."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self.query = dict(parse_qsl(scope.get("query_string", b"").decode()))
        self._receive = receive
        self._send = send
        self.closed = False

    async def accept(self) -> None:
        message = await self._receive()
        assert message["type"] == "websocket.connect"
        await self._send({"type": "websocket.accept"})

    async def send_json(self, value: Any) -> None:
        if not self.closed:
            await self._send({"type": "websocket.send", "text": json.dumps(value)})

    async def send_bytes(self, data: bytes) -> None:
        if not self.closed:
            await self._send({"type": "websocket.send", "bytes": data})

    async def receive(self) -> str | bytes | None:
        """The next message, or None once the client has gone."""
        message = await self._receive()
        if message["type"] == "websocket.disconnect":
            self.closed = True
            return None
        return message.get("text") if message.get("text") is not None else message.get("bytes", b"")

    async def close(self, code: int = 1000) -> None:
        if not self.closed:
            self.closed = True
            await self._send({"type": "websocket.close", "code": code})


HttpHandler = Callable[[Request], Awaitable[Response]]
WsHandler = Callable[[WebSocket], Awaitable[None]]


@dataclass
class App:
    """Routes by exact path, or by prefix for paths registered ending in ``/*``."""

    record: Path | None = None
    http: dict[tuple[str, str], HttpHandler] = field(default_factory=dict)
    ws: dict[str, WsHandler] = field(default_factory=dict)

    def route(self, method: str, path: str) -> Callable[[HttpHandler], HttpHandler]:
        def register(fn: HttpHandler) -> HttpHandler:
            self.http[(method, path)] = fn
            return fn

        return register

    def websocket(self, path: str) -> Callable[[WsHandler], WsHandler]:
        def register(fn: WsHandler) -> WsHandler:
            self.ws[path] = fn
            return fn

        return register

    def log(self, entry: dict[str, Any]) -> None:
        if self.record is not None:
            with self.record.open("a") as f:
                f.write(json.dumps(entry) + "\n")

    def _find(self, method: str, path: str) -> HttpHandler | None:
        found = self.http.get((method, path))
        if found is not None:
            return found
        for (m, p), fn in self.http.items():
            if m == method and p.endswith("/*") and path.startswith(p[:-1]):
                return fn
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].replace("lifespan.", "")
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] == "websocket":
            ws_handler = self.ws.get(scope["path"])
            self.log(
                {
                    "method": "WS",
                    "path": scope["path"],
                    "query": dict(parse_qsl(scope["query_string"].decode())),
                }
            )
            if ws_handler is None:
                await send({"type": "websocket.close", "code": 1008})
                return
            await ws_handler(WebSocket(scope, receive, send))
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = Request(
            scope["method"], scope["path"], dict(parse_qsl(scope["query_string"].decode())), body
        )
        try:
            logged: Any = request.json() if body else None
        except ValueError:
            logged = body.decode(errors="replace")
        self.log({"method": request.method, "path": request.path, "query": request.query, "body": logged})
        handler = self._find(request.method, request.path)
        if handler is None:
            allowed = any(p == request.path for _, p in self.http)
            response = Response(405 if allowed else 404, b"")
        else:
            response = await handler(request)
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(b"content-type", response.content_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": response.body})


def png(width: int = 2, height: int = 2, seed: int = 0) -> bytes:
    """A small valid PNG (what image services return), different per ``seed``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    pixel = bytes([seed % 256, (seed * 7) % 256, (seed * 13) % 256])
    raw = b"".join(b"\x00" + pixel * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def main(
    build: Callable[[argparse.Namespace, App], None], extra: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Parse ``--port`` and ``--record`` (and the stand-in's own flags), then serve forever."""
    import uvicorn

    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", type=Path, default=None)
    extra(parser)
    args = parser.parse_args()
    app = App(record=args.record)
    build(args, app)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=args.port, log_level="warning", ws="websockets-sansio", lifespan="on"
    )
    asyncio.run(uvicorn.Server(config).serve())
