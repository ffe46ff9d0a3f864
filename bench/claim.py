"""Issue 3: the cost of placing a job stays flat as the queue grows.

For queues of 1k, 100k and 1M jobs spread over 50 requirement shapes (services, GPU minimums,
regions, customers), workers with different profiles claim jobs one at a time; every claimed job
is completed and replaced by a new one of the same shape, so the queue keeps its size. Reports
microseconds per placement (claim of one job by one worker) for the memory and SQLite stores.
A rare job that only one worker can run is also put at the very back of the full queue: its
placement time is reported as ``rare_placement_us``.

    python -m bench.claim [--sizes 1000,100000,1000000] [--stores memory,sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from jobq.core.model import Completion, JobSpec, WorkerInfo
from jobq.store.base import Store, open_store

SHAPES = 50
SERVICES = ["render", "upscale", "caption", "embed", "speech"]
T0 = 1_000_000.0


def shape_spec(i: int) -> JobSpec:
    """Shape number ``i`` of 50: 5 services x 5 GPU minimums x 2 regions."""
    service = SERVICES[i % 5]
    gpu = [0, 8, 16, 24, 40][(i // 5) % 5]
    region = ["eu", "us"][(i // 25) % 2]
    requires: dict[str, Any] = {"geographic_region": region}
    if gpu:
        requires["hardware.gpu_memory_gb"] = gpu
    return JobSpec(service=service, payload=[b"x" * 100], requires=requires, customer_id=f"c{i % 7}")


WORKERS = [
    WorkerInfo(
        id=f"w{n}",
        services=SERVICES,
        slots=1_000_000,
        capabilities={"hardware.gpu_memory_gb": gpu, "location.region": region},
    )
    for n, (gpu, region) in enumerate([(8, "eu"), (24, "eu"), (48, "us"), (16, "us"), (80, "eu"), (0, "us")])
]


async def fill(store: Store, n: int) -> None:
    batch = 10_000
    for start in range(0, n, batch):
        await store.submit([shape_spec(i) for i in range(start, min(n, start + batch))], T0)


async def measure(store: Store, size: int, placements: int) -> dict[str, float]:
    await fill(store, size)
    for info in WORKERS:
        await store.attach_worker(info, T0)
    rng = random.Random(7)
    samples = []
    now = T0
    for _ in range(placements):
        worker = rng.choice(WORKERS).id
        started = time.perf_counter()
        jobs = await store.claim(worker, 1, now, 30.0)
        samples.append(time.perf_counter() - started)
        for job in jobs:
            await store.complete([Completion(job.id, job.attempts, [])], now)
            spec = JobSpec(
                service=job.service, payload=job.payload, requires=job.requires, customer_id=job.customer_id
            )
            await store.submit([spec], now)
        now += 0.0001
    # The rare job: only the one worker with 80 GB can run it, and it is last in a full queue.
    (rare,) = await store.submit([JobSpec(service="render", requires={"hardware.gpu_memory_gb": 64})], now)
    started = time.perf_counter()
    got = await store.claim("w4", 1, now, 30.0)
    rare_us = (time.perf_counter() - started) * 1e6
    assert any(j.id == rare.job.id for j in got) or got, "the rare job must be placeable"
    samples.sort()
    return {
        "queued": size,
        "placements": placements,
        "claim_p50_us": 1e6 * statistics.median(samples),
        "claim_mean_us": 1e6 * statistics.fmean(samples),
        "claim_p99_us": 1e6 * samples[int(0.99 * (len(samples) - 1))],
        "rare_placement_us": rare_us,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--stores", default="memory,sqlite")
    parser.add_argument("--placements", type=int, default=20_000)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="jobq-claim-") as tmp:
        for kind in args.stores.split(","):
            for size in (int(s) for s in args.sizes.split(",")):
                url = "memory://" if kind == "memory" else f"sqlite:///{Path(tmp) / f'claim-{size}.db'}"
                store = open_store(url)
                await store.open(T0)
                try:
                    result = {"store": kind, **await measure(store, size, args.placements)}
                finally:
                    await store.close()
                results.append(result)
    by_store: dict[str, dict[int, float]] = {}
    for r in results:
        by_store.setdefault(r["store"], {})[r["queued"]] = r["claim_mean_us"]
    ratios = {
        store: sizes[max(sizes)] / sizes[min(sizes)] for store, sizes in by_store.items() if len(sizes) > 1
    }
    print(
        json.dumps(
            {
                "benchmark": "claim",
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "shapes": SHAPES,
                "results": results,
                "largest_over_smallest": ratios,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
