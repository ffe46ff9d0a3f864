"""The ``jobq`` command: ``jobq hub``, ``jobq worker`` and the client commands.

Every option has a ``JOBQ_*`` environment twin, shown in ``--help``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from jobq.cli import client_commands, line_tools
from jobq.cli.options import (
    CONTEXT,
    EXIT_USAGE,
    given_options,
    hub_option,
    option,
    parse_pairs,
    raw_pairs,
)
from jobq.config import DEFAULT_HUB, DEFAULT_STORE, HubConfig
from jobq.errors import JobqError
from jobq.process import tune_gc


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
@option(
    "--zmq-engine",
    type=click.Choice(["asyncio", "libzmq"]),
    default="asyncio",
    show_default=True,
    help="ZeroMQ implementation of the hub's socket: jobq's own ZMTP on the event loop, or libzmq.",
)
@option(
    "--line",
    "line_listeners",
    multiple=True,
    default=HubConfig().line,
    show_default=True,
    help="Line-protocol (DSJQ, work queue) listener HOST:PORT, or HOST:PORT/dsjq-compat for the C++ "
    "DSJQ peers (repeatable; 'off' disables).",
)
@option(
    "--line-service", default="default", show_default=True, help="Service of jobs submitted by line commands."
)
@option(
    "--line-lease",
    type=float,
    default=HubConfig().line_lease,
    show_default=True,
    help="Seconds a line worker holding a job may stay silent before the job is re-queued.",
)
@option(
    "--line-max-line",
    type=int,
    default=HubConfig().line_max_line,
    show_default=True,
    help="Longest line in bytes; a longer one is refused and its connection closed.",
)
@option(
    "--line-max-connections",
    type=int,
    default=HubConfig().line_max_connections,
    show_default=True,
    help="Open line connections at most.",
)
@option(
    "--mdp-heartbeat",
    type=float,
    default=HubConfig().mdp_heartbeat,
    show_default=True,
    help="Seconds between heartbeats to Majordomo (MDP) workers.",
)
@option(
    "--mdp-liveness",
    type=int,
    default=HubConfig().mdp_liveness,
    show_default=True,
    help="MDP heartbeats an idle MDP worker may miss before it counts as gone.",
)
@option(
    "--mdp-no-worker-timeout",
    type=float,
    default=HubConfig().mdp_no_worker_timeout,
    show_default=True,
    help="Seconds an MDP request waits for a worker of its service before it gets an error reply.",
)
@option(
    "--mdp-prefetch",
    type=int,
    default=HubConfig().mdp_prefetch,
    show_default=True,
    help="Requests queued at an MDP worker beyond the one it runs, while its requests are short.",
)
@option(
    "--mdp-prefetch-below",
    type=float,
    default=HubConfig().mdp_prefetch_below,
    show_default=True,
    help="Average seconds per request below which an MDP worker gets requests queued ahead.",
)
@option(
    "--http",
    "http_address",
    default=HubConfig().http,
    show_default=True,
    help="HTTP door HOST:PORT: REST, WebSocket, dashboard, /metrics ('off' disables).",
)
@option(
    "--http-max-body",
    type=int,
    default=HubConfig().http_max_body,
    show_default=True,
    help="Largest HTTP request body or WebSocket message in bytes.",
)
@option(
    "--http-monitor-queue",
    type=int,
    default=HubConfig().http_monitor_queue,
    show_default=True,
    help="Messages queued for one WebSocket reader before it is resynced.",
)
@option(
    "--http-max-connections",
    type=int,
    default=HubConfig().http_max_connections,
    show_default=True,
    help="Open HTTP connections and WebSocket streams at most.",
)
@option("--name", default="hub", show_default=True, help="This hub's name.")
@option(
    "--customer-weight",
    "customer_weights",
    multiple=True,
    help="CUSTOMER=WEIGHT fair share between jobs of equal priority (repeatable; default 1).",
)
@option("--log-level", default="info", show_default=True, help="debug, info, warning or error.")
def hub(
    store: str,
    zmq_endpoints: tuple[str, ...],
    zmq_engine: str,
    heartbeat: float,
    liveness: int,
    lease_ttl: float,
    grace: float,
    max_payload: int,
    line_listeners: tuple[str, ...],
    line_service: str,
    line_lease: float,
    line_max_line: int,
    line_max_connections: int,
    mdp_heartbeat: float,
    mdp_liveness: int,
    mdp_no_worker_timeout: float,
    mdp_prefetch: int,
    mdp_prefetch_below: float,
    http_address: str,
    http_max_body: int,
    http_monitor_queue: int,
    http_max_connections: int,
    name: str,
    customer_weights: tuple[str, ...],
    log_level: str,
) -> None:
    """Run the hub (the broker)."""
    from jobq import app

    _logging(log_level)
    endpoints = [e for raw in zmq_endpoints for e in raw.split(",") if e and e != "off"]
    config = HubConfig(
        store=store,
        zmq=endpoints,
        zmq_engine=zmq_engine,
        heartbeat=heartbeat,
        liveness=liveness,
        lease_ttl=lease_ttl,
        grace=grace,
        max_payload=max_payload,
        line=[e for raw in line_listeners for e in raw.split(",") if e and e != "off"],
        line_service=line_service,
        line_lease=line_lease,
        line_max_line=line_max_line,
        line_max_connections=line_max_connections,
        mdp_heartbeat=mdp_heartbeat,
        mdp_liveness=mdp_liveness,
        mdp_no_worker_timeout=mdp_no_worker_timeout,
        mdp_prefetch=mdp_prefetch,
        mdp_prefetch_below=mdp_prefetch_below,
        http="" if http_address == "off" else http_address,
        http_max_body=http_max_body,
        http_monitor_queue=http_monitor_queue,
        http_max_connections=http_max_connections,
        name=name,
        customer_weights={k: float(v) for k, v in parse_pairs(customer_weights, "--customer-weight").items()},
    )

    def ready(srv: app.HubServer) -> None:
        click.echo(
            f"jobq hub {name}: store {srv.hub.store_url}; listening on {', '.join(srv.endpoints)}", err=True
        )

    try:
        app.run(config, ready)
    except JobqError as exc:
        click.echo(f"jobq hub: {exc.message}", err=True)
        sys.exit(EXIT_USAGE)
    except OSError as exc:
        click.echo(f"jobq hub: {exc}", err=True)
        sys.exit(EXIT_USAGE)


@cli.command(context_settings=CONTEXT)
@hub_option
@option("--service", "services", multiple=True, help="Service to serve (repeatable).")
@option(
    "--handler",
    default="echo",
    show_default=True,
    help="echo, sleep, fail, shell (with --command), multicast (with --multicast) or module:function.",
)
@option(
    "--connector",
    default=None,
    help="Drive a service instead of running a handler: http, websocket, comfyui, a1111, simulation, "
    "a jobq.connectors entry point or module:Class (docs/connectors.md).",
)
@option(
    "--connector-option",
    "connector_options",
    multiple=True,
    help="KEY=VALUE option of the connector (repeatable), e.g. url=http://127.0.0.1:8188.",
)
@option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="worker.toml declaring services, each with its connector and options (instead of --service).",
)
@option("--command", "shell_command", default=None, help="Command for the shell handler.")
@option(
    "--concurrency",
    type=int,
    default=1,
    show_default=True,
    help="Jobs run at once (with --connector: per service).",
)
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
@option(
    "--health-interval",
    type=float,
    default=None,
    help="Seconds between connector health checks [default: 5, or worker.toml's].",
)
@option(
    "--multicast",
    "multicast_to",
    default="239.0.0.1:5007",
    show_default=True,
    help="GROUP:PORT the multicast handler streams each word of a job to.",
)
@option("--multicast-ttl", type=int, default=32, show_default=True, help="TTL of multicast datagrams.")
@option("--multicast-interface", default=None, help="IPv4 address of the interface to multicast from.")
@option("--word-delay", type=float, default=0.25, show_default=True, help="Seconds between multicast words.")
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
    connector: str | None,
    connector_options: tuple[str, ...],
    config_file: Path | None,
    shell_command: str | None,
    concurrency: int,
    prefetch: int,
    capabilities: tuple[str, ...],
    capabilities_file: Path | None,
    health_interval: float | None,
    multicast_to: str,
    multicast_ttl: int,
    multicast_interface: str | None,
    word_delay: float,
    name: str | None,
    grace: float,
    log_level: str,
) -> None:
    """Run a worker serving SERVICEs with a handler, or driving services through connectors."""
    from jobq.worker.capabilities import load_capabilities
    from jobq.worker.runtime import Worker

    _logging(log_level)
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))  # one line a request
    given = given_options(click.get_current_context())
    try:
        if config_file is not None or connector is not None:
            w, described = _connector_worker(
                given,
                hub=hub,
                services=services,
                connector=connector,
                connector_options=connector_options,
                config_file=config_file,
                concurrency=concurrency,
                prefetch=prefetch,
                caps=parse_pairs(capabilities, "--capability"),
                capabilities_file=capabilities_file,
                health_interval=health_interval,
                name=name,
                grace=grace,
            )
        else:
            if not services:
                raise click.UsageError(
                    "give --service NAME (with --handler or --connector), or --config FILE"
                )
            from jobq.worker.handlers import resolve

            words = None
            if handler == "multicast":
                from jobq.worker.multicast import MulticastOptions, parse_group

                group, port = parse_group(multicast_to)
                words = MulticastOptions(group, port, multicast_ttl, word_delay, multicast_interface)
            fn = resolve(handler, command=shell_command, multicast=words)
            caps: dict[str, Any] = load_capabilities(
                capabilities_file, parse_pairs(capabilities, "--capability")
            )
            w = Worker(
                hub, concurrency=concurrency, prefetch=prefetch, capabilities=caps, name=name, grace=grace
            )
            for service in services:
                w.register(service, fn)
            described = f"{', '.join(services)} with {handler} (concurrency {concurrency})"
    except (JobqError, ValueError) as exc:
        click.echo(f"jobq worker: {getattr(exc, 'message', exc)}", err=True)
        sys.exit(EXIT_USAGE)
    click.echo(f"jobq worker {w.worker_id}: serving {described} on {w.hub}", err=True)
    tune_gc()
    try:
        w.run_forever()
    except JobqError as exc:  # a connector that could not start (a port taken, ...)
        click.echo(f"jobq worker: {exc.message}", err=True)
        sys.exit(EXIT_USAGE)


def _connector_worker(
    given: set[str],
    *,
    hub: str,
    services: tuple[str, ...],
    connector: str | None,
    connector_options: tuple[str, ...],
    config_file: Path | None,
    concurrency: int,
    prefetch: int,
    caps: dict[str, Any],
    capabilities_file: Path | None,
    health_interval: float | None,
    name: str | None,
    grace: float,
) -> tuple[Any, str]:
    """A worker whose services are driven by connectors (``--connector`` or ``--config``)."""
    from jobq.worker.capabilities import load_capabilities
    from jobq.worker.connectors import config as worker_config
    from jobq.worker.runtime import Worker

    if "handler" in given or "shell_command" in given:
        raise click.UsageError("--handler/--command and --connector/--config exclude each other")
    if config_file is not None:
        if services or connector or connector_options:
            raise click.UsageError(
                "--config declares the services: drop --service/--connector/--connector-option"
            )
        cfg = worker_config.load_file(config_file)
    else:
        if not services:
            raise click.UsageError("--connector needs --service NAME")
        assert connector is not None
        pairs = raw_pairs(connector_options, "--connector-option")
        cfg = worker_config.WorkerConfig(worker_config.from_cli(services, connector, pairs, concurrency))
    w = Worker(
        hub if "hub" in given or not cfg.hub else cfg.hub,
        concurrency=cfg.concurrency,
        prefetch=prefetch if "prefetch" in given else cfg.prefetch,
        capabilities=load_capabilities(capabilities_file, {**cfg.capabilities, **caps}),
        name=name or cfg.name,
        grace=grace if "grace" in given else cfg.grace,
    )
    described = worker_config.install(w, cfg, interval=health_interval)
    return w, described


client_commands.install(cli)
line_tools.install(cli)


def main() -> None:
    cli(prog_name="jobq")


__all__ = ["DEFAULT_HUB", "cli", "main"]


if __name__ == "__main__":
    main()
