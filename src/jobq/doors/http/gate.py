"""The HTTP door's gate: who speaks, and whether a browser may have sent it. Raw ASGI, in
front of every route and WebSocket; it decides nothing about jobs (that is the hub's).

In order, for every request and WebSocket handshake:

1. ``Host`` (when the door listens on loopback): a loopback name or address with the door's
   port, else 421 (400 when missing): a DNS-rebound page cannot reach the hub by name.
2. ``Origin`` (WebSocket handshakes and ``POST``/``PUT``/``PATCH``/``DELETE``): absent (not a
   browser), the hub's own origin, or one of ``HubConfig.http_allow_origins``; else 403.
3. ``Content-Type`` (``POST``/``PUT``/``PATCH``/``DELETE``): absent or JSON, else 415. An HTML
   form or a "simple" cross-site request always carries another type; a browser request
   without one carries an ``Origin`` (step 2).
4. ``Authorization: Bearer TOKEN``, turned into a :class:`~jobq.core.auth.Caller` by the hub
   (``door="http"``, WebSockets ``door="ws"``), kept in the scope for the handlers
   (:func:`~jobq.doors.http.state.caller_of`). No token or a bad one: 401 with
   ``WWW-Authenticate: Bearer``. A WebSocket without the header may authenticate with its
   first message instead (:func:`~jobq.doors.http.ws_common.admit`). The pages, the API
   description and ``/health`` are open: there is no data in them.

Before these, the door's own limits (``limits.py``): while more connections are open than
``http_max_connections``, every request but ``/health`` and ``/ready`` gets 503; a body longer
than ``http_max_body`` (by its ``Content-Length``) gets 413 unread. A body then holds its bytes
in the hub's budget of partly received data (``hub.inflight``, every door together): the
declared length at once, or each chunk as it comes (``Transfer-Encoding: chunked``), given back
when the body is whole, refused or its connection gone; a body that does not fit gets 503
``busy`` with ``Retry-After``.

Refusals are JSON error bodies like every other error (a refused WebSocket handshake gets the
same body as an HTTP answer) and cost the hub nothing. Every HTTP answer carries a strict
Content-Security-Policy and ``nosniff``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from jobq.core.auth import Caller
from jobq.doors.http.limits import BUSY, PROBES, RETRY_AFTER, ConnectionLimits
from jobq.doors.http.state import CALLER, DoorState
from jobq.errors import Unauthorized, Unavailable
from jobq.listeners import is_loopback

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

#: No script or style but the door's own files, no inline script, nothing from elsewhere.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]
WWW_AUTHENTICATE = (b"www-authenticate", b'Bearer realm="jobq"')
#: Answers with data are never kept by a browser's cache.
NO_STORE = (b"cache-control", b"no-store")

#: Paths anyone may read: the pages, the API description and liveness. Nothing in them is data.
OPEN_PATHS = frozenset(
    {"/", "/health", "/ready", "/docs", "/openapi.json", "/schema", "/dashboard", "/favicon.ico"}
)
OPEN_PREFIXES = ("/dashboard/", "/schema/")
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Longest token accepted (tokens are ~46 characters); longer is refused unread.
MAX_TOKEN = 512

_WANTED = {b"host", b"origin", b"content-type", b"authorization"}


class Refusal(Exception):
    def __init__(
        self, status: int, code: str, message: str, *, challenge: bool = False, audited: bool = False
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.challenge = challenge
        #: The hub wrote it to the audit log already (its guard refused the token), or there is
        #: nothing to audit (a limit, not a caller, refused it).
        self.audited = audited


def _limit(status: int, code: str, message: str) -> Refusal:
    return Refusal(status, code, message, audited=True)


class Gate:
    """The ASGI app uvicorn runs: checks, then the Litestar app."""

    def __init__(self, app: ASGIApp, door: DoorState, *, host: str, port: int, tls: bool) -> None:
        self.app = app
        self.door = door
        self.port = port
        self.tls = tls
        self.loopback = is_loopback(host)
        self.allowed_origins = {_origin_key(o) for o in door.config.http_allow_origins if o}
        #: ``Host`` values found good (a handful: the names the hub is reached by), so each is
        #: parsed once.
        self._good_hosts: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind != "http" and kind != "websocket":
            await self.app(scope, receive, send)
            return
        try:
            if self.door.limits.full and scope["path"] not in PROBES:
                raise _limit(
                    503,
                    "unavailable",
                    f"the HTTP door holds {self.door.limits.open} connections, more than its limit "
                    f"({self.door.limits.total}); try again later",
                )
            length = _body_length(scope) if kind == "http" else None
            if length is not None and length > self.door.limits.max_body:
                raise _limit(
                    413, "too_large", f"the body is {length} bytes; the limit is {self.door.limits.max_body}"
                )
            self._admit(scope, kind == "websocket")
        except Refusal as refusal:
            self.door.rejected += 1
            if not refusal.audited:
                method = "WEBSOCKET" if kind == "websocket" else scope["method"]
                self.door.hub.guard.audit.write(
                    "refused",
                    None,
                    f"{method} {scope['path'][:200]}",
                    reason=refusal.message,
                    door="ws" if kind == "websocket" else "http",
                    peer=peer_of(scope),
                )
            await _refuse(scope, receive, send, refusal)
            return
        if kind != "http":
            await self.app(scope, receive, send)
            return
        secured = _secured(send, not _is_open(scope["path"]))
        if length is None:  # no body
            await self.app(scope, receive, secured)
            return
        body = _BodyBudget(self.door.limits, receive, length)
        if not body.start():
            self.door.rejected += 1
            await _refuse(scope, receive, send, _limit(503, "unavailable", BUSY))
            return
        try:
            await self.app(scope, body, secured)
        finally:
            body.finish()

    def _admit(self, scope: Scope, websocket: bool) -> None:
        host = origin = content_type = authorization = None
        for name, value in scope["headers"]:
            if name in _WANTED:
                text = value.decode("latin-1")
                if name == b"host":
                    host = text
                elif name == b"origin":
                    origin = text
                elif name == b"content-type":
                    content_type = text
                else:
                    authorization = text
        if self.loopback:
            self._check_host(host)
        method = "GET" if websocket else scope["method"]
        changes = method in STATE_CHANGING
        if origin is not None and (websocket or changes) and not self._origin_allowed(origin, host):
            raise Refusal(
                403,
                "forbidden",
                f"origin {origin[:100]!r} may not use this hub: only its own origin and the ones "
                "given with --http-allow-origin",
            )
        if changes and content_type is not None and not _is_json(content_type):
            raise Refusal(
                415,
                "unsupported_media_type",
                f"{method} needs Content-Type: application/json (got {content_type[:60]!r})",
            )
        if not websocket and _is_open(scope["path"]):
            return
        self._identify(scope, authorization, "ws" if websocket else "http", websocket)

    def _identify(self, scope: Scope, authorization: str | None, door: str, websocket: bool) -> None:
        hub = self.door.hub
        if not hub.guard.enabled:  # no --auth: every caller is the local admin
            scope[CALLER] = hub.authenticate(None, door=door, peer=peer_of(scope))
            return
        token = None
        if authorization is not None:
            scheme, _, rest = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not rest.strip():
                raise Refusal(
                    401, "unauthorized", "not authorized: use Authorization: Bearer TOKEN", challenge=True
                )
            token = rest.strip()
            if len(token) > MAX_TOKEN:
                raise Refusal(401, "unauthorized", "not authorized: malformed token", challenge=True)
        if token is None and websocket:
            return  # the first message authenticates (ws_common.admit)
        try:
            caller: Caller = hub.authenticate(token, door=door, peer=peer_of(scope))
        except Unauthorized as exc:
            raise Refusal(401, "unauthorized", exc.message, challenge=True, audited=True) from None
        scope[CALLER] = caller

    def _check_host(self, host: str | None) -> None:
        if host in self._good_hosts:
            return
        if not host:
            raise Refusal(400, "invalid", "a Host header is required")
        name, port = _split_host(host)
        default = 443 if self.tls else 80
        if name is None or not _loopback_name(name) or (port if port is not None else default) != self.port:
            raise Refusal(
                421,
                "misdirected",
                f"this hub listens on loopback port {self.port} and answers only requests addressed to "
                f"localhost:{self.port} or a loopback address (Host was {host[:100]!r})",
            )
        if len(self._good_hosts) < 64:
            self._good_hosts.add(host)

    def _origin_allowed(self, origin: str, host: str | None) -> bool:
        key = _origin_key(origin)
        if key in self.allowed_origins:
            return True
        if host is None or key == "null":
            return False
        own = ("https://" if self.tls else "http://") + host.lower()
        return key == own or key == _without_default_port(own)


class _BodyBudget:
    """The ``receive`` of a request with a body: the body's bytes held in the hub's budget of
    partly received data until it is whole (the declared length at once, else chunk by chunk)."""

    __slots__ = ("budget", "declared", "done", "held", "limits", "receive")

    def __init__(self, limits: ConnectionLimits, receive: Receive, length: int) -> None:
        self.limits = limits
        self.budget = limits.budget
        self.receive = receive
        #: The ``Content-Length``, or -1 for a chunked body.
        self.declared = length
        self.held = 0
        self.done = False

    def start(self) -> bool:
        if self.declared > 0:
            if not self.budget.reserve(self.declared):
                self.limits.busy += 1
                return False
            self.held = self.declared
        return True

    def finish(self) -> None:
        self.budget.release(self.held)
        self.held = 0
        self.done = True

    async def __call__(self) -> dict[str, Any]:
        message = await self.receive()
        if self.done:
            return message
        if message["type"] == "http.request":
            if self.declared < 0:
                size = len(message.get("body", b""))
                if size and not self.budget.reserve(size):
                    self.limits.busy += 1
                    self.finish()
                    raise Unavailable(BUSY)
                self.held += size
            if not message.get("more_body", False):
                self.finish()
        else:  # http.disconnect
            self.finish()
        return message


def _body_length(scope: Scope) -> int | None:
    """The declared length of the request's body, -1 when it is chunked, None without one."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None  # the HTTP parser refuses such a request before it gets here
            return length if length > 0 else None
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            return -1
    return None


def peer_of(scope: Scope) -> str:
    client = scope.get("client")
    if not client:
        return ""
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def _is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _origin_key(origin: str) -> str:
    return _without_default_port(origin.strip().lower().rstrip("/"))


def _without_default_port(origin: str) -> str:
    for scheme, port in (("http://", ":80"), ("https://", ":443")):
        if origin.startswith(scheme) and origin.endswith(port):
            return origin[: -len(port)]
    return origin


def _split_host(host: str) -> tuple[str | None, int | None]:
    """``name[:port]`` or ``[v6][:port]`` → (name, port); (None, None) when malformed."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return None, None
        name, rest = host[1:end], host[end + 1 :]
        if rest and not rest.startswith(":"):
            return None, None
        port_text = rest[1:] if rest else ""
    else:
        name, _, port_text = host.partition(":")
        if not port_text and host.endswith(":"):
            return None, None
    if port_text:
        if not port_text.isdigit() or len(port_text) > 5:
            return None, None
        return name, int(port_text)
    return name, None


def _loopback_name(name: str) -> bool:
    if name in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _secured(send: Send, data: bool) -> Send:
    extra = [*SECURITY_HEADERS, NO_STORE] if data else SECURITY_HEADERS

    async def secured(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *extra]
        await send(message)

    return secured


def _body(refusal: Refusal) -> bytes:
    return msgspec.json.encode({"error": refusal.code, "message": refusal.message})


async def _refuse(scope: Scope, receive: Receive, send: Send, refusal: Refusal) -> None:
    body = _body(refusal)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *SECURITY_HEADERS,
        NO_STORE,
    ]
    if refusal.challenge:
        headers.append(WWW_AUTHENTICATE)
    if refusal.status == 503:
        headers.append((b"retry-after", str(RETRY_AFTER).encode()))
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await receive()  # websocket.connect
    if "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:  # the server cannot answer a handshake with a body: a plain 403
        await send({"type": "websocket.close", "code": 1008, "reason": refusal.message[:120]})


__all__ = ["CSP", "Gate", "peer_of"]
