"""Issue 13's benchmark: what a group with a finalize step costs beside the same plain jobs.

One hub process (SQLite store, or ``--store redis://...``), 2 worker processes of a no-op
handler (``--handler echo``) for the members and one serving the built-in ``concat`` finalize
handler. Each round runs, in alternating order:

- ``plain``: 10,000 jobs (``{"n": i}``) submitted with ``submit_many`` and awaited (each end);
- ``group``: one group of 10,000 members (``expand n=1..10000``, the same payloads) with a
  ``concat`` finalize, from the submit to the finalize job's result (``wait_group``).

Reported per round: both times, the ratio group/plain, the hub's CPU per job in each; the
summary gives medians and ``group_within_10_percent`` (median ratio ≤ 1.10, the issue's target).
Times move with whatever else the machine runs. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from tests.helpers import Proc, start_hub, start_worker

from jobq.client.client import Client, make_spec

SERVICE = "bench"
#: The group's overhead may be at most 10% (issue 13).
TARGET_RATIO = 1.10


def _cpu(proc: Proc) -> float:
    times = psutil.Process(proc.pid).cpu_times()
    return float(times.user + times.system)


async def plain(client: Client, n: int) -> None:
    specs = [make_spec(SERVICE, {"n": i}) for i in range(1, n + 1)]
    accepted = await client.submit_many(specs, watch=True)
    ends = [await client.finished(job_id, 600) for job_id, _, _ in accepted]
    bad = [e for e in ends if e.state.value != "completed"]
    if bad:
        raise RuntimeError(f"{len(bad)} plain jobs did not complete: {bad[0]}")


async def group(client: Client, n: int) -> None:
    done = await client.submit_group(SERVICE, {}, expand={"n": f"1..{n}"}, finalize="concat")
    view = await client.wait_group(done.group.id, 600)
    if view.state != "completed" or not view.result:
        raise RuntimeError(f"the group did not complete: {view}")
    size = len(b"".join(view.result))
    if size < n * 7:
        raise RuntimeError(f"the finalize result is too short: {size} bytes")


async def run(endpoint: str, hub: Proc, n: int, rounds: int) -> dict[str, Any]:
    out: list[dict[str, Any]] = []
    async with Client(endpoint) as client:
        await plain(client, 100)  # warm up: connections, caches, the first commits
        await group(client, 100)
        for r in range(rounds):
            row: dict[str, Any] = {"round": r + 1}
            order = ("plain", "group") if r % 2 == 0 else ("group", "plain")
            for kind in order:
                cpu = _cpu(hub)
                started = time.perf_counter()
                await (plain(client, n) if kind == "plain" else group(client, n))
                row[f"{kind}_s"] = round(time.perf_counter() - started, 3)
                row[f"{kind}_hub_cpu_us_per_job"] = round((_cpu(hub) - cpu) / n * 1e6, 1)
            row["ratio"] = round(row["group_s"] / row["plain_s"], 3)
            out.append(row)
    ratio = statistics.median(row["ratio"] for row in out)
    return {
        "bench": "workflows",
        "jobs": n,
        "rounds": out,
        "median_plain_s": statistics.median(row["plain_s"] for row in out),
        "median_group_s": statistics.median(row["group_s"] for row in out),
        "median_ratio": ratio,
        "median_plain_hub_cpu_us_per_job": statistics.median(row["plain_hub_cpu_us_per_job"] for row in out),
        "median_group_hub_cpu_us_per_job": statistics.median(row["group_hub_cpu_us_per_job"] for row in out),
        "target_ratio": TARGET_RATIO,
        "group_within_10_percent": ratio <= TARGET_RATIO,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000, help="members of the group, and plain jobs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store", default=None, help="the hub's store (default: SQLite in a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobq-bench-workflows-") as tmp:
        path = Path(tmp)
        hub, endpoint = start_hub(path, store=args.store)
        procs = [hub]
        try:
            procs += [start_worker(path, endpoint, SERVICE, "echo", concurrency=64) for _ in range(2)]
            procs.append(start_worker(path, endpoint, "concat", "concat", concurrency=1))
            time.sleep(1.0)
            report = asyncio.run(run(endpoint, hub, args.jobs, args.rounds))
        finally:
            for proc in procs:
                proc.close()
    report["store"] = args.store or "sqlite"
    report["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load": os.getloadavg()[0],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
