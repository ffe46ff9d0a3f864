"""Issue 4: Majordomo timing and failures: heartbeats, busy workers, a worker SIGKILLed
mid-request, leases, malformed frames of every kind; Titanic; advertised payload schemas."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from jobq.client.client import Client
from jobq.errors import InvalidRequest
from jobq.worker.runtime import Worker as SdkWorker
from tests.helpers import REPO, Proc, eventually, start_hub
from tests.integration.test_mdp import call_req, mdp_hub
from tests.mdp_peers import C01, C02, W01, W02

# ---------------------------------------------------------------- heartbeats and liveness


async def test_idle_workers_get_heartbeats_and_a_silent_one_is_dropped() -> None:
    async with mdp_hub(mdp_heartbeat=0.2, mdp_liveness=3) as env:
        talker, silent = env.worker(1), env.worker(2, lead=False)
        await env.ready(talker, b"svc")
        await env.ready(silent, b"svc", 2)

        async def keep_talking() -> None:
            while True:
                await talker.command(talker.hb)
                await asyncio.sleep(0.05)

        beating = asyncio.ensure_future(keep_talking())
        try:
            for _ in range(3):
                await talker.heartbeat(timeout=5)
                await silent.heartbeat(timeout=5)
            # The silent one (it never answers) is dropped; the talking one stays.
            assert await silent.next(timeout=10) == [b"\x06"]
            await eventually(lambda: env.serves("svc", 1))
            await asyncio.sleep(1.0)  # five more heartbeat intervals
            assert await env.serving("svc") == 1
        finally:
            beating.cancel()
        client = env.client(zmq.REQ)
        call = asyncio.ensure_future(call_req(client, b"svc", [b"x"]))
        address, body = await talker.request()
        await talker.reply(address, body)
        assert await call == [b"x"]


async def test_a_busy_rfc7_worker_is_not_expired_by_silence() -> None:
    async with mdp_hub(mdp_heartbeat=0.05, mdp_liveness=3) as env:
        worker = env.worker(1)
        await env.ready(worker, b"slow")
        client = env.client(zmq.REQ)
        call = asyncio.ensure_future(call_req(client, b"slow", [b"x"]))
        address, _body = await worker.request()
        await asyncio.sleep(1.0)  # silent, as a zguide worker running a request: 20 heartbeats
        await worker.reply(address, [b"late but fine"])
        assert await call == [b"late but fine"]
        assert await env.serving("slow") == 1
        await worker.heartbeat()  # heartbeats, never a DISCONNECT


async def test_the_lease_is_the_limit_for_a_busy_worker() -> None:
    # Idle workers here are silent: a heartbeat interval long enough for them not to expire.
    async with mdp_hub(mdp_heartbeat=2.0, lease_ttl=0.5, tick=0.05) as env:
        stuck, other = env.worker(1), env.worker(1)
        await env.ready(stuck, b"svc")
        client = env.client()
        await client.send([b"", C01, b"svc", b"job"])
        old_address, _ = await stuck.request()
        await env.ready(other, b"svc", 2)
        # The lease runs out: the request goes to the other worker.
        address, body = await other.request(timeout=10)
        assert address != old_address
        await other.reply(address, [b"from other"])
        assert await client.recv() == [b"", C01, b"svc", b"from other"]
        # The stuck worker's late reply is refused: the client got exactly one reply.
        await stuck.reply(old_address, [b"too late"])
        assert await client.quiet(0.3)
        # After answering, the stuck worker is served again.
        await other.command(other.bye)
        await eventually(lambda: env.serves("svc", 1))
        await client.send([b"", C01, b"svc", b"next"])
        address, body = await stuck.request()
        await stuck.reply(address, body)
        assert await client.recv() == [b"", C01, b"svc", b"next"]


# ---------------------------------------------------------------- a worker SIGKILLed mid-request


def mdp_worker_process(tmp: Path, endpoint: str, service: str, *, sleep: bool, name: str) -> Proc:
    args = [sys.executable, "-m", "tests.mdp_peers", endpoint, service, "--heartbeat", "0.2"]
    return Proc([*args, *(["--sleep"] if sleep else [])], tmp / f"{name}.log", env={"PYTHONPATH": str(REPO)})


async def test_a_busy_worker_sigkilled_mid_request_is_replaced_and_the_client_gets_one_reply(
    tmp_path: Path, procs: list[Proc]
) -> None:
    store = f"sqlite:///{tmp_path / 'jobq.db'}"
    # Heartbeats every 0.2 s find the dead worker; a long liveness keeps slow-starting
    # worker processes from being dropped while idle on a busy machine.
    async with mdp_hub(store, mdp_heartbeat=0.2, mdp_liveness=10, lease_ttl=5) as env:
        victim = mdp_worker_process(tmp_path, env.endpoint, "work", sleep=True, name="victim")
        procs.append(victim)
        await eventually(lambda: env.serves("work", 1))
        client = env.client()
        await client.send([b"", C01, b"work", b"60", b"", b"\xff" * 70000])
        await eventually(lambda: "request" in victim.output())
        victim.kill()
        rescuer = mdp_worker_process(tmp_path, env.endpoint, "work", sleep=False, name="rescuer")
        procs.append(rescuer)
        reply = await client.recv(timeout=30)
        assert reply == [b"", C01, b"work", b"60", b"", b"\xff" * 70000]
        assert await client.quiet(0.5), "exactly one reply"
        assert (await env.server.hub.stats()).counters["requeued"] >= 1


# ---------------------------------------------------------------- malformed frames


def _mdp_garbage() -> st.SearchStrategy[list[bytes]]:
    header = st.sampled_from([C01, W01, C02, W02])
    command = st.one_of(st.binary(max_size=2), st.sampled_from([bytes([i]) for i in range(8)]))
    tail = st.lists(st.binary(max_size=8), max_size=5)
    return st.builds(
        lambda lead, h, cmd, rest: [b""] * lead + [h, *cmd, *rest],
        st.booleans(),
        header,
        st.lists(command, max_size=1),
        tail,
    )


@pytest.fixture(scope="module")
def garbage_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("garbage")
    extra = ["--mdp-heartbeat", "0.2", "--mdp-liveness", "10", "--mdp-no-worker-timeout", "5"]
    hub, endpoint = start_hub(tmp, extra=extra)
    worker = mdp_worker_process(tmp, endpoint, "echo", sleep=False, name="legit")
    try:
        _wait_for_service(endpoint, b"echo")
        yield endpoint
        assert hub.alive(), hub.output()
        assert "Traceback" not in hub.output(), hub.output()
    finally:
        worker.close()
        hub.close()


def _wait_for_service(endpoint: str, service: bytes) -> None:
    """Until mmi.service says a worker serves ``service``."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        client = ctx.socket(zmq.DEALER)
        client.setsockopt(zmq.LINGER, 0)
        client.connect(endpoint)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            client.send_multipart([b"", C01, b"mmi.service", service])
            if client.poll(5000) and client.recv_multipart()[3:] == [b"200"]:
                return
            time.sleep(0.05)
        raise AssertionError(f"no worker for {service!r} came")
    finally:
        ctx.destroy(linger=0)


def _round_trip(ctx: zmq.Context[zmq.Socket[bytes]], endpoint: str) -> list[bytes]:
    client = ctx.socket(zmq.REQ)
    client.setsockopt(zmq.LINGER, 0)
    client.connect(endpoint)
    try:
        client.send_multipart([C01, b"echo", b"alive", b""])
        assert client.poll(10_000), "the hub stopped answering"
        return client.recv_multipart()
    finally:
        client.close()


@settings(max_examples=150, deadline=None)
@given(frames=st.one_of(_mdp_garbage(), st.lists(st.binary(max_size=8), min_size=1, max_size=6)))
def test_malformed_frames_of_every_kind_hurt_nobody(garbage_hub: str, frames: list[bytes]) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        peer = ctx.socket(zmq.DEALER)
        peer.setsockopt(zmq.LINGER, 0)
        peer.connect(garbage_hub)
        peer.send_multipart(frames)
        if peer.poll(30):
            answer = peer.recv_multipart()
            # Whatever the hub answers garbage with is in a protocol it speaks (MDP, or an
            # error of jobq's own protocol for a message that starts with its header).
            assert answer[0] in (b"", C01, C02, W01, W02, b"JQ1"), answer
        peer.close()
        # ... and a well-behaved client and worker carry on.
        assert _round_trip(ctx, garbage_hub) == [C01, b"echo", b"alive", b""]
    finally:
        ctx.destroy(linger=0)


def test_after_the_garbage_the_legit_peers_still_work(garbage_hub: str) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        assert _round_trip(ctx, garbage_hub) == [C01, b"echo", b"alive", b""]
    finally:
        ctx.destroy(linger=0)


# ---------------------------------------------------------------- Titanic


async def titanic_reply_eventually(client: object, uuid: bytes) -> list[bytes]:
    deadline = time.monotonic() + 10
    while True:
        reply = await call_req(client, b"titanic.reply", [uuid])  # type: ignore[arg-type]
        if reply[0] != b"300" or time.monotonic() > deadline:
            return reply
        await asyncio.sleep(0.05)


async def test_titanic_request_reply_close(tmp_path: Path) -> None:
    async with mdp_hub(f"sqlite:///{tmp_path / 'jobq.db'}") as env:
        client = env.client(zmq.REQ)
        status, uuid = await call_req(client, b"titanic.request", [b"echo", b"a", b"", b"\x00"])
        assert status == b"200" and len(uuid) == 32
        assert await call_req(client, b"titanic.reply", [uuid]) == [b"300"]
        worker = env.worker(2, lead=False)
        await env.ready(worker, b"echo")
        address, body = await worker.request()
        assert body == [b"a", b"", b"\x00"]
        await worker.reply(address, [b"A", b""])
        assert await titanic_reply_eventually(client, uuid) == [b"200", b"A", b""]
        assert await call_req(client, b"titanic.close", [uuid]) == [b"200"]
        # Unknown or forged ids
        assert (await call_req(client, b"titanic.reply", [b"0" * 32]))[0] == b"400"
        assert (await call_req(client, b"titanic.reply", [uuid[:16] + b"0" * 16]))[0] == b"400"
        assert (await call_req(client, b"titanic.reply", [b"nonsense"]))[0] == b"400"
        assert (await call_req(client, b"titanic.request", []))[0] == b"400"
        # Closing a pending request withdraws it
        status, pending = await call_req(client, b"titanic.request", [b"nobody", b"x"])
        assert await call_req(client, b"titanic.close", [pending]) == [b"200"]
        assert (await call_req(client, b"titanic.reply", [pending]))[0] == b"400"


async def test_titanic_requests_survive_a_hub_restart(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'jobq.db'}"
    async with mdp_hub(store) as env:
        client = env.client(zmq.REQ)
        status, uuid = await call_req(client, b"titanic.request", [b"echo", b"kept"])
        assert status == b"200"
    async with mdp_hub(store) as env:
        worker = env.worker(1)
        await env.ready(worker, b"echo")
        address, body = await worker.request()
        await worker.reply(address, body)
        client = env.client(zmq.REQ)
        assert await titanic_reply_eventually(client, uuid) == [b"200", b"kept"]


# ---------------------------------------------------------------- advertised payload schemas


RESIZE = {
    "type": "object",
    "properties": {"width": {"type": "integer", "minimum": 1}},
    "required": ["width"],
}


async def test_advertised_schemas_are_shown_and_enforced_on_every_door() -> None:
    async with mdp_hub() as env:
        sdk = SdkWorker(env.endpoint, name="plugins")
        sdk.register("resize", lambda payload: payload, schema=RESIZE)
        running = asyncio.ensure_future(sdk.run())
        try:
            await sdk.wait_connected()
            # jobq services --describe shows the plugin's parameters
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "jobq.cli.main", "services", "--hub", env.endpoint, "--describe", "resize",
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, _ = await proc.communicate()
            assert proc.returncode == 0
            assert json.loads(out)["schema"] == RESIZE
            # jobq's own protocol: refused at once, with the reason
            async with Client(env.endpoint) as client:
                with pytest.raises(InvalidRequest, match="width"):
                    await client.submit("resize", b'{"width": 0}')
                job_id = await client.submit("resize", b'{"width": 3}')
                assert (await client.wait(job_id, 10)).result == [b'{"width": 3}']
            # Majordomo: an error reply on the service asked, with the reason
            req = env.client(zmq.REQ)
            reply = await call_req(req, b"resize", [b'{"height": 2}'])
            assert reply[:2] == [b"jobq.error", b"invalid"] and b"width" in reply[2]
            assert await call_req(req, b"resize", [b'{"width": 2}']) == [b'{"width": 2}']
            status, reason = await call_req(req, b"titanic.request", [b"resize", b"not json"])
            assert status == b"400" and b"JSON" in reason
        finally:
            sdk.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await running
