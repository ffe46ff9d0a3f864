"""Issue 2's workloads: end-to-end throughput and latency of ~100-byte no-op jobs.

For each store (memory, sqlite) and W worker processes (1, 2), with a real hub process and real
worker processes on loopback, this driver (its own process) measures:

- ``one_at_a_time``: one producer submits N jobs, one call per job, each waiting for its
  acknowledgement (how Dramatiq, Celery and beanstalkd were measured);
- ``pipelined``: the async client keeps up to 1,000 submits in flight;
- ``submit_many``: jobs accepted per second through ``submit_many`` batches;
- ``latency``: single jobs on an idle hub, submit to result, p50 and p99.

Enqueue rate = jobs / time to submit them all; end to end = jobs / (first submit → last
result). Prints one JSON document. ``python -m bench.throughput --help`` for the knobs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from tests.helpers import Proc, free_port, start_hub, start_worker

from jobq.client.client import Client, make_spec
from jobq.core.model import JobEvent

PAYLOAD = b"x" * 100


async def _wait_workers(client: Client, n: int) -> None:
    deadline = time.monotonic() + 30
    while len(await client.workers()) < n:
        if time.monotonic() > deadline:
            raise RuntimeError("workers did not connect")
        await asyncio.sleep(0.05)


async def one_at_a_time(client: Client, n: int) -> dict[str, float]:
    spec = make_spec("bench", PAYLOAD)
    started = time.perf_counter()
    ids = []
    for _ in range(n):
        job_id, _, _ = await client.submit_spec(spec, watch=True)
        ids.append(job_id)
    submitted = time.perf_counter()
    ends = [await client.finished(i, 300) for i in ids]
    finished = time.perf_counter()
    _check(ends, n)
    return {
        "jobs": n,
        "enqueue_per_s": n / (submitted - started),
        "end_to_end_per_s": n / (finished - started),
    }


async def pipelined(client: Client, n: int, window: int = 1000) -> dict[str, float]:
    """``window`` lanes, each submitting one job after another: at most ``window`` submits are
    in flight (lanes rather than a semaphore, whose wake-ups cost O(waiters) in Python 3.11)."""
    spec = make_spec("bench", PAYLOAD)
    ids: list[int] = []
    left = n

    async def lane() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            job_id, _, _ = await client.submit_spec(spec, watch=True)
            ids.append(job_id)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(min(window, n))))
    submitted = time.perf_counter()
    ends = [await client.finished(i, 300) for i in ids]
    finished = time.perf_counter()
    _check(ends, n)
    return {
        "jobs": n,
        "window": window,
        "enqueue_per_s": n / (submitted - started),
        "end_to_end_per_s": n / (finished - started),
    }


async def submit_many(client: Client, n: int, batch: int = 5000) -> dict[str, float]:
    specs = [make_spec("bench", PAYLOAD) for _ in range(batch)]
    started = time.perf_counter()
    ids: list[int] = []
    for _ in range(n // batch):
        ids.extend(a[0] for a in await client.submit_many(specs, watch=True))
    submitted = time.perf_counter()
    ends = [await client.finished(i, 600) for i in ids]
    finished = time.perf_counter()
    _check(ends, len(ids))
    return {
        "jobs": len(ids),
        "batch": batch,
        "accepted_per_s": len(ids) / (submitted - started),
        "end_to_end_per_s": len(ids) / (finished - started),
    }


async def latency(client: Client, n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        event = await client.run("bench", PAYLOAD, wait_timeout=30)
        samples.append(time.perf_counter() - started)
        assert event.state == "completed"
    samples.sort()
    return {
        "jobs": n,
        "p50_ms": 1000 * statistics.median(samples),
        "p99_ms": 1000 * samples[int(0.99 * (len(samples) - 1))],
    }


def _check(ends: list[JobEvent], n: int) -> None:
    bad = [e for e in ends if e.state != "completed" or b"".join(e.result or []) != PAYLOAD]
    if len(ends) != n or bad:
        raise RuntimeError(f"{len(bad)} jobs did not complete correctly")


def process_cpu(pid: int) -> float:
    """Seconds of CPU process ``pid`` has used (user and system), from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def with_cpu(work: Awaitable[dict[str, Any]], hub: Proc, workers: list[Proc]) -> dict[str, Any]:
    """``work``'s figures and the CPU each process spent per job meanwhile (the hub, the workers
    together, this driver): what two cores can hold and where the time goes."""
    before = process_cpu(hub.pid), [process_cpu(w.pid) for w in workers], time.process_time()
    out = await work
    jobs = int(out["jobs"])
    out["cpu_us_per_job"] = {
        "hub": round((process_cpu(hub.pid) - before[0]) / jobs * 1e6),
        "workers": round((sum(process_cpu(w.pid) for w in workers) - sum(before[1])) / jobs * 1e6),
        "driver": round((time.process_time() - before[2]) / jobs * 1e6),
    }
    return out


async def measure(store: str, workers: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    run_dir = Path(tempfile.mkdtemp(prefix=f"{store}-w{workers}-", dir=tmp))
    url = "memory://" if store == "memory" else f"sqlite:///{run_dir / 'bench.db'}"
    procs: list[Proc] = []
    try:
        hub, endpoint = start_hub(run_dir, store=url, port=free_port())
        procs.append(hub)
        for _ in range(workers):
            procs.append(
                start_worker(
                    run_dir,
                    endpoint,
                    service="bench",
                    handler="echo",
                    concurrency=args.concurrency,
                    extra=["--prefetch", str(args.prefetch)],
                )
            )
        async with Client(endpoint, timeout=60) as client:
            await _wait_workers(client, workers)
            await one_at_a_time(client, 500)  # warm up every path once
            result: dict[str, Any] = {"store": store, "workers": workers}
            running = procs[1:]
            result["one_at_a_time"] = await with_cpu(one_at_a_time(client, args.jobs), hub, running)
            result["pipelined"] = await with_cpu(pipelined(client, args.jobs), hub, running)
            result["submit_many"] = await with_cpu(submit_many(client, args.many), hub, running)
            await asyncio.sleep(0.5)
            result["latency"] = await with_cpu(latency(client, args.latency), hub, running)
        return result
    finally:
        for p in procs:
            p.terminate(5)
            p.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--many", type=int, default=100_000)
    parser.add_argument("--latency", type=int, default=1000)
    parser.add_argument("--stores", default="memory,sqlite")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--prefetch", type=int, default=64)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory(prefix="jobq-bench-") as tmp:
        for store in args.stores.split(","):
            for w in (int(x) for x in args.workers.split(",")):
                runs.append(await measure(store, w, args, Path(tmp)))
                print(json.dumps(runs[-1]), file=sys.stderr)
    print(
        json.dumps(
            {
                "benchmark": "throughput",
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "payload_bytes": len(PAYLOAD),
                "runs": runs,
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
