"""Redis for tests: a private key namespace per test on the shared server, removed afterwards.

The server is ``JOBQ_TEST_REDIS`` (default ``redis://127.0.0.1:6379/9``). Without a reachable
server the Redis tests are skipped, except in CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from jobq.store.base import open_store
from jobq.store.redis import RedisStore
from tests.helpers import Proc, start_hub

REDIS_URL = os.environ.get("JOBQ_TEST_REDIS", "redis://127.0.0.1:6379/9")


def require_redis() -> None:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no redis at {REDIS_URL}: {exc}")
    finally:
        client.close()


class Namespace:
    """A key prefix of its own; ``url`` is a store URL using it."""

    def __init__(self, base: str = REDIS_URL, **options: str) -> None:
        self.prefix = f"jobq-test-{uuid.uuid4().hex[:12]}"
        self.base = base
        query = "&".join(f"{k}={v}" for k, v in {"prefix": self.prefix, **options}.items())
        self.url = f"{base}?{query}"

    def keys(self) -> list[bytes]:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            return list(client.scan_iter(match="{" + self.prefix + "}:*", count=1000))
        finally:
            client.close()

    def cleanup(self) -> None:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match="{" + self.prefix + "}:*", count=1000))
            for start in range(0, len(keys), 500):
                client.delete(*keys[start : start + 500])
        finally:
            client.close()


def forget_libraries() -> None:
    """Delete the function libraries jobq's hubs loaded into the test server (functions live in
    the server, in no DB and under no prefix). A hub still using one loads it again."""
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=2)
    except redis.RedisError:
        return
    try:
        for library in client.function_list(library="jobq_*"):
            name = library[library.index(b"library_name") + 1]
            client.function_delete(name)
    except redis.RedisError:
        return  # no server, or one without functions: nothing was left
    finally:
        client.close()


async def open_redis(url: str, now: float = 1_000_000.0) -> RedisStore:
    """The Redis store at ``url`` (a :class:`Namespace`'s), opened at ``now``."""
    store = open_store(url)
    assert isinstance(store, RedisStore)
    await store.open(now)
    return store


@contextlib.contextmanager
def hubs_on_redis(tmp: Path, procs: list[Proc], *names: str) -> Iterator[list[tuple[Proc, str]]]:
    """Hub processes sharing one fresh namespace (the test is skipped without Redis), one per
    name, each in ``procs``: their processes and endpoints. The namespace goes afterwards."""
    require_redis()
    namespace = Namespace()
    try:
        hubs = []
        for name in names:
            hub, endpoint = start_hub(tmp, store=namespace.url, name=name)
            procs.append(hub)
            hubs.append((hub, endpoint))
        yield hubs
    finally:
        namespace.cleanup()


class Proxy:
    """A TCP proxy on a free loopback port in front of the test Redis, to make it unreachable
    without touching the shared server: ``refuse()`` closes every connection and refuses new
    ones, ``blackhole()`` accepts and forwards nothing (calls time out), ``restore()`` heals.
    It runs on a thread of its own, so a test may block (starting a hub) while it serves."""

    def __init__(self, target: str = REDIS_URL) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.db = parts.path or "/0"
        self.port = 0
        self.mode = "forward"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="redis-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}{self.db}"

    def _call(self, fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
        asyncio.run_coroutine_threadsafe(fn(), self._loop).result(10)

    def start(self) -> Proxy:
        self._thread.start()
        self._call(self._listen)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        if self.mode != "forward":
            return  # blackhole: hold it open, say nothing
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._open.add(up_writer)
        for a, b in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pump(a, b))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.mode == "forward":
                    writer.write(data)
                    await writer.drain()
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._open.discard(writer)

    async def _drop_all(self) -> None:
        for writer in list(self._open):
            writer.close()
        self._open.clear()

    async def _refuse(self) -> None:
        self.mode = "refuse"
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._drop_all()

    async def _blackhole(self) -> None:
        self.mode = "blackhole"

    async def _restore(self) -> None:
        if self.mode == "blackhole":
            await self._drop_all()  # connections that saw a gap are not trusted again
        self.mode = "forward"
        if self._server is None:
            await self._listen()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        await self._drop_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def refuse(self) -> None:
        self._call(self._refuse)

    def blackhole(self) -> None:
        self._call(self._blackhole)

    def restore(self) -> None:
        self._call(self._restore)

    def close(self) -> None:
        if self._thread.is_alive():
            self._call(self._close)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()
