"""Majordomo round trips per second through a real hub process, printed as JSON.

    python -m bench.mdp [--seconds 5] [--store sqlite:///...] [--prefetch N]

Three runs, each with fresh MDP/0.1 echo workers written as the zguide's (one request at a
time, separate processes) and a client in this process:

- ``sync_req_1_worker``: a REQ client, one request outstanding (the zguide's mdclient).
- ``pipelined_100_1_worker``: a DEALER client keeping 100 requests outstanding (mdclient2).
- ``pipelined_100_4_workers``: the same with four workers.

The hub runs on the durable default store (SQLite in a temporary folder) unless told otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import zmq

W01, C01 = b"MDPW01", b"MDPC01"
BODY = [b"hello", b"\x00" * 16]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def worker(endpoint: str, service: str) -> None:
    """An MDP/0.1 echo worker, as the zguide's mdworker.py (heartbeats left out: the runs are
    shorter than the hub's idle liveness, and the hub heartbeats it anyway)."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(endpoint)
    sock.send_multipart([b"", W01, b"\x01", service.encode()])
    while True:
        frames = sock.recv_multipart()
        if frames[2] == b"\x02":
            sock.send_multipart([b"", W01, b"\x03", frames[3], b"", *frames[5:]])
        elif frames[2] == b"\x05":
            return


@contextmanager
def hub(store: str | None, prefetch: int | None) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="jobq-bench-mdp-") as tmp:
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        store = store or f"sqlite:///{Path(tmp) / 'jobq.db'}"
        args = [sys.executable, "-m", "jobq.cli.main", "hub", "--store", store, "--zmq", endpoint]
        # Only the ZeroMQ door: the other doors' default ports may be in use.
        args += ["--line", "off", "--http", "off", "--log-level", "warning"]
        if prefetch is not None:
            args += ["--mdp-prefetch", str(prefetch)]
        proc = subprocess.Popen(args, stderr=open(Path(tmp) / "hub.log", "wb"))  # noqa: SIM115
        try:
            wait_ready(endpoint)
            yield endpoint
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_ready(endpoint: str) -> None:
    """Until the hub answers mmi.service."""
    ctx = zmq.Context()
    deadline = time.monotonic() + 20
    try:
        while time.monotonic() < deadline:
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(endpoint)
            sock.send_multipart([b"", C01, b"mmi.service", b"x"])
            answered = sock.poll(300)
            sock.close()
            if answered:
                return
        raise TimeoutError(f"no hub at {endpoint}")
    finally:
        ctx.term()


@contextmanager
def workers(endpoint: str, service: str, n: int) -> Iterator[None]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    procs = [
        subprocess.Popen([sys.executable, "-m", "bench.mdp", "--worker", endpoint, service], env=env)
        for _ in range(n)
    ]
    try:
        ctx = zmq.Context()
        sock = ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(endpoint)
        # All workers ready: mmi.workers lists them.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            sock.send_multipart([C01, b"mmi.workers", service.encode()])
            reply = sock.recv_multipart()
            if len(json.loads(reply[3])) >= n:
                break
            time.sleep(0.05)
        sock.close()
        ctx.term()
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def sync_run(endpoint: str, service: str, seconds: float) -> float:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    request = [C01, service.encode(), *BODY]
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        sock.send_multipart(request)
        reply = sock.recv_multipart()
        assert reply[2:] == BODY, reply
        done += 1
    elapsed = time.perf_counter() - start
    sock.close()
    ctx.term()
    return done / elapsed


def pipelined_run(endpoint: str, service: str, seconds: float, window: int) -> float:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    request = [b"", C01, service.encode(), *BODY]
    for _ in range(window):
        sock.send_multipart(request)
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        reply = sock.recv_multipart()
        assert reply[3:] == BODY, reply
        done += 1
        sock.send_multipart(request)
    elapsed = time.perf_counter() - start
    for _ in range(window):  # let the hub finish the last window before the next run
        sock.recv_multipart()
    sock.close()
    ctx.term()
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each run")
    parser.add_argument("--store", default=None, help="hub store (default: SQLite in a temp folder)")
    parser.add_argument(
        "--prefetch", type=int, default=None, help="the hub's --mdp-prefetch (default: its own)"
    )
    parser.add_argument("--window", type=int, default=100, help="outstanding requests when pipelined")
    parser.add_argument("--worker", nargs=2, metavar=("ENDPOINT", "SERVICE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    figures: dict[str, object] = {
        "store": args.store or "sqlite (default, durability=normal)",
        "prefetch": "hub default" if args.prefetch is None else args.prefetch,
        "seconds": args.seconds,
    }
    with hub(args.store, args.prefetch) as endpoint:
        with workers(endpoint, "bench1", 1):
            sync_run(endpoint, "bench1", min(1.0, args.seconds))  # warm up
            figures["sync_req_1_worker"] = round(sync_run(endpoint, "bench1", args.seconds))
            figures[f"pipelined_{args.window}_1_worker"] = round(
                pipelined_run(endpoint, "bench1", args.seconds, args.window)
            )
        with workers(endpoint, "bench4", 4):
            figures[f"pipelined_{args.window}_4_workers"] = round(
                pipelined_run(endpoint, "bench4", args.seconds, args.window)
            )
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
