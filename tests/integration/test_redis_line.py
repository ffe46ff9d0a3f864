"""The scripts' pipelined connection (``store/redis_line.py``) against the real Redis: the same
replies redis-py gives, each caller its own reply however many wait at once, the URL's database,
credentials and client name, and what a lost or silent Redis turns into."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest
import redis

from jobq.errors import JobqError, Unavailable
from jobq.store.redis import RedisStore
from jobq.store.redis_client import RedisClient
from tests.redis_helpers import REDIS_URL, Namespace, Proxy, open_redis, require_redis

#: One reply of every RESP2 kind a script can give.
EVERY_KIND = """
if ARGV[1] == 'int' then return 42 end
if ARGV[1] == 'bulk' then return ARGV[2] end
if ARGV[1] == 'nil' then return false end
if ARGV[1] == 'array' then return {1, 'two', {3, {'four'}}, false, 'five'} end
if ARGV[1] == 'status' then return redis.status_reply('FINE') end
if ARGV[1] == 'error' then return redis.error_reply('NOPE it is refused') end
if ARGV[1] == 'set' then redis.call('SET', KEYS[1], ARGV[2]) return 1 end
"""


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    require_redis()
    ns = Namespace(timeout="1")
    yield ns
    ns.cleanup()


@pytest.fixture
async def store(namespace: Namespace) -> AsyncIterator[RedisStore]:
    opened = await open_redis(namespace.url)
    yield opened
    await opened.close()


def _sync() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL)


def _sha() -> str:
    client = _sync()
    try:
        return str(client.script_load(EVERY_KIND))
    finally:
        client.close()


async def test_replies_are_those_redis_py_gives(store: RedisStore) -> None:
    sha = _sha()
    client = store.client
    for kind in ("int", "bulk", "nil", "array", "status"):
        ours = await client.call("EVALSHA", sha, 1, client.key("x"), kind, b"\x00bytes\xff")
        theirs = await client.cmd("EVALSHA", sha, 1, client.key("x"), kind, b"\x00bytes\xff")
        assert ours == theirs, kind
    with pytest.raises(JobqError, match="NOPE it is refused"):
        await client.call("EVALSHA", sha, 1, client.key("x"), "error")


async def test_calls_made_at_once_each_get_their_own_reply(store: RedisStore) -> None:
    sha = _sha()
    client = store.client
    values = [f"value-{i}".encode() * (i % 7 + 1) for i in range(2000)]
    replies = await asyncio.gather(
        *(client.call("EVALSHA", sha, 1, client.key("x"), "bulk", value) for value in values)
    )
    assert replies == values


async def test_the_url_s_database_credentials_and_name_are_used() -> None:
    require_redis()
    parts = urlsplit(REDIS_URL)
    user, password = f"jobq-test-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    sync = _sync()
    sync.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all"])
    base = f"redis://{user}:{password}@{parts.hostname}:{parts.port or 6379}{parts.path or '/0'}"
    client = RedisClient(base, tag="{t}:", timeout=2, max_connections=4, name="jobq-line-test", block=1)
    key = f"jobq-test-line-{uuid.uuid4().hex[:8]}"
    try:
        client.connect()
        sha = _sha()
        assert await client.call("EVALSHA", sha, 1, key, "set", "here") == 1
        assert sync.get(key) == b"here"  # the URL's database (the test DB), not DB 0
        names = [c["name"] for c in sync.client_list() if c.get("user") == user]
        assert "jobq-line-test" in names
        await client.close()
        wrong = base.replace(password, "wrong")
        client = RedisClient(wrong, tag="{t}:", timeout=2, max_connections=4, name="n", block=1)
        client.connect()
        with pytest.raises(Unavailable, match="refused the connection"):
            await client.call("EVALSHA", sha, 1, key, "int")
        assert password not in str(client.where)
    finally:
        await client.close()
        sync.delete(key)
        sync.acl_deluser(user)
        sync.close()


async def test_a_killed_connection_fails_its_calls_and_the_next_call_connects_again() -> None:
    require_redis()
    name = f"jobq-test-{uuid.uuid4().hex[:8]}"
    client = RedisClient(REDIS_URL, tag="{t}:", timeout=2, max_connections=4, name=name, block=1)
    sync = _sync()
    try:
        client.connect()
        sha = _sha()
        assert await client.call("EVALSHA", sha, 1, "k", "int") == 42
        ours = [c["id"] for c in sync.client_list() if c.get("name") == name]
        assert ours
        for client_id in ours:  # only this test's connections: the server is shared
            sync.client_kill_filter(_id=client_id)
        with pytest.raises(Unavailable, match="did not answer"):
            await client.call("EVALSHA", sha, 1, "k", "int")
        assert await client.call("EVALSHA", sha, 1, "k", "int") == 42
    finally:
        await client.close()
        sync.close()


async def test_a_silent_redis_times_out_and_the_connection_is_made_anew() -> None:
    require_redis()
    proxy = Proxy().start()
    client = RedisClient(proxy.url, tag="{t}:", timeout=0.3, max_connections=4, name="n", block=1)
    try:
        client.connect()
        sha = _sha()
        assert await client.call("EVALSHA", sha, 1, "k", "int") == 42
        proxy.blackhole()
        started = time.monotonic()
        with pytest.raises(Unavailable, match="did not answer"):
            await client.call("EVALSHA", sha, 1, "k", "int")
        assert time.monotonic() - started < 2
        # calls waiting together on a line that stopped answering all fail, none hangs
        started = time.monotonic()
        failed = await asyncio.gather(
            *(client.call("EVALSHA", sha, 1, "k", "int") for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(f, Unavailable) for f in failed), failed
        assert time.monotonic() - started < 2
        proxy.restore()
        assert await client.call("EVALSHA", sha, 1, "k", "int") == 42
    finally:
        await client.close()
        proxy.close()


async def test_arguments_redis_cannot_take_are_refused_before_anything_is_sent(store: RedisStore) -> None:
    sha = _sha()
    client = store.client
    with pytest.raises(TypeError):
        await client.call("EVALSHA", sha, 1, client.key("x"), "bulk", object())
    # the connection is still in step: the next caller gets its own reply
    assert await client.call("EVALSHA", sha, 1, client.key("x"), "bulk", "after") == b"after"
