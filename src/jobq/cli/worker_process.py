"""``jobq worker``: run a worker serving services with a handler, or driving them through
connectors, until a signal stops it.

Signals (SIGINT is Ctrl-C): the first SIGINT or SIGTERM drains (no new jobs, waiting ones go
back to the queue, running ones may finish within ``--grace``); a second one stops now (running
jobs are given up as when the grace runs out: the hub counts them lost with this worker and
runs them again or fails them); a third exits at once. A forced stop exits 128 + the signal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from jobq import authfile
from jobq.cli.config_file import Loaded, config_options, loaded
from jobq.cli.options import (
    CONTEXT,
    EXIT_UNAUTHORIZED,
    EXIT_USAGE,
    curve_options,
    hub_option,
    log_options,
    one_line,
    option,
    parse_pairs,
    raw_pairs,
    setup_logging,
    token_option,
)
from jobq.errors import Forbidden, JobqError, Unauthorized
from jobq.process import return_large_buffers, tune_gc

log = logging.getLogger("jobq.worker")


@click.command(context_settings=CONTEXT)
@hub_option
@token_option
@curve_options
@option("--service", "services", multiple=True, help="Service to serve (repeatable).")
@option(
    "--handler",
    default="echo",
    show_default=True,
    help="echo, sleep, fail, shell (with --command), multicast (with --multicast) or module:function "
    "(module found from the current directory too).",
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
@config_options("worker", help_extra="; it may also declare services with connectors (docs/connectors.md)")
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
@option(
    "--name",
    default=None,
    envvar="JOBQ_WORKER_NAME",
    help="Worker name (default: the host name); its id adds the process and a tag, and "
    "`jobq jobs --worker NAME` finds its jobs.",
)
@option(
    "--grace",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds running jobs may finish after SIGTERM or Ctrl-C (a second one stops at once).",
)
@log_options
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
    log_format: str,
) -> None:
    """Run a worker serving SERVICEs with a handler, or driving services through connectors."""
    from jobq.worker.capabilities import Exactly, load_capabilities
    from jobq.worker.runtime import Worker

    setup_logging(log_level, log_format)
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))  # one line a request
    ctx = click.get_current_context()
    from_file = loaded(ctx)
    try:
        curve: dict[str, Any] = {
            "curve_server_key": curve_server_key and authfile.curve_key(curve_server_key, secret=False),
            "curve_public_key": curve_public_key and authfile.curve_key(curve_public_key, secret=False),
            "curve_secret_key": curve_secret_key and authfile.curve_key(curve_secret_key),
        }
        caps = parse_pairs(capabilities, "--capability")
        if (from_file is not None and from_file.services is not None) or connector is not None:
            w, described = _connector_worker(
                ctx,
                from_file,
                hub=hub,
                token=token,
                curve=curve,
                services=services,
                connector=connector,
                connector_options=connector_options,
                concurrency=concurrency,
                prefetch=prefetch,
                caps=caps,
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
            file_caps = from_file.extra.get("capabilities", {}) if from_file is not None else {}
            w = Worker(
                hub,
                concurrency=concurrency,
                prefetch=prefetch,
                capabilities=Exactly(load_capabilities(capabilities_file, {**file_caps, **caps})),
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
    log.info("jobq worker %s (name %s): serving %s on %s", w.worker_id, w.name, described, w.hub)
    return_large_buffers()
    tune_gc()
    try:
        code = run(w)
    except (Unauthorized, Forbidden) as exc:  # the hub refused the token, or its scope
        click.echo(f"jobq worker: {one_line(exc.message)}", err=True)
        sys.exit(EXIT_UNAUTHORIZED)
    except JobqError as exc:  # a connector that could not start (a port taken, ...)
        click.echo(f"jobq worker: {exc.message}", err=True)
        sys.exit(EXIT_USAGE)
    if code:
        # A forced stop: handler threads may still run, and nothing should wait for them.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run(w: Any) -> int:
    """Run the worker until signals stop it (module docstring); 0, or 128 + the signal that
    forced the stop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(_run(w))
    return uvloop.run(_run(w))


async def _run(w: Any) -> int:
    loop = asyncio.get_running_loop()
    received: list[int] = []

    def on_signal(signum: int) -> None:
        received.append(signum)
        if len(received) == 1:
            log.info("stopping: no new jobs, running ones may finish within %gs (again to stop now)", w.grace)
            w.stop()
        elif len(received) == 2:
            log.warning("stopping now: giving up %d running job(s) (again to exit at once)", w.running)
            force_stop(w)
        else:
            os._exit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    await w.run()
    return 128 + received[-1] if len(received) >= 2 else 0


def force_stop(w: Any) -> None:
    """End a drain now: running jobs are cancelled as when the grace runs out, so the worker
    says bye at once (the hub counts them lost with it). The SDK ``Worker`` has no public call
    for this yet: it reaches into its running table."""
    w.grace = 0.0  # a drain not started yet ends at once too
    for running in list(getattr(w, "_running", {}).values()):
        running.ctx.cancel()
        if running.task is not None:
            running.task.cancel()


def _connector_worker(
    ctx: click.Context,
    from_file: Loaded | None,
    *,
    hub: str,
    token: str | None,
    curve: dict[str, Any],
    services: tuple[str, ...],
    connector: str | None,
    connector_options: tuple[str, ...],
    concurrency: int,
    prefetch: int,
    caps: dict[str, Any],
    capabilities_file: Path | None,
    health_interval: float | None,
    name: str | None,
    grace: float,
) -> tuple[Any, str]:
    """A worker whose services are driven by connectors (``--connector``, or ``--config`` with
    ``[services.NAME]`` tables). Hub, name, prefetch and grace come from the flags, which the
    file's ``[worker]`` keys already fill (config_file.py)."""
    from jobq.worker.capabilities import Exactly, load_capabilities
    from jobq.worker.connectors import config as worker_config
    from jobq.worker.runtime import Worker

    chosen = {n for n in ctx.params if ctx.get_parameter_source(n) is not ParameterSource.DEFAULT}
    if chosen & {"handler", "shell_command"}:
        raise click.UsageError("--handler/--command and --connector/--config exclude each other")
    if from_file is not None and from_file.services is not None:
        if services or connector or connector_options:
            raise click.UsageError(
                "--config declares the services: drop --service/--connector/--connector-option"
            )
        cfg = worker_config.parse(from_file.connector_document(), str(from_file.path))
    else:
        if not services:
            raise click.UsageError("--connector needs --service NAME")
        assert connector is not None
        pairs = raw_pairs(connector_options, "--connector-option")
        cfg = worker_config.WorkerConfig(worker_config.from_cli(services, connector, pairs, concurrency))
    w = Worker(
        hub,
        concurrency=cfg.concurrency,
        prefetch=prefetch,
        capabilities=Exactly(load_capabilities(capabilities_file, {**cfg.capabilities, **caps})),
        name=name,
        grace=grace,
        token=token,
        **curve,
    )
    described = worker_config.install(w, cfg, interval=health_interval)
    return w, described
