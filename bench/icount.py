"""Instructions per job (valgrind's callgrind) for ``throughput``'s workloads: a figure that does
not move with the machine's load.

This machine's speed varies up to 2x from day to day and with whatever else runs, so a 5%
change in a rate cannot be told from noise. callgrind counts the instructions a process
executes, the same for the same code and input whatever else the machine does. It runs one
process under valgrind (``--who hub``: the hub; ``--who client``: the driver, i.e. the client
SDK), everything else natively, and for each workload zeroes the counters, runs it and reads
the total: instructions per job. Kernel time (socket writes, fsync) is not counted: compare
message and commit counts separately.

``--trees A,B`` compares source trees (e.g. ``git worktree add /tmp/old REV``): each run
imports jobq from ``TREE/src`` and this tree's driver, and the JSON gives each tree's figures
and their ratios to the first tree's. Workload sizes are small (valgrind runs the measured
process ~50x slower); the idle clock ticks of the hub during a workload are included, which
puts a few percent of noise on ``latency`` (mostly idle) and less on the others.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent


def _total(out: str) -> int:
    """The instruction total of the newest dump callgrind wrote for ``out``."""
    files = sorted(glob.glob(out + "*"), key=os.path.getmtime)
    with open(files[-1]) as dump:
        for line in dump:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {files[-1]}")


def _control(flag: str, pid: int) -> None:
    subprocess.run(["callgrind_control", flag, str(pid)], check=True, capture_output=True)


async def _measure(who: str, jobs: int, many: int, out: str) -> dict[str, float]:
    from tests.helpers import DOORS_OFF, Proc, free_port, jobq_command, start_worker, wait_for_hub

    from bench.throughput import _wait_workers, latency, one_at_a_time, pipelined, submit_many
    from jobq.client.client import Client

    tmp = Path(tempfile.mkdtemp(prefix="jobq-icount-"))
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    hub_cmd = jobq_command("hub", "--store", f"sqlite:///{tmp / 'bench.db'}", "--zmq", endpoint, *DOORS_OFF)
    if who == "hub":
        hub_cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *hub_cmd]
    hub = Proc(hub_cmd, tmp / "hub.log")
    procs = [hub]
    measured = hub.pid if who == "hub" else os.getpid()
    workloads: list[tuple[str, Callable[[Client, int], Awaitable[Any]], int]] = [
        ("one_at_a_time", one_at_a_time, jobs),
        ("pipelined", pipelined, jobs),
        ("submit_many", lambda client, n: submit_many(client, n, min(n, 5000)), many),
        ("latency", latency, max(1, jobs // 5)),
    ]
    try:
        wait_for_hub(endpoint, hub, timeout=600)
        for _ in range(2):
            procs.append(
                start_worker(
                    tmp, endpoint, service="bench", handler="echo", concurrency=64, extra=["--prefetch", "64"]
                )
            )
        figures: dict[str, float] = {}
        async with Client(endpoint, timeout=600) as client:
            await _wait_workers(client, 2)
            await one_at_a_time(client, 200)  # every path once
            for name, workload, n in workloads:
                await asyncio.sleep(0.5)
                _control("-z", measured)
                await workload(client, n)
                _control("-d", measured)
                await asyncio.sleep(0.5)
                figures[name] = _total(out) / n
        return figures
    finally:
        for p in procs:
            p.terminate(60)
            p.close()


def _run_tree(tree: str, who: str, jobs: int, many: int) -> dict[str, float]:
    """One measurement with jobq from ``tree``, in a child process (under valgrind when the
    client is measured)."""
    out = tempfile.mktemp(prefix="jobq-callgrind-")
    # The tree's own jobq, test helpers and throughput workloads (their flags match its CLI).
    root = Path(tree).resolve()
    env = {**os.environ, "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"}
    cmd = [sys.executable, __file__, "--child", "--who", who, "--out", out]
    cmd += ["--jobs", str(jobs), "--many", str(many)]
    if who == "client":
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd]
    done = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"measuring {tree} failed: {done.stderr[-2000:]}")
    figures: dict[str, float] = json.loads(lines[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trees", default=str(HERE), help="comma-separated source trees (default: this one)")
    parser.add_argument("--who", choices=("hub", "client"), default="hub")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--many", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1, help="measurements per tree (medians)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(_measure(args.who, args.jobs, args.many, args.out))))
        return
    trees = args.trees.split(",")
    rounds: dict[str, list[dict[str, float]]] = {tree: [] for tree in trees}
    for _ in range(args.rounds):
        for tree in trees:  # alternating, in case anything drifts
            rounds[tree].append(_run_tree(tree, args.who, args.jobs, args.many))
            print(json.dumps({tree: rounds[tree][-1]}), file=sys.stderr)
    medians = {
        tree: {name: statistics.median(r[name] for r in runs) for name in runs[0]}
        for tree, runs in rounds.items()
    }
    base = medians[trees[0]]
    print(
        json.dumps(
            {
                "benchmark": "icount",
                "who": args.who,
                "jobs": args.jobs,
                "many": args.many,
                "rounds": args.rounds,
                "instructions_per_job": medians,
                "ratio_to_first": {
                    tree: {name: round(value / base[name], 4) for name, value in figures.items()}
                    for tree, figures in medians.items()
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
