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

from jobq.config import HubConfig
from jobq.protocol.admission import Admission
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
    """Open connections by client address (counted by :class:`~jobq.protocol.admission.
    Admission`, as on the line and ZeroMQ doors), and the door's limits and figures."""

    def __init__(self, config: HubConfig, budget: InflightBudget) -> None:
        self.total = max(1, config.http_max_connections)
        self.per_peer = max(0, config.http_max_per_peer)
        self.header_timeout = config.http_header_timeout
        self.body_timeout = config.http_body_timeout
        self.max_body = config.http_max_body
        #: The hub's budget of partly received bytes (``hub.inflight``), every door together.
        self.budget = budget
        #: Past ``total`` only the probes answer; the probe room is counted in.
        self._admission = Admission(self.total + PROBE_ROOM, self.per_peer)
        #: Requests and messages cut for being slow, and refused for lack of budget, since
        #: start (``/metrics``).
        self.timed_out = 0
        self.busy = 0

    @property
    def open(self) -> int:
        return self._admission.open

    @property
    def refused(self) -> int:
        """Connections refused (per peer or in all) since start."""
        return self._admission.refused

    @property
    def full(self) -> bool:
        """More connections are open than ``http_max_connections``: only the probes answer."""
        return self._admission.open > self.total

    def admit(self, connection: object, peer: str) -> str | None:
        """Count a new connection of ``peer`` (its address); the reason it is refused, if so."""
        refusal = self._admission.admit(connection, peer)
        if refusal is None:
            return None
        if refusal == "total":
            return f"too many connections ({self.open} open; the limit is {self.total})"
        return self._admission.explain(refusal, peer)

    def adopt(self, connection: object, peer: str) -> None:
        """Count a connection that changed hands (an HTTP connection that became a WebSocket
        keeps its place; counting it again is a no-op)."""
        self._admission.count(connection, peer)

    def release(self, connection: object) -> None:
        self._admission.release(connection)

    def of_peer(self, peer: str) -> int:
        return self._admission.of_peer(peer)


__all__ = ["BUSY", "PROBES", "PROBE_HEADER_TIMEOUT", "PROBE_ROOM", "RETRY_AFTER", "ConnectionLimits"]
