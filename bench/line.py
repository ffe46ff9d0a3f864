"""The line door's workloads, against a real hub process on loopback (default store: SQLite).

- ``pipelined_submits``: one connection writes N ``JOB <text>`` lines back to back (as fast as
  the socket takes them) while reading the ``ID <n>`` replies; jobs accepted per second.
  ``dsjq_pipelined_submits`` does the same with ``SUBMIT`` (``JOB_ID <id>`` replies).
- ``one_at_a_time``: one connection, each ``JOB`` waits for its reply before the next.
- ``connection_per_job``: the work-queue client's way, a new connection per ``JOB``.
- ``fetch_done``: M jobs queued, then 2 worker connections loop ``FETCH`` → ``DONE <id>``
  until ``NOJOB``; completed cycles per second (all workers together).

Prints one JSON document. ``python -m bench.line --help`` for the knobs.
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
from pathlib import Path
from typing import Any

from tests.helpers import free_port, start_hub

TEXT = "x" * 100
Address = tuple[str, int]


async def _pipelined(address: Address, n: int, verb: str, answer: str) -> dict[str, float]:
    reader, writer = await asyncio.open_connection(*address)
    line = f"{verb} {TEXT}\n".encode()

    async def write() -> None:
        chunk = line * 1000
        for start in range(0, n, 1000):
            writer.write(chunk if start + 1000 <= n else line * (n - start))
            await writer.drain()

    started = time.perf_counter()
    sender = asyncio.ensure_future(write())
    for _ in range(n):
        reply = await reader.readline()
        if not reply.startswith(answer.encode()):
            raise RuntimeError(f"unexpected reply {reply!r}")
    elapsed = time.perf_counter() - started
    await sender
    writer.close()
    await writer.wait_closed()
    return {"jobs": n, "per_s": n / elapsed, "seconds": elapsed}


async def _one_at_a_time(address: Address, n: int) -> dict[str, float]:
    reader, writer = await asyncio.open_connection(*address)
    started = time.perf_counter()
    for _ in range(n):
        writer.write(f"JOB {TEXT}\n".encode())
        await reader.readline()
    elapsed = time.perf_counter() - started
    writer.close()
    await writer.wait_closed()
    return {"jobs": n, "per_s": n / elapsed, "seconds": elapsed}


async def _connection_per_job(address: Address, n: int) -> dict[str, float]:
    started = time.perf_counter()
    for _ in range(n):
        reader, writer = await asyncio.open_connection(*address)
        writer.write(f"JOB {TEXT}\n".encode())
        await reader.readline()
        writer.close()
        await writer.wait_closed()
    elapsed = time.perf_counter() - started
    return {"jobs": n, "per_s": n / elapsed, "seconds": elapsed}


async def _worker(address: Address) -> int:
    reader, writer = await asyncio.open_connection(*address)
    done = 0
    while True:
        writer.write(b"FETCH\n")
        reply = await reader.readline()
        if reply == b"NOJOB\n":
            break
        job_id = reply.split(b" ", 2)[1]
        writer.write(b"DONE " + job_id + b"\n")
        if await reader.readline() != b"OK\n":
            raise RuntimeError(f"DONE {job_id!r} was refused")
        done += 1
    writer.close()
    await writer.wait_closed()
    return done


async def _fetch_done(address: Address, n: int, workers: int) -> dict[str, Any]:
    await _pipelined(address, n, "JOB", "ID ")
    started = time.perf_counter()
    counts = await asyncio.gather(*(_worker(address) for _ in range(workers)))
    elapsed = time.perf_counter() - started
    if sum(counts) != n:
        raise RuntimeError(f"{sum(counts)} cycles for {n} jobs")
    return {"jobs": n, "workers": workers, "per_s": n / elapsed, "seconds": elapsed, "split": counts}


async def run(address: Address, args: argparse.Namespace) -> dict[str, Any]:
    # FETCH/DONE first: its workers drain the queue, which must hold only its own jobs.
    results: dict[str, Any] = {"fetch_done": await _fetch_done(address, args.cycles, args.workers)}
    results["pipelined_submits"] = await _pipelined(address, args.jobs, "JOB", "ID ")
    results["dsjq_pipelined_submits"] = await _pipelined(address, args.jobs, "SUBMIT", "JOB_ID ")
    results["one_at_a_time"] = await _one_at_a_time(address, args.single)
    results["connection_per_job"] = await _connection_per_job(address, args.single)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20_000, help="pipelined submits per run")
    parser.add_argument("--single", type=int, default=2_000, help="jobs of the one-at-a-time runs")
    parser.add_argument("--cycles", type=int, default=5_000, help="FETCH/DONE cycles")
    parser.add_argument("--workers", type=int, default=2, help="worker connections for FETCH/DONE")
    parser.add_argument("--store", default=None, help="store URL (default: SQLite in a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="jobq-bench-line-") as folder:
        tmp = Path(folder)
        port = free_port()
        extra = ["--line", f"127.0.0.1:{port}", "--log-level", "warning"]
        hub, _ = start_hub(tmp, store=args.store, extra=extra)
        try:
            results = asyncio.run(run(("127.0.0.1", port), args))
        finally:
            hub.terminate()
            hub.close()
    report = {
        "bench": "line",
        "store": args.store or "sqlite (temporary file, durability=normal)",
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "results": {
            k: {m: round(v, 3) if isinstance(v, float) else v for m, v in r.items()}
            for k, r in results.items()
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
