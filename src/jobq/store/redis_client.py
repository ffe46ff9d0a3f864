"""Talking to Redis, for the Redis store: connection pools, a timeout on every call, and what an
unreachable Redis turns into.

Every call has a timeout. While Redis cannot be reached each call raises
:class:`~jobq.errors.Unavailable` with the reason, the outage is logged once, and the client
recovers by itself: after a failure the idle pooled connections are dropped (they are dead),
new ones are made on the next call, and ``on_ready`` is called when Redis answers again (the
hub dispatches then). redis-py's own retries are off: a script whose reply was lost may have
run, and only the caller (with its idempotency key or fencing token) can retry it safely.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobq.errors import JobqError, Unavailable
from jobq.store.redis_line import LineSlot, ReplyError, line_settings

log = logging.getLogger("jobq.store.redis")

#: Errors that mean Redis cannot be reached (or cannot answer) right now.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError)
#: Error replies of a Redis that is there but cannot serve now: treated as unreachable.
NOT_SERVING = ("BUSY", "LOADING", "MASTERDOWN", "READONLY", "TRYAGAIN", "CLUSTERDOWN")
#: Error replies that say Redis lacks the script or function called (restarted empty, flushed).
MISSING = ("NOSCRIPT", "ERR Function not found", "Function not found")
#: Connections of the pool that blocking reads (the bus) use.
READER_CONNECTIONS = 2


class RedisClient:
    """One namespace of one Redis: ``key()`` names its keys, ``cmd``/``pipeline`` talk to it,
    ``call`` runs a script (or another quick command) on one pipelined connection
    (``redis_line``), ``read`` makes blocking reads on a connection of its own."""

    def __init__(
        self, url: str, *, tag: str, timeout: float, max_connections: int, name: str, block: float
    ) -> None:
        parts = urlsplit(url)
        self.url = url
        #: host:port/db, for messages (never the password).
        self.where = f"{parts.hostname or 'localhost'}:{parts.port or 6379}{parts.path or '/0'}"
        #: Every key starts with this: the hash tag keeps the namespace on one cluster slot.
        self.tag = tag
        self.timeout = timeout
        self.max_connections = max_connections
        self.name = name
        #: Seconds a blocking read may wait for news, beyond ``timeout``.
        self.block = block
        #: Called when Redis answers again after an outage.
        self.on_ready: Callable[[], None] | None = None
        self._redis: Redis | None = None
        self._reader: Redis | None = None
        #: The pipelined connections (``redis_line``) of ``call`` and of ``read``; None for a
        #: connection they do not speak (TLS): then redis-py's pools serve both.
        self._quick: LineSlot | None = None
        self._blocking: LineSlot | None = None
        self._healthy = True

    def key(self, *parts: str | int) -> str:
        return self.tag + ":".join(str(p) for p in parts)

    # ------------------------------------------------------------------ connections

    def connect(self) -> None:
        """Make the connection pools (connections are made when first needed)."""
        self._redis = self._pool(self.max_connections, self.timeout)
        self._reader = self._pool(READER_CONNECTIONS, self.timeout + self.block)
        pool = self._redis.connection_pool
        settings = line_settings(pool.connection_kwargs, pool.connection_class)
        if settings is not None:
            self._quick = LineSlot(settings, self.timeout)
            self._blocking = LineSlot(settings, self.timeout + self.block)

    async def close(self) -> None:
        for slot in (self._quick, self._blocking):
            if slot is not None:
                slot.close()
        for client in (self._redis, self._reader):
            if client is not None:
                await client.aclose(close_connection_pool=True)
        self._redis = self._reader = None

    def _pool(self, size: int, read_timeout: float) -> Redis:
        pool = BlockingConnectionPool.from_url(
            self.url,
            max_connections=size,
            timeout=self.timeout,
            socket_timeout=read_timeout,
            socket_connect_timeout=self.timeout,
            # No retries inside redis-py: a script whose reply was lost may have run, and only
            # the caller (with its idempotency key or fencing token) can retry it safely.
            retry=Retry(NoBackoff(), 0),
            client_name=self.name,
        )
        return Redis(connection_pool=pool)

    @property
    def connected(self) -> bool:
        return self._redis is not None

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise Unavailable("the redis store is not open")
        return self._redis

    # ------------------------------------------------------------------ reachability

    def _unreachable(self, exc: BaseException) -> Unavailable:
        reason = str(exc) or type(exc).__name__
        if self._healthy:
            self._healthy = False
            log.warning("redis at %s is unreachable: %s", self.where, reason)
        return Unavailable(
            f"the store is unavailable: redis at {self.where} did not answer ({reason})",
            hint="the hub recovers by itself when redis is back; try again later",
        )

    def _answered(self) -> None:
        if not self._healthy:
            self._healthy = True
            log.info("redis at %s answers again", self.where)
            if self.on_ready is not None:
                self.on_ready()

    @staticmethod
    async def _forget_connections(client: Redis) -> None:
        """Close the idle pooled connections: after an outage they are dead, and a call that
        took one would fail once more (redis-py retries nothing here, on purpose)."""
        with contextlib.suppress(Exception):
            await client.connection_pool.disconnect(inuse_connections=False)

    # ------------------------------------------------------------------ calls

    async def _run(self, client: Redis, args: Sequence[Any], timeout: float) -> Any:
        try:
            async with asyncio.timeout(timeout):
                reply = await client.execute_command(*args)  # type: ignore[no-untyped-call]
        except NoScriptError:
            raise
        except ResponseError as exc:
            if str(exc).startswith(MISSING):
                raise NoScriptError(str(exc)) from None
            if str(exc).startswith(NOT_SERVING):
                raise self._unreachable(exc) from None
            raise JobqError(f"redis refused a command: {exc}") from None
        except UNREACHABLE as exc:
            await self._forget_connections(client)
            raise self._unreachable(exc) from None
        self._answered()
        return reply

    async def cmd(self, *args: Any) -> Any:
        """One command. A script or function Redis does not know raises redis-py's
        ``NoScriptError``."""
        return await self._run(self.redis, args, self.timeout)

    async def call(self, *args: Any) -> Any:
        """A command that never blocks Redis, on the pipelined connection, its reply as Redis
        gave it (no redis-py parsing: for ``FCALL``, ``EVALSHA``, ``XADD``...). A script or
        function Redis does not know raises ``NoScriptError``."""
        if self._quick is None:
            return await self.cmd(*args)  # TLS: through redis-py
        return await self._on(self._quick, args)

    async def read(self, *args: Any) -> Any:
        """A blocking read (of the bus), on a connection of its own: one at a time. Its reply is
        as Redis gave it, or as redis-py parsed it over TLS."""
        if self._blocking is None:
            if self._reader is None:
                raise Unavailable("the redis store is not open")
            return await self._run(self._reader, args, self.timeout + self.block)
        return await self._on(self._blocking, args)

    async def _on(self, slot: LineSlot, args: Sequence[Any]) -> Any:
        line = slot.line
        try:
            if line is None or not line.usable:
                line = await slot.get()
            reply = await line.call(args)  # (the line times its calls out itself)
        except UNREACHABLE as exc:
            slot.drop(line)  # broken or timed out: the next call connects anew
            raise self._unreachable(exc) from None
        if isinstance(reply, ReplyError):
            message = str(reply)
            if message.startswith(MISSING):
                raise NoScriptError(message)
            if message.startswith(NOT_SERVING):
                raise self._unreachable(reply)
            raise JobqError(f"redis refused a command: {message}")
        if not self._healthy:
            self._answered()
        return reply

    async def pipeline(self, commands: Sequence[Sequence[Any]], *, transaction: bool = False) -> list[Any]:
        """Several commands in one round trip (``MULTI``/``EXEC`` with ``transaction``)."""
        if not commands:
            return []
        try:
            async with asyncio.timeout(self.timeout):
                pipe = self.redis.pipeline(transaction=transaction)
                for command in commands:
                    pipe.execute_command(*command)
                replies = await pipe.execute()
        except ResponseError as exc:
            raise JobqError(f"redis refused a command: {exc}") from None
        except UNREACHABLE as exc:
            await self._forget_connections(self.redis)
            raise self._unreachable(exc) from None
        self._answered()
        return replies
