"""Issue 11, ZeroMQ CURVE: a ``?curve`` listener of the hub takes the client keys of the auth file;
a libzmq (pyzmq) CURVE client speaks the native protocol to it as its key's principal, and the jobq
SDK connects with CURVE over both of its engines; the hub's libzmq engine does the same with a ZAP
handler."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import pytest
import zmq
import zmq.asyncio

from jobq import Client, Worker
from jobq.app import HubServer
from jobq.authfile import allow_key, revoke
from jobq.core.model import JobFilter, JobSpec
from jobq.doors.zmq.router import ZmqRouter
from jobq.errors import Unavailable
from jobq.protocol import connection, native
from tests.helpers import eventually
from tests.integration.zmqauth import Raw, Tokens, audit_records, peers, serving, standard_tokens

SERVER_PUBLIC, SERVER_SECRET = zmq.curve_keypair()
ALICE_PUBLIC, ALICE_SECRET = zmq.curve_keypair()  # a client of customer A
GPU_PUBLIC, GPU_SECRET = zmq.curve_keypair()  # a worker
THIEF_PUBLIC, THIEF_SECRET = zmq.curve_keypair()  # another worker
STRANGER_PUBLIC, STRANGER_SECRET = zmq.curve_keypair()  # in no auth file


@dataclass
class Env:
    server: HubServer
    tokens: Tokens

    @property
    def endpoint(self) -> str:
        return self.server.door(ZmqRouter).endpoints[0]

    def alice(self) -> tuple[bytes, bytes, bytes]:
        return SERVER_PUBLIC, ALICE_PUBLIC, ALICE_SECRET


@contextlib.asynccontextmanager
async def curve_hub(tmp: Path, *, auth: bool = True, **config: Any) -> AsyncIterator[Env]:
    tokens = standard_tokens(tmp)
    allow_key(tokens.path, ALICE_PUBLIC.decode(), "client", name="alice", customers=["A"])
    allow_key(tokens.path, GPU_PUBLIC.decode(), "worker", name="gpu")
    allow_key(tokens.path, THIEF_PUBLIC.decode(), "worker", name="thief")
    options: dict[str, Any] = {"auth": str(tokens.path), "audit": str(tmp / "audit.jsonl")} if auth else {}
    async with serving(
        zmq=["tcp://127.0.0.1:*?curve"],
        curve_secret=SERVER_SECRET.decode(),
        heartbeat=0.2,
        **options,
        **config,
    ) as server:
        yield Env(server, tokens)


class CurveKeys(TypedDict):
    curve_server_key: str
    curve_public_key: str
    curve_secret_key: str


def sdk_keys(public: bytes, secret: bytes) -> CurveKeys:
    return {
        "curve_server_key": SERVER_PUBLIC.decode(),
        "curve_public_key": public.decode(),
        "curve_secret_key": secret.decode(),
    }


@contextlib.asynccontextmanager
async def curve_worker(endpoint: str, **options: object) -> AsyncIterator[Worker]:
    worker = Worker(endpoint, grace=1, **sdk_keys(GPU_PUBLIC, GPU_SECRET), **options)  # type: ignore[arg-type]

    @worker.handler("echo")
    async def echo(payload: bytes) -> bytes:
        return b"echo:" + payload

    task = asyncio.ensure_future(worker.run())
    try:
        await worker.wait_connected()
        yield worker
    finally:
        worker.stop()
        await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("engine", ["asyncio", "libzmq"])
async def test_a_libzmq_curve_client_speaks_native_as_its_keys_principal(tmp_path: Path, engine: str) -> None:
    async with curve_hub(tmp_path, zmq_engine=engine) as env, peers() as (ctx, opened):
        async with Client(
            env.endpoint, token=env.tokens["client-b"], **sdk_keys(GPU_PUBLIC, GPU_SECRET)
        ) as b:
            job_b = await b.submit("echo", b"B's")  # the token names the principal, not the key
        alice = Raw(ctx, env.endpoint, curve=env.alice())
        opened.append(alice)
        reply = await alice.call(
            native.Submit(rid=alice.rid(), jobs=[JobSpec(service="echo", payload=[b"a"])])
        )
        assert isinstance(reply, native.Accepted), reply
        [(job_a, _, _)] = reply.jobs
        job = await env.server.hub.get(job_a)
        assert job.customer_id == "A" and job.owner == "alice"
        listing = await alice.call(native.ListJobs(rid=alice.rid(), query=JobFilter()))
        assert isinstance(listing, native.Jobs) and [j.id for j in listing.jobs if j] == [job_a]
        denied = await alice.call(native.Get(rid=alice.rid(), ids=[job_b]))
        assert isinstance(denied, native.Error) and denied.code == "forbidden"
        # A key the auth file does not list, and a client without CURVE, get nowhere.
        stranger = Raw(ctx, env.endpoint, curve=(SERVER_PUBLIC, STRANGER_PUBLIC, STRANGER_SECRET))
        plain = Raw(ctx, env.endpoint)
        opened += [stranger, plain]
        for peer in (stranger, plain):
            await peer.send(native.Ping(rid=1), timeout=1.0)  # queued at most: no handshake succeeds
            assert await peer.drain(1.0) == []
        assert len(await env.server.hub.list_jobs(JobFilter())) == 2


@pytest.mark.parametrize("engine", ["asyncio", "libzmq"])
async def test_the_sdk_client_and_worker_with_curve_on_either_engine(
    tmp_path: Path, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "ENGINE", engine)
    async with curve_hub(tmp_path) as env, curve_worker(env.endpoint):
        async with Client(env.endpoint, token="", **sdk_keys(ALICE_PUBLIC, ALICE_SECRET)) as alice:
            assert alice.conn.engine == engine
            event = await alice.run("echo", b"over curve", wait_timeout=10)
            assert event.result == [b"echo:over curve"]
            [job] = await alice.jobs()
            assert job.customer_id == "A"
        async with Client(
            env.endpoint, token=env.tokens["admin"], **sdk_keys(ALICE_PUBLIC, ALICE_SECRET)
        ) as admin:
            assert len(await admin.jobs()) == 1
            assert [w.name for w in await admin.workers()]


async def test_the_sdk_over_curve_to_a_libzmq_hub(tmp_path: Path) -> None:
    keys = sdk_keys(ALICE_PUBLIC, ALICE_SECRET)
    async with (
        curve_hub(tmp_path, zmq_engine="libzmq") as env,
        curve_worker(env.endpoint),
        Client(env.endpoint, token="", **keys) as alice,
    ):
        assert await alice.result(await alice.submit("echo", b"x"), 10) == b"echo:x"


async def test_a_revoked_key_is_disconnected_and_let_in_no_more(tmp_path: Path) -> None:
    async with curve_hub(tmp_path) as env:
        async with Client(
            env.endpoint, token="", timeout=1.0, **sdk_keys(ALICE_PUBLIC, ALICE_SECRET)
        ) as alice:
            await alice.submit("echo", b"before")
            revoke(env.tokens.path, "alice")

            async def cut_off() -> bool:
                try:
                    await alice.jobs()
                except Unavailable:
                    return True
                return False

            await eventually(cut_off, timeout=10)
        assert [j.owner for j in await env.server.hub.list_jobs(JobFilter())] == ["alice"]


async def test_without_auth_a_curve_listener_encrypts_for_any_key(tmp_path: Path) -> None:
    async with curve_hub(tmp_path, auth=False) as env:
        keys = sdk_keys(STRANGER_PUBLIC, STRANGER_SECRET)
        async with curve_worker(env.endpoint), Client(env.endpoint, token="", **keys) as anyone:
            assert await anyone.result(await anyone.submit("echo", b"y"), 10) == b"echo:y"
            assert len(await anyone.jobs()) == 1


def test_curve_options_are_checked_when_the_client_is_made() -> None:
    with pytest.raises(ValueError, match="curve_server_key"):
        Client("tcp://127.0.0.1:1", curve_secret_key=ALICE_SECRET.decode())
    keys = sdk_keys(ALICE_PUBLIC, ALICE_SECRET)
    keys["curve_public_key"] = GPU_PUBLIC.decode()
    with pytest.raises(ValueError, match="not the public key"):
        Client("tcp://127.0.0.1:1", **keys)


async def test_majordomo_peers_over_curve_act_as_their_keys(tmp_path: Path) -> None:
    async with curve_hub(tmp_path) as env:
        ctx = zmq.asyncio.Context()

        def socket(public: bytes, secret: bytes) -> zmq.asyncio.Socket:
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = SERVER_PUBLIC, public, secret
            sock.connect(env.endpoint)
            return sock

        try:
            worker, client = socket(GPU_PUBLIC, GPU_SECRET), socket(ALICE_PUBLIC, ALICE_SECRET)
            await worker.send_multipart([b"", b"MDPW01", b"\x01", b"echo"])
            await eventually(lambda: len(env.server.hub.connected()) == 1)
            await client.send_multipart([b"", b"MDPC01", b"echo", b"over curve"])
            frames = await asyncio.wait_for(worker.recv_multipart(), 10)
            assert frames[:3] == [b"", b"MDPW01", b"\x02"]
            address, body = frames[3], frames[5:]
            await worker.send_multipart([b"", b"MDPW01", b"\x03", address, b"", *body])
            reply = await asyncio.wait_for(client.recv_multipart(), 10)
            assert reply == [b"", b"MDPC01", b"echo", b"over curve"]
            [job] = await env.server.hub.list_jobs(JobFilter())
            assert job.customer_id == "A" and job.owner == "alice"
        finally:
            ctx.destroy(linger=0)


async def test_a_majordomo_workers_identity_taken_over_by_another_key_gets_no_request(tmp_path: Path) -> None:
    async with curve_hub(tmp_path) as env:
        ctx = zmq.asyncio.Context()

        def socket(public: bytes, secret: bytes, identity: bytes | None = None) -> zmq.asyncio.Socket:
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            if identity is not None:
                sock.setsockopt(zmq.IDENTITY, identity)
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = SERVER_PUBLIC, public, secret
            sock.connect(env.endpoint)
            return sock

        async def serve(sock: zmq.asyncio.Socket) -> None:
            """A zguide-style worker: heartbeats while idle, READY again after DISCONNECT, echo."""
            while True:
                if not await sock.poll(200):
                    await sock.send_multipart([b"", b"MDPW01", b"\x04"])
                    continue
                frames = await sock.recv_multipart()
                if frames[2] == b"\x05":
                    await sock.send_multipart([b"", b"MDPW01", b"\x01", b"echo"])
                elif frames[2] == b"\x02":
                    await sock.send_multipart([b"", b"MDPW01", b"\x03", frames[3], b"", *frames[5:]])

        try:
            victim = socket(GPU_PUBLIC, GPU_SECRET, b"w1")
            await victim.send_multipart([b"", b"MDPW01", b"\x01", b"echo"])
            await eventually(lambda: len(env.server.hub.connected()) == 1)
            thief = socket(THIEF_PUBLIC, THIEF_SECRET, b"w1")
            await thief.send_multipart([b"", b"MDPW01", b"\x04"])  # a heartbeat as the victim
            client = socket(ALICE_PUBLIC, ALICE_SECRET)
            await client.send_multipart([b"", b"MDPC01", b"echo", b"for the victim"])
            seen: list[list[bytes]] = []
            deadline = asyncio.get_running_loop().time() + 1.5
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                if await thief.poll(int(left * 1000)):
                    seen.append(await thief.recv_multipart())
            assert not any(frames[2] == b"\x02" for frames in seen), seen
            thief.close()
            worker = asyncio.ensure_future(serve(victim))
            reply = await asyncio.wait_for(client.recv_multipart(), 15)
            assert reply == [b"", b"MDPC01", b"echo", b"for the victim"]
            worker.cancel()
            refused = [
                r for r in audit_records(env.tokens.path.parent / "audit.jsonl") if r["event"] == "refused"
            ]
            assert any(r["principal"] == "thief" and r["action"] == "work" for r in refused), refused
        finally:
            ctx.destroy(linger=0)
