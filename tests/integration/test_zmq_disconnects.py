"""Issue 12, finding 1: on the ZeroMQ door a worker is gone the moment its connection closes.

Before, the hub noticed a dead worker only when its heartbeats stopped (5 s for the native
protocol, at the next failed heartbeat for Majordomo) and meanwhile handed it jobs, each of which
cost an attempt. Real hub and worker processes on loopback; both ZeroMQ engines of the hub.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
import zmq
import zmq.asyncio

from jobq.client.client import Client
from jobq.core.model import JobFilter, JobSpec
from jobq.doors.zmq.router import ZmqRouter
from jobq.protocol import native
from tests.helpers import REPO, Proc, eventually, running_hub, start_hub, start_worker
from tests.mdp_peers import C01, W01

ENGINES = ["asyncio", "libzmq"]


async def _worker_names(client: Client) -> set[str]:
    return {w.name or w.id for w in await client.workers()}


@pytest.mark.parametrize("engine", ENGINES)
async def test_a_sigkilled_idle_worker_gets_no_jobs(tmp_path: Path, procs: list[Proc], engine: str) -> None:
    hub, endpoint = start_hub(tmp_path, extra=["--zmq-engine", engine])
    procs.append(hub)
    victim = start_worker(tmp_path, endpoint, name="victim", concurrency=4)
    procs.append(victim)
    async with Client(endpoint, timeout=20) as client:
        await eventually(lambda: _has(client, "victim"), timeout=30)
        victim.kill()
        rescuer = start_worker(tmp_path, endpoint, name="rescuer", concurrency=4)
        procs.append(rescuer)
        await eventually(lambda: _has(client, "rescuer"), timeout=30)
        # Within the old 5 s heartbeat window: the victim must be gone already.
        assert "victim" not in await _worker_names(client)
        specs = [JobSpec(service="echo", payload=[b"%d" % i], max_attempts=1) for i in range(8)]
        ids = [r[0] for r in await client.submit_many(specs)]
        jobs = [await client.wait(job_id, timeout=20) for job_id in ids]
        assert [job.state for job in jobs] == ["completed"] * 8, [(j.state, j.error) for j in jobs]
        workers = {w.id: w.name for w in await client.workers()}
        assert {workers.get(job.worker or "") for job in jobs} == {"rescuer"}
        assert all(job.attempts == 1 for job in jobs)
    assert "Traceback" not in hub.output()


async def _has(client: Client, name: str) -> bool:
    return name in await _worker_names(client)


def _mdp_worker(tmp: Path, endpoint: str, name: str) -> Proc:
    args = [sys.executable, "-m", "tests.mdp_peers", endpoint, "work"]
    return Proc(args, tmp / f"{name}.log", env={"PYTHONPATH": str(REPO)})


@pytest.mark.parametrize("engine", ENGINES)
async def test_sigkilled_idle_mdp_workers_cost_a_request_no_attempt(
    tmp_path: Path, procs: list[Proc], engine: str
) -> None:
    # The default heartbeat (2.5 s) and liveness: only the closed connections tell.
    hub, endpoint = start_hub(tmp_path, extra=["--zmq-engine", engine])
    procs.append(hub)
    dead = [_mdp_worker(tmp_path, endpoint, f"dead{i}") for i in range(8)]
    procs.extend(dead)
    async with Client(endpoint, timeout=20) as client:
        await eventually(lambda: _serving(client, 8), timeout=30)
        live = _mdp_worker(tmp_path, endpoint, "live")
        procs.append(live)
        await eventually(lambda: _serving(client, 9), timeout=30)
        for proc in dead:
            proc.kill()
        await asyncio.sleep(0.2)
        ctx = zmq.asyncio.Context()
        try:
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(endpoint)
            await sock.send_multipart([b"", C01, b"work", b"hello"])
            assert await sock.poll(20_000), "no reply"
            assert await sock.recv_multipart() == [b"", C01, b"work", b"hello"]
        finally:
            ctx.destroy(linger=0)
        [job] = await client.jobs(service="work")
        assert job.state == "completed" and job.attempts == 1, job
        assert (await client.stats())["counters"]["requeued"] == 0
        assert await _serving(client, 1)
    assert "request" in live.output()
    assert "Traceback" not in hub.output()


async def _serving(client: Client, n: int) -> bool:
    return sum("work" in w.services for w in await client.workers()) == n


# ---------------------------------------------------------------- a reconnect is not a close


class _RawWorker:
    """A native worker on a plain DEALER: says hello, takes what it is assigned."""

    def __init__(self, ctx: zmq.asyncio.Context, endpoint: str, identity: bytes) -> None:
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        if identity:
            self.sock.setsockopt(zmq.IDENTITY, identity)
        self.sock.connect(endpoint)

    async def hello(self, worker_id: str) -> None:
        await self.send(native.Hello(worker_id=worker_id, services=["svc"], slots=4))
        assert isinstance(await self.recv(), native.Welcome)

    async def send(self, message: native.Inbound) -> None:
        await self.sock.send_multipart([native.HEADER, native.encode(message)])

    async def recv(self, timeout: float = 10.0) -> native.Outbound:
        while True:
            assert await self.sock.poll(int(timeout * 1000)), "nothing received"
            header, body = await self.sock.recv_multipart()
            assert header == native.HEADER
            message = native.decode_outbound(body)
            if not isinstance(message, native.Heartbeat):
                return message


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("same_identity", [True, False])
async def test_the_old_connection_of_a_reconnected_worker_closing_does_not_detach_it(
    engine: str, same_identity: bool
) -> None:
    async with running_hub(zmq_engine=engine) as server:
        endpoint = server.door(ZmqRouter).endpoints[0]
        ctx = zmq.asyncio.Context()
        try:
            old = _RawWorker(ctx, endpoint, b"w1" if same_identity else b"")
            await old.hello("w1")
            new = _RawWorker(ctx, endpoint, b"w1" if same_identity else b"")
            await new.hello("w1")
            old.sock.close(0)
            await asyncio.sleep(0.3)  # the old connection's close is seen by now
            assert server.hub.connected() == ["w1"]
            async with Client(endpoint, timeout=10) as client:
                job_id = await client.submit("svc", b"x", max_attempts=1)
                assign = await new.recv()
                assert isinstance(assign, native.Assign) and assign.jobs[0].id == job_id
                token = assign.jobs[0].token
                await new.send(native.Done(results=[(job_id, token, [b"done"])]))
                job = await client.wait(job_id, timeout=10)
                assert job.state == "completed" and job.result == [b"done"]
            new.sock.close(0)
            await eventually(lambda: server.hub.connected() == [], timeout=5)
        finally:
            ctx.destroy(linger=0)


# ---------------------------------------------------------------- the last words before a close


@pytest.mark.parametrize("engine", ENGINES)
async def test_results_sent_just_before_the_close_count(engine: str) -> None:
    """A worker that answers and hangs up at once: its results land, nothing is run twice."""
    async with running_hub(zmq_engine=engine) as server:
        endpoint = server.door(ZmqRouter).endpoints[0]
        ctx = zmq.asyncio.Context()
        try:
            async with Client(endpoint, timeout=10) as client:
                for round_ in range(5):
                    worker = _RawWorker(ctx, endpoint, b"")
                    await worker.hello(f"w{round_}")
                    job_id = await client.submit("svc", b"x", max_attempts=1)
                    assign = await worker.recv()
                    assert isinstance(assign, native.Assign)
                    token = assign.jobs[0].token
                    await worker.send(native.Done(results=[(job_id, token, [b"last words"])]))
                    await worker.send(native.Bye() if round_ % 2 else native.Heartbeat())
                    worker.sock.close(linger=1000)  # what was sent goes out first
                    job = await client.wait(job_id, timeout=10)
                    assert job.state == "completed" and job.result == [b"last words"], job
                    assert job.attempts == 1
                    # (The next round's job must not go to this worker before its close is seen.)
                    await eventually(lambda: server.hub.connected() == [], timeout=5)
                await eventually(lambda: server.hub.connected() == [], timeout=5)
        finally:
            ctx.destroy(linger=0)


@pytest.mark.parametrize("engine", ENGINES)
async def test_an_mdp_reply_sent_just_before_the_close_counts(engine: str) -> None:
    async with running_hub(zmq_engine=engine) as server:
        endpoint = server.door(ZmqRouter).endpoints[0]
        ctx = zmq.asyncio.Context()
        try:
            client = ctx.socket(zmq.DEALER)
            client.setsockopt(zmq.LINGER, 0)
            client.connect(endpoint)
            for round_ in range(5):
                worker = ctx.socket(zmq.DEALER)
                worker.connect(endpoint)
                await worker.send_multipart([b"", W01, b"\x01", b"work"])
                await eventually(lambda: server.hub.connected() != [], timeout=5)
                body = b"request %d" % round_
                await client.send_multipart([b"", C01, b"work", body])
                assert await worker.poll(10_000)
                frames = await worker.recv_multipart()
                while frames[2] != b"\x02":  # heartbeats first, perhaps
                    frames = await worker.recv_multipart()
                address = frames[3]
                await worker.send_multipart([b"", W01, b"\x03", address, b"", body])
                worker.close(linger=1000)
                assert await client.poll(10_000)
                assert await client.recv_multipart() == [b"", C01, b"work", body]
                await eventually(lambda: server.hub.connected() == [], timeout=5)
            jobs = await server.hub.list_jobs(JobFilter(service="work"))
            assert [(j.state, j.attempts) for j in jobs] == [("completed", 1)] * 5
        finally:
            ctx.destroy(linger=0)
