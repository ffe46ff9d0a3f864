"""Issue 11's benchmark: what identity costs end to end, auth off beside auth on and CURVE, same run.

Three set-ups run side by side on loopback, each a real hub process (SQLite store) with 2 worker
processes serving ~100-byte no-op jobs (``--handler echo``):

- ``off``: ``jobq hub`` without ``--auth``; the client and workers send no credential;
- ``auth``: ``jobq hub --auth FILE``; the client (a ``client`` token) and the workers (a ``worker``
  token, in ``JOBQ_TOKEN``) present tokens, and every call is checked and scoped;
- ``curve``: the same hub flags plus a ``--zmq tcp://...?curve`` listener and ``--curve-secret``;
  the client and the workers also connect with CURVE keys the auth file allows (CurveZMQ:
  handshake, then every message boxed).

Each round runs, for each set-up in turn (the order rotates every round), the workloads of
``bench.throughput``: ``one_at_a_time`` (one submit after another, each acknowledged) and
``pipelined`` (1,000 submits in flight); rate = jobs / (first submit → last result). Per round it
reports each rate, the CPU per job (the hub's, and the hub's, workers' and driver's together) and
the ratios ``auth/off`` and ``curve/off`` of the rates and of the CPU per job. The summary gives
medians, and whether auth's cost stays within 10% (rate ratio ≥ 0.9) on both workloads. Rates move
with whatever else the machine runs; CPU per job much less. Prints one JSON document;
``python -m bench.auth --help`` for the knobs.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import zmq
from tests.helpers import DOORS_OFF, REPO, Proc, free_port, jobq_command, start_worker

from bench.throughput import PAYLOAD, one_at_a_time, pipelined
from jobq import authfile
from jobq.client.client import Client

MODES = ("off", "auth", "curve")
#: Auth may cost at most 10% on either workload (issue 11).
TARGET_RATIO = 0.9
SERVICE = "bench"

#: What each set-up needs of the SDK and the CLI (checked before anything starts).
CLIENT_TOKEN = ("token",)
CLIENT_CURVE = ("curve_server_key", "curve_public_key", "curve_secret_key")
HUB_AUTH_FLAGS = ("--auth",)
HUB_CURVE_FLAGS = ("--curve-secret",)
WORKER_TOKEN_ENV = "JOBQ_TOKEN"
WORKER_TOKEN_FLAGS = ("--token",)
#: The worker's CURVE keys: flag → the key it takes.
WORKER_CURVE_FLAGS = {
    "--curve-server-key": "server_public",
    "--curve-public-key": "public",
    "--curve-secret-key": "secret",
}


# ---------------------------------------------------------------- what must be there


def _help(*command: str) -> str:
    done = subprocess.run(jobq_command(*command, "--help"), capture_output=True, text=True, check=False)
    return done.stdout + done.stderr


def missing_parts(modes: list[str]) -> list[str]:
    """What the SDK and CLI lack for these set-ups (empty: all there)."""
    missing: list[str] = []
    if modes == ["off"]:
        return missing
    params = inspect.signature(Client).parameters
    hub_help, worker_help = _help("hub"), _help("worker")
    wanted_client = [*CLIENT_TOKEN, *(CLIENT_CURVE if "curve" in modes else ())]
    missing += [f"Client(..., {p}=...) (src/jobq/client/client.py)" for p in wanted_client if p not in params]
    wanted_hub = [*HUB_AUTH_FLAGS, *(HUB_CURVE_FLAGS if "curve" in modes else ())]
    missing += [f"`jobq hub {flag}`" for flag in wanted_hub if flag not in hub_help]
    wanted_worker = [*WORKER_TOKEN_FLAGS, *(WORKER_CURVE_FLAGS if "curve" in modes else ())]
    missing += [f"`jobq worker {flag}`" for flag in wanted_worker if flag not in worker_help]
    if WORKER_TOKEN_ENV not in worker_help:
        missing.append(f"`jobq worker` reading {WORKER_TOKEN_ENV}")
    return missing


# ---------------------------------------------------------------- set-ups


@dataclass
class Keys:
    public: str
    secret: str


def keypair() -> Keys:
    public, secret = zmq.curve_keypair()
    return Keys(public.decode(), secret.decode())


@dataclass
class Setup:
    mode: str
    endpoint: str
    hub: Proc
    workers: list[Proc] = field(default_factory=list)
    client_options: dict[str, Any] = field(default_factory=dict)

    def client(self) -> Client:
        return Client(self.endpoint, timeout=60, **self.client_options)

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far: the hub's, and the hub's, its workers' and this driver's together
        (less disturbed than wall time by whatever else the machine runs)."""
        hub = _cpu(self.hub)
        return hub, hub + sum(_cpu(w) for w in self.workers) + time.process_time()


def _cpu(proc: Proc) -> float:
    times = psutil.Process(proc.pid).cpu_times()
    return times.user + times.system


def _wait_port(port: int, proc: Proc, timeout: float = 20.0) -> None:
    """Until the hub accepts TCP connections (a CURVE listener answers no plain ping)."""
    deadline = time.monotonic() + timeout
    while True:
        if not proc.alive():
            raise RuntimeError(f"hub exited: {proc.output()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.3).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no hub on port {port}: {proc.output()}") from None
            time.sleep(0.05)


def start_setup(mode: str, run_dir: Path, args: argparse.Namespace, procs: list[Proc]) -> Setup:
    """A hub and its workers for one mode (the processes go into ``procs`` as they start)."""
    run_dir.mkdir(parents=True)
    port = free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    auth = run_dir / "auth.json"
    listener, hub_extra = endpoint, []
    client_options: dict[str, Any] = {}
    worker_env = {"PYTHONPATH": str(REPO)}
    worker_extra = [["--prefetch", str(args.prefetch)] for _ in range(args.workers)]
    if mode != "off":
        client_token, _ = authfile.create_token(auth, "client", name="bench-client")
        worker_token, _ = authfile.create_token(auth, "worker", services=[SERVICE], name="bench-worker")
        hub_extra += ["--auth", str(auth), "--audit", str(run_dir / "audit.log")]
        client_options["token"] = client_token
        worker_env[WORKER_TOKEN_ENV] = worker_token  # not on the command line, where ps shows it
    if mode == "curve":
        server, client = keypair(), keypair()
        secret_file = run_dir / "hub.key"
        secret_file.write_text(server.secret + "\n")
        secret_file.chmod(0o600)
        listener = f"{endpoint}?curve"
        hub_extra += ["--curve-secret", str(secret_file)]
        authfile.allow_key(auth, client.public, "client", name="bench-client-key")
        client_options |= {
            "curve_server_key": server.public,
            "curve_public_key": client.public,
            "curve_secret_key": client.secret,
        }
        for i, extra in enumerate(worker_extra):
            keys = keypair()
            authfile.allow_key(auth, keys.public, "worker", services=[SERVICE], name=f"bench-worker-key-{i}")
            values = {"server_public": server.public, "public": keys.public, "secret": keys.secret}
            for flag, which in WORKER_CURVE_FLAGS.items():
                extra += [flag, values[which]]
    hub = Proc(
        jobq_command(
            "hub", "--store", f"sqlite:///{run_dir / 'bench.db'}", "--zmq", listener, *DOORS_OFF,
            "--name", f"hub-{mode}", *hub_extra,
        ),
        run_dir / "hub.log",
    )  # fmt: skip
    procs.append(hub)
    _wait_port(port, hub)
    setup = Setup(mode, endpoint, hub, client_options=client_options)
    for i, extra in enumerate(worker_extra):
        worker = start_worker(
            run_dir,
            endpoint,
            service=SERVICE,
            handler="echo",
            concurrency=args.concurrency,
            extra=extra,
            name=f"{mode}-w{i}",
            env=worker_env,
        )
        procs.append(worker)
        setup.workers.append(worker)
    return setup


async def wait_workers(client: Client, setup: Setup, n: int) -> None:
    deadline = time.monotonic() + 30
    while sum(1 for w in await client.workers() if SERVICE in w.services) < n:
        dead = [w for w in setup.workers if not w.alive()]
        if dead:
            raise RuntimeError(f"{setup.mode}: a worker exited: {dead[0].output()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{setup.mode}: {n} workers did not connect")
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- measuring


async def phase(setup: Setup, client: Client, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, run, jobs in (
        ("one_at_a_time", one_at_a_time, args.one_jobs),
        ("pipelined", pipelined, args.jobs),
    ):
        hub, total = setup.cpu()
        figures = await run(client, jobs)
        hub_after, total_after = setup.cpu()
        out[name] = {
            "jobs": jobs,
            "end_to_end_per_s": round(figures["end_to_end_per_s"], 1),
            "enqueue_per_s": round(figures["enqueue_per_s"], 1),
            "hub_cpu_us_per_job": round((hub_after - hub) * 1e6 / jobs, 1),
            "cpu_us_per_job": round((total_after - total) * 1e6 / jobs, 1),
        }
    return out


def _ratios(row: dict[str, Any], modes: list[str]) -> dict[str, float]:
    """Each mode's rate over the baseline's (``auth/off pipelined``), and its CPU per job over
    the baseline's (``auth/off pipelined cpu``)."""
    out: dict[str, float] = {}
    for workload in ("one_at_a_time", "pipelined"):
        base = row["off"][workload]
        for mode in modes:
            if mode != "off":
                figures = row[mode][workload]
                key = f"{mode}/off {workload}"
                out[key] = round(figures["end_to_end_per_s"] / base["end_to_end_per_s"], 3)
                out[f"{key} cpu"] = round(figures["cpu_us_per_job"] / base["cpu_us_per_job"], 3)
    return out


def summarize(rounds: list[dict[str, Any]], modes: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for workload in ("one_at_a_time", "pipelined"):
        figures: dict[str, Any] = {}
        for mode in modes:
            figures[f"{mode}_per_s"] = round(
                statistics.median(r[mode][workload]["end_to_end_per_s"] for r in rounds), 1
            )
            for cpu in ("hub_cpu_us_per_job", "cpu_us_per_job"):
                figures[f"{mode}_{cpu}"] = round(statistics.median(r[mode][workload][cpu] for r in rounds), 1)
        for mode in modes:
            if mode != "off":
                key = f"{mode}/off {workload}"
                figures[f"{mode}_ratio"] = round(statistics.median(r["ratios"][key] for r in rounds), 3)
                figures[f"{mode}_cpu_ratio"] = round(
                    statistics.median(r["ratios"][f"{key} cpu"] for r in rounds), 3
                )
        summary[workload] = figures
    if "auth" in modes:
        within = {w: summary[w]["auth_ratio"] >= TARGET_RATIO for w in ("one_at_a_time", "pipelined")}
        summary["auth_within_10_percent"] = {**within, "both": all(within.values())}
    return summary


@contextmanager
def running(procs: list[Proc]) -> Iterator[None]:
    try:
        yield
    finally:
        for proc in procs:
            proc.terminate(5)
            proc.close()


async def measure(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    modes: list[str] = args.modes
    procs: list[Proc] = []
    with running(procs):
        setups = {mode: start_setup(mode, tmp / mode, args, procs) for mode in modes}
        clients = {mode: setups[mode].client() for mode in modes}
        for mode in modes:
            await clients[mode].__aenter__()
        try:
            for mode in modes:
                await wait_workers(clients[mode], setups[mode], args.workers)
                await one_at_a_time(clients[mode], 300)  # warm up every path once
                await pipelined(clients[mode], 2000)
            rounds: list[dict[str, Any]] = []
            for number in range(args.rounds):
                order = modes[number % len(modes) :] + modes[: number % len(modes)]
                row: dict[str, Any] = {"round": number + 1, "order": order}
                for mode in order:
                    row[mode] = await phase(setups[mode], clients[mode], args)
                row["ratios"] = _ratios(row, modes)
                rounds.append(row)
                print(json.dumps(row), file=sys.stderr)
        finally:
            for client in clients.values():
                await client.__aexit__(None, None, None)
    return {"summary": summarize(rounds, modes), "rounds": rounds}


def _modes(text: str) -> list[str]:
    modes = [m for m in text.split(",") if m]
    unknown = sorted(set(modes) - set(MODES))
    if unknown or "off" not in modes:
        raise argparse.ArgumentTypeError(f"modes among {', '.join(MODES)}, with off (the baseline)")
    return [m for m in MODES if m in modes]


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--modes", type=_modes, default=list(MODES), help="set-ups, comma separated")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of every set-up; medians reported")
    parser.add_argument("--one-jobs", type=int, default=3_000, help="jobs per one-at-a-time run")
    parser.add_argument("--jobs", type=int, default=20_000, help="jobs per pipelined run")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--prefetch", type=int, default=64)
    args = parser.parse_args()
    missing = missing_parts(args.modes)
    if missing:
        sys.exit(
            f"bench.auth cannot run --modes {','.join(args.modes)}: not there yet: {'; '.join(missing)}. "
            "(--modes off,auth needs only the token parts.)"
        )
    with tempfile.TemporaryDirectory(prefix="jobq-bench-auth-") as tmp:
        result = await measure(args, Path(tmp))
    print(
        json.dumps(
            {
                "benchmark": "auth",
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                },
                "store": "sqlite",
                "workers": args.workers,
                "payload_bytes": len(PAYLOAD),
                "modes": args.modes,
                "target_auth_ratio": TARGET_RATIO,
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
