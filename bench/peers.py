"""Issue 16: jobq beside the queues people pick instead, as ratios from one run.

Runs, one after another on this machine:

1. ``../shared/peers/side_by_side.sh`` from this checkout: jobq's ``bench.throughput`` (SQLite and
   memory, 2 worker processes) and Dramatiq on Redis, beanstalkd and a bare pyzmq relay
   (20,000 ~100-byte no-op jobs, 2 worker processes; one JSON line each);
2. the CLI: a hub on SQLite and 2 worker processes as ``bench.throughput`` starts them, then
   ``jobq submit echo PAYLOAD --count N --wait`` (a 100-byte payload) timed from the command's
   start to its exit, after a 500-job warm-up run;
3. ``python -m bench.redis --compare ''`` (the same workloads on the Redis store, 1 and 2 hubs,
   with Redis commands per job) against a redis-server of its own on a free port, so that
   ``INFO commandstats`` counts only jobq's commands.

Then it computes every ratio of issue 16's Targets, each with its target and whether it holds,
and prints one JSON document: machine, the raw results, the ratios. It exits 0 whatever the
ratios (a measurement, not a test); a part that fails is reported under ``errors`` and the ratios
that need it are ``null``.

A full run took 3 minutes on the 2-core VM (side_by_side 1, bench.redis 2; twice that on its
slow days). ``--quick`` shrinks what can be shrunk (the CLI's N and ``bench.redis``'s
``--jobs/--many/--latency/--memory-jobs``); ``side_by_side.sh`` takes no size, so it runs in full
either way. ``--parts`` runs a subset.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from tests.helpers import Proc, free_port, jobq_command, start_hub, start_worker

from bench.throughput import PAYLOAD, _wait_workers
from jobq.client.client import Client

REPO = Path(__file__).resolve().parent.parent
SIDE_BY_SIDE = REPO.parent / "shared" / "peers" / "side_by_side.sh"
PARTS = ("side_by_side", "cli", "redis")


def _log(message: str) -> None:
    print(f"bench.peers: {message}", file=sys.stderr, flush=True)


def _json_lines(text: str) -> tuple[list[dict[str, Any]], list[str]]:
    parsed, other = [], []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        if isinstance(value, dict):
            parsed.append(value)
        elif line.strip():
            other.append(line)
    return parsed, other


def run_side_by_side(timeout: float) -> dict[str, Any]:
    done = subprocess.run(
        ["bash", str(SIDE_BY_SIDE)], cwd=REPO, stdout=subprocess.PIPE, text=True, timeout=timeout, check=False
    )
    lines, other = _json_lines(done.stdout)
    out: dict[str, Any] = {"exit_code": done.returncode, "lines": lines}
    if other:
        out["other_output"] = other
    return out


async def _cli_run(hub: str, count: int) -> dict[str, Any]:
    jobq = Path(sys.executable).with_name("jobq")
    command = [str(jobq)] if jobq.exists() else jobq_command()
    command += ["submit", "echo", PAYLOAD.decode(), "--count", str(count), "--wait", "--hub", hub]
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO
    )
    stdout, stderr = await proc.communicate()
    wall = time.perf_counter() - started
    errors = stderr.decode(errors="replace")
    out: dict[str, Any] = {"jobs": count, "exit_code": proc.returncode, "wall_s": round(wall, 3)}
    out["rate_per_s"] = round(count / wall, 1)
    # The CLI's own summary times only the wait for the ends (after every submit was accepted).
    summary = re.search(r"(\d+) jobs in ([\d.]+)s \((\d+) jobs/s\): ([^\n]*)", errors)
    if summary:
        out["cli_summary"] = summary.group(0)
    if proc.returncode != 0:
        out["stderr_tail"] = errors[-2000:]
        out["stdout_tail"] = stdout.decode(errors="replace")[-500:]
    return out


async def run_cli(count: int, tmp: Path) -> dict[str, Any]:
    """A hub on SQLite and 2 workers as ``bench.throughput`` starts them; the CLI submits ``count``."""
    run_dir = Path(tempfile.mkdtemp(prefix="cli-", dir=tmp))
    procs: list[Proc] = []
    try:
        hub, endpoint = start_hub(run_dir, store=f"sqlite:///{run_dir / 'bench.db'}", port=free_port())
        procs.append(hub)
        for _ in range(2):
            procs.append(
                start_worker(
                    run_dir,
                    endpoint,
                    service="echo",
                    handler="echo",
                    concurrency=64,
                    extra=["--prefetch", "64"],
                )
            )
        async with Client(endpoint, timeout=60) as client:
            await _wait_workers(client, 2)
        # The interpreter's start-up and imports, paid by every CLI command: reported, not subtracted.
        started = time.perf_counter()
        jobq = Path(sys.executable).with_name("jobq")
        help_cmd = [str(jobq)] if jobq.exists() else jobq_command()
        helped = await asyncio.create_subprocess_exec(
            *help_cmd, "submit", "--help", stdout=asyncio.subprocess.DEVNULL
        )
        await helped.wait()
        startup = time.perf_counter() - started
        warm = await _cli_run(endpoint, 500)
        result = await _cli_run(endpoint, count)
        return {
            "store": "sqlite",
            "workers": 2,
            "command": f"jobq submit echo PAYLOAD --count {count} --wait",
            "payload_bytes": len(PAYLOAD),
            "warm_up": warm,
            "startup_s": round(startup, 3),
            **result,
        }
    finally:
        for p in procs:
            p.terminate(5)
            p.close()


def run_redis(extra: list[str], timeout: float, tmp: Path) -> dict[str, Any]:
    """``bench.redis`` against a redis-server of our own (no persistence), stopped afterwards."""
    server_bin = shutil.which("redis-server")
    if server_bin is None:
        return {"error": "redis-server not found (side_by_side.sh installs it)"}
    port = free_port()
    log = (tmp / "redis-server.log").open("wb")
    server = subprocess.Popen(
        [server_bin, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        probe = redis.Redis.from_url(url)
        deadline = time.monotonic() + 10
        while True:
            try:
                probe.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    return {"error": "redis-server did not start"}
                time.sleep(0.05)
            finally:
                probe.close()
        done = subprocess.run(
            [sys.executable, "-m", "bench.redis", "--redis", url, "--compare", "", *extra],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            return {"error": f"bench.redis exited {done.returncode}", "stdout_tail": done.stdout[-2000:]}
        document: dict[str, Any] = json.loads(done.stdout)
        return document
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        log.close()


def _get(data: Any, *path: str | int) -> float | None:
    for step in path:
        try:
            data = data[step]
        except (KeyError, IndexError, TypeError):
            return None
    return float(data) if isinstance(data, int | float) else None


def _ratio(
    numerator: tuple[str, float | None], denominator: tuple[str, float | None], target: float, at_least: bool
) -> dict[str, Any]:
    num, den = numerator[1], denominator[1]
    value = num / den if num is not None and den else None
    holds = None if value is None else (value >= target if at_least else value <= target)
    return {
        "value": None if value is None else round(value, 3),
        "target": f"{'>=' if at_least else '<='} {target}",
        "holds": holds,
        numerator[0]: num,
        denominator[0]: den,
    }


def ratios(side: dict[str, Any], cli: dict[str, Any], red: dict[str, Any]) -> dict[str, Any]:
    lines = side.get("lines", [])

    def line(peer: str, store: str | None = None) -> dict[str, Any]:
        for item in lines:
            if item.get("peer") == peer and (store is None or item.get("store") == store):
                return dict(item)
        return {}

    sqlite, dramatiq, beanstalkd = line("jobq", "sqlite"), line("dramatiq"), line("beanstalkd")
    one_hub: dict[str, Any] = next(
        (r for r in red.get("runs", []) if r.get("store") == "redis" and r.get("hubs") == 1), {}
    )
    two_hubs: dict[str, Any] = next(
        (r for r in red.get("runs", []) if r.get("store") == "redis" and r.get("hubs") == 2), {}
    )

    d_e2e = ("dramatiq_e2e_per_s", _get(dramatiq, "e2e_rate"))
    b_e2e = ("beanstalkd_e2e_per_s", _get(beanstalkd, "e2e_rate"))
    s_one = ("sqlite_one_at_a_time_e2e_per_s", _get(sqlite, "one_at_a_time_e2e"))
    s_pipe = ("sqlite_pipelined_e2e_per_s", _get(sqlite, "pipelined_e2e"))
    r_one = ("redis_1hub_one_at_a_time_e2e_per_s", _get(one_hub, "one_at_a_time", "end_to_end_per_s"))
    r_pipe = ("redis_1hub_pipelined_e2e_per_s", _get(one_hub, "pipelined", "end_to_end_per_s"))
    out: dict[str, Any] = {
        "sqlite_one_at_a_time_vs_dramatiq_e2e": _ratio(s_one, d_e2e, 1.5, True),
        "sqlite_one_at_a_time_vs_beanstalkd_e2e": _ratio(s_one, b_e2e, 0.5, True),
        "sqlite_p50_vs_beanstalkd_p50": _ratio(
            ("sqlite_p50_ms", _get(sqlite, "p50_ms")),
            ("beanstalkd_p50_ms", _get(beanstalkd, "lat_p50_ms")),
            1.2,
            False,
        ),
        "sqlite_pipelined_vs_dramatiq_e2e": _ratio(s_pipe, d_e2e, 8, True),
        "sqlite_pipelined_vs_beanstalkd_e2e": _ratio(s_pipe, b_e2e, 2.5, True),
        "sqlite_batch_accepted_vs_beanstalkd_enqueue": _ratio(
            ("sqlite_submit_many_accepted_per_s", _get(sqlite, "submit_many_accepted")),
            ("beanstalkd_enqueue_per_s", _get(beanstalkd, "enqueue_rate")),
            4,
            True,
        ),
        "redis_1hub_one_at_a_time_vs_dramatiq_e2e": _ratio(r_one, d_e2e, 1.0, True),
        "redis_1hub_pipelined_vs_dramatiq_e2e": _ratio(r_pipe, d_e2e, 3, True),
        "redis_1hub_p50_vs_dramatiq_p50": _ratio(
            ("redis_1hub_p50_ms", _get(one_hub, "latency", "p50_ms")),
            ("dramatiq_p50_ms", _get(dramatiq, "lat_p50_ms")),
            0.5,
            False,
        ),
    }
    # Two hubs on one Redis, one producer each at once (the 2 workers split between them): each
    # hub's rate against one hub alone, as the issue words it; the cluster's rate beside it.
    for workload, one in (("one_at_a_time", r_one), ("pipelined", r_pipe)):
        parts = two_hubs.get(workload, {}).get("per_producer", [])
        rates = [_get(p, "end_to_end_per_s") for p in parts]
        slowest = min((r for r in rates if r is not None), default=None) if len(rates) == 2 else None
        entry = _ratio((f"redis_2hubs_slowest_hub_{workload}_e2e_per_s", slowest), one, 0.8, True)
        entry["per_hub_e2e_per_s"] = [None if r is None else round(r, 1) for r in rates]
        cluster = _get(two_hubs, workload, "end_to_end_per_s")
        entry["cluster_vs_1hub"] = round(cluster / one[1], 3) if cluster and one[1] else None  # no target
        out[f"redis_2hubs_each_vs_1hub_{workload}"] = entry
    out["cli_vs_sdk_pipelined"] = _ratio(
        ("cli_per_s", _get(cli, "rate_per_s") if cli.get("exit_code") == 0 else None), s_pipe, 0.8, True
    )
    return out


def redis_commands(red: dict[str, Any]) -> dict[str, Any]:
    """Redis commands per job (``INFO commandstats``) and each process's CPU per job, per hub
    count and workload: reported, no target."""
    out: dict[str, Any] = {}
    for run in red.get("runs", []):
        if run.get("store") != "redis":
            continue
        out[f"{run['hubs']}_hub{'s' if run['hubs'] > 1 else ''}"] = {
            workload: {
                "commands_per_job": run[workload].get("redis_commands_per_job"),
                "scripts_per_job": run[workload].get("redis_scripts_per_job"),
                "cpu_us_per_job": run[workload].get("cpu_us_per_job"),
            }
            for workload in ("one_at_a_time", "pipelined", "submit_many", "latency")
            if workload in run
        }
    return out


def _git() -> dict[str, Any]:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {
        "head": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def _timed(
    part: str, times: dict[str, float], errors: dict[str, str], run: Callable[[], dict[str, Any]]
) -> Any:
    _log(f"{part} ...")
    started = time.perf_counter()
    try:
        result = run()
    except Exception as exc:  # a failed part is reported, the others still run
        errors[part] = f"{type(exc).__name__}: {exc}"
        result = {}
    times[part] = round(time.perf_counter() - started, 1)
    if "error" in result:
        errors[part] = str(result["error"])
    _log(f"{part} done in {times[part]} s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller N for the CLI and bench.redis")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"subset of {','.join(PARTS)}")
    parser.add_argument(
        "--cli-jobs", type=int, default=None, help="N for the CLI (20,000; 5,000 with --quick)"
    )
    parser.add_argument("--timeout", type=float, default=1800, help="seconds each part may take")
    args = parser.parse_args()
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    cli_jobs = args.cli_jobs or (5_000 if args.quick else 20_000)
    redis_extra = ["--jobs", "5000", "--many", "20000", "--latency", "300", "--memory-jobs", "5000"]

    machine: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "git": _git(),
    }
    times: dict[str, float] = {}
    errors: dict[str, str] = {}
    side: dict[str, Any] = {}
    cli: dict[str, Any] = {}
    red: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="jobq-bench-peers-") as tmp_name:
        tmp = Path(tmp_name)
        if "side_by_side" in parts:
            side = _timed("side_by_side", times, errors, lambda: run_side_by_side(args.timeout))
            bad = [x for x in side.get("lines", []) if x.get("error") or x.get("ok") is False]
            if bad:
                errors["side_by_side"] = "; ".join(f"{x.get('peer')}: {x.get('error')}" for x in bad)
        if "cli" in parts:
            cli = _timed("cli", times, errors, lambda: asyncio.run(run_cli(cli_jobs, tmp)))
            if cli and cli.get("exit_code") != 0:
                errors["cli"] = f"jobq submit exited {cli.get('exit_code')}"
        if "redis" in parts:
            red = _timed(
                "redis",
                times,
                errors,
                lambda: run_redis(redis_extra if args.quick else [], args.timeout, tmp),
            )
    machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    machine["redis"] = red.get("machine", {}).get("redis")
    computed = ratios(side, cli, red)
    verdicts = [r["holds"] for r in computed.values()]
    print(
        json.dumps(
            {
                "benchmark": "peers",
                "issue": 16,
                "quick": args.quick,
                "machine": machine,
                "seconds": times,
                "errors": errors,
                "ratios": computed,
                "summary": {
                    "hold": sum(v is True for v in verdicts),
                    "miss": sum(v is False for v in verdicts),
                    "not_measured": sum(v is None for v in verdicts),
                },
                "redis_commands_per_job": redis_commands(red),
                "not_covered": "issue 16's no-regression target (bench.claim, bench.mdp, bench.line)",
                "raw": {"side_by_side": side, "cli": cli, "redis": red},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
