"""Running a hub process: the store, the hub and its doors, and a clean shutdown.

SIGTERM (or SIGINT) stops taking work, lets running jobs finish for the grace period, then
closes every door and the store. SIGKILL loses nothing acknowledged: the store committed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import Protocol, TypeVar

from jobq.authfile import curve_key
from jobq.config import HubConfig
from jobq.core.auth import Caller
from jobq.doors.zmq.mdp import MajordomoDoor
from jobq.doors.zmq.native import NativeDoor
from jobq.doors.zmq.router import ZmqRouter
from jobq.hub.hub import Hub
from jobq.process import return_large_buffers, tune_gc
from jobq.protocol.curve import encode_key
from jobq.store.base import open_store

log = logging.getLogger("jobq.hub")

D = TypeVar("D")


class Door(Protocol):
    """A door: turns bytes into hub calls and events into bytes."""

    endpoints: list[str]

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def zmq_door(hub: Hub, config: HubConfig) -> ZmqRouter:
    """The ROUTER sockets with their protocols: the native protocol (``JQ1``) and Majordomo.
    ``?curve`` listeners take the client keys of the auth file (any key without ``--auth``:
    encryption only); a revoked key's connections are closed."""
    auth = hub.guard.enabled

    def curve_authenticate(key: bytes) -> object:
        return hub.guard.curve_caller(encode_key(key), door="zmq")

    router = ZmqRouter(
        config.zmq,
        max_message=config.max_message,
        engine=config.zmq_engine,
        curve_secret=curve_key(config.curve_secret) if config.curve_secret else None,
        curve_authenticate=curve_authenticate if auth else None,
        handover=not auth,
        budget=hub.inflight,
        handshake_timeout=config.zmq_handshake_timeout,
        max_connections=config.zmq_max_connections,
        max_per_peer=config.zmq_max_per_peer,
    )

    def revoked(names: set[str]) -> None:
        router.close_where(lambda principal: isinstance(principal, Caller) and principal.name in names)

    hub.on_revoke(revoked)
    router.install(NativeDoor(hub, router))
    router.install(MajordomoDoor(hub, router))
    return router


def build_doors(hub: Hub, config: HubConfig) -> list[Door]:
    """Every door the configuration asks for, in start order. Each door is imported here
    only when enabled, so its dependencies stay optional for the others."""
    doors: list[Door] = []
    if config.zmq:
        doors.append(zmq_door(hub, config))
    if config.line:
        from jobq.doors.line import LineDoor

        doors.append(LineDoor(hub, config.line))
    if config.http and config.http != "off":
        from jobq.doors.http.app import HttpDoor

        doors.append(HttpDoor(hub, config))
    return doors


class HubServer:
    """A hub with its doors, started and stopped together."""

    def __init__(self, config: HubConfig) -> None:
        self.config = config
        store = open_store(config.store, result_ttl=config.result_ttl, failed_ttl=config.failed_ttl)
        self.hub = Hub(store, config)
        self.doors = build_doors(self.hub, config)

    def door(self, kind: type[D]) -> D:
        """The running door of this type (tests use it to find bound addresses)."""
        for door in self.doors:
            if isinstance(door, kind):
                return door
        raise LookupError(f"no {kind.__name__} door is enabled")

    async def start(self) -> None:
        await self.hub.start()
        for door in self.doors:
            await door.start()

    async def stop(self, grace: float | None = None) -> None:
        await self.hub.stop(grace)
        for door in self.doors:
            with contextlib.suppress(Exception):
                await door.stop()

    @property
    def endpoints(self) -> list[str]:
        return [ep for door in self.doors for ep in door.endpoints]


async def serve(config: HubConfig, ready: Callable[[HubServer], None] | None = None) -> None:
    """Run until SIGTERM/SIGINT, then shut down gracefully."""
    return_large_buffers()
    server = HubServer(config)
    await server.start()
    tune_gc()
    log.info("hub %s ready: store %s, doors %s", config.name, server.hub.store_url, server.endpoints)
    if ready is not None:
        ready(server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: letting running jobs finish (up to %ss)", config.grace)
    await server.stop()


def run(config: HubConfig, ready: Callable[[HubServer], None] | None = None) -> None:
    """Blocking entry point: uvloop when available."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(config, ready))
    else:
        uvloop.run(serve(config, ready))
