"""The ``jobq`` command: ``jobq hub``, ``jobq worker`` and the client commands.

Every option has a ``JOBQ_*`` environment twin, shown in ``--help``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from jobq.cli import client_commands
from jobq.cli.options import CONTEXT, EXIT_USAGE, hub_option, option, parse_pairs
from jobq.config import DEFAULT_HUB, DEFAULT_STORE, HubConfig
from jobq.errors import JobqError


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="jobq")
def cli() -> None:
    """jobq: a distributed job queue. One hub, many doors, one queue."""


def _logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@cli.command(context_settings=CONTEXT)
@option(
    "--store",
    default=DEFAULT_STORE,
    show_default=True,
    help="Where jobs are kept: sqlite:///PATH (?durability=full to fsync), memory://.",
)
@option(
    "--zmq",
    "zmq_endpoints",
    multiple=True,
    default=[DEFAULT_HUB],
    show_default=True,
    help="ZeroMQ endpoint to bind (repeatable; 'off' disables).",
)
@option("--heartbeat", type=float, default=1.0, show_default=True, help="Seconds between worker heartbeats.")
@option(
    "--liveness",
    type=int,
    default=5,
    show_default=True,
    help="Heartbeats a worker may miss before its jobs are re-queued.",
)
@option(
    "--lease-ttl",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds a running job's lease lasts without a heartbeat.",
)
@option(
    "--grace",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds running jobs may finish after SIGTERM.",
)
@option(
    "--max-payload",
    type=int,
    default=HubConfig().max_payload,
    show_default=True,
    help="Largest job payload in bytes.",
)
@option("--name", default="hub", show_default=True, help="This hub's name.")
@option("--log-level", default="info", show_default=True, help="debug, info, warning or error.")
def hub(
    store: str,
    zmq_endpoints: tuple[str, ...],
    heartbeat: float,
    liveness: int,
    lease_ttl: float,
    grace: float,
    max_payload: int,
    name: str,
    log_level: str,
) -> None:
    """Run the hub (the broker)."""
    from jobq.hub import server

    _logging(log_level)
    endpoints = [e for raw in zmq_endpoints for e in raw.split(",") if e and e != "off"]
    config = HubConfig(
        store=store,
        zmq=endpoints,
        heartbeat=heartbeat,
        liveness=liveness,
        lease_ttl=lease_ttl,
        grace=grace,
        max_payload=max_payload,
        name=name,
    )

    def ready(srv: server.HubServer) -> None:
        click.echo(
            f"jobq hub {name}: store {srv.hub.store.url}; listening on {', '.join(srv.endpoints)}", err=True
        )

    try:
        server.run(config, ready)
    except JobqError as exc:
        click.echo(f"jobq hub: {exc.message}", err=True)
        sys.exit(EXIT_USAGE)
    except OSError as exc:
        click.echo(f"jobq hub: {exc}", err=True)
        sys.exit(EXIT_USAGE)


@cli.command(context_settings=CONTEXT)
@hub_option
@option("--service", "services", multiple=True, required=True, help="Service to serve (repeatable).")
@option(
    "--handler",
    default="echo",
    show_default=True,
    help="echo, sleep, fail, shell (with --command) or module:function.",
)
@option("--command", "shell_command", default=None, help="Command for the shell handler.")
@option("--concurrency", type=int, default=1, show_default=True, help="Jobs run at once.")
@option(
    "--prefetch",
    type=int,
    default=0,
    show_default=True,
    help="Extra jobs the hub may push ahead of free slots.",
)
@option(
    "--capability",
    "capabilities",
    multiple=True,
    help="KEY=VALUE capability, dotted keys (repeatable), e.g. hardware.gpu_memory_gb=24.",
)
@option(
    "--capabilities-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="TOML file of capabilities (flags override it).",
)
@option("--name", default=None, help="Worker name (default: the host name).")
@option(
    "--grace",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds running jobs may finish after SIGTERM.",
)
@option("--log-level", default="info", show_default=True, help="debug, info, warning or error.")
def worker(
    hub: str,
    services: tuple[str, ...],
    handler: str,
    shell_command: str | None,
    concurrency: int,
    prefetch: int,
    capabilities: tuple[str, ...],
    capabilities_file: Path | None,
    name: str | None,
    grace: float,
    log_level: str,
) -> None:
    """Run a worker serving SERVICEs with a handler."""
    from jobq.worker.capabilities import load_capabilities
    from jobq.worker.handlers import resolve
    from jobq.worker.runtime import Worker

    _logging(log_level)
    try:
        fn = resolve(handler, command=shell_command)
        caps: dict[str, Any] = load_capabilities(capabilities_file, parse_pairs(capabilities, "--capability"))
        w = Worker(hub, concurrency=concurrency, prefetch=prefetch, capabilities=caps, name=name, grace=grace)
    except (JobqError, ValueError) as exc:
        click.echo(f"jobq worker: {getattr(exc, 'message', exc)}", err=True)
        sys.exit(EXIT_USAGE)
    for service in services:
        w.register(service, fn)
    click.echo(
        f"jobq worker {w.worker_id}: serving {', '.join(services)} with {handler} "
        f"(concurrency {concurrency}) on {hub}",
        err=True,
    )
    w.run_forever()


client_commands.install(cli)


def main() -> None:
    cli(prog_name="jobq")


__all__ = ["DEFAULT_HUB", "cli", "main"]


if __name__ == "__main__":
    main()
