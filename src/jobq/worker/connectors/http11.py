"""A small HTTP/1.1 client for the ``http`` connector's hot path: keep-alive connections on the
event loop, responses parsed by ``httptools`` (llhttp, a dependency already).

Why not httpx: on the project's 2-vCPU machine httpx does about 1,200 round trips a second to a
no-op local service, which would make the connector, not the service, the bottleneck; this
client does an order of magnitude more (``python -m bench.connectors``). It speaks only what a
worker needs of a service: one request at a time per connection, ``Content-Length`` or chunked
or close-delimited bodies, ``http`` and ``https``; no redirects, proxies or compression.
"""

from __future__ import annotations

import asyncio
import errno
import ssl
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import urlsplit

import httptools


class HttpError(ConnectionError):
    """The service could not be reached, or the connection broke before a whole response."""


@dataclass(slots=True)
class Response:
    status: int
    #: The headers as received (names and values undecoded: most answers never need them).
    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""

    def header(self, name: str, default: str | None = None) -> str | None:
        wanted = name.lower().encode("latin-1")
        for key, value in self.raw_headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return default


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL points: scheme, host, port, and the path with its query."""

    tls: bool
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        tls = parts.scheme == "https"
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        return cls(tls, parts.hostname, parts.port or (443 if tls else 80), path)

    @property
    def origin(self) -> tuple[bool, str, int]:
        return (self.tls, self.host, self.port)


_Waiter = tuple["asyncio.Future[Response]", "asyncio.TimerHandle | None"]


class _Gate:
    """A semaphore whose free path costs no coroutine (``asyncio.Semaphore`` costs two)."""

    def __init__(self, size: int) -> None:
        self.free = size
        self.waiting: deque[asyncio.Future[None]] = deque()

    async def wait(self) -> None:
        """Wait for a slot (call only when ``free`` is 0)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.leave()  # handed a slot while being cancelled: pass it on
            raise

    def leave(self) -> None:
        while self.waiting:
            waiter = self.waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes straight to the next in line
                return
        self.free += 1


class _Connection(asyncio.Protocol):
    """One keep-alive connection. Answers come back in the order of the requests, so several
    may be in flight (pipelining); requests written in one event-loop turn then leave in one
    write when ``coalesce`` is on."""

    def __init__(self, coalesce: bool = False) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiters: deque[_Waiter] = deque()
        self.response = Response(0)
        self.body: list[bytes] = []
        self.closed = False
        self.keep_alive = True
        self.received = False  # any byte since the connection last had nothing in flight
        self.idle_since = 0.0
        self.coalesce = coalesce
        self._out: list[bytes] = []
        self._delimited_by_close = False

    # ---- asyncio
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        self.idle_since = asyncio.get_running_loop().time()

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail_all(HttpError(f"malformed HTTP response: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiters and self._delimited_by_close and self.response.status:
            self._finish()
        self._fail_all(HttpError("connection closed by the service before a whole response"))

    # ---- httptools callbacks
    def on_message_begin(self) -> None:
        self.response = Response(0)
        self.body = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.response.raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.response.status = self.parser.get_status_code()
        self._delimited_by_close = not any(
            key.lower() == b"content-length" or (key.lower() == b"transfer-encoding" and b"chunked" in value)
            for key, value in self.response.raw_headers
        )

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        self._finish()
        if not self.keep_alive:
            self.close()

    # ---- plumbing
    def _finish(self) -> None:
        self.response.body = b"".join(self.body)
        self.body = []
        if not self.waiters:
            return
        waiter, timer = self.waiters.popleft()
        if timer is not None:
            timer.cancel()
        if not waiter.done():  # a request whose job was cancelled meanwhile: its answer is dropped
            waiter.set_result(self.response)
        if not self.waiters:
            self.idle_since = asyncio.get_running_loop().time()

    def _fail_all(self, exc: Exception) -> None:
        while self.waiters:
            waiter, timer = self.waiters.popleft()
            if timer is not None:
                timer.cancel()
            if not waiter.done():
                waiter.set_exception(exc)

    def _timed_out(self, waiter: asyncio.Future[Response]) -> None:
        if not waiter.done():
            waiter.set_exception(TimeoutError("no whole response in time"))
        self.close()  # the answers after it could no longer be told apart

    def send(self, data: bytes, timeout: float | None) -> asyncio.Future[Response]:
        """Write a request; the future resolves with its response (a timer rather than
        ``asyncio.wait_for``, which costs a task per request)."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Response] = loop.create_future()
        timer = None if timeout is None else loop.call_later(timeout, self._timed_out, waiter)
        if not self.waiters:
            self.received = False
        self.waiters.append((waiter, timer))
        if not self.coalesce:
            self.transport.write(data)
        else:
            if not self._out:
                loop.call_soon(self._flush)
            self._out.append(data)
        return waiter

    def _flush(self) -> None:
        if self._out and not self.closed and self.transport is not None:
            self.transport.write(b"".join(self._out))
        self._out.clear()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Http11Client:
    """Keep-alive connections per origin, at most ``limit`` at once to each, and with
    ``pipeline`` > 1 up to that many requests in flight on each (for services that answer
    pipelined requests, as HTTP/1.1 requires; most do). Pipelining trades head-of-line blocking
    for fewer connections and fewer system calls: worth it for many short requests."""

    def __init__(
        self,
        *,
        limit: int = 100,
        pipeline: int = 1,
        connect_timeout: float = 5.0,
        idle_timeout: float = 4.0,
        user_agent: str = "jobq",
    ) -> None:
        self.limit = limit
        self.pipeline = max(1, pipeline)
        self.connect_timeout = connect_timeout
        #: Idle connections older than this are not reused (servers close theirs: uvicorn after 5 s).
        self.idle_timeout = idle_timeout
        self.user_agent = user_agent
        self._idle: dict[tuple[bool, str, int], deque[_Connection]] = {}  # pipeline == 1
        self._shared: dict[tuple[bool, str, int], list[_Connection]] = {}  # pipeline > 1
        self._connecting: dict[tuple[bool, str, int], asyncio.Lock] = {}
        self._slots: dict[tuple[bool, str, int], _Gate] = {}
        self._heads: dict[tuple[str, Target], bytes] = {}
        self._ssl: ssl.SSLContext | None = None

    async def request(
        self,
        method: str,
        url: str | Target,
        *,
        body: bytes = b"",
        headers: Mapping[str, str] | bytes | None = None,
        timeout: float | None = None,
    ) -> Response:
        """One request; raises :class:`HttpError` when the service cannot be reached or the
        connection breaks, ``TimeoutError`` when ``timeout`` seconds pass without an answer.
        ``headers`` may be given encoded already (``b"name: value\\r\\n"`` lines).

        A kept-alive connection that the service closed before answering a single byte is
        retried once on a new connection, whatever the method: that is a service dropping an
        idle connection, not one that saw the request (jobs are at-least-once anyway)."""
        target = url if isinstance(url, Target) else Target.parse(url)
        gate = self._slots.get(target.origin)
        if gate is None:
            gate = self._slots[target.origin] = _Gate(self.limit * self.pipeline)
        data = self._encode(method, target, body, headers)
        if gate.free > 0:
            gate.free -= 1
        else:
            await gate.wait()
        try:
            if self.pipeline > 1:
                return await self._pipelined(target, data, timeout)
            for attempt in (1, 2):
                conn, reused = self._reuse(target)
                if conn is None:
                    conn = await self._connect(target)
                try:
                    response = await conn.send(data, timeout)
                except HttpError:
                    conn.close()
                    if reused and attempt == 1 and not conn.received:
                        continue
                    raise
                except BaseException:
                    conn.close()
                    raise
                if conn.keep_alive and not conn.closed:
                    self._idle.setdefault(target.origin, deque()).append(conn)
                else:
                    conn.close()
                return response
            raise AssertionError("unreachable")
        finally:
            gate.leave()

    async def _pipelined(self, target: Target, data: bytes, timeout: float | None) -> Response:
        """On the first open connection with room: requests pack onto few connections, so those
        of one event-loop turn leave in one write. New connections open one at a time."""
        conn = self._room(target)
        if conn is None:
            lock = self._connecting.setdefault(target.origin, asyncio.Lock())
            async with lock:
                conn = self._room(target)
                if conn is None:
                    conn = await self._connect(target, coalesce=True)
                    self._shared.setdefault(target.origin, []).append(conn)
        # A cancelled job leaves its answer to be dropped: the connection stays for the others.
        return await conn.send(data, timeout)

    def _room(self, target: Target) -> _Connection | None:
        pool = self._shared.get(target.origin)
        if not pool:
            return None
        now = asyncio.get_running_loop().time()
        for conn in list(pool):
            stale = not conn.waiters and now - conn.idle_since > self.idle_timeout
            if conn.closed or not conn.keep_alive or stale:
                conn.close()
                pool.remove(conn)
            elif len(conn.waiters) < self.pipeline:
                return conn
        return None

    def _reuse(self, target: Target) -> tuple[_Connection | None, bool]:
        idle = self._idle.get(target.origin)
        if idle:
            now = asyncio.get_running_loop().time()
            while idle:
                conn = idle.pop()
                if not conn.closed and now - conn.idle_since < self.idle_timeout:
                    return conn, True
                conn.close()
        return None, False

    async def _connect(self, target: Target, *, coalesce: bool = False) -> _Connection:
        loop = asyncio.get_running_loop()
        if target.tls and self._ssl is None:
            self._ssl = ssl.create_default_context()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(coalesce),
                    target.host,
                    target.port,
                    ssl=self._ssl if target.tls else None,
                ),
                self.connect_timeout,
            )
        except (OSError, TimeoutError) as exc:
            raise HttpError(describe_connect_error(exc, target)) from exc
        return conn

    def _encode(
        self, method: str, target: Target, body: bytes, headers: Mapping[str, str] | bytes | None
    ) -> bytes:
        head = self._heads.get((method, target))
        if head is None:
            host = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
            text = f"{method} {target.path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: {self.user_agent}\r\n"
            head = self._heads[(method, target)] = text.encode("latin-1")
            if len(self._heads) > 1000:  # many distinct URLs (polling): keep the cache small
                self._heads.clear()
        if isinstance(headers, bytes):
            lines = headers
        else:
            lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items()).encode("latin-1") if headers else b""
        sized = body or method in ("POST", "PUT", "PATCH")
        length = b"content-length: %d\r\n\r\n" % len(body) if sized else b"\r\n"
        return b"".join((head, lines, length, body))

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        for pool in self._shared.values():
            for conn in pool:
                conn.close()
        self._idle.clear()
        self._shared.clear()
        await asyncio.sleep(0)


def describe_connect_error(exc: BaseException, target: Target) -> str:
    """``connection refused`` and the like, the words ``explain`` and ``jobq workers`` show."""
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return f"no connection to {target.host}:{target.port} (timed out)"
    return f"cannot connect to {target.host}:{target.port}: {exc or type(exc).__name__}"
