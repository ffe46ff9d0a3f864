"""Issue 11 on the Majordomo door: peers that cannot send a token are served on trusted listeners
only (with --auth), as their listener's principal; a REPLY counts only from the worker holding
the request, and addresses handed to workers cannot be made up, not even across a restart."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio

from jobq.app import HubServer
from jobq.core.model import JobFilter
from jobq.doors.zmq.router import ZmqRouter
from tests.helpers import eventually, free_port
from tests.integration.test_mdp import call_req
from tests.integration.zmqauth import Tokens, audit_records, serving, standard_tokens
from tests.mdp_peers import C01, W01, Peer, Worker

PLAIN, CLIENT_A, CLIENT_B, WORKER, MONITOR = range(5)
LISTENERS = [
    "tcp://127.0.0.1:*",
    "tcp://127.0.0.1:*?trusted=client&customer=A",
    "tcp://127.0.0.1:*?trusted=client&customer=B",
    "tcp://127.0.0.1:*?trusted=worker&service=echo&service=upper",
    "tcp://127.0.0.1:*?trusted=monitor",
]


@dataclass
class Env:
    server: HubServer
    tokens: Tokens
    audit: Path
    ctx: zmq.asyncio.Context
    peers: list[Peer] = field(default_factory=list)

    def endpoint(self, which: int) -> str:
        return self.server.door(ZmqRouter).endpoints[which]

    def client(self, which: int, kind: int = zmq.REQ) -> Peer:
        peer = Peer(self.ctx, self.endpoint(which), kind)
        self.peers.append(peer)
        return peer

    def worker(self, which: int, version: int = 1) -> Worker:
        peer = Worker(self.ctx, self.endpoint(which), version)
        self.peers.append(peer)
        return peer

    async def attached(self, count: int) -> None:
        await eventually(lambda: len(self.server.hub.connected()) == count)


@contextlib.asynccontextmanager
async def auth_mdp_hub(tmp: Path, **config: Any) -> AsyncIterator[Env]:
    tokens = standard_tokens(tmp)
    audit = tmp / "audit.jsonl"
    async with serving(auth=str(tokens.path), audit=str(audit), zmq=LISTENERS, **config) as server:
        env = Env(server, tokens, audit, zmq.asyncio.Context())
        try:
            yield env
        finally:
            for peer in env.peers:
                peer.close()
            env.ctx.destroy(linger=0)


def is_error(body: list[bytes], code: bytes) -> bool:
    return body[:2] == [b"jobq.error", code]


async def test_mdp_peers_on_an_authenticated_listener_are_refused(tmp_path: Path) -> None:
    async with auth_mdp_hub(tmp_path) as env:
        client = env.client(PLAIN)
        assert is_error(await call_req(client, b"echo", [b"q"]), b"unauthorized")
        assert is_error(await call_req(client, b"mmi.service", [b"echo"]), b"unauthorized")
        assert is_error(await call_req(client, b"titanic.request", [b"echo", b"q"]), b"unauthorized")
        worker = env.worker(PLAIN)
        await worker.ready(b"echo")
        assert await worker.next() == [b"\x05"]  # DISCONNECT
        assert not env.server.hub.connected()
        assert await env.server.hub.list_jobs(_everything()) == []
        refused = [r for r in audit_records(env.audit) if r["event"] == "refused"]
        assert len(refused) == 4 and {r["door"] for r in refused} == {"mdp"}
        assert all(str(r["peer"]).startswith("127.0.0.1:") for r in refused)


async def test_zguide_peers_work_on_trusted_listeners_as_their_principal(tmp_path: Path) -> None:
    async with auth_mdp_hub(tmp_path) as env:
        worker = env.worker(WORKER)
        await worker.ready(b"echo")
        await env.attached(1)
        client = env.client(CLIENT_A)
        call = asyncio.ensure_future(call_req(client, b"echo", [b"hello", b""]))
        address, body = await worker.request()
        await worker.reply(address, [b"HELLO", *body[1:]])
        assert await call == [b"HELLO", b""]
        [job] = await env.server.hub.list_jobs(_everything())
        assert job.customer_id == "A" and str(job.owner).startswith("trusted:")
        # A client may not serve, a worker may not submit, and the worker listener's scope holds.
        wrong = env.worker(CLIENT_A)
        await wrong.ready(b"echo")
        assert await wrong.next() == [b"\x05"]
        other = env.worker(WORKER)
        await other.ready(b"resize")
        assert await other.next() == [b"\x05"]
        assert is_error(await call_req(env.client(WORKER), b"echo", [b"q"]), b"forbidden")
        assert is_error(await call_req(env.client(MONITOR), b"echo", [b"q"]), b"forbidden")
        assert len(env.server.hub.connected()) == 1


async def test_a_reply_from_a_connection_that_does_not_hold_the_request_is_refused(tmp_path: Path) -> None:
    async with auth_mdp_hub(tmp_path) as env:
        real = env.worker(WORKER)
        await real.ready(b"echo")
        await env.attached(1)
        client = env.client(CLIENT_A, zmq.DEALER)
        await client.send([b"", C01, b"echo", b"question"])
        address, _body = await real.request()
        job_id = int(address.split(b".")[0])
        # A connection that never sent READY, with the old guessable address and the real one:
        forger = env.client(WORKER, zmq.DEALER)
        for guess in (b"%d.1" % job_id, address):
            await forger.send([b"", W01, b"\x03", guess, b"", b"forged"])
        assert await forger.recv() == [b"", W01, b"\x05"]
        # ... and another worker of the same listener that holds nothing:
        rival = env.worker(WORKER)
        await rival.ready(b"upper")
        await env.attached(2)
        await rival.reply(address, [b"rival"])
        assert await client.quiet(0.5), "no reply before the real one"
        assert (await env.server.hub.get(job_id)).state == "running"
        await real.reply(address, [b"real"])
        assert await client.recv() == [b"", C01, b"echo", b"real"]
        assert await client.quiet(0.3)
        assert (await env.server.hub.get(job_id)).result == [b"real"]


async def test_mmi_and_titanic_answer_as_the_callers_principal(tmp_path: Path) -> None:
    async with auth_mdp_hub(tmp_path) as env:
        client_a, client_b, monitor = env.client(CLIENT_A), env.client(CLIENT_B), env.client(MONITOR)
        status, ticket = await call_req(client_a, b"titanic.request", [b"echo", b"kept"])
        assert status == b"200"
        assert await call_req(client_a, b"titanic.reply", [ticket]) == [b"300"]
        assert (await call_req(client_b, b"titanic.reply", [ticket]))[0] == b"400"
        assert await call_req(client_b, b"titanic.close", [ticket]) == [b"200"]
        assert (await env.server.hub.list_jobs(_everything()))[0].state == "queued"
        assert (await call_req(monitor, b"titanic.request", [b"echo", b"x"]))[0] == b"500"
        status, workers = await call_req(monitor, b"mmi.workers", [])
        assert status == b"200" and workers == b"[]"
        assert (await call_req(monitor, b"mmi.stats", []))[0] == b"200"
        assert await call_req(client_a, b"mmi.service", [b"echo"]) == [b"404"]
        worker = env.worker(WORKER)
        await worker.ready(b"echo")
        await env.attached(1)
        address, body = await worker.request()
        await worker.reply(address, body)
        await eventually(lambda: _titanic_done(client_a, ticket))
        assert await call_req(client_a, b"titanic.reply", [ticket]) == [b"200", b"kept"]


async def _titanic_done(client: Peer, ticket: bytes) -> bool:
    return (await call_req(client, b"titanic.reply", [ticket]))[0] == b"200"


async def test_pypi_majortomo_on_a_trusted_listener_with_auth_on(tmp_path: Path) -> None:
    from majortomo import Client as MtClient
    from majortomo import Worker as MtWorker

    async with auth_mdp_hub(tmp_path) as env:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()

        def work() -> None:
            worker: Any = MtWorker(
                env.endpoint(WORKER), "upper", heartbeat_interval=0.2, zmq_context=ctx, zmq_linger=2000
            )
            worker.connect()
            client, frames = worker.wait_for_request()
            worker.send_reply_partial(client, [b"working"])
            worker.send_reply_final(client, [f.upper() for f in frames])
            worker.close()

        def ask(endpoint: str) -> list[list[bytes]]:
            client: Any = MtClient(endpoint, zmq_context=ctx, zmq_linger=0)
            client.connect()
            try:
                client.send(b"upper", b"abc", b"")
                return list(client.recv_all(timeout=10))
            finally:
                client.close()

        outcomes = await asyncio.gather(
            asyncio.to_thread(work), asyncio.to_thread(ask, env.endpoint(CLIENT_B)), return_exceptions=True
        )
        refused = await asyncio.to_thread(ask, env.endpoint(PLAIN))
        ctx.destroy(linger=0)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        assert outcomes[1] == [[b"working"], [b"ABC", b""]]
        assert refused[0][:2] == [b"jobq.error", b"unauthorized"]
        [job] = await env.server.hub.list_jobs(_everything())
        assert job.customer_id == "B"


async def test_without_auth_the_listener_still_narrows_and_plain_ones_are_the_local_admin(
    tmp_path: Path,
) -> None:
    listeners = ["tcp://127.0.0.1:*", "tcp://127.0.0.1:*?trusted=client&customer=A"]
    async with serving(zmq=listeners) as server:
        ctx = zmq.asyncio.Context()
        try:
            endpoints = server.door(ZmqRouter).endpoints
            worker = Worker(ctx, endpoints[0])
            await worker.ready(b"echo")
            await eventually(lambda: len(server.hub.connected()) == 1)
            for endpoint, customer in ((endpoints[0], None), (endpoints[1], "A")):
                client = Peer(ctx, endpoint, zmq.REQ)
                call = asyncio.ensure_future(call_req(client, b"echo", [b"x"]))
                address, body = await worker.request()
                await worker.reply(address, body)
                assert await call == [b"x"]
                client.close()
                job = await server.hub.get(int(address.split(b".")[0]))
                assert job.customer_id == customer
            worker.close()
        finally:
            ctx.destroy(linger=0)


async def test_after_a_memory_hub_restart_a_late_reply_of_the_previous_hub_is_refused() -> None:
    """The bug of the issue: the restarted hub numbers jobs from 1 again, and a reply the old
    worker sends for the previous hub's job 1 answered the new client's request 1."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.asyncio.Context()
    try:
        old_worker = Worker(ctx, endpoint)
        async with serving(zmq=[endpoint]) as first:
            await old_worker.ready(b"echo")
            await eventually(lambda: len(first.hub.connected()) == 1)
            old_client = Peer(ctx, endpoint, zmq.DEALER)
            await old_client.send([b"", C01, b"echo", b"first hub's question"])
            old_address, _ = await old_worker.request()
            old_client.close()
        async with serving(zmq=[endpoint]) as second:
            new_worker = Worker(ctx, endpoint)
            await new_worker.ready(b"echo")
            await eventually(lambda: len(second.hub.connected()) == 1)
            client = Peer(ctx, endpoint, zmq.DEALER)
            await client.send([b"", C01, b"echo", b"second hub's question"])
            address, body = await new_worker.request()
            assert address.split(b".")[:2] == old_address.split(b".")[:2] and address != old_address
            # The old worker, reconnected to the new hub, sends its late reply.
            await old_worker.reply(old_address, [b"the previous hub's answer"])
            assert await client.quiet(0.5)
            await new_worker.reply(address, body)
            assert await client.recv() == [b"", C01, b"echo", b"second hub's question"]
            client.close()
            new_worker.close()
        old_worker.close()
    finally:
        ctx.destroy(linger=0)


def _everything() -> JobFilter:
    return JobFilter()
