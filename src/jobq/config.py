"""Settings, read once at the edge (flags, ``JOBQ_*`` environment) and passed down.

Every limit a door enforces has its default here, and docs/operations.md lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobq.core.lease import DEFAULT_LEASE_TTL
from jobq.core.validate import DEFAULT_MAX_PAYLOAD

DEFAULT_HUB = "tcp://127.0.0.1:5555"
DEFAULT_STORE = "sqlite:///jobq-data/jobq.db"


@dataclass(slots=True)
class HubConfig:
    store: str = DEFAULT_STORE
    #: ZeroMQ endpoints the hub binds (native protocol, and Majordomo on the same socket).
    zmq: list[str] = field(default_factory=lambda: [DEFAULT_HUB])
    #: Seconds between heartbeats the hub expects from (and sends to) workers.
    heartbeat: float = 1.0
    #: Heartbeats a worker may miss before it counts as gone.
    liveness: int = 5
    #: Seconds a running job's lease lasts without a heartbeat.
    lease_ttl: float = DEFAULT_LEASE_TTL
    #: Largest payload a job may carry (bytes, all frames together).
    max_payload: int = DEFAULT_MAX_PAYLOAD
    #: Largest message a door accepts (bytes).
    max_message: int = 64 * 1024 * 1024
    #: Longest ``wait`` a client may ask for (seconds).
    max_wait: float = 3600.0
    #: Seconds a shutting-down hub lets running jobs finish.
    grace: float = 30.0
    #: Seconds between clock ticks (scheduled jobs, leases, retention) at most.
    tick: float = 0.25
    #: A client that subscribed to events and has not been heard from for this long is
    #: forgotten (the SDK pings while it listens).
    subscriber_ttl: float = 60.0
    #: Hub name shown to peers (several hubs share one Redis).
    name: str = "hub"

    @property
    def worker_silence(self) -> float:
        return self.heartbeat * self.liveness
