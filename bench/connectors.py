"""Issue 14's benchmark: the ``http`` connector's cost per job, beside a ``module:function``
handler in the same run.

A real hub process, 2 worker processes and a local no-op HTTP service (it answers every request
with its body, on a bare asyncio protocol so it is not what is measured) share the machine with
this driver. Each round runs ``--jobs`` ~100-byte jobs end to end (``--window`` submits in
flight, first submit → last result) twice:

- ``function``: 2 workers ``--handler bench.connectors:noop`` (an async function returning the
  payload: the SDK's fastest path);
- ``http_connector``: 2 workers ``--connector http --connector-option url=...``: every job is
  POSTed to the no-op service and its reply body is the result (the defaults: one request per
  keep-alive connection at a time);
- ``http_connector_pipelined``: the same with ``pipeline=16`` (opt-in HTTP pipelining: requests
  of one event-loop turn share a connection and a write), unless ``--pipeline 0``.

Per job it reports the wall time of each, the connector's overhead (the difference), the CPU the
worker processes spent (and the no-op service), and ``ratio`` = connector rate / function rate
with the defaults (the issue's target: at least 0.7; ``ratio_pipelined`` likewise). Rounds
alternate the phases; the summary gives medians. Prints one JSON document; ``python -m bench.connectors
--help`` for the knobs.
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
from pathlib import Path
from typing import Any

import psutil
from tests.helpers import PYTHON, REPO, Proc, free_port, jobq_command, start_hub

from jobq.client.client import Client, make_spec
from jobq.core.model import JobEvent

PAYLOAD = b"x" * 100


async def noop(payload: bytes) -> bytes:
    """The ``module:function`` handler of the baseline."""
    return payload


# ---------------------------------------------------------------- the no-op service


class _Echo(asyncio.Protocol):
    """HTTP/1.1 keep-alive: every request is answered 200 with its own body."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            length = 0
            at = head.find(b"content-length:")
            if at >= 0:
                stop = head.find(b"\r\n", at)
                length = int(head[at + 15 : stop if stop >= 0 else None])
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4 : end + 4 + length]
            self.buffer = self.buffer[end + 4 + length :]
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: %d\r\n\r\n%s"
                % (len(body), body)
            )


async def serve_noop(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Echo, "127.0.0.1", port)
    await server.serve_forever()


# ---------------------------------------------------------------- measuring


async def _wait_workers(client: Client, service: str, n: int) -> None:
    deadline = time.monotonic() + 30
    while sum(1 for w in await client.workers() if service in w.services and w.slots > 0) < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{n} workers for {service} did not connect")
        await asyncio.sleep(0.05)


async def run_jobs(client: Client, service: str, n: int, window: int) -> float:
    """Seconds from the first submit to the last result of ``n`` jobs, ``window`` in flight."""
    spec = make_spec(service, PAYLOAD)
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
    ends: list[JobEvent] = [await client.finished(i, 300) for i in ids]
    elapsed = time.perf_counter() - started
    bad = [e for e in ends if e.state != "completed" or b"".join(e.result or []) != PAYLOAD]
    if len(ends) != n or bad:
        raise RuntimeError(f"{service}: {len(bad)} of {n} jobs did not complete correctly")
    return elapsed


def _cpu(procs: list[Proc]) -> float:
    total = 0.0
    for proc in procs:
        times = psutil.Process(proc.pid).cpu_times()
        total += times.user + times.system
    return total


async def phase(
    client: Client, service: str, workers: list[Proc], service_proc: Proc | None, args: Any
) -> dict[str, float]:
    cpu_before = _cpu(workers)
    svc_before = _cpu([service_proc]) if service_proc else 0.0
    seconds = await run_jobs(client, service, args.jobs, args.window)
    per_job = 1e6 / args.jobs
    out = {
        "jobs": args.jobs,
        "jobs_per_s": args.jobs / seconds,
        "wall_us_per_job": seconds * per_job,
        "worker_cpu_us_per_job": (_cpu(workers) - cpu_before) * per_job,
    }
    if service_proc is not None:
        out["service_cpu_us_per_job"] = (_cpu([service_proc]) - svc_before) * per_job
    return out


def _workers(
    tmp: Path, common: list[str], service: str, how: list[str], n: int, env: dict[str, str]
) -> list[Proc]:
    return [
        Proc(
            jobq_command("worker", *common, "--service", service, *how, "--name", f"{service}{i}"),
            tmp / f"{service}{i}.log",
            env=env,
        )
        for i in range(n)
    ]


async def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    procs: list[Proc] = []
    env = {"PYTHONPATH": str(REPO)}
    try:
        port = free_port()
        noop_service = Proc(
            [PYTHON, "-m", "bench.connectors", "--serve-noop", str(port)], tmp / "noop.log", env=env
        )
        procs.append(noop_service)
        store = "memory://" if args.store == "memory" else f"sqlite:///{tmp / 'bench.db'}"
        hub, endpoint = start_hub(tmp, store=store)
        procs.append(hub)
        common = ["--hub", endpoint, "--concurrency", str(args.concurrency), "--prefetch", str(args.prefetch)]
        url = f"url=http://127.0.0.1:{port}/"
        workers = {
            "fn": _workers(tmp, common, "fn", ["--handler", "bench.connectors:noop"], args.workers, env),
            "http": _workers(
                tmp, common, "http", ["--connector", "http", "--connector-option", url], args.workers, env
            ),
        }
        if args.pipeline > 1:
            pipelined = [
                "--connector",
                "http",
                "--connector-option",
                url,
                "--connector-option",
                f"pipeline={args.pipeline}",
            ]
            workers["piped"] = _workers(tmp, common, "piped", pipelined, args.workers, env)
        for group in workers.values():
            procs.extend(group)
        rounds: list[dict[str, Any]] = []
        async with Client(endpoint, timeout=60) as client:
            for service in workers:
                await _wait_workers(client, service, args.workers)
                await run_jobs(client, service, 2000, args.window)  # warm up every path
            for number in range(args.rounds):
                function = await phase(client, "fn", workers["fn"], None, args)
                connector = await phase(client, "http", workers["http"], noop_service, args)
                row: dict[str, Any] = {
                    "round": number + 1,
                    "function": function,
                    "http_connector": connector,
                    "connector_overhead_us_per_job": connector["wall_us_per_job"]
                    - function["wall_us_per_job"],
                    "connector_worker_cpu_us_per_job": connector["worker_cpu_us_per_job"]
                    - function["worker_cpu_us_per_job"],
                    "ratio": connector["jobs_per_s"] / function["jobs_per_s"],
                }
                if "piped" in workers:
                    piped = await phase(client, "piped", workers["piped"], noop_service, args)
                    row["http_connector_pipelined"] = piped
                    row["ratio_pipelined"] = piped["jobs_per_s"] / function["jobs_per_s"]
                rounds.append(row)
                print(json.dumps(row), file=sys.stderr)
        summary: dict[str, Any] = {
            "store": args.store,
            "workers": args.workers,
            "concurrency": args.concurrency,
            "window": args.window,
            "function_jobs_per_s": statistics.median(r["function"]["jobs_per_s"] for r in rounds),
            "http_connector_jobs_per_s": statistics.median(r["http_connector"]["jobs_per_s"] for r in rounds),
            "connector_overhead_us_per_job": statistics.median(
                r["connector_overhead_us_per_job"] for r in rounds
            ),
            "connector_worker_cpu_us_per_job": statistics.median(
                r["connector_worker_cpu_us_per_job"] for r in rounds
            ),
            "ratio": statistics.median(r["ratio"] for r in rounds),
        }
        if "piped" in workers:
            summary["pipeline"] = args.pipeline
            summary["http_connector_pipelined_jobs_per_s"] = statistics.median(
                r["http_connector_pipelined"]["jobs_per_s"] for r in rounds
            )
            summary["ratio_pipelined"] = statistics.median(r["ratio_pipelined"] for r in rounds)
        return {**summary, "rounds": rounds}
    finally:
        for p in procs:
            p.terminate(5)
            p.close()


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs per phase")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the phases; medians reported")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--window", type=int, default=1000, help="submits in flight")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--prefetch", type=int, default=64)
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument(
        "--pipeline", type=int, default=16, help="also measure the connector with pipeline=N (0: skip)"
    )
    parser.add_argument("--serve-noop", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_noop:
        await serve_noop(args.serve_noop)
        return
    with tempfile.TemporaryDirectory(prefix="jobq-bench-") as tmp:
        result = await measure(args, Path(tmp))
    print(
        json.dumps(
            {
                "benchmark": "connectors",
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "payload_bytes": len(PAYLOAD),
                "target_ratio": 0.7,
                **result,
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
