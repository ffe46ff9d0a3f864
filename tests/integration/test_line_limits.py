"""Bad input at the line door costs nothing: over-long lines, text that is not UTF-8, binary
garbage, half lines, too many connections, thousands of idle ones."""

from __future__ import annotations

import asyncio
import os
import resource

import pytest

from jobq.config import HubConfig
from jobq.core.model import JobFilter
from jobq.doors.line import LineDoor
from jobq.errors import InvalidRequest
from jobq.hub.hub import Hub
from jobq.store.memory import MemoryStore
from tests.helpers import eventually
from tests.integration.linepeer import LineHub, Peer, line_hub, once


async def test_over_long_line_is_refused_and_only_its_connection_closed() -> None:
    async with line_hub(line_max_line=1024) as lh:
        bystander = await lh.peer()
        assert await bystander.ask("JOB before") == "ID 1"
        worker = await lh.peer()
        assert await worker.ask("FETCH") == "JOB 1 before"
        offender = await lh.peer()
        await offender.send(b"JOB " + b"x" * 2000 + b"\nJOB after the long line\n")
        reply = await offender.rest()
        assert reply == b"ERR line too long (the limit is 1024 bytes)\n"
        # A line at the limit is fine; the others never noticed.
        assert await bystander.ask("JOB " + "y" * 1020) == "ID 2"
        assert await worker.ask("DONE 1") == "OK"
        jobs = await lh.hub.list_jobs(JobFilter())
        assert sorted(j.id for j in jobs) == [1, 2]
        assert lh.door.refused["too_long"] == 1


async def test_over_long_line_without_newline_is_cut_short() -> None:
    async with line_hub(line_max_line=100) as lh:
        offender = await lh.peer()
        await offender.send(b"SUBMIT " + b"z" * 500)  # never ends its line
        assert (await offender.rest()).startswith(b"ERR line too long")


async def test_a_worker_cut_off_for_an_over_long_line_loses_no_job() -> None:
    async with line_hub(line_max_line=64) as lh:
        worker = await lh.peer()
        assert await once(lh.plain, "JOB precious") == "ID 1"
        assert await worker.ask("FETCH") == "JOB 1 precious"
        await worker.send(b"DONE 1 " + b"r" * 100 + b"\n")
        assert (await worker.rest()).startswith(b"ERR line too long")
        await eventually(lambda: _state_is(lh, 1, "queued"))
        again = await lh.peer()
        assert await again.ask("FETCH") == "JOB 1 precious"


async def test_invalid_utf8_is_refused_and_the_connection_kept() -> None:
    async with line_hub() as lh:
        peer = await lh.peer()
        await peer.send(b"JOB caf\xe9\n\xff\xfe\xfd\nJOB ok\n")
        assert await peer.lines(3) == [
            "ERR line is not valid UTF-8",
            "ERR line is not valid UTF-8",
            "ID 1",
        ]
        compat = await lh.peer(compat=True)
        await compat.send(b"SUBMIT caf\xe9\nSTATUS 1\n")
        assert await compat.line() == "waiting", "a compat peer hears nothing about the bad line"


async def test_binary_garbage_gets_errors_and_nothing_else() -> None:
    async with line_hub() as lh:
        peer = await lh.peer()
        garbage = bytes(range(256)) * 4 + b"\n\x00\x01\x02\n\x1b[2J\n"
        await peer.send(garbage + b"STATUS 1\n")
        replies: list[str] = []
        while not replies or replies[-1] != "unknown":
            replies.append(await peer.line())
        assert all(r.startswith("ERR") for r in replies[:-1])
        assert await lh.hub.list_jobs(JobFilter()) == []
        assert await peer.ask("JOB still fine") == "ID 1"


async def test_half_line_at_disconnect_is_not_a_request() -> None:
    async with line_hub() as lh:
        peer = await lh.peer()
        await peer.send(b"JOB complete\nJOB half a li")
        assert await peer.line() == "ID 1"
        await peer.close()
        await eventually(lambda: not lh.door.connections)
        assert [j.id for j in await lh.hub.list_jobs(JobFilter())] == [1]


async def test_too_many_connections_are_refused_politely() -> None:
    async with line_hub(line_max_connections=5) as lh:
        peers = [await lh.peer() for _ in range(5)]
        await eventually(lambda: len(lh.door.connections) == 5)
        extra = await lh.peer()
        assert await extra.rest() == b"ERR too many connections (the limit is 5)\n"
        assert await peers[0].ask("JOB still served") == "ID 1"
        await peers[1].close()
        await eventually(lambda: len(lh.door.connections) == 4)
        assert await once(lh.plain, "STATUS 1") == "waiting"


def _raise_fd_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


async def test_thousands_of_idle_connections() -> None:
    # Both ends live in this process: two descriptors per connection.
    limit = _raise_fd_limit(5000)
    count = min(2000, (limit - 300) // 2)
    if count < 1000:
        pytest.skip(f"the descriptor limit ({limit}) is too low for this test")
    before = _open_descriptors()
    # All from one address: no per-peer limit here (test_line_idle.py has that one).
    async with line_hub(line_max_per_peer=0) as lh:
        idle: list[Peer] = []
        for _ in range(count):
            idle.append(await Peer.open(lh.plain))
        await eventually(lambda: len(lh.door.connections) == count)
        assert await once(lh.plain, "JOB served anyway") == "ID 1"
        some = idle[:: count // 20]
        answers = await asyncio.gather(*(p.ask("STATUS 1") for p in some))
        assert set(answers) == {"waiting"}
        for peer in idle:
            await peer.close()
        await eventually(lambda: not lh.door.connections, timeout=20)
        await eventually(lambda: not lh.door._tasks)
        assert not lh.hub.connected()
    if before is not None:
        assert (_open_descriptors() or 0) < before + 50, "descriptors leaked"


def _open_descriptors() -> int | None:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None


async def _state_is(lh: LineHub, job_id: int, state: str) -> bool:
    return await lh.state(job_id) == state


async def test_hub_shutdown_with_line_connections_open() -> None:
    async with line_hub() as lh:
        idle = await lh.peer()
        worker = await lh.peer()
        assert await worker.ask("JOB in flight") == "ID 1"
        assert await worker.ask("FETCH") == "JOB 1 in flight"
        await lh.server.stop(grace=0)  # (running_hub stops it again: harmless)
        assert await idle.rest() == b""
        assert await worker.rest() == b""


def test_a_bad_line_service_is_refused_when_the_door_is_made_not_per_line() -> None:
    for service in ("", "two\nlines", "x" * 300):
        hub = Hub(MemoryStore(), HubConfig(line_service=service))
        with pytest.raises(InvalidRequest, match="service"):
            LineDoor(hub, ["127.0.0.1:0"])


async def test_a_line_the_hub_refuses_fails_alone_in_its_batch() -> None:
    async with line_hub(max_payload=10) as lh:
        peer = await lh.peer()
        await peer.send(b"JOB short\nJOB far too long for it\nSUBMIT fits\n")
        assert await peer.lines(3) == [
            "ID 1",
            "ERR payload is 19 bytes; the limit is 10",
            "JOB_ID 2",
        ]
        compat = await lh.peer(compat=True)
        await compat.send(b"SUBMIT far too long for it\nJOB ok\n")
        assert await compat.line() == "ID 3", "a compat peer hears nothing about the refused SUBMIT"
        assert sorted(j.id for j in await lh.hub.list_jobs(JobFilter())) == [1, 2, 3]
