"""Issue 7: the Redis store, end to end, with one hub and with two hubs on one Redis.

The workload is bench/throughput.py's (the foundation issue's), run through the same functions
so the figures compare with the SQLite store: ~100-byte no-op jobs, real hub and worker
processes on loopback, and this driver as the producer:

- ``one_at_a_time``: one call per job, each waiting for its acknowledgement;
- ``pipelined``: up to 1,000 submits in flight;
- ``submit_many``: jobs accepted per second through ``submit_many`` batches;
- ``latency``: single jobs on an idle cluster, submit to result, p50 and p99.

With two hubs the workers are split between them (each with both hubs as endpoints, starting
at its own), and one producer per hub runs the same workload at the same time on half the
jobs: the figures are for the cluster (all jobs / wall time). ``--compare sqlite`` runs the
single-hub SQLite figures in the same session, on the same machine. Also measured: Redis
memory per queued job, and per workload the Redis commands per job (``INFO commandstats``
before and after it: server-wide, so give the bench a Redis server nothing else uses) and the
CPU per job of each process (hubs, workers, Redis, the driver). Prints
one JSON document. Run it as a module (the file's name is the library's):
``python -m bench.redis --help``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis
from tests.helpers import Proc, free_port, start_hub, start_worker

from bench.throughput import PAYLOAD, latency, one_at_a_time, pipelined, process_cpu, submit_many
from bench.throughput import measure as measure_embedded
from jobq.client.client import Client
from jobq.core.model import JobSpec
from jobq.store.base import open_store

Workload = Callable[[Client, int], Awaitable[dict[str, float]]]


def _forget(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match="{" + prefix + "}:*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


async def _together(clients: list[Client], work: Workload, n: int) -> dict[str, Any]:
    """Every producer runs ``work`` on its share at once; rates for the cluster."""
    share = n // len(clients)
    started = time.perf_counter()
    parts = await asyncio.gather(*(work(client, share) for client in clients))
    wall = time.perf_counter() - started
    if len(parts) == 1:
        return parts[0]
    jobs = sum(int(p["jobs"]) for p in parts)
    out: dict[str, Any] = {"jobs": jobs, "end_to_end_per_s": jobs / wall, "per_producer": parts}
    for rate in ("enqueue_per_s", "accepted_per_s"):
        if all(rate in p for p in parts):
            out[rate] = sum(p[rate] for p in parts)  # producers at the same time: rates add up
    if all("p50_ms" in p for p in parts):
        out = {
            "jobs": jobs,
            "p50_ms": max(p["p50_ms"] for p in parts),
            "p99_ms": max(p["p99_ms"] for p in parts),
        }
    return out


_SCRIPTS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")


def _command_calls(url: str) -> dict[str, int]:
    """``INFO commandstats``: calls per command, server-wide (our own INFO calls left out)."""
    client = redis.Redis.from_url(url)
    try:
        stats: dict[str, dict[str, Any]] = client.info("commandstats")
    finally:
        client.close()
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    calls.pop("info", None)
    return calls


def _redis_cpu(url: str) -> float:
    """Seconds of CPU the Redis server has used (user and system)."""
    client = redis.Redis.from_url(url)
    try:
        cpu: dict[str, Any] = client.info("cpu")
    finally:
        client.close()
    return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def _counted(
    url: str, clients: list[Client], work: Workload, n: int, hubs: list[Proc], workers: list[Proc]
) -> dict[str, Any]:
    """``_together`` plus the Redis commands the workload cost, from ``INFO commandstats`` before
    and after. The counts are the server's: exact only when nothing else uses that Redis server
    meanwhile (the DB does not matter). Commands run inside Lua scripts count too (Redis counts
    them), so ``scripts_per_job`` says how many of them were script calls. ``cpu_us_per_job``:
    the CPU each process spent per job of the cluster (each hub, the workers together, Redis,
    this driver), which says what two cores can hold and where the time goes."""
    before = _command_calls(url)
    cpu_before = [process_cpu(p.pid) for p in hubs + workers], _redis_cpu(url), time.process_time()
    out = await _together(clients, work, n)
    cpu_after = [process_cpu(p.pid) for p in hubs + workers], _redis_cpu(url), time.process_time()
    after = _command_calls(url)
    delta = {c: after[c] - before.get(c, 0) for c in after if after[c] > before.get(c, 0)}
    jobs = int(out["jobs"])
    spent = [b - a for a, b in zip(cpu_before[0], cpu_after[0], strict=True)]
    out["cpu_us_per_job"] = {
        "hubs": [round(s / jobs * 1e6) for s in spent[: len(hubs)]],
        "workers": round(sum(spent[len(hubs) :]) / jobs * 1e6),
        "redis": round((cpu_after[1] - cpu_before[1]) / jobs * 1e6),
        "driver": round((cpu_after[2] - cpu_before[2]) / jobs * 1e6),
    }
    out["redis_commands_per_job"] = round(sum(delta.values()) / jobs, 2)
    out["redis_scripts_per_job"] = round(sum(delta.get(c, 0) for c in _SCRIPTS) / jobs, 2)
    out["redis_commands"] = dict(sorted(delta.items(), key=lambda kv: -kv[1]))
    return out


async def measure(hubs: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    run_dir = Path(tempfile.mkdtemp(prefix=f"redis-h{hubs}-", dir=tmp))
    prefix = f"jobq-bench-{uuid.uuid4().hex[:8]}"
    store = f"{args.redis}?prefix={prefix}"
    procs: list[Proc] = []  # the hubs
    workers: list[Proc] = []
    try:
        endpoints = []
        for i in range(hubs):
            hub, endpoint = start_hub(run_dir, store=store, port=free_port(), name=f"hub{i}")
            procs.append(hub)
            endpoints.append(endpoint)
        for w in range(args.workers):
            first = w % hubs
            mine = ",".join(endpoints[first:] + endpoints[:first])
            workers.append(
                start_worker(
                    run_dir,
                    mine,
                    service="bench",
                    handler="echo",
                    concurrency=args.concurrency,
                    extra=["--prefetch", str(args.prefetch)],
                )
            )
        clients = [Client(endpoint, timeout=60) for endpoint in endpoints]
        for client in clients:
            await client.connect()
        try:
            deadline = time.monotonic() + 30
            while len(await clients[0].workers()) < args.workers:
                if time.monotonic() > deadline:
                    raise RuntimeError("workers did not connect")
                await asyncio.sleep(0.05)
            await _together(clients, one_at_a_time, 500)  # warm up every path once
            result: dict[str, Any] = {"store": "redis", "hubs": hubs, "workers": args.workers}
            who = (procs, workers)  # the hubs, the workers
            result["one_at_a_time"] = await _counted(args.redis, clients, one_at_a_time, args.jobs, *who)
            result["pipelined"] = await _counted(args.redis, clients, pipelined, args.jobs, *who)
            result["submit_many"] = await _counted(args.redis, clients, submit_many, args.many, *who)
            await asyncio.sleep(0.5)
            result["latency"] = await _counted(args.redis, clients, latency, args.latency, *who)
            return result
        finally:
            for client in clients:
                await client.close()
    finally:
        for p in procs + workers:
            p.terminate(5)
            p.close()
        _forget(args.redis, prefix)


async def memory_per_queued_job(url: str, jobs: int) -> dict[str, Any]:
    """Redis ``used_memory`` growth per queued job (nothing attached, so nothing runs)."""
    out: dict[str, Any] = {"jobs": jobs}
    kinds: tuple[tuple[str, Callable[[int], JobSpec]], ...] = (
        ("plain_100B", lambda i: JobSpec(service="bench", payload=[PAYLOAD])),
        ("empty_payload", lambda i: JobSpec(service="bench")),
        (
            "customer_requires_key_100B",
            lambda i: JobSpec(
                service="bench",
                payload=[PAYLOAD],
                customer_id=f"c{i % 10}",
                requires={"hardware.gpu_memory_gb": 8},
                idempotency_key=f"k-{i}",
            ),
        ),
    )
    for label, make in kinds:
        prefix = f"jobq-bench-{uuid.uuid4().hex[:8]}"
        store = open_store(f"{url}?prefix={prefix}")
        server = redis.Redis.from_url(url)
        try:
            await store.open(time.time())
            await store.submit([make(-1)], time.time())  # shapes, counters and indexes exist
            before = int(server.info("memory")["used_memory"])
            for start in range(0, jobs, 1000):
                await store.submit([make(i) for i in range(start, start + 1000)], time.time())
            after = int(server.info("memory")["used_memory"])
            out[label] = round((after - before) / jobs)
        finally:
            await store.close()
            server.close()
            _forget(url, prefix)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/9", help="Redis URL (a DB of its own)")
    parser.add_argument("--hubs", default="1,2")
    parser.add_argument("--workers", type=int, default=2, help="worker processes in all")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--many", type=int, default=100_000)
    parser.add_argument("--latency", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--prefetch", type=int, default=64)
    parser.add_argument("--compare", default="sqlite", help="embedded stores to run too ('' for none)")
    parser.add_argument("--memory-jobs", type=int, default=50_000)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="jobq-bench-redis-") as tmp:
        for store in filter(None, args.compare.split(",")):
            runs.append(await measure_embedded(store, args.workers, args, Path(tmp)))
            print(json.dumps(runs[-1]), file=sys.stderr)
        for hubs in (int(x) for x in args.hubs.split(",")):
            runs.append(await measure(hubs, args, Path(tmp)))
            print(json.dumps(runs[-1]), file=sys.stderr)
    memory = await memory_per_queued_job(args.redis, args.memory_jobs)
    server = redis.Redis.from_url(args.redis)
    version = server.info("server")["redis_version"]
    server.close()
    print(
        json.dumps(
            {
                "benchmark": "redis",
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "redis": version,
                },
                "payload_bytes": len(PAYLOAD),
                "runs": runs,
                "redis_memory_bytes_per_queued_job": memory,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
