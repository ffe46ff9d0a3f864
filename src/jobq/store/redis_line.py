"""One connection to Redis for the store's scripts: each call written at once, replies read in
order, so the calls of one event-loop turn share a round trip (issue 16).

Every job moves through Redis by scripts (submit, claim, complete); through redis-py each
``EVALSHA`` cost the hub 150 to 200 µs of CPU (a pooled connection taken and given back, its
lock, the command's parsing hooks), three times a job. A script's reply needs none of that: it
is the raw RESP value. Here a call is ``hiredis.pack_command`` and one ``transport.write``; the
replies are parsed by hiredis in ``data_received`` and handed to the callers' futures in the
order they were sent (Redis answers one connection's commands in order). About 50 µs a call,
kernel included (docs/performance.md). Calls made in the same turn leave in one segment, as a
pipeline would send them, without anyone having to gather them.

Only commands that cannot block Redis's answer to the next one belong here (scripts, quick
reads); blocking reads of the bus keep connections of their own (``RedisClient.read``). A call
not answered within the line's ``timeout`` closes the connection, failing every call still
waiting (Redis answers in order: the ones behind it cannot be answered either); one timer per
line watches the oldest call, so a call costs no timer of its own.
Connecting (``open_line``) takes the address, credentials, database and client name from the
redis-py pool the store already made from its URL, so both speak to the same place.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence
from typing import Any, cast

import hiredis
from redis.asyncio.connection import Connection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError


class ReplyError(Exception):
    """An error reply (``-ERR ...``, ``-NOSCRIPT ...``): returned to the caller, never raised
    inside the protocol (hiredis makes one of these for each error reply)."""


class LineLost(RedisConnectionError):
    """The connection closed (or broke) with calls still waiting for their replies."""


class Line(asyncio.Protocol):
    """A RESP2 connection whose calls are answered in the order they were written."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._parser = hiredis.Reader(replyError=ReplyError)
        self._waiting: deque[asyncio.Future[Any]] = deque()
        #: When each waiting call was written (loop time), in the same order.
        self._sent: deque[float] = deque()
        self._loop = asyncio.get_running_loop()
        self._watch: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None
        self._lost: LineLost | None = None

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        parser.feed(data)
        waiting, sent = self._waiting, self._sent
        try:
            while (reply := parser.gets()) is not False:  # RESP2 has no boolean: False is "no more"
                waiter = waiting.popleft()
                sent.popleft()
                if not waiter.done():  # its caller gave up (timeout): the reply is dropped
                    waiter.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            # Bytes that are not RESP, or a reply nobody asked for: nothing after them can be
            # trusted to answer the right caller.
            self.close(LineLost(f"redis sent what this client cannot read ({type(exc).__name__})"))

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f"the connection to redis was lost ({exc})" if exc else "redis closed the connection"
        self._fail(LineLost(reason))

    # ------------------------------------------------------------------ calls

    @property
    def usable(self) -> bool:
        return self._lost is None and self._transport is not None

    def call(self, args: Sequence[Any]) -> asyncio.Future[Any]:
        """Write one command; the future gets its reply (a ``ReplyError`` for an error reply)."""
        if self._lost is not None or self._transport is None:
            raise self._lost or LineLost("the connection to redis is not open")
        packed = hiredis.pack_command(tuple(args))  # before the future: bad arguments raise here
        waiter: asyncio.Future[Any] = self._loop.create_future()
        self._waiting.append(waiter)
        self._sent.append(self._loop.time())
        self._transport.write(packed)
        if self._watch is None:
            self._watch = self._loop.call_later(self.timeout, self._check)
        return waiter

    def _check(self) -> None:
        """The watch: close the line if its oldest call has waited ``timeout``, else look again
        when it will have (or not at all while nothing waits)."""
        self._watch = None
        if not self._sent or self._lost is not None:
            return
        waited = self._loop.time() - self._sent[0]
        if waited >= self.timeout:
            self.close(LineLost(f"no reply within {self.timeout:g}s"))
        else:
            self._watch = self._loop.call_later(self.timeout - waited, self._check)

    def close(self, reason: LineLost | None = None) -> None:
        """Close the connection; calls still waiting fail with ``reason``."""
        self._fail(reason or LineLost("the connection to redis was closed"))
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, reason: LineLost) -> None:
        if self._lost is None:
            self._lost = reason
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self._sent.clear()
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(self._lost)


def line_settings(kwargs: dict[str, Any], connection_class: type) -> dict[str, Any] | None:
    """Where and how to connect, from a redis-py pool's ``connection_kwargs``; None for a kind
    of connection this client does not speak (TLS): the caller keeps redis-py for it."""
    if connection_class is UnixDomainSocketConnection:
        where: dict[str, Any] = {"path": kwargs["path"]}
    elif connection_class is Connection:
        where = {"host": kwargs.get("host", "localhost"), "port": int(kwargs.get("port", 6379))}
    else:
        return None
    return {
        **where,
        "username": kwargs.get("username"),
        "password": kwargs.get("password"),
        "db": int(kwargs.get("db") or 0),
        "client_name": kwargs.get("client_name"),
    }


async def open_line(settings: dict[str, Any], timeout: float) -> Line:
    """Connect, authenticate, select the database and name the connection, within ``timeout``
    (which is also how long any call on the line may wait for its reply)."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        if "path" in settings:
            _, line = await loop.create_unix_connection(lambda: Line(timeout), settings["path"])
        else:
            _, line = await loop.create_connection(lambda: Line(timeout), settings["host"], settings["port"])
        try:
            hello: list[tuple[Any, ...]] = []
            if settings["password"] is not None:
                user = settings["username"]
                hello.append(("AUTH", user, settings["password"]) if user else ("AUTH", settings["password"]))
            if settings["db"]:
                hello.append(("SELECT", settings["db"]))
            if settings["client_name"]:
                hello.append(("CLIENT", "SETNAME", settings["client_name"]))
            for reply in await asyncio.gather(*(line.call(command) for command in hello)):
                if isinstance(reply, ReplyError):
                    raise LineLost(f"redis refused the connection: {reply}")
        except BaseException:
            line.close()
            raise
    return line


class LineSlot:
    """One line kept open for a purpose: made when first needed, made anew after it broke."""

    def __init__(self, settings: dict[str, Any], timeout: float) -> None:
        self.settings = settings
        self.timeout = timeout
        self.line: Line | None = None
        self._opening: asyncio.Lock | None = None

    async def get(self) -> Line:
        line = self.line
        if line is not None and line.usable:
            return line
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:  # one connection, however many calls wait for it
            if self.line is None or not self.line.usable:
                self.line = await open_line(self.settings, self.timeout)
            return self.line

    def drop(self, line: Line | None) -> None:
        """Close ``line`` if it is still this slot's (a call on it failed)."""
        if line is not None and line is self.line:
            line.close()
            self.line = None

    def close(self) -> None:
        self.drop(self.line)
