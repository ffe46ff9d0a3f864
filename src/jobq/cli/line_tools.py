"""Tools of the ``jobq`` command for people on the line doors.

- ``jobq autocall``: the work-queue system's load generator. Random technical words, 1 to 5
  per job, through any door: ``tcp://`` (native ZeroMQ), ``line://`` (work-queue ``JOB``, one
  connection per job as the original client does) or ``dsjq://`` (DSJQ ``SUBMIT``); with
  ``--token``, the native door gets it and a line connection starts with ``AUTH <token>``.
- ``jobq listen GROUP:PORT``: prints the words a ``multicast`` worker streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import sys
import time
from typing import Protocol

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jobq.cli import render
from jobq.cli.options import (
    CONTEXT,
    EXIT_JOB_FAILED,
    EXIT_UNAVAILABLE,
    option,
    run_async,
    timeout_option,
    token_option,
)
from jobq.config import DEFAULT_HUB
from jobq.errors import Forbidden, InvalidRequest, JobqError, Unauthorized, Unavailable

#: What autocall's jobs are made of.
WORDS = (
    "algorithm", "bandwidth", "buffer", "cache", "checksum", "cluster", "compiler", "container",
    "daemon", "database", "deadlock", "endpoint", "firmware", "gateway", "hashmap", "heap",
    "interrupt", "iterator", "kernel", "latency", "lease", "load-balancer", "mutex", "namespace",
    "packet", "pipeline", "protocol", "queue", "register", "replica", "router", "scheduler",
    "semaphore", "shard", "socket", "stack", "syscall", "thread", "throughput", "timeout",
    "token", "transaction", "vector", "virtualization", "websocket", "worker", "multicast",
    "heartbeat", "idempotency", "serializer",
)  # fmt: skip


def random_job(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 5)))


class Sender(Protocol):
    async def send(self, text: str) -> int:
        """Submit one job; its id."""
        ...

    async def close(self) -> None: ...


class NativeSender:
    """Through the native ZeroMQ door with the jobq SDK."""

    def __init__(self, hub: str, service: str, timeout: float, token: str | None = None) -> None:
        from jobq.client.client import Client

        self.client = Client(hub, timeout=timeout, token=token)
        self.service = service

    async def send(self, text: str) -> int:
        return await self.client.submit(self.service, text)

    async def close(self) -> None:
        await self.client.close()


class LineSender:
    """Through a line listener: one connection per job, as the work-queue client does."""

    def __init__(self, host: str, port: int, dsjq: bool, timeout: float, token: str | None = None) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.verb, self.answer = ("SUBMIT", "JOB_ID") if dsjq else ("JOB", "ID")
        self.auth = f"AUTH {token}\n".encode() if token else b""

    async def send(self, text: str) -> int:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.timeout
            )
        except (OSError, TimeoutError) as exc:
            raise Unavailable(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        try:
            writer.write(self.auth + f"{self.verb} {text}\n".encode())
            reply = (await asyncio.wait_for(reader.readline(), self.timeout)).decode(errors="replace")
            if self.auth and reply.strip() == "OK":
                reply = (await asyncio.wait_for(reader.readline(), self.timeout)).decode(errors="replace")
        except (OSError, TimeoutError) as exc:
            raise Unavailable(f"no answer from {self.host}:{self.port}: {exc}") from None
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        word, _, job_id = reply.strip().partition(" ")
        if word == "ERR" and job_id.startswith("not authorized"):
            raise Unauthorized(job_id)
        if word == "ERR" and job_id.startswith("not allowed"):
            raise Forbidden(job_id)
        if word != self.answer or not job_id.isdigit():
            raise InvalidRequest(f"the hub answered {reply.strip()!r}")
        return int(job_id)

    async def close(self) -> None:
        pass


def sender_for(url: str, service: str, timeout: float, token: str | None = None) -> Sender:
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("line", "dsjq"):
        host, _, port = rest.split("/", 1)[0].rpartition(":")
        if not host or not port.isdigit():
            raise InvalidRequest(f"{url!r} is not {scheme}://HOST:PORT")
        return LineSender(host.strip("[]"), int(port), scheme == "dsjq", timeout, token)
    if sep and scheme in ("tcp", "ipc", "inproc"):
        return NativeSender(url, service, timeout, token)
    raise InvalidRequest(f"{url!r}: use tcp://HOST:PORT (native), line://HOST:PORT or dsjq://HOST:PORT")


@click.command(context_settings=CONTEXT)
@option(
    "--hub",
    default=DEFAULT_HUB,
    show_default=True,
    help="Door to submit through: tcp://HOST:PORT (native ZeroMQ), line://HOST:PORT (work-queue JOB) "
    "or dsjq://HOST:PORT (DSJQ SUBMIT).",
)
@timeout_option
@token_option
@option(
    "--service",
    envvar="JOBQ_AUTOCALL_SERVICE",
    default="default",
    show_default=True,
    help="Service of the jobs (native door; a line door uses the hub's --line-service).",
)
@option("--num-jobs", type=int, default=50, show_default=True, help="Jobs to submit.")
@option(
    "--delay",
    envvar="JOBQ_AUTOCALL_DELAY",
    type=float,
    default=0.1,
    show_default=True,
    help="Seconds between two jobs.",
)
@option("--seed", envvar="JOBQ_AUTOCALL_SEED", type=int, default=None, help="Seed of the random words.")
@option("--json", "as_json", is_flag=True, default=False, help="Print the summary as JSON.")
@run_async
async def autocall(
    hub: str,
    connect_timeout: float,
    token: str | None,
    service: str,
    num_jobs: int,
    delay: float,
    seed: int | None,
    as_json: bool,
) -> int:
    """Submit NUM-JOBS jobs of 1 to 5 random technical words, DELAY seconds apart."""
    if num_jobs < 0 or delay < 0:
        raise InvalidRequest("--num-jobs and --delay must not be negative")
    rng = random.Random(seed)
    sender = sender_for(hub, service, connect_timeout, token)
    ids: list[int] = []
    errors: dict[str, int] = {}
    started = time.perf_counter()
    try:
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=render.errors,
            disable=as_json,
        ) as bar:
            task = bar.add_task("autocall", total=num_jobs)
            for i in range(num_jobs):
                if i and delay:
                    await asyncio.sleep(delay)
                try:
                    ids.append(await sender.send(random_job(rng)))
                except (Unauthorized, Forbidden):
                    raise  # every other job would be refused too: exit 7 at once
                except JobqError as exc:
                    errors[exc.message] = errors.get(exc.message, 0) + 1
                bar.advance(task)
    finally:
        await sender.close()
    elapsed = time.perf_counter() - started
    summary = {
        "door": hub,
        "submitted": len(ids),
        "refused": sum(errors.values()),
        "seconds": round(elapsed, 3),
        "jobs_per_second": round(len(ids) / elapsed, 1) if elapsed > 0 else None,
        "first_id": min(ids, default=None),
        "last_id": max(ids, default=None),
        "errors": errors,
    }
    if as_json:
        click.echo(json.dumps(summary))
    else:
        span = f"; ids {summary['first_id']}..{summary['last_id']}" if ids else ""
        click.echo(f"autocall: {len(ids)} of {num_jobs} jobs submitted through {hub} in {elapsed:.2f}s{span}")
        for message, count in errors.items():
            click.echo(f"  refused {count}x: {message}", err=True)
    if len(ids) == num_jobs:
        return 0
    return EXIT_UNAVAILABLE if not ids else EXIT_JOB_FAILED


@click.command(context_settings=CONTEXT)
@click.argument("address", metavar="GROUP:PORT")
@option(
    "--interface",
    envvar="JOBQ_LISTEN_INTERFACE",
    default="0.0.0.0",
    show_default=True,
    help="IPv4 address of the interface to join the group on.",
)
@option("--exit-after", type=int, default=0, show_default=True, help="Exit after N words (0: never).")
@option("--idle-timeout", type=float, default=None, help="Exit after this many seconds without a word.")
@option("--show-sender", is_flag=True, default=False, help="Prefix each word with its sender's address.")
def listen(
    address: str, interface: str, exit_after: int, idle_timeout: float | None, show_sender: bool
) -> None:
    """Print each word a multicast worker sends to GROUP:PORT, one per line."""
    from jobq.worker.multicast import open_receiver, parse_group

    try:
        group, port = parse_group(address, default_port=None)
        sock = open_receiver(group, port, interface)
    except JobqError as exc:
        click.echo(f"jobq listen: {exc.message}", err=True)
        sys.exit(2)
    except OSError as exc:
        click.echo(f"jobq listen: cannot join {group} on {interface}: {exc}", err=True)
        sys.exit(2)
    click.echo(f"jobq listen: {group}:{port} on {interface}", err=True)
    heard = 0
    last = time.monotonic()
    sock.settimeout(0.2)  # wake up now and then, so Ctrl-C and --idle-timeout work
    try:
        with sock:
            while not exit_after or heard < exit_after:
                try:
                    data, sender = sock.recvfrom(65536)
                except TimeoutError:
                    if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                        sys.exit(EXIT_JOB_FAILED if exit_after else 0)
                    continue
                heard += 1
                last = time.monotonic()
                word = data.decode(errors="replace")
                click.echo(f"{sender[0]}:{sender[1]} {word}" if show_sender else word)
    except KeyboardInterrupt:
        sys.exit(130)


def install(group: click.Group) -> None:
    group.add_command(autocall)
    group.add_command(listen)
