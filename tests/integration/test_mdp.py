"""Issue 4: Majordomo peers (written here from the RFCs, not through jobq) against a real hub on
loopback: REQ and DEALER clients, MDP/0.1 and 0.2 workers, every framing, PARTIAL, MMI, the
no-worker timeout, and jobs crossing between the Majordomo door and jobq's own protocol."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import zmq
import zmq.asyncio

from jobq.app import HubServer
from jobq.client.client import Client
from jobq.doors.zmq.mdp import MajordomoDoor
from jobq.doors.zmq.router import ZmqRouter
from jobq.worker.runtime import Worker as SdkWorker
from tests.helpers import eventually, running_hub
from tests.mdp_peers import C01, C02, W01, Peer, Worker

#: Bodies that must come back exactly: binary, empty frames, 64 KiB and larger.
BODIES = [
    [b"hello"],
    [b""],
    [b"", b"", b""],
    [bytes(range(256)), b"\x00", b"\xff" * 3],
    [b"x" * 65536, b"", b"y" * 200_000],
]


@dataclass
class Env:
    server: HubServer
    endpoint: str
    ctx: zmq.asyncio.Context
    peers: list[Peer] = field(default_factory=list)

    @property
    def door(self) -> MajordomoDoor:
        return self.server.door(ZmqRouter).protocol(MajordomoDoor)

    def client(self, kind: int = zmq.DEALER) -> Peer:
        peer = Peer(self.ctx, self.endpoint, kind)
        self.peers.append(peer)
        return peer

    def worker(self, version: int = 1, lead: bool = True) -> Worker:
        peer = Worker(self.ctx, self.endpoint, version, lead)
        self.peers.append(peer)
        return peer

    async def ready(self, worker: Worker, service: bytes, count: int = 1) -> None:
        await worker.ready(service)
        await eventually(lambda: self.serves(service.decode(), count, at_least=True))

    async def serving(self, service: str) -> int:
        """Workers connected to this hub that serve ``service``."""
        statuses = await self.server.hub.worker_statuses()
        return sum(s.local and service in s.info.services for s in statuses)

    async def serves(self, service: str, count: int, *, at_least: bool = False) -> bool:
        serving = await self.serving(service)
        return serving >= count if at_least else serving == count


@contextlib.asynccontextmanager
async def mdp_hub(store: str = "memory://", **config: object) -> AsyncIterator[Env]:
    async with running_hub(store, **config) as server:
        ctx = zmq.asyncio.Context()
        env = Env(server, server.door(ZmqRouter).endpoints[0], ctx)
        try:
            yield env
        finally:
            for peer in env.peers:
                peer.close()
            ctx.destroy(linger=0)


async def call_req(client: Peer, service: bytes, body: list[bytes]) -> list[bytes]:
    """As the zguide's mdcliapi on a REQ socket: the reply's service must be the one asked."""
    await client.send([C01, service, *body])
    reply = await client.recv()
    assert reply[:2] == [C01, service], reply
    return reply[2:]


# ---------------------------------------------------------------- round trips


async def test_req_client_and_rfc7_worker_keep_every_body_exactly() -> None:
    async with mdp_hub() as env:
        worker = env.worker(1)
        await env.ready(worker, b"echo")
        client = env.client(zmq.REQ)
        for body in BODIES:
            call = asyncio.ensure_future(call_req(client, b"echo", body))
            address, got = await worker.request()
            assert got == body
            await worker.reply(address, got)
            assert await call == body


async def test_dealer_client_with_many_outstanding_requests_and_two_workers() -> None:
    async with mdp_hub() as env:
        w1, w2 = env.worker(1), env.worker(2, lead=False)
        await env.ready(w1, b"echo")
        await env.ready(w2, b"echo", 2)
        client = env.client()
        n = 200
        for i in range(n):
            await client.send([b"", C01, b"echo", b"%d" % i, b""])
        serving = [
            asyncio.ensure_future(w.serve(count, lambda b: [b"re", *b])) for w, count in ((w1, n), (w2, n))
        ]
        replies = [await client.recv() for _ in range(n)]
        for task in serving:
            task.cancel()
        assert all(r[:3] == [b"", C01, b"echo"] for r in replies)
        assert sorted(r[4] for r in replies) == sorted(b"%d" % i for i in range(n))
        assert all(r[3] == b"re" and r[5] == b"" for r in replies)
        assert await client.quiet(0.2), "one reply per request"


@pytest.mark.parametrize(
    ("header", "lead", "request_cmd", "final_cmd", "service_in_reply"),
    [
        (C02, False, b"\x01", b"\x03", True),  # RFC 18
        (C02, True, b"\x01", b"\x03", True),  # RFC 18 numbers with the empty frame
        (C02, True, b"\x02", b"\x04", False),  # PyPI majortomo
        (C02, False, b"\x02", b"\x04", False),
    ],
)
async def test_mdp02_clients_are_answered_in_their_own_form(
    header: bytes, lead: bool, request_cmd: bytes, final_cmd: bytes, service_in_reply: bool
) -> None:
    async with mdp_hub() as env:
        worker = env.worker(2, lead=not lead)
        await env.ready(worker, b"svc")
        client = env.client()
        prefix = [b""] if lead else []
        await client.send([*prefix, header, request_cmd, b"svc", b"a", b""])
        address, body = await worker.request()
        assert body == [b"a", b""]
        await worker.reply(address, [b"b", b""])
        expected = [*prefix, C02, final_cmd, *([b"svc"] if service_in_reply else []), b"b", b""]
        assert await client.recv() == expected


@pytest.mark.parametrize(("version", "lead"), [(1, True), (1, False), (2, True), (2, False)])
async def test_workers_are_talked_to_in_their_own_framing(version: int, lead: bool) -> None:
    # Frequent heartbeats, but a long liveness: this worker stays silent.
    async with mdp_hub(mdp_heartbeat=0.1, mdp_liveness=50) as env:
        worker = env.worker(version, lead)  # Worker.next() asserts the framing of everything
        await env.ready(worker, b"svc")
        client = env.client(zmq.REQ)
        call = asyncio.ensure_future(call_req(client, b"svc", [b"q"]))
        address, _body = await worker.request()
        await worker.reply(address, [b"r"])
        assert await call == [b"r"]
        await worker.heartbeat()
        await worker.heartbeat()


async def test_partial_replies_are_forwarded_as_they_come() -> None:
    async with mdp_hub() as env:
        worker = env.worker(2, lead=False)
        await env.ready(worker, b"stream")
        rfc, mt, old = env.client(), env.client(), env.client()
        await rfc.send([C02, b"\x01", b"stream", b"rfc"])
        await mt.send([b"", C02, b"\x02", b"stream", b"mt"])
        await old.send([b"", C01, b"stream", b"old"])
        for _ in range(3):
            address, _body = await worker.request()
            await worker.reply(address, [b"part 1"], partial=True)
            await worker.reply(address, [b"part 2", b""], partial=True)
            await worker.reply(address, [b"done"])
        assert await rfc.recv() == [C02, b"\x02", b"stream", b"part 1"]
        assert await rfc.recv() == [C02, b"\x02", b"stream", b"part 2", b""]
        assert await rfc.recv() == [C02, b"\x03", b"stream", b"done"]
        assert await mt.recv() == [b"", C02, b"\x03", b"part 1"]
        assert await mt.recv() == [b"", C02, b"\x03", b"part 2", b""]
        assert await mt.recv() == [b"", C02, b"\x04", b"done"]
        # MDP/0.1 has no PARTIAL: the client gets the final reply only.
        assert await old.recv() == [b"", C01, b"stream", b"done"]


# ---------------------------------------------------------------- across doors


async def test_a_native_job_is_run_by_an_mdp_worker() -> None:
    async with mdp_hub() as env:
        worker = env.worker(1)
        await env.ready(worker, b"echo")
        async with Client(env.endpoint) as client:
            for body in BODIES:
                job_id = await client.submit("echo", body)
                address, got = await worker.request()
                assert got == body
                await worker.reply(address, list(reversed(got)))
                job = await client.wait(job_id, 10)
                assert job.state == "completed"
                assert job.result == list(reversed(body))


async def test_an_mdp_request_is_run_by_a_jobq_sdk_worker() -> None:
    from jobq.worker.handlers import echo

    async with mdp_hub() as env:
        sdk = SdkWorker(env.endpoint, concurrency=2, name="sdk")
        sdk.register("echo", echo)
        running = asyncio.ensure_future(sdk.run())
        try:
            await sdk.wait_connected()
            client = env.client(zmq.REQ)
            for body in BODIES:
                assert await call_req(client, b"echo", body) == body
        finally:
            sdk.stop()
            await running


# ---------------------------------------------------------------- MMI


async def test_mmi() -> None:
    async with mdp_hub() as env:
        client = env.client(zmq.REQ)
        assert await call_req(client, b"mmi.service", [b"echo"]) == [b"404"]
        worker = env.worker(1)
        await env.ready(worker, b"echo")
        assert await call_req(client, b"mmi.service", [b"echo"]) == [b"200"]
        assert await call_req(client, b"mmi.service", [b"titanic.request"]) == [b"200"]
        assert (await call_req(client, b"mmi.nothing", []))[0] == b"501"
        status, doc = await call_req(client, b"mmi.workers", [b"echo"])
        assert status == b"200"
        assert [w["services"] for w in json.loads(doc)] == [["echo"]]
        status, doc = await call_req(client, b"mmi.services", [])
        assert [s["name"] for s in json.loads(doc)] == ["echo"]
        status, doc = await call_req(client, b"mmi.stats", [])
        assert json.loads(doc)["mdp"]["workers"] == 1
        # 0.2 clients get MMI answers in their own form too
        dealer = env.client()
        await dealer.send([C02, b"\x01", b"mmi.service", b"echo"])
        assert await dealer.recv() == [C02, b"\x03", b"mmi.service", b"200"]


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    "frames",
    [
        # (a READY for mmi.* or titanic.* is parked instead: test_mdp_hardening.py)
        [b"", W01, b"\x04"],  # HEARTBEAT before READY
        [b"", W01, b"\x03", b"1.1", b"", b"x"],  # REPLY before READY
        [b"", W01, b"\x02", b"a", b"", b"b"],  # REQUEST from a worker
        [b"", W01, b"\x09"],  # unknown command
        [b"", W01],  # no command
        [b"", W01, b"\x01", b"\xff\xfe"],  # service that is not UTF-8
    ],
)
async def test_unexpected_worker_commands_get_disconnect(frames: list[bytes]) -> None:
    async with mdp_hub() as env:
        peer = env.client()
        await peer.send(frames)
        assert await peer.recv() == [b"", W01, b"\x05"]
        assert not env.server.hub.connected()


async def test_a_second_ready_gets_disconnect_and_the_job_goes_to_another_worker() -> None:
    async with mdp_hub() as env:
        w1, w2 = env.worker(1), env.worker(1)
        await env.ready(w1, b"echo")
        client = env.client(zmq.REQ)
        call = asyncio.ensure_future(call_req(client, b"echo", [b"q"]))
        await w1.request()
        await w1.ready(b"echo")
        assert await w1.next() == [b"\x05"]
        await env.ready(w2, b"echo")
        address, _body = await w2.request()
        await w2.reply(address, [b"from w2"])
        assert await call == [b"from w2"]


async def test_worker_disconnect_while_busy_requeues_its_request() -> None:
    async with mdp_hub() as env:
        w1 = env.worker(2, lead=False)
        await env.ready(w1, b"echo")
        client = env.client()
        await client.send([b"", C01, b"echo", b"q"])
        await w1.request()
        await w1.command(w1.bye)
        w2 = env.worker(1)
        await env.ready(w2, b"echo")
        address, body = await w2.request()
        await w2.reply(address, body)
        assert await client.recv() == [b"", C01, b"echo", b"q"]
        assert await client.quiet(0.3)


async def test_a_request_for_a_service_nobody_serves_gets_an_error_reply() -> None:
    async with mdp_hub(mdp_no_worker_timeout=0.3) as env:
        client = env.client(zmq.REQ)
        reply = await call_req(client, b"nobody", [b"x"])
        assert reply[:2] == [b"jobq.error", b"timeout"]
        assert b"nobody" in reply[2]
        dealer = env.client()
        await dealer.send([C02, b"\x01", b"nobody", b"x"])
        reply = await dealer.recv()
        assert reply[:4] == [C02, b"\x03", b"nobody", b"jobq.error"]


async def test_a_request_waits_for_a_worker_that_comes_in_time() -> None:
    async with mdp_hub(mdp_no_worker_timeout=5.0) as env:
        client = env.client(zmq.REQ)
        call = asyncio.ensure_future(call_req(client, b"late", [b"x"]))
        await asyncio.sleep(0.3)
        worker = env.worker(1)
        await env.ready(worker, b"late")
        address, body = await worker.request()
        await worker.reply(address, body)
        assert await call == [b"x"]


async def test_invalid_requests_get_an_error_reply_on_the_service_asked() -> None:
    async with mdp_hub(max_payload=1000) as env:
        client = env.client(zmq.REQ)
        reply = await call_req(client, b"echo", [b"x" * 2000])
        assert reply[:2] == [b"jobq.error", b"too_large"]
        reply = await call_req(client, b"bad\x01name", [b"x"])
        assert reply[:2] == [b"jobq.error", b"invalid"]


async def test_a_vanished_client_is_counted_not_a_crash() -> None:
    async with mdp_hub() as env:
        worker = env.worker(1)
        await env.ready(worker, b"echo")
        gone = env.client()
        await gone.send([b"", C01, b"echo", b"x"])
        address, body = await worker.request()
        gone.close()
        await asyncio.sleep(0.1)
        await worker.reply(address, body)
        await eventually(lambda: env.door.counters["undeliverable"] == 1)
        client = env.client(zmq.REQ)
        call = asyncio.ensure_future(call_req(client, b"echo", [b"still fine"]))
        address, body = await worker.request()
        await worker.reply(address, body)
        assert await call == [b"still fine"]


# ---------------------------------------------------------------- a real implementation: PyPI majortomo


async def test_pypi_majortomo_client_and_worker_work_unmodified() -> None:
    from majortomo import Client as MtClient
    from majortomo import Worker as MtWorker

    async with mdp_hub() as env:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()

        def work() -> None:
            # A linger, so that the last reply is on its way before the worker closes its socket.
            worker: Any = MtWorker(
                env.endpoint, "upper", heartbeat_interval=0.2, zmq_context=ctx, zmq_linger=2000
            )
            worker.connect()
            for _ in range(2):
                client, frames = worker.wait_for_request()
                worker.send_reply_partial(client, [b"working"])
                worker.send_reply_final(client, [f.upper() for f in frames])
            worker.close()

        def ask(body: list[bytes]) -> list[list[bytes]]:
            client: Any = MtClient(env.endpoint, zmq_context=ctx, zmq_linger=0)
            client.connect()
            try:
                client.send(b"upper", *body)
                return list(client.recv_all(timeout=10))
            finally:
                client.close()

        # Every thread runs to its end (the clients' receives time out), then the context goes.
        outcomes = await asyncio.gather(
            asyncio.to_thread(work),
            asyncio.to_thread(ask, [b"abc", b"", b"\xff"]),
            asyncio.to_thread(ask, [b"x" * 70000]),
            return_exceptions=True,
        )
        ctx.destroy(linger=0)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        _, first, second = outcomes
        assert first == [[b"working"], [b"ABC", b"", b"\xff"]]
        assert second == [[b"working"], [b"X" * 70000]]
