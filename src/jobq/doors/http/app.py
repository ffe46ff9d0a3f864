"""The HTTP door: REST, WebSocket streams, the dashboard, Prometheus metrics and OpenAPI.

Litestar serves the routes; uvicorn runs in the hub's own event loop (one process, one loop:
a REST call is a hub call, no thread hop). The door holds no business rule: it decodes JSON
into hub calls (:mod:`~jobq.doors.http.rest`, the ``ws_*`` modules) and hub answers and events
into JSON. This module assembles the app; the handlers find what they share through
:mod:`~jobq.doors.http.state`, so imports run one way (app → handlers → state).

Routes are documented in ``docs/http.md``; ``/openapi.json`` is generated from the same msgspec
models the handlers decode and encode (:mod:`~jobq.doors.http.models`). Uvicorn runs the
:class:`~jobq.doors.http.gate.Gate` in front of the app: who speaks (the token), and the
browser checks (``Host``, ``Origin``, ``Content-Type``). With ``HubConfig.tls_cert`` and
``tls_key`` the door speaks HTTPS and WSS only.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
from pathlib import Path
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin

from jobq.config import HubConfig
from jobq.doors.http import history as http_history
from jobq.doors.http import metrics as http_metrics
from jobq.doors.http import models as m
from jobq.doors.http import (
    pages,
    probes,
    rest,
    rest_groups,
    rest_ops,
    rest_schedules,
    ws_client,
    ws_common,
    ws_monitor,
    ws_worker,
)
from jobq.doors.http.gate import Gate
from jobq.doors.http.limits import RETRY_AFTER
from jobq.doors.http.protocols import drop_frames, protocols
from jobq.doors.http.state import DoorState, door_of
from jobq.errors import InvalidRequest, JobqError
from jobq.hub.hub import Hub

log = logging.getLogger("jobq.doors.http.app")

#: The address the issue fixes as the default; if it is taken the hub starts without HTTP.
DEFAULT_HTTP = "127.0.0.1:8080"

_STATUS_CODES = {
    400: "invalid",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "unavailable",
}


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) → (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT for --http, got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def error_response(request: Request[Any, Any, Any], exc: Exception) -> Response[m.ErrorBody]:
    """Every error, whoever raised it, as an ErrorBody with the status its kind implies."""
    door = door_of(request)
    if isinstance(exc, JobqError):
        status = exc.http_status
        body = m.ErrorBody(
            error=exc.code, message=exc.message, fields=list(getattr(exc, "fields", [])), hint=exc.hint
        )
    elif isinstance(exc, ValidationException):
        status = 400
        extra = exc.extra if isinstance(exc.extra, list) else []
        fields = [str(item.get("key")) for item in extra if isinstance(item, dict) and item.get("key")]
        reasons = [
            str(item.get("message")) for item in extra if isinstance(item, dict) and item.get("message")
        ]
        message = "; ".join(f"{f}: {r}" for f, r in zip(fields, reasons, strict=False)) or str(exc.detail)
        body = m.ErrorBody(error="invalid", message=message, fields=fields)
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        body = m.ErrorBody(error=_STATUS_CODES.get(status, "http_error"), message=str(exc.detail))
    elif isinstance(exc, RecursionError):  # JSON nested too deep for a decoder (bodies are checked)
        status = 400
        body = m.ErrorBody(error="invalid", message=f"nested deeper than {m.MAX_NESTING} levels")
    else:
        log.exception("%s %s failed", request.method, request.url.path)
        status = 500
        body = m.ErrorBody(error="internal", message=f"internal error: {type(exc).__name__}")
    if status < 500:
        door.rejected += 1
        drop_frames(exc)  # a refusal leaves no reference cycle behind (protocols.py)
    headers = None
    if status == 401:
        headers = {"WWW-Authenticate": 'Bearer realm="jobq"'}
    elif status == 503:
        headers = {"Retry-After": str(RETRY_AFTER)}
    return Response(body, status_code=status, headers=headers)


@get("/openapi.json", include_in_schema=False, media_type="application/vnd.oai.openapi+json")
async def openapi_document(request: Request[Any, Any, Any]) -> bytes:
    door = door_of(request)
    return door.cached("openapi.json", lambda: openapi(request.app, secured=door.hub.guard.enabled))


#: The WebSocket messages, for the OpenAPI document's components.
MESSAGE_MODELS: list[Any] = [
    *ws_client.MESSAGE_MODELS,
    *ws_worker.MESSAGE_MODELS,
    *ws_monitor.MESSAGE_MODELS,
    ws_worker.JobAssigned,
]


def openapi(app: Litestar, *, secured: bool = False) -> bytes:
    """Litestar's document for the routes, with the request bodies that the handlers
    decode themselves (strictly, with msgspec) and the WebSocket messages added; ``secured``
    (the hub runs with ``--auth``): every operation but the probes (``/health``, ``/ready``)
    needs a bearer token."""
    document: dict[str, Any] = app.openapi_schema.to_schema()
    document["openapi"] = "3.1.0"
    extra = [m.JobRequest, m.BatchRequest, m.WorkerActionRequest, rest_ops.BulkRequest, *MESSAGE_MODELS]
    extra.append(rest_schedules.ScheduleRequest)
    _, components = msgspec.json.schema_components(extra, ref_template="#/components/schemas/{name}")
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in components.items():
        schemas.setdefault(name, schema)
    for path, model in (
        ("/api/jobs", "JobRequest"),
        ("/api/jobs/batch", "BatchRequest"),
        ("/api/jobs/bulk", "BulkRequest"),
        ("/api/schedules", "ScheduleRequest"),
    ):
        operation = document["paths"][path]["post"]
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}},
        }
    document["paths"]["/api/workers/{worker_id}/drain"]["post"]["requestBody"] = {  # optional: a reason
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/WorkerActionRequest"}}}
    }
    if secured:
        document["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "A token from `jobq token create`."}
        }
        document["security"] = [{"bearer": []}]
        for probe in ("/health", "/ready"):
            document["paths"][probe]["get"]["security"] = []
    return msgspec.json.encode(document)


class HttpDoor:
    """The HTTP door, started and stopped with the hub like every door."""

    def __init__(self, hub: Hub, config: HubConfig) -> None:
        self.hub = hub
        self.config = config
        self.address = config.http
        self.endpoints: list[str] = []
        self.port = 0
        #: What the handlers share (the streams, the worker directory, the refusal count).
        self.state = DoorState(hub, config)
        self.app = self._build_app()
        self._server: Any = None
        self._main: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ life cycle

    async def start(self) -> None:
        import uvicorn

        host, port = parse_address(self.address)
        tls = tls_files(self.config)
        try:
            sock = _bind(host, port)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE and self.address == DEFAULT_HTTP:
                log.warning(
                    "HTTP door not started: %s is in use (give --http HOST:PORT or 'off')", self.address
                )
                return
            raise OSError(exc.errno, f"cannot listen on {self.address} for HTTP: {exc.strerror}") from None
        self.port = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        self.endpoints = [f"{'https' if tls else 'http'}://{shown}:{self.port}"]
        gate = Gate(self.app, self.state, host=host, port=self.port, tls=tls is not None)
        # httptools and websockets' Sans-I/O protocols with the door's limits (protocols.py):
        # connections per client address and in all, read timeouts, the inflight budget.
        http, ws = protocols(self.state.limits)
        config = uvicorn.Config(
            gate,
            lifespan="off",
            log_config=None,
            log_level="warning",
            access_log=False,
            http=http,
            ws=ws,
            ws_max_size=self.config.http_max_body,
            timeout_keep_alive=max(1, round(self.config.http_keepalive)),
            timeout_graceful_shutdown=2,
            server_header=False,
            backlog=2048,
            ssl_certfile=tls[0] if tls else None,
            ssl_keyfile=tls[1] if tls else None,
        )
        try:
            config.load()
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            sock.close()
            if tls is None:
                raise
            raise InvalidRequest(f"cannot serve HTTPS with {tls[0]} and {tls[1]}: {exc}") from None
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        self._server = server
        self._main = asyncio.create_task(server.main_loop(), name="jobq-http")
        log.info("HTTP door on %s", self.endpoints[0])

    async def stop(self) -> None:
        self.state.closing.set()
        await self.state.streams.close()
        server = self._server
        if server is None:
            return
        server.should_exit = True
        if self._main is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._main
        await server.shutdown()
        self._server = None

    # ------------------------------------------------------------------ the app

    def _build_app(self) -> Litestar:
        app = Litestar(
            route_handlers=[
                *rest.HANDLERS,
                *rest_ops.HANDLERS,  # pause/resume a service, bulk cancel/retry
                *rest_schedules.HANDLERS,  # cron schedules
                *rest_groups.HANDLERS,  # groups: GET /api/groups/{id}, members, cancel
                *http_history.HANDLERS,
                *probes.HANDLERS,
                *ws_client.HANDLERS,
                *ws_worker.HANDLERS,
                *ws_monitor.HANDLERS,
                http_metrics.metrics,
                *pages.handlers(),  # /, /docs, /dashboard/... (pages.py)
                openapi_document,
            ],
            exception_handlers={Exception: error_response},
            websocket_class=ws_common.DoorSocket,  # no reference cycle per connection
            request_max_body_size=self.config.http_max_body,
            openapi_config=OpenAPIConfig(
                title="jobq",
                version=_version(),
                description=(
                    "The HTTP door of a jobq hub: the EmProps-style job API plus jobq's own fields. "
                    "WebSocket streams (/ws/client, /ws/worker, /ws/monitor) are described in docs/http.md; "
                    "their message bodies are among the components."
                ),
                path="/schema",
                render_plugins=[JsonRenderPlugin()],
                create_examples=False,
            ),
            debug=False,
        )
        app.state.door = self.state
        return app


def tls_files(config: HubConfig) -> tuple[str, str] | None:
    """(certificate, key) when the door is to speak TLS; both or neither must be given."""
    if not config.tls_cert and not config.tls_key:
        return None
    if not config.tls_cert or not config.tls_key:
        raise InvalidRequest("--tls-cert and --tls-key go together: give both PEM files, or neither")
    for path in (config.tls_cert, config.tls_key):
        if not Path(path).is_file():
            raise InvalidRequest(f"TLS file {path} does not exist")
    return config.tls_cert, config.tls_key


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("jobq")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0"


__all__ = ["DEFAULT_HTTP", "HttpDoor", "parse_address", "tls_files"]
