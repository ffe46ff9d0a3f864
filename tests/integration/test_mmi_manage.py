"""PhenoLink's Majordomo management services (``mmi.status``, ``mmi.cancel``, ``mmi.list``,
``mmi.health``) from a raw MDP client (a zguide-style REQ socket, frame by frame): on a real hub
process, and on trusted listeners of a hub with ``--auth``, as the listener's principal."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio

from jobq.client.client import Client, make_spec
from tests.helpers import start_hub
from tests.integration.test_auth_mdp import CLIENT_A, CLIENT_B, MONITOR, auth_mdp_hub
from tests.integration.test_mdp import call_req
from tests.mdp_peers import C01, Peer


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[str]:
    proc, endpoint = start_hub(tmp_path)
    try:
        yield endpoint
    finally:
        proc.close()


@pytest.fixture
async def mdp(hub: str) -> AsyncIterator[Peer]:
    ctx = zmq.asyncio.Context()
    peer = Peer(ctx, hub, zmq.REQ)
    try:
        yield peer
    finally:
        peer.close()
        ctx.destroy(linger=0)


async def ask(client: Peer, service: bytes, *body: bytes) -> tuple[bytes, Any]:
    """(status, the JSON answer) of one management request."""
    status, *rest = await call_req(client, service, list(body))
    assert len(rest) == 1, rest
    return status, json.loads(rest[0])


async def test_status_list_cancel_and_health(hub: str, mdp: Peer) -> None:
    status, health = await ask(mdp, b"mmi.health")
    assert status == b"200" and health["status"] == "ok" and health["store"] == "ok" and health["ready"]
    async with Client(hub) as client:
        first = await client.submit("echo", b"one", priority=3)
        second = await client.submit("echo", b"two", after=[first])
        other = await client.submit("resize", b"x")
    status, job = await ask(mdp, b"mmi.status", str(first).encode())
    assert status == b"200"
    assert job["kind"] == "job" and job["id"] == first and job["state"] == "queued"
    assert job["service"] == "echo" and job["priority"] == 3 and "payload" not in job
    status, job = await ask(mdp, b"mmi.status", str(second).encode())
    assert job["state"] == "waiting" and job["after"] == [first]
    assert job["waiting_for"] == f"waits for job {first} (queued)"
    status, jobs = await ask(mdp, b"mmi.list", b"echo")
    assert status == b"200" and [j["id"] for j in jobs] == [second, first]  # newest first
    status, jobs = await ask(mdp, b"mmi.list", b"echo", b"1")
    assert [j["id"] for j in jobs] == [second]
    assert (await ask(mdp, b"mmi.list", b"nobody"))[1] == []
    status, outcome = await ask(mdp, b"mmi.cancel", str(first).encode())
    assert status == b"200" and outcome == {
        "kind": "job",
        "id": first,
        "state": "cancelled",
        "outcome": "cancelled",
    }
    # Its dependent ended with it, and a second cancel is a conflict.
    assert (await ask(mdp, b"mmi.status", str(second).encode()))[1]["state"] == "cancelled"
    status, error = await ask(mdp, b"mmi.cancel", str(first).encode())
    assert status == b"400" and error["error"] == "conflict" and "already ended cancelled" in error["message"]
    status, error = await ask(mdp, b"mmi.status", b"999999")
    assert status == b"404" and error == {"error": "not_found", "message": "no job or group 999999"}
    assert (await ask(mdp, b"mmi.status", str(other).encode()))[1]["service"] == "resize"
    # The four are services of the hub: mmi.service says so.
    for name in (b"mmi.status", b"mmi.cancel", b"mmi.list", b"mmi.health"):
        assert await call_req(mdp, b"mmi.service", [name]) == [b"200"]


@pytest.mark.parametrize(
    ("service", "body", "message"),
    [
        (b"mmi.status", [], "mmi.status needs [id]: a job or group id is missing"),
        (b"mmi.status", [b""], "mmi.status needs [id]: a job or group id is missing"),
        (b"mmi.status", [b"abc"], "the id must be a whole number from 1 to 9223372036854775807, not 'abc'"),
        (b"mmi.status", [b"0"], "the id must be a whole number from 1 to 9223372036854775807, not '0'"),
        (b"mmi.status", [b"-5"], "the id must be a whole number from 1 to 9223372036854775807, not '-5'"),
        (b"mmi.status", [b"1" * 30], "the id must be a whole number from 1 to 9223372036854775807, not '"),
        (b"mmi.status", [b"7" * 5000], "the id must be a whole number"),  # past int()'s digit limit
        (b"mmi.cancel", [b"\xff\xfe"], "mmi.cancel needs [id]: a job or group id must be UTF-8"),
        (b"mmi.cancel", [b"\xd9\xa3"], "the id must be a whole number"),  # an Arabic-Indic 3
        (b"mmi.list", [], "mmi.list needs [service, limit?]: the service is missing"),
        (b"mmi.list", [b"echo", b"5000"], "the limit must be a whole number from 1 to 1000, not '5000'"),
        (b"mmi.list", [b"echo", b"ten"], "the limit must be a whole number from 1 to 1000, not 'ten'"),
    ],
)
async def test_bad_bodies_get_a_clear_json_error(
    mdp: Peer, service: bytes, body: list[bytes], message: str
) -> None:
    status, error = await ask(mdp, service, *body)
    assert status == b"400" and error["error"] == "invalid"
    assert error["message"].startswith(message), error
    # ... and the hub goes on answering.
    assert (await ask(mdp, b"mmi.health"))[0] == b"200"


async def test_a_dealer_client_of_mdp_0_2_gets_json_too(hub: str) -> None:
    ctx = zmq.asyncio.Context()
    dealer = Peer(ctx, hub)
    try:
        await dealer.send([b"MDPC02", b"\x01", b"mmi.health"])
        reply = await dealer.recv()
        assert reply[:4] == [b"MDPC02", b"\x03", b"mmi.health", b"200"]
        assert json.loads(reply[4])["status"] == "ok"
    finally:
        dealer.close()
        ctx.destroy(linger=0)


async def test_on_trusted_listeners_the_listeners_principal_decides(tmp_path: Path) -> None:
    async with auth_mdp_hub(tmp_path) as env:
        client_a, client_b, monitor = env.client(CLIENT_A), env.client(CLIENT_B), env.client(MONITOR)
        status, ticket = await call_req(client_a, b"titanic.request", [b"echo", b"a's"])
        assert status == b"200"
        job_id = int(ticket[:16], 16)
        status, job = await ask(client_a, b"mmi.status", str(job_id).encode())
        assert status == b"200" and job["customer_id"] == "A"
        # Customer B neither sees, lists nor cancels A's job.
        status, error = await ask(client_b, b"mmi.status", str(job_id).encode())
        assert status == b"403" and error["error"] == "forbidden"
        assert (await ask(client_b, b"mmi.list", b"echo"))[1] == []
        assert (await ask(client_a, b"mmi.list", b"echo"))[1][0]["id"] == job_id
        assert (await ask(client_b, b"mmi.cancel", str(job_id).encode()))[0] == b"403"
        # A monitor reads, but may not cancel; health is for anyone on a listener it may use.
        assert (await ask(monitor, b"mmi.status", str(job_id).encode()))[1]["state"] == "queued"
        status, error = await ask(monitor, b"mmi.cancel", str(job_id).encode())
        assert status == b"403" and error["error"] == "forbidden"
        assert (await ask(monitor, b"mmi.health"))[0] == b"200"
        status, outcome = await ask(client_a, b"mmi.cancel", str(job_id).encode())
        assert status == b"200" and outcome["state"] == "cancelled"
        assert (await env.server.hub.get(job_id)).state == "cancelled"
        # A plain listener with --auth: refused before any service answers.
        plain = env.client(0)
        await plain.send([C01, b"mmi.health"])
        assert (await plain.recv())[2:4] == [b"jobq.error", b"unauthorized"]


async def test_a_group_id_answers_for_the_group(hub: str, mdp: Peer) -> None:
    """Group ids and job ids share one sequence: mmi.status and mmi.cancel take either."""
    async with Client(hub) as client:
        made = await client.submit_group(members=[make_spec("echo", b"a"), make_spec("echo", b"b")])
    group = made.group.id
    status, found = await ask(mdp, b"mmi.status", str(group).encode())
    assert status == b"200" and found["kind"] == "group" and found["id"] == group
    assert found["state"] == "running" and found["total"] == 2 and found["counts"] == {"queued": 2}
    member = (await ask(mdp, b"mmi.status", str(made.members[0]).encode()))[1]
    assert member["kind"] == "job" and member["group"] == group
    status, outcome = await ask(mdp, b"mmi.cancel", str(group).encode())
    assert status == b"200" and outcome["kind"] == "group" and outcome["outcome"] == "cancelled"
    assert outcome["state"] == "cancelled" and outcome["counts"] == {"cancelled": 2}
    status, error = await ask(mdp, b"mmi.cancel", str(group).encode())
    assert status == b"400" and error["error"] == "conflict"
