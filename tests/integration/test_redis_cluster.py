"""Issue 7 end to end: three hub processes on one Redis are one queue, and one of them dies.

Real processes on loopback: 3 hubs, 4 workers spread across them (each with all three hubs
in its endpoint list, starting at a different one), a client on each hub, 10,000 tiny jobs.
Mid-run one hub is SIGKILLed and started again. Every job completes, each client sees one
end per job it submitted, nothing is submitted twice, and every hub shows the same cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobq.client.client import Client, make_spec
from jobq.core.model import JobEvent
from jobq.core.states import JobState
from tests.helpers import Proc, free_port, start_hub, start_worker
from tests.redis_helpers import Namespace, require_redis

FAST = ["--heartbeat", "0.2", "--liveness", "5", "--lease-ttl", "5"]
JOBS = 10_000
CHUNK = 500


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    require_redis()
    ns = Namespace(hub_ttl="3")
    yield ns
    ns.cleanup()


def rotated(endpoints: list[str], first: int) -> str:
    return ",".join(endpoints[first:] + endpoints[:first])


async def submit_all(client: Client, name: str, count: int) -> list[int]:
    """Submit in chunks (so submits go on while the hub dies), watching every job."""
    ids: list[int] = []
    for start in range(0, count, CHUNK):
        specs = [make_spec("echo", f"{name}-{i}") for i in range(start, min(count, start + CHUNK))]
        accepted = await client.submit_many(specs, watch=True)
        ids.extend(job_id for job_id, _, _ in accepted)
        await asyncio.sleep(0.05)
    return ids


@pytest.mark.timeout(240)
async def test_three_hubs_one_queue_survive_a_killed_hub(
    tmp_path: Path, namespace: Namespace, procs: list[Proc]
) -> None:
    # (namespace before procs: fixtures end in reverse, so the hubs die before the keys go)
    ports = [free_port() for _ in range(3)]
    endpoints = [f"tcp://127.0.0.1:{port}" for port in ports]
    hubs: list[Proc] = []
    for i, port in enumerate(ports):
        hub, _ = start_hub(tmp_path, store=namespace.url, port=port, extra=FAST, name=f"hub{i}")
        hubs.append(hub)
        procs.append(hub)
    for i in range(4):  # hub0 gets two workers, the others one each
        procs.append(
            start_worker(tmp_path, rotated(endpoints, i % 3), concurrency=32, name=f"w{i}", handler="echo")
        )
    clients = [Client(rotated(endpoints, i), timeout=3.0) for i in range(3)]
    for client in clients:
        await client.connect()
    try:
        deadline = time.monotonic() + 30
        while len(await clients[1].workers()) < 4:
            assert time.monotonic() < deadline, "workers did not attach"
            await asyncio.sleep(0.05)
        shares = [JOBS // 3, JOBS // 3, JOBS - 2 * (JOBS // 3)]
        submitting = [
            asyncio.ensure_future(submit_all(client, f"c{i}", n))
            for i, (client, n) in enumerate(zip(clients, shares, strict=True))
        ]

        # Mid-run: kill hub0 (two workers and a client on it) without a word, then restart it.
        while (await clients[1].stats())["jobs"]["by_state"].get("completed", 0) < JOBS // 4:
            await asyncio.sleep(0.02)
        hubs[0].kill()
        killed_at = time.monotonic()
        await asyncio.sleep(1.0)
        restarted, _ = start_hub(tmp_path, store=namespace.url, port=ports[0], extra=FAST, name="hub0")
        procs.append(restarted)

        ids = await asyncio.gather(*submitting)
        ends: list[list[JobEvent]] = []
        for client, client_ids in zip(clients, ids, strict=True):
            ends.append(await asyncio.gather(*(client.finished(i, 120) for i in client_ids)))
        recovered_in = time.monotonic() - killed_at

        # Every job completed, with its own payload as result; one end per job per client.
        for i, (client_ids, client_ends) in enumerate(zip(ids, ends, strict=True)):
            assert len(client_ids) == shares[i] == len(set(client_ids))
            assert [e.id for e in client_ends] == client_ids
            assert all(e.state is JobState.COMPLETED for e in client_ends)
            results = [b"".join(e.result or []) for e in client_ends]
            assert results == [f"c{i}-{n}".encode() for n in range(shares[i])]
        all_ids = [job_id for client_ids in ids for job_id in client_ids]
        assert len(set(all_ids)) == JOBS  # no job is another client's, none was made twice

        # The cluster view adds up, seen from every hub (the restarted one included).
        expected = {"completed": JOBS}
        views = []
        for endpoint in endpoints:
            async with Client(endpoint, timeout=5.0) as probe:
                stats = await probe.stats()
                workers = await probe.workers()
                views.append((stats, workers))
        for stats, workers in views:
            assert stats["jobs"]["by_state"] == expected
            assert stats["jobs"]["by_service"] == {"echo": expected}
            assert sorted(w.name or "" for w in workers) == ["w0", "w1", "w2", "w3"]
            assert all(w.running == [] for w in workers)
            assert {w.hub for w in workers} <= {"hub1", "hub2"}  # hub0's workers moved on
        assert sum(stats["workers"] for stats, _ in views) == 4  # each attached at one hub
        print(f"\nrecovered from the killed hub in {recovered_in:.1f}s")
    finally:
        for client in clients:
            await client.close()
