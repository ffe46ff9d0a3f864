"""How the Redis store's scripts reach Redis (``store/redis_scripts.py``): as functions of one
library on Redis 7 and later, by digest before; each call starting from its own state; and a
Redis that lost them (restarted empty, flushed) getting them again."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis

from jobq.core.model import Completion, JobSpec, WorkerInfo
from jobq.core.states import JobState
from jobq.errors import JobqError
from jobq.store.redis import RedisStore
from jobq.store.redis_client import RedisClient
from jobq.store.redis_scripts import SCRIPTS
from tests.redis_helpers import REDIS_URL, Namespace, open_redis, require_redis


@pytest.fixture
def namespaces() -> Iterator[list[Namespace]]:
    require_redis()
    spaces = [Namespace(), Namespace()]
    yield spaces
    for space in spaces:
        space.cleanup()


@pytest.fixture
async def store(namespaces: list[Namespace]) -> AsyncIterator[RedisStore]:
    opened = await open_redis(namespaces[0].url)
    yield opened
    await opened.close()


def _sync() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL)


def _flat(reply: Any) -> Iterator[Any]:
    """Every value of a nested RESP reply (FUNCTION LIST's maps come as flat lists)."""
    if isinstance(reply, list | tuple):
        for item in reply:
            yield from _flat(item)
    else:
        yield reply


async def _one_job_through(store: RedisStore, worker: str = "w1") -> None:
    """A job submitted, claimed and completed: each of the three hot scripts ran."""
    now = time.time()
    await store.attach_worker(WorkerInfo(id=worker, services=["s"], slots=4), now)
    [submitted] = await store.submit([JobSpec(service="s", payload=[b"p"])], now)
    [job] = await store.claim(worker, 1, now, now + 30)
    assert job.id == submitted.job.id
    [done] = await store.complete([Completion(job_id=job.id, token=job.token, result=[b"r"])], now)
    assert not isinstance(done, Exception) and done.state is JobState.COMPLETED


async def test_the_scripts_are_functions_of_one_library(store: RedisStore) -> None:
    await _one_job_through(store)
    sync = _sync()
    try:
        listing = sync.function_list(library=store.scripts.library)
    finally:
        sync.close()
    prefix = f"{store.scripts.library}_".encode()
    names = {
        value.decode() for value in _flat(listing) if isinstance(value, bytes) and value.startswith(prefix)
    }
    assert names == {f"{store.scripts.library}_{name}" for name in SCRIPTS}
    assert store.scripts.functions


async def test_each_call_starts_from_its_own_namespace_and_state(namespaces: list[Namespace]) -> None:
    # Two namespaces, one library: a call for one after a call for the other writes its own keys
    # and its own counts (begin() sets them anew; a library's top level runs only once).
    first, second = await open_redis(namespaces[0].url), await open_redis(namespaces[1].url)
    try:
        for _ in range(3):
            await _one_job_through(first)
            await _one_job_through(second, "w2")
        await first.submit([JobSpec(service="s", payload=[b"p"])], time.time())
        assert (await first.stats()).by_state.get("queued") == 1
        assert not (await second.stats()).by_state.get("queued")
        assert len(namespaces[0].keys()) > 0 and len(namespaces[1].keys()) > 0
    finally:
        await first.close()
        await second.close()


async def test_a_redis_that_lost_the_library_gets_it_again(store: RedisStore) -> None:
    await _one_job_through(store)
    sync = _sync()
    try:
        sync.function_delete(store.scripts.library)
    finally:
        sync.close()
    await _one_job_through(store, "w2")


async def test_without_functions_the_scripts_run_by_digest(
    namespaces: list[Namespace], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A Redis before 7 has no FUNCTION command: the store loads and calls each script instead.
    cmd = RedisClient.cmd

    async def no_functions(self: RedisClient, *args: Any) -> Any:
        if str(args[0]).upper() in ("FUNCTION", "FCALL"):
            raise JobqError("redis refused a command: ERR unknown command 'FUNCTION'")
        return await cmd(self, *args)

    monkeypatch.setattr(RedisClient, "cmd", no_functions)
    store = await open_redis(namespaces[0].url)
    try:
        assert not store.scripts.functions
        await _one_job_through(store)
        sync = _sync()
        try:
            sync.script_flush()  # and a Redis that lost them gets each again
        finally:
            sync.close()
        await _one_job_through(store, "w2")
    finally:
        await store.close()
