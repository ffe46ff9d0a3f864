"""The SDKs against an in-process hub: handlers, progress, cancellation, schemas, sync client."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from jobq import Client, HandlerError, JobContext, JobState, SyncClient, Worker
from jobq.doors.zmq.router import ZmqRouter
from jobq.errors import InvalidRequest, JobFailed
from jobq.protocol import native
from tests.helpers import running_hub


@contextlib.asynccontextmanager
async def hub_and_worker(worker: Worker | None = None) -> AsyncIterator[tuple[str, Worker | None]]:
    async with running_hub(heartbeat=0.2) as server:
        endpoint = server.door(ZmqRouter).endpoints[0]
        task = None
        if worker is not None:
            worker.hub = endpoint
            task = asyncio.create_task(worker.run())
            await worker.wait_connected()
        try:
            yield endpoint, worker
        finally:
            if worker is not None and task is not None:
                worker.stop()
                await asyncio.wait_for(task, 10)


async def test_decorated_async_and_sync_handlers() -> None:
    w = Worker(concurrency=4, grace=1)

    @w.handler("reverse")
    async def reverse(payload: bytes) -> bytes:
        return payload[::-1]

    @w.handler("json")
    def as_json(payload: bytes, ctx: JobContext) -> dict[str, object]:  # sync: runs on a thread
        return {"got": ctx.json(), "attempt": ctx.attempt}

    async with hub_and_worker(w) as (endpoint, _), Client(endpoint) as client:
        a = await client.submit("reverse", b"abc")
        b = await client.submit("json", {"x": 1})
        assert await client.result(a, 10) == b"cba"
        assert await client.result(b, 10) == b'{"got": {"x": 1}, "attempt": 1}'


async def test_progress_events_and_failure_with_retry() -> None:
    w = Worker(concurrency=2, grace=1)
    calls: list[int] = []

    @w.handler("steps")
    async def steps(payload: bytes, ctx: JobContext) -> bytes:
        calls.append(ctx.attempt)
        if ctx.attempt == 1:
            raise HandlerError("first attempt fails")
        for i in range(3):
            ctx.progress(i * 50.0, f"step {i}")
            await asyncio.sleep(0.01)
        return b"done"

    async with hub_and_worker(w) as (endpoint, _), Client(endpoint) as client:
        job_id = await client.submit("steps", b"", backoff=0.01)
        seen = []
        async for event in client.events([job_id]):
            seen.append(event.kind)
            if event.state.terminal:
                break
        assert seen[-1] == "completed"
        assert "progress" in seen and "retrying" in seen
        job = await client.status(job_id)
        assert job is not None and job.attempts == 2 and job.result == [b"done"]
    assert calls == [1, 2]


async def test_not_retryable_failure_ends_at_once() -> None:
    w = Worker(grace=1)

    @w.handler("bad")
    def bad(payload: bytes) -> None:
        raise HandlerError("bad input", retryable=False)

    async with hub_and_worker(w) as (endpoint, _), Client(endpoint) as client:
        job_id = await client.submit("bad", b"x", max_attempts=5)
        with pytest.raises(JobFailed, match="bad input"):
            await client.result(job_id, 10)
        job = await client.status(job_id)
        assert job is not None and job.state is JobState.FAILED and job.attempts == 1


async def test_cancelling_a_running_job_reaches_the_handler() -> None:
    w = Worker(grace=1)
    started = asyncio.Event()
    stopped = asyncio.Event()

    @w.handler("long")
    async def long(payload: bytes, ctx: JobContext) -> bytes:
        started.set()
        try:
            await ctx.sleep(30)
        finally:
            stopped.set()
        return b"never"

    async with hub_and_worker(w) as (endpoint, _), Client(endpoint) as client:
        job_id = await client.submit("long")
        await asyncio.wait_for(started.wait(), 10)
        assert (await client.cancel(job_id)).state is JobState.CANCELLED
        await asyncio.wait_for(stopped.wait(), 5)
        job = await client.wait(job_id, 5)
        assert job.state is JobState.CANCELLED and job.result is None


async def test_advertised_schema_refuses_bad_payloads_at_submit() -> None:
    w = Worker(grace=1)
    schema = {
        "type": "object",
        "properties": {"width": {"type": "integer", "minimum": 1}},
        "required": ["width"],
    }
    w.register("resize", lambda payload: payload, schema=schema)
    async with hub_and_worker(w) as (endpoint, _), Client(endpoint) as client:
        ok = await client.submit("resize", {"width": 10})
        assert await client.result(ok, 10) == b'{"width": 10}'
        with pytest.raises(InvalidRequest, match="width"):
            await client.submit("resize", {"width": 0})
        with pytest.raises(InvalidRequest, match="JSON"):
            await client.submit("resize", b"not json")
        services = {s.name: s for s in await client.services()}
        assert services["resize"].schema == schema


@pytest.mark.parametrize("bad", [0, 1, 2])
async def test_one_bad_submit_in_a_turn_fails_alone(bad: int) -> None:
    async with hub_and_worker() as (endpoint, _), Client(endpoint) as client:
        sizes: list[int] = []
        send = client.conn.send

        def counting(message: native.Inbound) -> None:
            if isinstance(message, native.Submit):
                sizes.append(len(message.jobs))
            send(message)

        client.conn.send = counting  # type: ignore[method-assign]
        calls = [
            client.submit("echo", b"x", max_attempts=0 if i == bad else 3, customer_id=f"c{i}")
            for i in range(3)
        ]
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        # One turn: the first submit goes at once, the other two together in one message.
        assert sizes == [1, 2]
        error = outcomes[bad]
        assert isinstance(error, InvalidRequest) and "max_attempts" in error.message
        good = [i for i in range(3) if i != bad]
        ids = [outcome for outcome in outcomes if isinstance(outcome, int)]
        assert len(set(ids)) == 2
        for i, job_id in zip(good, ids, strict=True):
            job = await client.status(job_id)
            assert job is not None and job.customer_id == f"c{i}" and job.state is JobState.QUEUED


async def test_sync_client_from_plain_code() -> None:
    w = Worker(grace=1)
    w.register("upper", lambda payload: payload.upper())
    async with hub_and_worker(w) as (endpoint, _):

        def blocking() -> tuple[bytes, str]:
            with SyncClient(endpoint) as client:
                job_id = client.submit("upper", b"shout")
                return client.result(job_id, 10), client.status(job_id).state  # type: ignore[union-attr]

        result, state = await asyncio.to_thread(blocking)
    assert result == b"SHOUT" and state == "completed"


async def test_worker_drains_on_stop() -> None:
    w = Worker(concurrency=2, grace=5)

    @w.handler("nap")
    async def nap(payload: bytes) -> bytes:
        await asyncio.sleep(0.3)
        return b"rested"

    async with running_hub(heartbeat=0.2) as server:
        endpoint = server.door(ZmqRouter).endpoints[0]
        w.hub = endpoint
        task = asyncio.create_task(w.run())
        await w.wait_connected()
        async with Client(endpoint) as client:
            ids = [await client.submit("nap") for _ in range(2)]
            while w.running < 2:
                await asyncio.sleep(0.01)
            started = time.monotonic()
            w.stop()
            await asyncio.wait_for(task, 10)
            assert time.monotonic() - started >= 0.1, "it waited for the running jobs"
            assert [(await client.wait(i, 5)).state for i in ids] == [JobState.COMPLETED] * 2


async def test_a_worker_changes_its_capabilities_while_connected() -> None:
    w = Worker(grace=1, capabilities={"hardware.gpu_memory_gb": 8})
    w.register("render", lambda payload: b"rendered")
    async with hub_and_worker(w) as (endpoint, _), Client(endpoint) as client:
        job_id = await client.submit("render", b"", requires={"hardware.gpu_memory_gb": 16})
        blocked = await client.jobs(blocked=True)
        assert [j.id for j in blocked] == [job_id]
        w.update_capabilities({"hardware.gpu_memory_gb": 24})
        assert await client.result(job_id, 10) == b"rendered"
