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
reads); blocking reads of the bus keep connections of their own (``RedisClient.read``).
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

    def __init__(self) -> None:
        self._parser = hiredis.Reader(replyError=ReplyError)
        self._waiting: deque[asyncio.Future[Any]] = deque()
        self._transport: asyncio.Transport | None = None
        self._lost: LineLost | None = None

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        parser = self._parser
        parser.feed(data)
        waiting = self._waiting
        try:
            while (reply := parser.gets()) is not False:  # RESP2 has no boolean: False is "no more"
                waiter = waiting.popleft()
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
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._transport.write(packed)
        return waiter

    def close(self, reason: LineLost | None = None) -> None:
        """Close the connection; calls still waiting fail with ``reason``."""
        self._fail(reason or LineLost("the connection to redis was closed"))
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, reason: LineLost) -> None:
        if self._lost is None:
            self._lost = reason
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
    """Connect, authenticate, select the database and name the connection, within ``timeout``."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        if "path" in settings:
            _, line = await loop.create_unix_connection(Line, settings["path"])
        else:
            _, line = await loop.create_connection(Line, settings["host"], settings["port"])
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
