"""Identity on the line door: ``AUTH <token>`` as the first line, trusted listeners for the
legacy programs, every command under its caller's rights, TLS listeners, revocation."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from jobq import authfile
from jobq.app import HubServer
from jobq.core.model import JobFilter
from jobq.doors.line import LineDoor
from jobq.errors import InvalidRequest
from jobq.hub.hub import Hub
from jobq.store.memory import MemoryStore
from tests.helpers import eventually, running_hub
from tests.integration.linepeer import TIMEOUT, Peer, once

NEEDS_TOKEN = "ERR not authorized: this listener needs a token: send AUTH <token> as the first line"


@dataclass
class AuthHub:
    server: HubServer
    path: Path
    tokens: dict[str, str]
    #: The listeners in the order asked for: (host, port).
    addresses: list[tuple[str, int]]
    peers: list[Peer]

    @property
    def hub(self) -> Hub:
        return self.server.hub

    async def peer(self, index: int = 0, token: str | None = None) -> Peer:
        """A connection to listener ``index``, authenticated with the named token if given."""
        peer = await Peer.open(self.addresses[index])
        self.peers.append(peer)
        if token is not None:
            assert await peer.ask(f"AUTH {self.tokens[token]}") == "OK"
        return peer


TOKENS = {
    "admin": ("admin", []),
    "acme": ("client", ["acme"]),
    "beta": ("client", ["beta"]),
    "acme-worker": ("worker", ["acme"]),
    "beta-worker": ("worker", ["beta"]),
    "watcher": ("monitor", []),
}


@asynccontextmanager
async def auth_hub(tmp: Path, *listeners: str, **config: object) -> AsyncIterator[AuthHub]:
    path = tmp / "auth.json"
    tokens = {}
    for name, (role, customers) in TOKENS.items():
        tokens[name], _ = authfile.create_token(path, role, customers=customers, name=name)
    settings: dict[str, object] = {
        "line": list(listeners or ["127.0.0.1:0"]),
        "auth": str(path),
        "audit": str(tmp / "audit.log"),
        **config,
    }
    async with running_hub("memory://", **settings) as server:
        door = server.door(LineDoor)
        ah = AuthHub(server, path, tokens, [(host, port) for host, port, _ in door.addresses], [])
        try:
            yield ah
        finally:
            for peer in ah.peers:
                await peer.close()
            server.hub.guard.audit.close()  # the hub leaves its audit log open at stop


def audit(tmp: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in (tmp / "audit.log").read_text().splitlines()]


async def test_a_command_before_auth_is_refused_closed_and_costs_nothing(tmp_path: Path) -> None:
    async with auth_hub(tmp_path) as ah:
        for command in ("JOB hello", "SUBMIT hello", "STATUS 1", "FETCH", "REQUEST", "DONE 1", "HELLO"):
            peer = await ah.peer()
            await peer.send(f"{command}\nJOB second\n".encode())
            assert await peer.rest() == NEEDS_TOKEN.encode() + b"\n", command
            await peer.close()
        assert await ah.hub.list_jobs(JobFilter()) == []
        assert not ah.hub.connected()
        refused = audit(tmp_path)
        assert len(refused) == 7
        assert {(r["event"], r["door"], r["principal"], r["action"]) for r in refused} == {
            ("refused", "line", "anonymous", "authenticate")
        }


async def test_a_wrong_token_is_refused_and_the_connection_closed(tmp_path: Path) -> None:
    async with auth_hub(tmp_path) as ah:
        for line in ("AUTH jq_not-a-token", "AUTH", "auth   ", f"AUTH {ah.tokens['acme']}x"):
            peer = await ah.peer()
            await peer.send(f"{line}\nJOB after\n".encode())
            reply = await peer.rest()
            assert reply.startswith(b"ERR not authorized: "), (line, reply)
            assert reply.count(b"\n") == 1
            await peer.close()
        assert await ah.hub.list_jobs(JobFilter()) == []
        log = (tmp_path / "audit.log").read_text()
        assert ah.tokens["acme"] not in log and "jq_not-a-token" not in log, "no token in any log"


async def test_auth_then_the_dialects_as_usual_under_the_tokens_scope(tmp_path: Path) -> None:
    async with auth_hub(tmp_path) as ah:
        peer = await ah.peer()
        await peer.send(f"AUTH {ah.tokens['acme']}\nJOB one\nSUBMIT two\nSTATUS 1\n".encode())
        assert await peer.lines(4) == ["OK", "ID 1", "JOB_ID 2", "waiting"]
        assert await peer.ask(f"AUTH {ah.tokens['acme']}") == "ERR AUTH was given already on this connection"
        assert await peer.ask("STATUS 2") == "waiting", "the connection stays open"
        for job_id in (1, 2):
            job = await ah.hub.get(job_id)
            assert (job.customer_id, job.owner) == ("acme", "acme")
        await peer.close()


async def test_status_of_another_customers_job_is_refused(tmp_path: Path) -> None:
    async with auth_hub(tmp_path) as ah:
        beta = await ah.peer(token="beta")
        assert await beta.ask("JOB beta's secret") == "ID 1"
        acme = await ah.peer(token="acme")
        assert await acme.ask("STATUS 1") == "ERR not allowed: job 1 is not one of yours"
        assert await acme.ask("STATUS 2") == "unknown"
        assert await beta.ask("STATUS 1") == "waiting"
        for allowed in ("admin", "watcher"):
            assert await (await ah.peer(token=allowed)).ask("STATUS 1") == "waiting", allowed
        refusals = [r for r in audit(tmp_path) if r["action"] == "read"]
        assert [(r["principal"], r["door"], r["target"]) for r in refusals] == [("acme", "line", "job 1")]


async def test_fetch_of_another_customers_job_is_refused(tmp_path: Path) -> None:
    async with auth_hub(tmp_path) as ah:
        assert await (await ah.peer(token="beta")).ask("JOB beta's payload") == "ID 1"
        acme_worker = await ah.peer(token="acme-worker")
        assert await acme_worker.ask("FETCH") == "NOJOB"
        assert await acme_worker.ask("REQUEST") == "EMPTY"
        for role in ("acme", "beta", "watcher"):
            reply = await (await ah.peer(token=role)).ask("FETCH")
            assert reply.startswith("ERR not allowed: a ") and "cannot attach as a worker" in reply, reply
        job = await ah.hub.get(1)
        assert (job.state.value, job.attempts) == ("queued", 0)
        beta_worker = await ah.peer(token="beta-worker")
        assert await beta_worker.ask("FETCH") == "JOB 1 beta's payload"
        assert await acme_worker.ask("DONE 1 forged") == "ERR"
        assert await beta_worker.ask("DONE 1 real") == "OK"
        done = await ah.hub.get(1)
        assert (done.state.value, done.result) == ("completed", [b"real"])
        assert await acme_worker.ask("FETCH") == "NOJOB"


async def test_a_worker_token_cannot_submit_and_a_monitor_cannot_either(tmp_path: Path) -> None:
    async with auth_hub(tmp_path) as ah:
        worker = await ah.peer(token="acme-worker")
        assert await worker.ask("JOB sneaky") == "ERR not allowed: a worker token cannot submit jobs"
        watcher = await ah.peer(token="watcher")
        assert await watcher.ask("SUBMIT sneaky") == "ERR not allowed: a monitor token cannot submit jobs"
        assert await ah.hub.list_jobs(JobFilter()) == []


async def test_trusted_listeners_serve_legacy_programs_without_auth(tmp_path: Path) -> None:
    async with auth_hub(
        tmp_path,
        "127.0.0.1:0?trusted=client&customer=acme",
        "127.0.0.1:0/dsjq-compat?trusted=worker&customer=acme",
        "127.0.0.1:0",
    ) as ah:
        clients, _, plain = ah.addresses
        # The work-queue client.py: one connection per command, no AUTH.
        assert await once(clients, "JOB from a legacy client") == "ID 1"
        assert await once(clients, "STATUS 1") == "waiting"
        job = await ah.hub.get(1)
        assert (job.customer_id, job.owner) == ("acme", "trusted:127.0.0.1:0")
        assert await (await ah.peer(2, token="beta")).ask("JOB beta's") == "ID 2"
        assert await once(clients, "STATUS 2") == "ERR not allowed: job 2 is not one of yours"
        # The C++ DSJQ worker on a compat listener trusted as acme's worker.
        worker = await ah.peer(1)
        assert await worker.ask("REQUEST") == "1 from a legacy client"
        await worker.send(b"ACK 1\n")

        async def completed() -> bool:
            return (await ah.hub.get(1)).state.value == "completed"

        await eventually(completed, timeout=TIMEOUT)
        assert await worker.ask("REQUEST") == "EMPTY", "beta's job never reaches acme's worker"
        # A legacy program cannot submit through a worker listener; plain needs a token.
        assert await once(plain, "JOB x") == NEEDS_TOKEN
        # A token still works on a trusted listener, and names who speaks.
        admin = await ah.peer(0, token="admin")
        assert await admin.ask("STATUS 2") == "waiting"


async def test_auth_without_auth_configured_is_accepted(tmp_path: Path) -> None:
    async with running_hub(line=["127.0.0.1:0"]) as server:
        host, port, _ = server.door(LineDoor).addresses[0]
        peer = await Peer.open((host, port))
        assert await peer.ask("AUTH anything") == "OK"
        assert await peer.ask("JOB hello") == "ID 1"
        await peer.close()


async def test_a_revoked_token_closes_its_connections_within_a_second(tmp_path: Path) -> None:
    async with auth_hub(tmp_path) as ah:
        client = await ah.peer(token="acme")
        worker = await ah.peer(token="acme-worker")
        assert await client.ask("JOB one") == "ID 1"
        assert await worker.ask("FETCH") == "JOB 1 one"
        authfile.revoke(ah.path, "acme-worker")
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await worker.rest() == b"ERR not authorized: the token was revoked\n"
        assert loop.time() - started < 1.5
        await eventually(lambda: not ah.hub.connected())
        assert (await ah.hub.get(1)).state.value == "queued", "its job went back to the queue"
        assert await client.ask("STATUS 1") == "waiting", "other tokens' connections stay"
        again = await ah.peer()
        await again.send(f"AUTH {ah.tokens['acme-worker']}\n".encode())
        assert await again.rest() == b"ERR not authorized: unknown or revoked token\n"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


async def test_a_tls_listener(tmp_path: Path, ca: trustme.CA) -> None:
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "hub.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "hub.key"))
    async with auth_hub(
        tmp_path,
        "127.0.0.1:0?tls",
        tls_cert=str(tmp_path / "hub.pem"),
        tls_key=str(tmp_path / "hub.key"),
    ) as ah:
        assert ah.server.door(LineDoor).endpoints[0].endswith("?tls")
        context = ssl.create_default_context()
        ca.configure_trust(context)
        reader, writer = await asyncio.open_connection(*ah.addresses[0], ssl=context)
        peer = Peer(reader, writer)
        assert await peer.ask(f"AUTH {ah.tokens['acme']}") == "OK"
        assert await peer.ask("JOB over tls") == "ID 1"
        assert await peer.ask("STATUS 1") == "waiting"
        await peer.close()
        # Plain text to a TLS listener gets no answer, and no job.
        plain = await ah.peer()
        await plain.send(f"AUTH {ah.tokens['acme']}\nJOB in clear\n".encode())
        assert b"ID" not in await plain.rest()
        assert [j.id for j in await ah.hub.list_jobs(JobFilter())] == [1]


async def test_a_tls_listener_without_a_certificate_is_refused_at_start() -> None:
    hub = Hub(MemoryStore())
    with pytest.raises(InvalidRequest, match="--tls-cert and --tls-key"):
        LineDoor(hub, ["127.0.0.1:0?tls"])
    with pytest.raises(InvalidRequest, match="unknown listener option"):
        LineDoor(hub, ["127.0.0.1:0?trust=client"])
