"""Issue 11 on the ZeroMQ native door: with --auth every attack of the issue is refused (and costs
nothing), and each still works for a token with the right. Raw peers send frames as an attacker
would; the SDK is the legitimate side."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jobq import Client, SyncClient, Worker
from jobq.app import HubServer
from jobq.authfile import revoke
from jobq.core.model import JobFilter, JobSpec
from jobq.doors.zmq.native import NativeDoor
from jobq.doors.zmq.router import ZmqRouter
from jobq.errors import Forbidden, Unauthorized
from jobq.protocol import native
from tests.helpers import Proc, eventually, start_hub, start_worker
from tests.integration.zmqauth import Raw, Tokens, audit_records, error_code, peers, serving, standard_tokens

STRICT_A = {"customer_access": {"allowed_customers": ["A"], "isolation": "strict"}}


@dataclass
class Env:
    server: HubServer
    endpoint: str
    tokens: Tokens
    audit: Path

    def client(self, name: str | None) -> Client:
        return Client(self.endpoint, token=self.tokens[name] if name else "")

    def refusals(self, action: str | None = None) -> list[dict[str, object]]:
        return [
            r
            for r in audit_records(self.audit)
            if r["event"] == "refused" and (action is None or r["action"] == action)
        ]


@contextlib.asynccontextmanager
async def auth_hub(tmp: Path, **config: Any) -> AsyncIterator[Env]:
    tokens = standard_tokens(tmp)
    audit = tmp / "audit.jsonl"
    async with serving(auth=str(tokens.path), audit=str(audit), heartbeat=0.2, **config) as server:
        yield Env(server, server.door(ZmqRouter).endpoints[0], tokens, audit)


@contextlib.asynccontextmanager
async def running_worker(worker: Worker, endpoint: str) -> AsyncIterator[Worker]:
    worker.hub = endpoint
    task = asyncio.ensure_future(worker.run())
    try:
        await worker.wait_connected()
        yield worker
    finally:
        worker.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


def gated_worker(token: str, gate: asyncio.Event, **options: object) -> Worker:
    """A worker of ``echo`` whose handler waits for ``gate`` (so its job stays running)."""
    worker = Worker(token=token, grace=1, **options)  # type: ignore[arg-type]

    @worker.handler("echo")
    async def echo(payload: bytes) -> bytes:
        await gate.wait()
        return b"real:" + payload

    return worker


async def submit_two(env: Env) -> tuple[int, int]:
    """A job of customer A (by A's client) and one of B (by B's)."""
    async with env.client("client-a") as a, env.client("client-b") as b:
        return await a.submit("echo", b"secret of A"), await b.submit("echo", b"of B")


# ---------------------------------------------------------------- no credential


async def test_without_a_token_every_request_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    async with auth_hub(tmp_path) as env, peers() as (ctx, opened):
        job_a, _ = await submit_two(env)
        raw = Raw(ctx, env.endpoint)
        opened.append(raw)
        query = JobFilter()
        requests: list[native.Inbound] = [
            native.ListJobs(rid=raw.rid(), query=query),
            native.Get(rid=raw.rid(), ids=[job_a], payload=True),
            native.Wait(rid=raw.rid(), ids=[job_a], timeout=0.1),
            native.Subscribe(rid=raw.rid()),
            native.Cancel(rid=raw.rid(), ids=[job_a]),
            native.Retry(rid=raw.rid(), ids=[job_a]),
            native.Submit(rid=raw.rid(), jobs=[JobSpec(service="echo")]),
            native.Info(rid=raw.rid(), what="workers"),
            native.Info(rid=raw.rid(), what="stats"),
            native.Ping(rid=raw.rid()),
            native.Submit(rid=raw.rid(), jobs=[JobSpec(service="echo")], credential="jq_not-a-token"),
        ]
        for request in requests:
            reply = await raw.call(request)
            assert error_code(reply) == "unauthorized", (request, reply)
        # Nothing changed: two jobs, A's still queued.
        assert len(await env.server.hub.list_jobs(query)) == 2
        assert (await env.server.hub.get(job_a)).state == "queued"
        refused = env.refusals("authenticate")
        assert len(refused) == len(requests)
        assert all(str(r["peer"]).startswith("127.0.0.1:") and r["door"] == "zmq" for r in refused)
        assert "jq_not-a-token" not in env.audit.read_text()
        # The SDK raises the same.
        async with env.client(None) as anonymous:
            with pytest.raises(Unauthorized):
                await anonymous.jobs()


# ---------------------------------------------------------------- clients


async def test_listing_is_narrowed_to_the_tokens_customers(tmp_path: Path) -> None:
    async with auth_hub(tmp_path) as env:
        job_a, job_b = await submit_two(env)
        async with env.client("client-b") as b, env.client("admin") as admin:
            assert [j.id for j in await b.jobs()] == [job_b]
            with pytest.raises(Forbidden):
                await b.jobs(customer_id="A")
            assert {j.id for j in await admin.jobs()} == {job_a, job_b}
            stats = await b.stats()
            assert sum(stats["jobs"]["by_state"].values()) == 1


async def test_another_customers_payload_and_result_cannot_be_read(tmp_path: Path) -> None:
    async with auth_hub(tmp_path) as env:
        gate = asyncio.Event()
        gate.set()
        async with running_worker(gated_worker(env.tokens["worker-all"], gate), env.endpoint):
            job_a, _ = await submit_two(env)
            async with env.client("client-a") as a, env.client("client-b") as b:
                assert await a.result(job_a, 10) == b"real:secret of A"
                for read in (b.status(job_a, payload=True), b.wait(job_a, 1), b.explain(job_a)):
                    with pytest.raises(Forbidden):
                        await read
                job = await a.status(job_a, payload=True)
                assert job is not None and job.payload == [b"secret of A"]
            async with env.client("monitor") as monitor:
                seen = await monitor.status(job_a, payload=True)
                assert seen is not None and seen.payload == [] and seen.result is None
        assert any(
            r["target"] == f"job {job_a}" and r["principal"] == "client-b" for r in env.refusals("read")
        )


async def test_events_are_only_those_the_token_may_see(tmp_path: Path) -> None:
    async with auth_hub(tmp_path) as env, peers() as (ctx, opened):
        raw_b = Raw(ctx, env.endpoint)
        raw_monitor = Raw(ctx, env.endpoint)
        raw_worker = Raw(ctx, env.endpoint)
        opened += [raw_b, raw_monitor, raw_worker]
        for raw, name in ((raw_b, "client-b"), (raw_monitor, "monitor")):
            reply = await raw.call(native.Subscribe(rid=raw.rid(), credential=env.tokens[name]))
            assert isinstance(reply, native.Reply), reply
        reply = await raw_worker.call(native.Subscribe(rid=1, credential=env.tokens["worker-all"]))
        assert error_code(reply) == "forbidden"
        job_a, job_b = await submit_two(env)
        async with env.client("admin") as admin:
            await admin.cancel(job_a)
            await admin.cancel(job_b)

        def ids(raw: Raw) -> set[int]:
            return {e.id for m in raw.received if isinstance(m, native.Events) for e in m.events}

        await raw_monitor.drain(0.5)
        await eventually(lambda: ids(raw_monitor) == {job_a, job_b})
        await raw_b.drain(0.3)
        assert ids(raw_b) == {job_b}


async def test_cancel_and_retry_of_another_customers_job_are_refused(tmp_path: Path) -> None:
    async with auth_hub(tmp_path) as env:
        job_a, _ = await submit_two(env)
        async with env.client("client-a") as a, env.client("client-b") as b:
            with pytest.raises(Forbidden):
                await b.cancel(job_a)
            assert (await env.server.hub.get(job_a)).state == "queued"
            assert (await a.cancel(job_a)).state == "cancelled"
            with pytest.raises(Forbidden):
                await b.retry(job_a)
            assert (await env.server.hub.get(job_a)).state == "cancelled"
            assert (await a.retry(job_a)).state == "queued"
        assert {r["action"] for r in env.refusals()} >= {"cancel", "retry"}


# ---------------------------------------------------------------- results and failures


@pytest.mark.parametrize("attacker", [None, "client-b", "worker-all", "admin"])
async def test_forged_results_and_failures_from_a_foreign_connection_are_refused(
    tmp_path: Path, attacker: str | None
) -> None:
    async with auth_hub(tmp_path) as env, peers() as (ctx, opened):
        gate = asyncio.Event()
        async with running_worker(gated_worker(env.tokens["worker-all"], gate), env.endpoint):
            job_a, _ = await submit_two(env)
            await eventually(lambda: _state(env, job_a, "running"))
            raw = Raw(ctx, env.endpoint)
            opened.append(raw)
            credential = env.tokens[attacker] if attacker else None
            # The token of the attempt is its number: 1.
            await raw.send(native.Done(results=[(job_a, 1, [b"forged"])], credential=credential))
            await raw.send(native.Fail(id=job_a, token=1, error="x", retryable=False, credential=credential))
            await raw.send(native.Progress(id=job_a, token=1, value=99.0, credential=credential))
            await raw.send(native.Release(jobs=[(job_a, 1)], credential=credential))
            await raw.drain(0.5)
            job = await env.server.hub.get(job_a)
            assert job.state == "running" and job.result is None and job.progress != 99.0
            gate.set()
            await eventually(lambda: _state(env, job_a, "completed"))
            assert (await env.server.hub.get(job_a)).result == [b"real:secret of A"]


async def _state(env: Env, job_id: int, state: str) -> bool:
    return (await env.server.hub.get(job_id)).state == state


# ---------------------------------------------------------------- workers


async def test_only_a_worker_token_may_register_as_a_worker(tmp_path: Path) -> None:
    async with auth_hub(tmp_path) as env, peers() as (ctx, opened):
        await submit_two(env)
        for name, code in ((None, "unauthorized"), ("client-a", "forbidden"), ("monitor", "forbidden")):
            raw = Raw(ctx, env.endpoint, identity=f"fake-{name}".encode())
            opened.append(raw)
            hello = native.Hello(
                worker_id=f"fake-{name}",
                services=["echo"],
                slots=4,
                credential=env.tokens[name] if name else None,
            )
            await raw.send(hello)
            got = await raw.drain(0.5)
            assert [error_code(m) for m in got] == [code], got
            assert not any(isinstance(m, native.Assign) for m in got)
        assert not env.server.hub.connected()
        # A worker token may.
        raw = Raw(ctx, env.endpoint, identity=b"real")
        opened.append(raw)
        await raw.send(
            native.Hello(worker_id="real", services=["echo"], slots=4, credential=env.tokens["worker-all"])
        )
        got = await raw.drain(0.5)
        assert isinstance(got[0], native.Welcome)
        assert sum(len(m.jobs) for m in got if isinstance(m, native.Assign)) == 2


async def test_a_worker_cannot_take_over_another_principals_worker(tmp_path: Path) -> None:
    async with auth_hub(tmp_path) as env, peers() as (ctx, opened):
        gate = asyncio.Event()
        worker = gated_worker(env.tokens["worker-all"], gate, worker_id="victim", concurrency=3)
        async with running_worker(worker, env.endpoint), env.client("client-a") as a:
            job_a, _ = await submit_two(env)
            await eventually(lambda: _state(env, job_a, "running"))
            # Another worker token says hello as the same worker id, from its own connection ...
            raw = Raw(ctx, env.endpoint, identity=b"thief")
            opened.append(raw)
            await raw.send(
                native.Hello(worker_id="victim", services=["echo"], credential=env.tokens["worker-b"])
            )
            assert [error_code(m) for m in await raw.drain(0.5)] == ["forbidden"]
            # ... and from the victim's own ZeroMQ identity (taking its connection over).
            thief = Raw(ctx, env.endpoint, identity=b"victim")
            opened.append(thief)
            token = env.tokens["worker-b"]
            await thief.send(native.Done(results=[(job_a, 1, [b"stolen"])], credential=token))
            await thief.send(
                native.Hello(worker_id="victim", services=["echo"], held=[(job_a, 1)], credential=token)
            )
            await thief.send(native.Heartbeat(credential=token))
            # A job for the victim while its identity is someone else's: held back, not pushed.
            job_c = await a.submit("echo", b"meanwhile")
            got = await thief.drain(1.0)
            assert not any(isinstance(m, native.Assign | native.Welcome) for m in got), got
            thief.close()
            opened.remove(thief)
            job = await env.server.hub.get(job_a)
            assert job.state == "running" and job.worker == "victim" and job.result is None
            gate.set()
            assert await a.result(job_c, 10) == b"real:meanwhile"
            assert await a.result(job_a, 10) == b"real:secret of A"
            # The victim carries on: a new job reaches it.
            assert await a.result(await a.submit("echo", b"next"), 10) == b"real:next"
        assert {r["action"] for r in env.refusals() if r["principal"] == "worker-b"} & {"attach", "work"}


async def test_a_customer_b_worker_declaring_a_never_gets_as_strict_job(tmp_path: Path) -> None:
    async with auth_hub(tmp_path) as env, peers() as (ctx, opened):
        async with env.client("client-a") as a:
            strict = await a.submit("echo", b"A only", isolation="strict")
        raw = Raw(ctx, env.endpoint, identity=b"liar")
        opened.append(raw)
        hello = native.Hello(
            worker_id="liar",
            services=["echo"],
            slots=4,
            capabilities=STRICT_A,
            credential=env.tokens["worker-b"],
        )
        await raw.send(hello)
        got = await raw.drain(1.0)
        assert [error_code(m) for m in got] == ["forbidden"], got
        assert (await env.server.hub.get(strict)).state == "queued"
        # A worker of B that declares nothing serves B's jobs only ...
        honest = Raw(ctx, env.endpoint, identity=b"honest-b")
        opened.append(honest)
        await honest.send(
            native.Hello(worker_id="honest-b", services=["echo"], slots=4, credential=env.tokens["worker-b"])
        )
        async with env.client("client-b") as b:
            job_b = await b.submit("echo", b"B's")
        got = await honest.drain(1.0)
        assigned = [j.id for m in got if isinstance(m, native.Assign) for j in m.jobs]
        assert assigned == [job_b]
        # ... and A's worker, dedicated to A, gets A's strict job.
        gate = asyncio.Event()
        gate.set()
        async with running_worker(
            gated_worker(env.tokens["worker-a"], gate, capabilities=STRICT_A), env.endpoint
        ):
            await eventually(lambda: _state(env, strict, "completed"))


# ---------------------------------------------------------------- tokens with the right, trusted listeners


async def test_every_call_works_for_a_token_with_the_right(tmp_path: Path) -> None:
    async with auth_hub(tmp_path) as env:
        gate = asyncio.Event()
        gate.set()
        async with running_worker(gated_worker(env.tokens["worker-all"], gate), env.endpoint):
            async with env.client("client-a") as a:
                event = await a.run("echo", b"x")
                assert event.result == [b"real:x"]
                job_id = await a.submit("echo", b"y")
                assert await a.result(job_id, 10) == b"real:y"
                assert [w.id for w in await a.workers()]
                assert (await a.explain(job_id)).id == job_id
                assert await a.ping() == "hub"
            async with env.client("admin") as admin:
                assert len(await admin.jobs()) == 2


async def test_trusted_listener_peers_act_as_its_principal(tmp_path: Path) -> None:
    async with auth_hub(
        tmp_path, zmq=["tcp://127.0.0.1:*", "tcp://127.0.0.1:*?trusted=client&customer=A"]
    ) as env:
        trusted = env.server.door(ZmqRouter).endpoints[1]
        async with Client(trusted, token="") as anonymous, env.client("client-b") as b:
            job = await anonymous.submit("echo", b"from the trusted listener")
            found = await env.server.hub.get(job)
            assert found.customer_id == "A" and str(found.owner).startswith("trusted:")
            assert [j.id for j in await anonymous.jobs()] == [job]
            with pytest.raises(Forbidden):
                await b.status(job)
            # A token on the trusted listener names its own principal.
            async with Client(trusted, token=env.tokens["client-b"]) as b_there:
                with pytest.raises(Forbidden):
                    await b_there.status(job)


async def test_a_revoked_token_stops_working_and_loses_its_subscription(tmp_path: Path) -> None:
    async with auth_hub(tmp_path) as env, peers() as (ctx, opened):
        raw = Raw(ctx, env.endpoint)
        opened.append(raw)
        reply = await raw.call(native.Subscribe(rid=raw.rid(), credential=env.tokens["client-b"]))
        assert isinstance(reply, native.Reply)
        revoke(env.tokens.path, "client-b")
        async with env.client("client-b") as b:

            async def refused() -> bool:
                try:
                    await b.jobs()
                except Unauthorized:
                    return True
                return False

            await eventually(refused, timeout=5)
        door = env.server.door(ZmqRouter).protocol(NativeDoor)
        assert not door.subscribers
        async with env.client("client-b") as again:
            with pytest.raises(Unauthorized):
                await again.submit("echo", b"")


async def test_with_the_libzmq_engine_listeners_and_tokens_are_told_apart(tmp_path: Path) -> None:
    listeners = ["tcp://127.0.0.1:*", "tcp://127.0.0.1:*?trusted=client&customer=B"]
    async with auth_hub(tmp_path, zmq=listeners, zmq_engine="libzmq") as env:
        trusted = env.server.door(ZmqRouter).endpoints[1]
        job_a, job_b = await submit_two(env)
        async with Client(trusted, token="") as anonymous, env.client(None) as nobody:
            assert [j.id for j in await anonymous.jobs()] == [job_b]
            with pytest.raises(Unauthorized):
                await nobody.jobs()
        assert any(str(r["peer"]).startswith("127.0.0.1") for r in env.refusals("authenticate"))
        gate = asyncio.Event()
        gate.set()
        worker = gated_worker(env.tokens["worker-all"], gate)
        async with running_worker(worker, env.endpoint), env.client("client-a") as a:
            assert await a.result(job_a, 10) == b"real:secret of A"


async def test_a_worker_whose_hello_is_refused_stops_with_the_reason(tmp_path: Path) -> None:
    async with auth_hub(tmp_path) as env:
        for token, error in (("", Unauthorized), (env.tokens["client-a"], Forbidden)):
            worker = Worker(env.endpoint, token=token, grace=0.1)
            worker.register("echo", lambda payload: payload)
            with pytest.raises(error):
                await asyncio.wait_for(worker.run(), 10)


def test_hub_and_worker_processes_with_auth(tmp_path: Path, procs: list[Proc]) -> None:
    tokens = standard_tokens(tmp_path)
    hub, endpoint = start_hub(tmp_path, extra=["--auth", str(tokens.path)])
    procs.append(hub)
    refused = start_worker(tmp_path, endpoint, name="no-token", env={"JOBQ_TOKEN": ""})
    worker = start_worker(tmp_path, endpoint, name="with-token", env={"JOBQ_TOKEN": tokens["worker-all"]})
    procs += [refused, worker]
    with SyncClient(endpoint, token=tokens["client-a"]) as client:
        assert client.result(client.submit("echo", b"through processes"), 20) == b"through processes"
    assert refused.popen.wait(20) == 7, refused.output()
    assert "not authorized" in refused.output()
