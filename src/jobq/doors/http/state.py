"""What the HTTP door's handlers share, and how a handler finds it.

Handlers (:mod:`~jobq.doors.http.rest`, the ``ws_*`` modules, :mod:`~jobq.doors.http.metrics`)
import this module, never :mod:`~jobq.doors.http.app`, which imports them: imports run one way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Hashable
from typing import Any, Protocol, cast

from litestar import WebSocket
from litestar.connection import ASGIConnection

from jobq.config import HubConfig
from jobq.core.auth import Caller
from jobq.doors.http.limits import ConnectionLimits
from jobq.doors.http.streams import Streams
from jobq.hub import sessions
from jobq.hub.hub import Hub


class WorkerPeer(Hashable, Protocol):
    """A ``/ws/worker`` connection, as the door's worker directory knows it."""

    def register_required(self) -> None:
        """Tell the peer that the hub does not know it: it must send ``register_worker``."""


class DoorState:
    """The door's state: the hub it translates for, its figures and its worker directory."""

    def __init__(self, hub: Hub, config: HubConfig) -> None:
        self.hub = hub
        self.config = config
        #: Requests answered with a 4xx (``jobq_http_rejected_requests_total``).
        self.rejected = 0
        #: Set when the door stops: long polls give up at once (503) instead of being cut off.
        self.closing = asyncio.Event()
        self.streams = Streams(hub)
        #: Open connections per client address, timeouts, the budget of partly received bytes.
        self.limits = ConnectionLimits(config, hub.inflight)
        #: Which worker each ``/ws/worker`` connection speaks for.
        self.workers: sessions.WorkerDirectory[WorkerPeer] = sessions.WorkerDirectory(
            lambda peer: peer.register_required()
        )
        self._cached: dict[str, bytes] = {}
        #: Open WebSockets and who speaks on each: closed when that token is revoked.
        self.sockets: dict[WebSocket[Any, Any, Any], Caller] = {}
        hub.on_revoke(self._revoked)

    def _revoked(self, names: set[str]) -> None:
        for socket, caller in list(self.sockets.items()):
            if caller.name in names:
                del self.sockets[socket]
                self.hub.spawn(_close(socket, 4401, "not authorized: token revoked"))

    def cached(self, name: str, make: Callable[[], bytes]) -> bytes:
        """``make()``, computed once (pages, the OpenAPI document)."""
        found = self._cached.get(name)
        if found is None:
            found = self._cached[name] = make()
        return found


#: Where the gate (``gate.py``) leaves the caller in the ASGI scope.
CALLER = "jobq.caller"


def caller_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Caller:
    """Who sent this request (the gate authenticated it before any handler runs)."""
    return cast(Caller, cast(dict[str, Any], connection.scope)[CALLER])


async def _close(socket: WebSocket[Any, Any, Any], code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await socket.close(code, reason)


def door_of(connection: ASGIConnection[Any, Any, Any, Any]) -> DoorState:
    """The door state of the app serving this request or WebSocket."""
    return cast(DoorState, connection.app.state.door)


__all__ = ["CALLER", "DoorState", "WorkerPeer", "caller_of", "door_of"]
