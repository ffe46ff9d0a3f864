"""Who holds the HTTP door's connections: the counts per client address and in all, and the
hub's budget of partly received bytes as this door uses it.

:class:`ConnectionLimits` is shared by the connection protocols (``protocols.py``: a
connection is counted from the moment it is made, as HTTP and then as a WebSocket, until it is
lost), the gate (``gate.py``: requests past the total get 503, except ``/health`` and
``/ready``) and ``/metrics``. No I/O here.

- **Per peer** (``HubConfig.http_max_per_peer``, 64; 0: no limit): a client address holding
  that many connections has its next one answered 503 and closed at once, so one peer's idle or
  slow connections cannot lock out the others.
- **In all** (``HubConfig.http_max_connections``, 1000): past it every request gets 503 but the
  probes; past it by :data:`PROBE_ROOM` more, a new connection is answered 503 and closed at once.
  A connection let into that room is for one probe: it has :data:`PROBE_HEADER_TIMEOUT` seconds
  to ask, and is closed after one answer, so idle connections cannot fill the room as well.
"""

from __future__ import annotations

from collections import Counter

from jobq.config import HubConfig
from jobq.protocol.inflight import InflightBudget

#: Connections accepted beyond ``http_max_connections`` so that ``/health`` and ``/ready`` still
#: answer when the door is full (every other request on them gets 503).
PROBE_ROOM = 32
#: Seconds a connection let into the probe room has to send its request (then it is cut).
PROBE_HEADER_TIMEOUT = 1.0
#: Paths that answer even when the door holds more than ``http_max_connections``.
PROBES = frozenset({"/health", "/ready"})
#: Seconds a refused client is told to wait (``Retry-After``).
RETRY_AFTER = 1
#: What a request or message is refused with when the hub's budget of partly received bytes is
#: spent (``HubConfig.max_inflight``, every door together).
BUSY = "busy: too much partly received data in the hub; try again later"


class ConnectionLimits:
    """Open connections by client address, and the door's limits and figures."""

    def __init__(self, config: HubConfig, budget: InflightBudget) -> None:
        self.total = max(1, config.http_max_connections)
        self.per_peer = max(0, config.http_max_per_peer)
        self.header_timeout = config.http_header_timeout
        self.body_timeout = config.http_body_timeout
        self.max_body = config.http_max_body
        #: The hub's budget of partly received bytes (``hub.inflight``), every door together.
        self.budget = budget
        self._open: dict[object, str] = {}
        self._by_peer: Counter[str] = Counter()
        #: Connections refused (per peer or in all), requests and messages cut for being slow,
        #: and requests and messages refused for lack of budget, since start (``/metrics``).
        self.refused = 0
        self.timed_out = 0
        self.busy = 0

    @property
    def open(self) -> int:
        return len(self._open)

    @property
    def full(self) -> bool:
        """More connections are open than ``http_max_connections``: only the probes answer."""
        return len(self._open) > self.total

    def peers(self) -> int:
        return len(self._by_peer)

    def admit(self, connection: object, peer: str) -> str | None:
        """Count a new connection of ``peer`` (its address); the reason it is refused, if so."""
        if connection in self._open:
            return None
        if len(self._open) >= self.total + PROBE_ROOM:
            self.refused += 1
            return f"too many connections ({len(self._open)} open; the limit is {self.total})"
        if self.per_peer and self._by_peer[peer] >= self.per_peer:
            self.refused += 1
            return f"too many connections from {peer} (the limit is {self.per_peer} per client address)"
        self._open[connection] = peer
        self._by_peer[peer] += 1
        return None

    def adopt(self, connection: object, peer: str) -> None:
        """Count a connection that changed hands (an HTTP connection that became a WebSocket
        keeps its place; counting it again is a no-op)."""
        if connection not in self._open:
            self._open[connection] = peer
            self._by_peer[peer] += 1

    def release(self, connection: object) -> None:
        peer = self._open.pop(connection, None)
        if peer is None:
            return
        left = self._by_peer[peer] - 1
        if left > 0:
            self._by_peer[peer] = left
        else:
            del self._by_peer[peer]

    def of_peer(self, peer: str) -> int:
        return self._by_peer.get(peer, 0)


__all__ = ["BUSY", "PROBES", "PROBE_HEADER_TIMEOUT", "PROBE_ROOM", "RETRY_AFTER", "ConnectionLimits"]
