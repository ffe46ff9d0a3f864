"""The work-queue dialect (JOB, STATUS, FETCH, DONE) driven with raw sockets as its programs do:
the client opens one connection per command, the worker keeps one and pipelines nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from jobq.core.matching import LINE_ONLY
from tests.helpers import eventually
from tests.integration.linepeer import LineHub, line_hub, once


async def test_client_commands_one_connection_each() -> None:
    async with line_hub() as lh:
        address = lh.plain
        assert await once(address, "JOB hello world") == "ID 1"
        assert await once(address, "JOB second") == "ID 2"
        assert await once(address, "STATUS 1") == "waiting"
        assert await once(address, "STATUS 2") == "waiting"
        for bad in ("STATUS 99", "STATUS abc", "STATUS", "STATUS -1", "STATUS 0", "STATUS 1e3"):
            assert await once(address, bad) == "unknown", bad
        for bad in ("JOB", "JOB    ", "HELLO", "JOBS x", "DONE", "DONE x", "DONE 1"):
            assert await once(address, bad) == "ERR", bad
        job = await lh.hub.get(1)
        assert job.service == "default"
        assert job.payload == [b"hello world"]
        assert job.content_type == "text/plain"


async def test_case_crlf_blanks_and_several_commands_in_one_segment() -> None:
    async with line_hub() as lh:
        peer = await lh.peer()
        await peer.send(b"job  two  inner  spaces  \r\n\r\n   \n\t\nStatus 1\r\nsTaTuS 1\nJoB x\n")
        assert await peer.lines(4) == ["ID 1", "waiting", "waiting", "ID 2"]
        # blank lines got no reply: the next reply is the next command's
        assert await peer.ask("status 2") == "waiting"
        assert (await lh.hub.get(1)).payload == [b"two  inner  spaces"]
        await peer.close()


async def test_fetch_done_cycle_and_repeated_fetch_returns_the_held_job() -> None:
    async with line_hub() as lh:
        client = lh.plain
        worker = await lh.peer()
        assert await worker.ask("FETCH") == "NOJOB"
        assert await once(client, "JOB take it") == "ID 1"
        assert await once(client, "JOB later") == "ID 2"
        assert await worker.ask("FETCH") == "JOB 1 take it"
        assert await once(client, "STATUS 1") == "running"
        assert await worker.ask("fetch") == "JOB 1 take it", "a repeated FETCH returns the held job"
        assert (await lh.hub.get(1)).attempts == 1
        assert await worker.ask("DONE 1") == "OK"
        assert await once(client, "STATUS 1") == "completed"
        assert await worker.ask("DONE 1") == "ERR", "not held any more"
        assert await worker.ask("FETCH") == "JOB 2 later"
        assert await worker.ask("DONE 2 with a result") == "OK"
        assert (await lh.hub.get(2)).result == [b"with a result"]
        assert await worker.ask("FETCH") == "NOJOB"
        (info,) = await lh.hub.workers()
        assert info.door == "line" and info.services == ["default"]
        assert info.capabilities[LINE_ONLY] is True
        await worker.close()
        await eventually(lambda: not lh.hub.connected())


async def test_done_for_a_job_the_worker_does_not_hold_is_refused_and_changes_nothing() -> None:
    async with line_hub() as lh:
        holder, other = await lh.peer(), await lh.peer()
        assert await once(lh.plain, "JOB mine") == "ID 1"
        assert await holder.ask("FETCH") == "JOB 1 mine"
        before = await lh.hub.get(1)
        for command in ("DONE 1", "ACK 1", "FAIL 1", "DONE 2", "DONE 1 forged result"):
            assert await other.ask(command) == "ERR", command
        after = await lh.hub.get(1)
        assert (after.state.value, after.worker, after.attempts, after.result) == (
            "running",
            before.worker,
            1,
            None,
        )
        assert await other.ask("FETCH") == "NOJOB"
        assert await holder.ask("DONE 1") == "OK"
        assert (await lh.hub.get(1)).result == []
        await holder.close()
        await other.close()


async def test_worker_closing_its_socket_mid_job_puts_the_job_back_at_the_front() -> None:
    async with line_hub() as lh:
        for text in ("first", "second"):
            await once(lh.plain, f"JOB {text}")
        victim = await lh.peer()
        assert await victim.ask("FETCH") == "JOB 1 first"
        await victim.close()
        await eventually(async_state_is(lh, 1, "queued"))
        survivor = await lh.peer()
        assert await survivor.ask("FETCH") == "JOB 1 first", "re-queued at the front"
        assert (await lh.hub.get(1)).attempts == 2
        assert await survivor.ask("DONE 1") == "OK"
        assert await survivor.ask("FETCH") == "JOB 2 second"
        await survivor.close()


async def test_worker_silent_past_the_lease_loses_its_job_to_the_front_of_the_queue() -> None:
    async with line_hub(line_lease=0.3) as lh:
        for text in ("first", "second"):
            await once(lh.plain, f"JOB {text}")
        silent = await lh.peer()
        assert await silent.ask("FETCH") == "JOB 1 first"
        await eventually(async_state_is(lh, 1, "queued"))
        other = await lh.peer()
        assert await other.ask("FETCH") == "JOB 1 first"
        # The silent worker's late DONE is refused; its connection is still usable.
        assert await silent.ask("DONE 1") == "ERR"
        assert await silent.ask("FETCH") == "JOB 2 second"
        assert await other.ask("DONE 1") == "OK"
        assert await silent.ask("DONE 2") == "OK"
        assert (await lh.hub.get(1)).attempts == 2
        await silent.close()
        await other.close()


async def test_a_worker_that_keeps_talking_keeps_its_job() -> None:
    async with line_hub(line_lease=1.0) as lh:
        await once(lh.plain, "JOB long")
        worker = await lh.peer()
        assert await worker.ask("FETCH") == "JOB 1 long"
        for _ in range(20):  # 2 s, twice the lease, saying something every 0.1 s
            await worker.send(b"\n")
            await asyncio.sleep(0.1)
        assert await lh.state(1) == "running"
        assert await worker.ask("DONE 1") == "OK"
        await worker.close()


async def test_idle_line_workers_never_expire() -> None:
    async with line_hub(line_lease=0.2) as lh:
        worker = await lh.peer()
        assert await worker.ask("FETCH") == "NOJOB"
        await asyncio.sleep(0.6)
        assert len(lh.hub.connected()) == 1
        assert await once(lh.plain, "JOB now") == "ID 1"
        assert await worker.ask("FETCH") == "JOB 1 now"
        await worker.close()


def async_state_is(lh: LineHub, job_id: int, state: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await lh.state(job_id) == state

    return check


async def test_a_job_cancelled_while_held_is_no_longer_the_workers() -> None:
    async with line_hub() as lh:
        await once(lh.plain, "JOB doomed")
        await once(lh.plain, "JOB next")
        worker = await lh.peer()
        assert await worker.ask("FETCH") == "JOB 1 doomed"
        await lh.hub.cancel(1)
        assert await once(lh.plain, "STATUS 1") == "cancelled"
        assert await worker.ask("DONE 1") == "ERR"
        assert await worker.ask("FETCH") == "JOB 2 next"
        assert await worker.ask("DONE 2") == "OK"
