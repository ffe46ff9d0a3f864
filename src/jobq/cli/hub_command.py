"""``jobq hub``: run the hub with its doors, from flags (each with its ``JOBQ_*`` twin).

Before anything binds, every ``--zmq``/``--line`` listener is parsed with its options
(``?trusted=ROLE&customer=..``, ``?tls``, ``?curve``: jobq.listeners) and the exposure rule is
applied: no address beyond loopback without ``--auth``, and no trusted listener there, unless
``--insecure``. A refusal is one line on stderr and exit code 2.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from jobq import authfile
from jobq.cli.config_file import config_options
from jobq.cli.options import CONTEXT, EXIT_USAGE, log_options, one_line, option, parse_pairs, setup_logging
from jobq.config import DEFAULT_HUB, DEFAULT_STORE, HubConfig
from jobq.errors import InvalidRequest, JobqError
from jobq.listeners import Listener, check_exposure, parse_listener

#: Endpoints that never leave this machine.
_LOCAL_TRANSPORTS = ("ipc://", "inproc://")


def check_listeners(config: HubConfig) -> None:
    """Every listener's options parse, and the hub is not exposed beyond loopback without
    ``--auth`` (nor trusts peers there) unless ``--insecure``; raises InvalidRequest."""
    exposed: list[Listener] = []
    for endpoint in config.zmq:
        listener = parse_listener(endpoint)
        if listener.curve and not config.curve_secret:
            raise InvalidRequest(
                f"{endpoint} asks for CURVE: give the hub --curve-secret (jobq curve keygen)"
            )
        if "://" not in listener.address:
            raise InvalidRequest(f"--zmq {endpoint}: use tcp://HOST:PORT or ipc://PATH")
        if not listener.address.startswith(_LOCAL_TRANSPORTS):
            exposed.append(listener)
    from jobq.doors.line import Listener as LineListener

    for spec in config.line:
        LineListener.parse(spec)  # HOST:PORT[/dsjq-compat][?OPTIONS], or what is wrong with it
        listener = parse_listener(spec.strip().removeprefix("line://"))
        if listener.tls and not config.tls_cert:
            raise InvalidRequest(f"{spec} asks for TLS: give the hub --tls-cert and --tls-key")
        exposed.append(listener)
    if config.http:
        exposed.append(Listener(address=config.http.partition("?")[0]))
    check_exposure(exposed, auth=config.auth is not None, insecure=config.insecure)


@click.command(context_settings=CONTEXT)
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
    help="ZeroMQ endpoint to bind (repeatable; 'off' disables), with options: ?curve, "
    "?trusted=ROLE&customer=ID&service=NAME (docs/security.md).",
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
    "--result-ttl",
    type=click.FloatRange(min=0),
    default=HubConfig().result_ttl,
    show_default=True,
    help="Seconds a completed or cancelled job is kept (a job's own result_ttl overrides it).",
)
@option(
    "--failed-ttl",
    type=click.FloatRange(min=0),
    default=HubConfig().failed_ttl,
    show_default=True,
    help="Seconds a failed job (a dead letter) is kept.",
)
@option(
    "--auto-drain",
    type=click.IntRange(min=0),
    default=HubConfig().auto_drain,
    show_default=True,
    help="Drain a worker after this many failed, timed-out or lost attempts in a row (0: never).",
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
    "--zmq-handshake-timeout",
    type=click.FloatRange(min=0),
    default=HubConfig().zmq_handshake_timeout,
    show_default=True,
    help="Seconds a ZeroMQ connection has to complete its greeting and handshake (CURVE included), "
    "else it is closed (0: no limit).",
)
@option(
    "--zmq-max-per-peer",
    type=click.IntRange(min=0),
    default=HubConfig().zmq_max_per_peer,
    show_default=True,
    help="ZeroMQ connections from one client address at most; past it a new one is closed at once "
    "(asyncio engine; 0: no limit).",
)
@option(
    "--zmq-max-connections",
    type=click.IntRange(min=0),
    default=HubConfig().zmq_max_connections,
    show_default=True,
    help="ZeroMQ connections at most; past it a new one is closed at once (asyncio engine; 0: no limit).",
)
@option(
    "--line",
    "line_listeners",
    multiple=True,
    default=HubConfig().line,
    show_default=True,
    help="Line-protocol (DSJQ, work queue) listener HOST:PORT, or HOST:PORT/dsjq-compat for the C++ "
    "DSJQ peers (repeatable; 'off' disables), with options: ?tls, ?trusted=ROLE&customer=ID&service=NAME.",
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
    "--line-max-per-peer",
    type=click.IntRange(min=0),
    default=HubConfig().line_max_per_peer,
    show_default=True,
    help="Open line connections from one client address at most (0: no limit).",
)
@option(
    "--line-idle-timeout",
    type=click.FloatRange(min=0),
    default=HubConfig().line_idle_timeout,
    show_default=True,
    help="Seconds a line connection holding no job may send nothing before it is closed (0: never).",
)
@option(
    "--line-partial-timeout",
    type=click.FloatRange(min=0),
    default=HubConfig().line_partial_timeout,
    show_default=True,
    help="Seconds a line has, from its first byte, to arrive whole before the connection is closed "
    "(0: no limit).",
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
    help="Open HTTP connections and WebSocket streams at most (then 503, but for /health and /ready).",
)
@option(
    "--http-max-per-peer",
    type=int,
    default=HubConfig().http_max_per_peer,
    show_default=True,
    help="Open HTTP connections and WebSocket streams from one client address at most (0: no limit, "
    "e.g. behind a reverse proxy).",
)
@option(
    "--http-keepalive",
    type=float,
    default=HubConfig().http_keepalive,
    show_default=True,
    help="Seconds an idle kept-alive HTTP connection stays open.",
)
@option(
    "--http-header-timeout",
    type=float,
    default=HubConfig().http_header_timeout,
    show_default=True,
    help="Seconds a request has to send its request line and headers (then 408, closed).",
)
@option(
    "--http-body-timeout",
    type=float,
    default=HubConfig().http_body_timeout,
    show_default=True,
    help="Seconds a request body, or a WebSocket message, has to arrive whole (then closed).",
)
@option(
    "--http-allow-origin",
    "http_allow_origins",
    multiple=True,
    help="Browser origin (https://dash.example.com) besides the hub's own that may open its WebSockets "
    "and send it state-changing requests (repeatable).",
)
@option("--name", default="hub", show_default=True, envvar="JOBQ_HUB_NAME", help="This hub's name.")
@option(
    "--customer-weight",
    "customer_weights",
    multiple=True,
    help="CUSTOMER=WEIGHT fair share between jobs of equal priority (repeatable; default 1).",
)
@option(
    "--auth",
    "auth_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Auth file (jobq token create): every door then needs a token, a CURVE key or a trusted "
    "listener. Reread when it changes.",
)
@option(
    "--insecure",
    is_flag=True,
    default=False,
    help="Listen beyond loopback without --auth, or trust peers there (at your own risk).",
)
@option(
    "--audit", default=None, help="Audit log (JSON lines) of refusals and admin actions: FILE or - (stderr)."
)
@option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="PEM certificate (chain) for HTTPS/WSS and ?tls line listeners.",
)
@option(
    "--tls-key", type=click.Path(exists=True, dir_okay=False), default=None, help="PEM key of --tls-cert."
)
@option(
    "--curve-secret",
    default=None,
    help="The hub's CURVE secret key (Z85) or a file holding it, for ?curve ZeroMQ listeners "
    "(jobq curve keygen).",
)
@log_options
@config_options("hub")
def hub(
    store: str,
    zmq_endpoints: tuple[str, ...],
    zmq_engine: str,
    zmq_handshake_timeout: float,
    zmq_max_per_peer: int,
    zmq_max_connections: int,
    heartbeat: float,
    liveness: int,
    lease_ttl: float,
    result_ttl: float,
    failed_ttl: float,
    auto_drain: int,
    grace: float,
    max_payload: int,
    line_listeners: tuple[str, ...],
    line_service: str,
    line_lease: float,
    line_max_line: int,
    line_max_connections: int,
    line_max_per_peer: int,
    line_idle_timeout: float,
    line_partial_timeout: float,
    mdp_heartbeat: float,
    mdp_liveness: int,
    mdp_no_worker_timeout: float,
    mdp_prefetch: int,
    mdp_prefetch_below: float,
    http_address: str,
    http_max_body: int,
    http_monitor_queue: int,
    http_max_connections: int,
    http_max_per_peer: int,
    http_keepalive: float,
    http_header_timeout: float,
    http_body_timeout: float,
    http_allow_origins: tuple[str, ...],
    name: str,
    customer_weights: tuple[str, ...],
    auth_path: str | None,
    insecure: bool,
    audit: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    curve_secret: str | None,
    log_level: str,
    log_format: str,
) -> None:
    """Run the hub (the broker)."""
    from jobq import app

    setup_logging(log_level, log_format)
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    endpoints = [e for raw in zmq_endpoints for e in raw.split(",") if e and e != "off"]
    config = HubConfig(
        store=store,
        zmq=endpoints,
        zmq_engine=zmq_engine,
        zmq_handshake_timeout=zmq_handshake_timeout,
        zmq_max_per_peer=zmq_max_per_peer,
        zmq_max_connections=zmq_max_connections,
        heartbeat=heartbeat,
        liveness=liveness,
        lease_ttl=lease_ttl,
        result_ttl=result_ttl,
        failed_ttl=failed_ttl,
        auto_drain=auto_drain,
        grace=grace,
        max_payload=max_payload,
        line=[e for raw in line_listeners for e in raw.split(",") if e and e != "off"],
        line_service=line_service,
        line_lease=line_lease,
        line_max_line=line_max_line,
        line_max_connections=line_max_connections,
        line_max_per_peer=line_max_per_peer,
        line_idle_timeout=line_idle_timeout,
        line_partial_timeout=line_partial_timeout,
        mdp_heartbeat=mdp_heartbeat,
        mdp_liveness=mdp_liveness,
        mdp_no_worker_timeout=mdp_no_worker_timeout,
        mdp_prefetch=mdp_prefetch,
        mdp_prefetch_below=mdp_prefetch_below,
        http="" if http_address == "off" else http_address,
        http_max_body=http_max_body,
        http_monitor_queue=http_monitor_queue,
        http_max_connections=http_max_connections,
        http_max_per_peer=http_max_per_peer,
        http_keepalive=http_keepalive,
        http_header_timeout=http_header_timeout,
        http_body_timeout=http_body_timeout,
        http_allow_origins=[o for raw in http_allow_origins for o in raw.split(",") if o],
        name=name,
        customer_weights={k: float(v) for k, v in parse_pairs(customer_weights, "--customer-weight").items()},
        auth=auth_path,
        insecure=insecure,
        audit=audit,
        tls_cert=tls_cert,
        tls_key=tls_key,
    )
    try:
        config.curve_secret = None if curve_secret is None else authfile.curve_key(curve_secret)
        check_listeners(config)
    except JobqError as exc:
        click.echo(f"jobq hub: {one_line(exc.message)}", err=True)
        sys.exit(EXIT_USAGE)
    if auth_path is not None and not Path(auth_path).exists():
        click.echo(
            f"jobq hub: {auth_path} does not exist yet: every call needing a token is refused until "
            f"`jobq token create --auth {auth_path}`",
            err=True,
        )

    def ready(srv: app.HubServer) -> None:
        logging.getLogger("jobq.hub").info(
            "jobq hub %s: store %s; listening on %s", name, srv.hub.store_url, ", ".join(srv.endpoints)
        )

    try:
        app.run(config, ready)
    except JobqError as exc:
        click.echo(f"jobq hub: {one_line(exc.message)}", err=True)
        sys.exit(EXIT_USAGE)
    except OSError as exc:
        click.echo(f"jobq hub: {exc}", err=True)
        sys.exit(EXIT_USAGE)
