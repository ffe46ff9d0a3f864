"""The ``jobq`` command: ``jobq hub``, ``jobq worker`` and the client commands.

Every option has a ``JOBQ_*`` environment twin, shown in ``--help``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from jobq import authfile
from jobq.cli import client_commands, hub_command, line_tools, token_commands
from jobq.cli.options import (
    CONTEXT,
    EXIT_UNAUTHORIZED,
    EXIT_USAGE,
    curve_options,
    given_options,
    hub_option,
    one_line,
    option,
    parse_pairs,
    raw_pairs,
    setup_logging,
    token_option,
)
from jobq.config import DEFAULT_HUB
from jobq.errors import Forbidden, JobqError, Unauthorized
from jobq.process import tune_gc


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="jobq")
def cli() -> None:
    """jobq: a distributed job queue. One hub, many doors, one queue."""


@cli.command(context_settings=CONTEXT)
@hub_option
@token_option
@curve_options
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
    token: str | None,
    curve_server_key: str | None,
    curve_public_key: str | None,
    curve_secret_key: str | None,
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

    setup_logging(log_level)
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))  # one line a request
    given = given_options(click.get_current_context())
    try:
        curve: dict[str, Any] = {
            "curve_server_key": curve_server_key and authfile.curve_key(curve_server_key, secret=False),
            "curve_public_key": curve_public_key and authfile.curve_key(curve_public_key, secret=False),
            "curve_secret_key": curve_secret_key and authfile.curve_key(curve_secret_key),
        }
        if config_file is not None or connector is not None:
            w, described = _connector_worker(
                given,
                hub=hub,
                token=token,
                curve=curve,
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
                hub,
                concurrency=concurrency,
                prefetch=prefetch,
                capabilities=caps,
                name=name,
                grace=grace,
                token=token,
                **curve,
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
    except (Unauthorized, Forbidden) as exc:  # the hub refused the token, or its scope
        click.echo(f"jobq worker: {one_line(exc.message)}", err=True)
        sys.exit(EXIT_UNAUTHORIZED)
    except JobqError as exc:  # a connector that could not start (a port taken, ...)
        click.echo(f"jobq worker: {exc.message}", err=True)
        sys.exit(EXIT_USAGE)


def _connector_worker(
    given: set[str],
    *,
    hub: str,
    token: str | None,
    curve: dict[str, Any],
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
        token=token,
        **curve,
    )
    described = worker_config.install(w, cfg, interval=health_interval)
    return w, described


cli.add_command(hub_command.hub)
client_commands.install(cli)
line_tools.install(cli)
token_commands.install(cli)


def main() -> None:
    cli(prog_name="jobq")


__all__ = ["DEFAULT_HUB", "cli", "main"]


if __name__ == "__main__":
    main()
