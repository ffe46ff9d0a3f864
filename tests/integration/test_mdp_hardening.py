"""Issue 12 on the Majordomo door: Titanic ids past 2**63 (finding 8), and READYs for the
services the hub answers itself (finding 9: zguide's stock titanic.py made ~1,000 READY →
DISCONNECT cycles a second)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import zmq

from tests.helpers import REPO, Proc, eventually, start_hub
from tests.integration.test_mdp import mdp_hub
from tests.mdp_peers import C01


@pytest.mark.parametrize(
    "ident",
    [
        b"ffffffffffffffff" + b"0" * 16,  # 2**64 - 1
        b"8000000000000000" + b"0" * 16,  # 2**63
        b"7fffffffffffffff" + b"0" * 16,  # 2**63 - 1: a valid id nobody has
        b"-fffffffffffffff" + b"0" * 16,
        b"0x00000000000001" + b"0" * 16,
        b" 000000000000001" + b"0" * 16,
    ],
)
async def test_titanic_ids_out_of_range_are_unknown(
    tmp_path: Path, ident: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING")
    async with mdp_hub(f"sqlite:///{tmp_path / 'jobq.db'}") as env:
        client = env.client()
        for service in (b"titanic.reply", b"titanic.close"):
            await client.send([b"", C01, service, ident])
            reply = await client.recv(timeout=5)
            assert reply[:3] == [b"", C01, service]
            assert reply[3] in (b"400", b"200"), reply  # close of an unknown id is 200
    bad = [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL") or r.exc_info]
    assert bad == [], [r.getMessage() for r in bad]


# ---------------------------------------------------------------- READY for titanic.*


def _storm_worker(tmp: Path, endpoint: str, service: str) -> Proc:
    """A zguide mdwrkapi worker (tests/mdp_peers.py): READY, and READY again on a new socket at
    once whenever the broker says DISCONNECT, as zguide's titanic.py's workers do."""
    args = [sys.executable, "-m", "tests.mdp_peers", endpoint, service, "--show-ready"]
    return Proc(args, tmp / f"{service}.log", env={"PYTHONPATH": str(REPO)})


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / float(os.sysconf("SC_CLK_TCK"))


def test_readys_for_the_hubs_own_services_cause_no_disconnect_storm(
    tmp_path: Path, procs: list[Proc]
) -> None:
    hub, endpoint = start_hub(tmp_path)
    procs.append(hub)
    workers = [_storm_worker(tmp_path, endpoint, s) for s in ("titanic.request", "titanic.reply", "mmi.x")]
    procs.extend(workers)
    deadline = time.monotonic() + 20
    while not all("READY" in w.output() for w in workers):
        assert time.monotonic() < deadline, [w.output() for w in workers]
        time.sleep(0.05)
    time.sleep(0.5)
    cpu = _cpu_seconds(hub.pid)
    readys = [w.output().count("READY") for w in workers]
    time.sleep(2.0)
    used = _cpu_seconds(hub.pid) - cpu
    more = [w.output().count("READY") - n for w, n in zip(workers, readys, strict=True)]
    assert more == [0, 0, 0], more  # they stay parked: no DISCONNECT, no reconnect
    assert sum(readys) <= 6, readys
    assert used < 0.3, f"the hub used {used:.2f}s of CPU in 2s"
    # The hub still answers Titanic itself, and mmi.service says so.
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        client = ctx.socket(zmq.DEALER)
        client.setsockopt(zmq.LINGER, 0)
        client.connect(endpoint)
        client.send_multipart([b"", C01, b"mmi.service", b"titanic.request"])
        assert client.poll(5000)
        assert client.recv_multipart()[3:] == [b"200"]
        client.send_multipart([b"", C01, b"titanic.request", b"echo", b"hi"])
        assert client.poll(5000)
        reply = client.recv_multipart()
        assert reply[3] == b"200" and len(reply[4]) == 32, reply
    finally:
        ctx.destroy(linger=0)
    assert all(w.alive() for w in workers)
    assert "Traceback" not in hub.output()


async def test_a_parked_worker_is_heartbeaten_and_leaves_quietly() -> None:
    async with mdp_hub(mdp_heartbeat=0.1, mdp_liveness=3) as env:
        parked = env.worker(1)
        await parked.ready(b"titanic.request")
        for _ in range(3):  # heartbeats, and nothing else (no DISCONNECT)
            await parked.heartbeat(timeout=5)
            await parked.command(parked.hb)
        door = env.door
        assert door.stats()["parked"] == 1
        assert await env.serving("titanic.request") == 0  # never a worker the hub gives jobs
        await parked.command(parked.bye)
        assert await parked.quiet(0.5)
        assert door.stats()["parked"] == 0
        # A parked worker that goes silent is forgotten, without a word.
        silent = env.worker(2)
        await silent.ready(b"titanic.close")
        await eventually(lambda: door.stats()["parked"] == 1)
        await silent.heartbeat(timeout=5)  # heartbeaten while parked; it never answers
        await eventually(lambda: door.stats()["parked"] == 0, timeout=5)
        assert door.counters["disconnects_sent"] == 0
