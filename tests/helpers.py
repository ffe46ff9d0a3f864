"""Test helpers: free ports, real hub and worker processes, an in-process hub."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import zmq

from jobq.app import HubServer
from jobq.client.client import Client  # noqa: F401 - re-exported for tests
from jobq.config import HubConfig
from jobq.protocol import native as jqp

PYTHON = sys.executable
REPO = Path(__file__).resolve().parent.parent


#: Doors whose default ports a real hub on this machine may hold: tests turn them on when needed.
DOORS_OFF = ("--line", "off", "--http", "off")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def jobq_command(*args: str) -> list[str]:
    return [PYTHON, "-m", "jobq.cli.main", *args]


def hub_cli(endpoint: str, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    """``jobq ARGS --hub ENDPOINT`` as a user runs it: ``token`` as ``JOBQ_TOKEN`` (none by
    default, whatever the environment has), a wide terminal."""
    env = {"JOBQ_TOKEN": token or "", "PYTHONPATH": str(REPO), "COLUMNS": "250"}
    return subprocess.run(
        jobq_command(*args, "--hub", endpoint),
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **env},
    )


def wait_until(predicate: Callable[[], object], timeout: float = 20.0) -> None:
    """Block until ``predicate()`` is true (polled every 50 ms)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


class Proc:
    """A jobq process started by a test; killed at the end whatever happens."""

    def __init__(self, args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.log_path = log
        self._log = log.open("ab")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.popen = subprocess.Popen(
            self.args, stdout=self._log, stderr=subprocess.STDOUT, env=full_env, cwd=log.parent
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL: no goodbye, no cleanup."""
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self, timeout: float = 20) -> int:
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return -9

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.alive():
            self.kill()
        self._log.close()


def start_hub(
    tmp: Path,
    *,
    store: str | None = None,
    port: int | None = None,
    extra: Sequence[str] = (),
    name: str = "hub",
) -> tuple[Proc, str]:
    port = port or free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    store = store or f"sqlite:///{tmp / 'jobq.db'}"
    proc = Proc(
        # The line and HTTP doors' default ports may belong to a real hub: off unless a test asks.
        jobq_command("hub", "--store", store, "--zmq", endpoint, *DOORS_OFF, "--name", name, *extra),
        tmp / f"{name}-{port}.log",
    )
    wait_for_hub(endpoint, proc)
    return proc, endpoint


def wait_for_hub(endpoint: str, proc: Proc | None = None, timeout: float = 20.0) -> None:
    """Block until the hub at ``endpoint`` answers a ping (works inside or outside a loop)."""
    deadline = time.monotonic() + timeout
    ctx = zmq.Context()
    try:
        while True:
            if proc is not None and not proc.alive():
                raise RuntimeError(f"hub exited: {proc.output()}")
            sock = ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(endpoint)
            sock.send_multipart([jqp.HEADER, jqp.encode(jqp.Ping(rid=1))])
            answered = sock.poll(300)
            sock.close()
            if answered:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no hub at {endpoint}")
    finally:
        ctx.term()


def start_worker(
    tmp: Path,
    endpoint: str,
    service: str = "echo",
    handler: str = "echo",
    concurrency: int = 4,
    extra: Sequence[str] = (),
    name: str | None = None,
    env: dict[str, str] | None = None,
) -> Proc:
    name = name or f"w{free_port()}"
    args = jobq_command(
        "worker",
        "--hub",
        endpoint,
        "--service",
        service,
        "--handler",
        handler,
        "--concurrency",
        str(concurrency),
        "--name",
        name,
        *extra,
    )
    return Proc(args, tmp / f"worker-{name}.log", env={"PYTHONPATH": str(REPO), **(env or {})})


@contextlib.asynccontextmanager
async def running_hub(store: str = "memory://", **config: object) -> AsyncIterator[HubServer]:
    """A hub in this event loop on a free loopback port."""
    config = {"line": [], "http": "", **config}  # no line or HTTP door on default ports unless asked for
    cfg = HubConfig(store=store, zmq=["tcp://127.0.0.1:*"], **config)  # type: ignore[arg-type]
    server = HubServer(cfg)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=0)


async def eventually(predicate: object, timeout: float = 10.0, interval: float = 0.02) -> None:
    """Wait until ``predicate()`` (sync or async) is true."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()  # type: ignore[operator]
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
