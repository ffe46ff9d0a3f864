"""The HTTP endpoint the ``http`` connector serves in ``mode = "callback"``: the service answers
a job later by calling back instead of in its reply.

For each job the connector hands the service ``{{callback_url}}``
(``http://HOST:PORT/jobs/<job id>/<secret>``). The service then sends

- ``POST {callback_url}`` with the result as its body (the job completes with those bytes),
- ``POST {callback_url}/progress`` with ``{"progress": 40, "message": "..."}`` (any number of times),
- ``POST {callback_url}/fail`` with the error as its body (the job fails, retryably).

Anything else is answered 404; a finished job's URL is forgotten.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import httptools

ProgressFn = Callable[[float | None, str | None], None]


@dataclass(slots=True)
class _Pending:
    outcome: asyncio.Future[tuple[bool, bytes]]
    progress: ProgressFn


@dataclass(slots=True)
class _Request:
    url: bytes = b""
    body: list[bytes] = field(default_factory=list)
    complete: bool = False


class _Parser:
    """httptools callbacks collecting one request."""

    def __init__(self) -> None:
        self.request = _Request()

    def on_url(self, url: bytes) -> None:
        self.request.url += url

    def on_body(self, body: bytes) -> None:
        self.request.body.append(body)

    def on_message_complete(self) -> None:
        self.request.complete = True


class CallbackServer:
    def __init__(self, listen: str, public_url: str = "") -> None:
        host, _, port = listen.rpartition(":")
        self.host = host or "127.0.0.1"
        self.port = int(port or 0)
        self.public_url = public_url.rstrip("/")
        self._server: asyncio.Server | None = None
        self._pending: dict[str, _Pending] = {}

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        if not self.public_url:
            self.public_url = f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        for pending in self._pending.values():
            if not pending.outcome.done():
                pending.outcome.cancel()

    def expect(self, job_id: int, progress: ProgressFn) -> tuple[str, asyncio.Future[tuple[bool, bytes]]]:
        """A callback URL for this job and the future its answer resolves: (ok, body)."""
        key = f"{job_id}/{secrets.token_urlsafe(12)}"
        outcome: asyncio.Future[tuple[bool, bytes]] = asyncio.get_running_loop().create_future()
        self._pending[key] = _Pending(outcome, progress)
        outcome.add_done_callback(lambda _: self._pending.pop(key, None))
        return f"{self.public_url}/jobs/{key}", outcome

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                callbacks = _Parser()
                parser = httptools.HttpRequestParser(callbacks)
                while not callbacks.request.complete:
                    data = await reader.read(65536)
                    if not data:
                        return
                    parser.feed_data(data)
                status = self._handle(parser.get_method(), callbacks.request)
                writer.write(f"HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n".encode())
                await writer.drain()
                if not parser.should_keep_alive():
                    return
        except (httptools.HttpParserError, ConnectionError):
            return
        finally:
            writer.close()

    def _handle(self, method: bytes, request: _Request) -> str:
        path = request.url.decode("latin-1").split("?", 1)[0]
        if method != b"POST" or not path.startswith("/jobs/"):
            return "404 Not Found"
        parts = path[len("/jobs/") :].split("/")
        key, action = "/".join(parts[:2]), "/".join(parts[2:])
        pending = self._pending.get(key)
        if pending is None or pending.outcome.done():
            return "404 Not Found"
        body = b"".join(request.body)
        if action == "":
            pending.outcome.set_result((True, body))
        elif action == "fail":
            pending.outcome.set_result((False, body))
        elif action == "progress":
            try:
                update = cast(dict[str, object], json.loads(body or b"{}"))
                value = update.get("progress")
                message = update.get("message")
                pending.progress(
                    float(value) if isinstance(value, int | float) else None,
                    str(message) if message is not None else None,
                )
            except (ValueError, AttributeError):
                return "400 Bad Request"
        else:
            return "404 Not Found"
        return "200 OK"
