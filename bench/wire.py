"""Issue 16's wire profile: what one job costs the hub in messages and in Redis round trips.

Throughput on a 2-core VM is bounded by what crosses a socket: each write that wakes another
process costs tens of microseconds of kernel time, each Redis call a round trip. This bench counts
them, which no load on the machine can blur. It runs a real hub (``--store sqlite`` or ``redis``)
with two counters installed in its process (``python -m bench.wire --hub-process`` is that
process: it wraps jobq's ZMTP ``RouterSocket.send`` and the Redis client's calls, then runs
``jobq hub``), two real worker processes (``echo``), and this driver as a one-at-a-time producer
(``bench.throughput``'s ``one_at_a_time``: each submit waits for its acknowledgement, the ends
come as watched events). After a warm-up, per job of the measured run:

- ``hub_messages``: messages the hub sent, by native message type (accepted, assign, events);
- ``redis_round_trips``: Redis calls the hub made, by command (a script by its name, a pipeline
  as one), and their total;
- ``hub_cpu_us``: the hub process's CPU time (user and system), in microseconds. It moves with
  the machine's load less than a rate does; compare two trees (``--src``) in one session;
- ``hub_syscalls`` (with ``--syscalls``): the system calls the hub made, by name, from
  ``strace -c`` attached for the measured run (strace slows every call: the rate and CPU of
  such a run are not comparable with one without it).

Prints one JSON document. ``python -m bench.wire --help`` for the knobs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from tests.helpers import PYTHON, REPO, Proc, free_port, start_worker, wait_for_hub

from bench.throughput import _wait_workers, one_at_a_time
from jobq.client.client import Client

#: Where the hub process writes its counts when it stops (set by the driver).
COUNTS_ENV = "JOBQ_BENCH_WIRE_COUNTS"


# --------------------------------------------------------------------------- the hub's process


def _install_counters(counts: collections.Counter[str]) -> None:
    import msgspec

    import jobq.protocol.zmtp_io as zmtp_io
    import jobq.store.redis_client as redis_client
    import jobq.store.redis_scripts as redis_scripts

    decode = msgspec.msgpack.Decoder().decode
    send = zmtp_io.RouterSocket.send

    def counted_send(self: Any, frames: Any) -> bool:
        tag = decode(bytes(frames[2]))[0] if len(frames) == 3 else "other"
        counts[f"msg {tag}"] += 1
        return send(self, frames)

    run, pipeline, call = (
        redis_client.RedisClient._run,
        redis_client.RedisClient.pipeline,
        redis_scripts.Scripts.call,
    )

    async def counted_run(self: Any, client: Any, args: Any, timeout: float) -> Any:
        if str(args[0]).upper() != "EVALSHA":  # a script counts under its name (below)
            counts[f"redis {str(args[0]).upper()}"] += 1
        return await run(self, client, args, timeout)

    async def counted_pipeline(self: Any, commands: Any, *, transaction: bool = False) -> Any:
        if commands:
            counts["redis pipeline"] += 1
        return await pipeline(self, commands, transaction=transaction)

    async def counted_call(self: Any, name: str, *args: Any) -> Any:
        counts[f"redis script {name}"] += 1
        return await call(self, name, *args)

    zmtp_io.RouterSocket.send = counted_send  # type: ignore[method-assign]
    redis_client.RedisClient._run = counted_run  # type: ignore[method-assign]
    redis_client.RedisClient.pipeline = counted_pipeline  # type: ignore[method-assign]
    redis_scripts.Scripts.call = counted_call  # type: ignore[method-assign]


def hub_process(argv: list[str]) -> None:
    """Run ``jobq hub ARGV`` with the counters; SIGUSR1 writes them (and starts them over)."""
    from jobq.cli.main import main

    counts: collections.Counter[str] = collections.Counter()
    _install_counters(counts)
    path = Path(os.environ[COUNTS_ENV])
    since = time.process_time()

    def dump(*_: object) -> None:
        nonlocal since
        now = time.process_time()
        path.write_text(json.dumps({"counts": counts, "cpu_s": now - since}))
        counts.clear()
        since = now

    signal.signal(signal.SIGUSR1, dump)
    sys.argv = ["jobq", "hub", *argv]
    main()


# --------------------------------------------------------------------------- the driver


def per_job(counts: dict[str, int], cpu_s: float, jobs: int) -> dict[str, Any]:
    messages = {k[4:]: round(v / jobs, 2) for k, v in sorted(counts.items()) if k.startswith("msg ")}
    redis = {k[6:]: round(v / jobs, 2) for k, v in sorted(counts.items()) if k.startswith("redis ")}
    return {
        "hub_messages": messages,
        "hub_messages_total": round(sum(messages.values()), 2),
        "redis_round_trips": redis,
        "redis_round_trips_total": round(sum(redis.values()), 2),
        "hub_cpu_us": round(cpu_s / jobs * 1e6, 1),
    }


def syscalls(summary: str, jobs: int) -> dict[str, float]:
    """Calls per job by name, from ``strace -c``'s table (``% time seconds usecs/call calls
    [errors] syscall``)."""
    out = {}
    for line in summary.splitlines():
        parts = line.split()
        if len(parts) in (5, 6) and parts[3].isdigit() and parts[-1] != "total":
            out[parts[-1]] = round(int(parts[3]) / jobs, 2)
    return dict(sorted(out.items(), key=lambda item: -item[1]))


async def measure(
    endpoint: str, hub: Proc, jobs: int, warmup: int, strace_out: Path | None
) -> dict[str, float]:
    async with Client(endpoint) as client:
        await _wait_workers(client, 2)
        await one_at_a_time(client, warmup)
        await asyncio.sleep(0.3)  # the warm-up's ends, heartbeats of the start: not counted
        tracer = None
        if strace_out is not None:
            command = ["strace", "-c", "-f", "-p", str(hub.pid), "-o", str(strace_out)]
            tracer = await asyncio.create_subprocess_exec(*command, stderr=asyncio.subprocess.DEVNULL)
            await asyncio.sleep(1)  # attached to every thread
        os.kill(hub.pid, signal.SIGUSR1)
        await asyncio.sleep(0.3)
        rate = await one_at_a_time(client, jobs)
        os.kill(hub.pid, signal.SIGUSR1)
        await asyncio.sleep(0.3)
        if tracer is not None:
            tracer.send_signal(signal.SIGINT)
            await asyncio.wait_for(tracer.wait(), 30)
    return rate


def run(store: str, jobs: int, warmup: int, redis_url: str, src: Path, trace: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="jobq-bench-wire-") as tmp:
        run_dir = Path(tmp)
        prefix = f"jobq-bench-wire-{uuid.uuid4().hex[:8]}"
        url = f"sqlite:///{run_dir / 'jobq.db'}" if store == "sqlite" else f"{redis_url}?prefix={prefix}"
        counts_file = run_dir / "counts.json"
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        args = ["--store", url, "--zmq", endpoint, "--line", "off", "--http", "off", "--name", "wire"]
        hub = Proc(
            [PYTHON, "-m", "bench.wire", "--hub-process", *args],
            run_dir / "hub.log",
            # The tree measured first (a worktree's jobq, not the one installed in the venv).
            env={"PYTHONPATH": os.pathsep.join([str(src), str(REPO)]), COUNTS_ENV: str(counts_file)},
        )
        procs = [hub]
        try:
            wait_for_hub(endpoint, hub)
            procs += [start_worker(run_dir, endpoint, service="bench") for _ in range(2)]
            strace_out = run_dir / "strace.txt" if trace else None
            rate = asyncio.run(measure(endpoint, hub, jobs, warmup, strace_out))
            dumped = json.loads(counts_file.read_text())
            result = {"one_at_a_time": rate, **per_job(dumped["counts"], dumped["cpu_s"], jobs)}
            if strace_out is not None:
                # (the strace run spans the two dumps and a little more: a fraction of a call)
                result["hub_syscalls"] = syscalls(strace_out.read_text(), jobs)
        finally:
            for proc in procs:
                proc.close()
            if store == "redis":
                import redis as redis_py

                client = redis_py.Redis.from_url(redis_url)
                keys = list(client.scan_iter(match="{" + prefix + "}:*", count=1000))
                if keys:
                    client.delete(*keys)
                client.close()
    return {"store": store, "src": str(src), "jobs": jobs, **result}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--hub-process":
        hub_process(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default="sqlite,redis")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/11", help="Redis URL (a DB of its own)")
    parser.add_argument(
        "--src",
        default=str(REPO / "src"),
        help="the jobq source tree the hub imports (several: comma-separated)",
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs of each store and tree, alternating")
    parser.add_argument("--syscalls", action="store_true", help="count the hub's system calls (strace -c)")
    args = parser.parse_args()
    trees = [Path(src).resolve() for src in args.src.split(",")]
    runs = [
        run(store, args.jobs, args.warmup, args.redis, src, args.syscalls)
        for _ in range(args.rounds)
        for store in args.stores.split(",")
        for src in trees
    ]
    print(json.dumps({"benchmark": "wire", "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
