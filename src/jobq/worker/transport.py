"""How the worker SDK reaches a hub: the seam between the runtime and the wire.

The runtime speaks JQP messages (:mod:`jobq.protocol.native`) to a :class:`Transport`. With
``tcp://`` (ZeroMQ) endpoints only, that is the client's :class:`Connection` as before. An
endpoint ``ws://HOST:PORT[/ws/worker]`` or ``http://HOST:PORT`` reaches the hub's HTTP door
instead (:mod:`jobq.worker.ws_transport`), and endpoints of both kinds may be mixed: the
runtime's failover (no word from the hub for five heartbeats) moves to the next one, so
``tcp://hub:5555,ws://hub:8080`` falls back to WebSocket when ZeroMQ is not reachable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from jobq.protocol import native as jqp
from jobq.protocol.connection import Connection, PushHandler, endpoints_of, token_from_env


class Transport(Protocol):
    @property
    def endpoint(self) -> str: ...

    def open(self) -> None: ...

    def close(self) -> None: ...

    def send(self, message: jqp.Inbound) -> None: ...

    def failover(self) -> str:
        """Drop the current connection and connect to the next endpoint; returns it."""
        ...


def is_http(endpoint: str) -> bool:
    return endpoint.startswith(("ws://", "wss://", "http://", "https://"))


@dataclass(frozen=True, slots=True)
class Credentials:
    """Who the worker is to the hub: its token (every door), CURVE keys (ZeroMQ ``?curve``)."""

    token: str | None = None
    curve_server_key: str | bytes | None = None
    curve_public_key: str | bytes | None = None
    curve_secret_key: str | bytes | None = None

    @classmethod
    def of(
        cls,
        token: str | None,
        curve_server_key: str | bytes | None = None,
        curve_public_key: str | bytes | None = None,
        curve_secret_key: str | bytes | None = None,
    ) -> Credentials:
        """``token`` defaulting to the environment's ``JOBQ_TOKEN``."""
        return cls(token_from_env(token), curve_server_key, curve_public_key, curve_secret_key)

    def connect(self, hub: str | Sequence[str], on_push: PushHandler, identity: bytes | None) -> Transport:
        """The transport for these endpoints with these credentials (not yet open)."""
        return connect(hub, on_push=on_push, identity=identity, credentials=self)

    def connection(
        self, endpoints: str | Sequence[str], on_push: PushHandler, identity: bytes | None
    ) -> Connection:
        return Connection(
            endpoints,
            on_push=on_push,
            identity=identity,
            credential=self.token,
            curve_server_key=self.curve_server_key,
            curve_public_key=self.curve_public_key,
            curve_secret_key=self.curve_secret_key,
        )


class Failover:
    """One endpoint at a time out of several, each through the transport its scheme needs."""

    def __init__(
        self,
        endpoints: Sequence[str],
        on_push: PushHandler,
        identity: bytes | None,
        credentials: Credentials | None = None,
    ) -> None:
        self.endpoints = list(endpoints)
        self.on_push = on_push
        self.identity = identity
        self.credentials = credentials or Credentials()
        self._index = 0
        self._current: Transport | None = None

    @property
    def endpoint(self) -> str:
        return self.endpoints[self._index]

    def _make(self, endpoint: str) -> Transport:
        if is_http(endpoint):
            from jobq.worker.ws_transport import WsConnection

            return WsConnection(endpoint, on_push=self.on_push, token=self.credentials.token)
        return self.credentials.connection(endpoint, self.on_push, self.identity)

    def open(self) -> None:
        self._current = self._make(self.endpoint)
        self._current.open()

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None

    def send(self, message: jqp.Inbound) -> None:
        if self._current is not None:
            self._current.send(message)

    def failover(self) -> str:
        self.close()
        self._index = (self._index + 1) % len(self.endpoints)
        self.open()
        return self.endpoint


def connect(
    hub: str | Sequence[str],
    *,
    on_push: PushHandler,
    identity: bytes | None = None,
    credentials: Credentials | None = None,
) -> Transport:
    """The transport for these endpoints (not yet open)."""
    endpoints = endpoints_of(hub)
    credentials = credentials or Credentials()
    if not any(is_http(e) for e in endpoints):
        return credentials.connection(endpoints, on_push, identity)
    return Failover(endpoints, on_push, identity, credentials)
