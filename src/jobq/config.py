"""Settings, read once at the edge (flags, ``JOBQ_*`` environment) and passed down.

Every limit a door enforces has its default here, and docs/operations.md lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobq.core.lease import DEFAULT_LEASE_TTL
from jobq.core.retention import DEFAULT_FAILED_TTL, DEFAULT_RESULT_TTL
from jobq.core.validate import DEFAULT_MAX_PAYLOAD

DEFAULT_HUB = "tcp://127.0.0.1:5555"
DEFAULT_STORE = "sqlite:///jobq-data/jobq.db"


@dataclass(slots=True)
class HubConfig:
    store: str = DEFAULT_STORE
    #: ZeroMQ endpoints the hub binds (native protocol, and Majordomo on the same socket).
    zmq: list[str] = field(default_factory=lambda: [DEFAULT_HUB])
    #: The ZeroMQ implementation: ``asyncio`` (jobq's ZMTP on the event loop) or ``libzmq``.
    zmq_engine: str = "asyncio"
    #: Seconds a ZeroMQ connection has from its opening to complete its greeting and handshake
    #: (NULL or CURVE), else it is closed (both engines: libzmq's ``ZMQ_HANDSHAKE_IVL``, whose
    #: own default is 30 s); 0: no limit.
    zmq_handshake_timeout: float = 10.0
    #: ZeroMQ connections from one client address at most, every listener together (jobq's
    #: ZMTP engine): past it a new one is closed at once; 0: no such limit.
    zmq_max_per_peer: int = 256
    #: ZeroMQ connections at most, every listener together (jobq's ZMTP engine): past it a new
    #: one is closed at once; 0: no limit.
    zmq_max_connections: int = 10_000
    #: Seconds between heartbeats the hub expects from (and sends to) workers.
    heartbeat: float = 1.0
    #: Heartbeats a worker may miss before it counts as gone.
    liveness: int = 5
    #: Seconds a running job's lease lasts without a heartbeat.
    lease_ttl: float = DEFAULT_LEASE_TTL
    #: Seconds a completed or cancelled job is kept (a job's own ``result_ttl`` overrides it),
    #: and a failed one (a dead letter); then a tick forgets it (core/retention.py).
    result_ttl: float = DEFAULT_RESULT_TTL
    failed_ttl: float = DEFAULT_FAILED_TTL
    #: A worker whose attempts failed, timed out or were lost with it (it died) this many times
    #: in a row is drained automatically: no new jobs until ``jobq workers resume`` (0: never;
    #: hub/control.py). A success starts the count again.
    auto_drain: int = 5
    #: Largest payload a job may carry (bytes, all frames together).
    max_payload: int = DEFAULT_MAX_PAYLOAD
    #: Largest message a door accepts (bytes).
    max_message: int = 64 * 1024 * 1024
    #: Bytes of partly received messages the hub holds at most, every door together
    #: (``protocol/inflight.py``): a new large message past it is refused.
    max_inflight: int = 256 * 1024 * 1024
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
    #: Fair-share weight per customer between jobs of equal priority (default 1 each).
    customer_weights: dict[str, float] = field(default_factory=dict)
    #: Line-protocol listeners (DSJQ and work-queue commands on each): ``HOST:PORT``, or
    #: ``HOST:PORT/dsjq-compat`` to answer as the known C++ DSJQ server. Empty: no line door.
    line: list[str] = field(default_factory=lambda: ["127.0.0.1:50000", "127.0.0.1:50001"])
    #: The service jobs submitted by line commands belong to (and line workers serve).
    line_service: str = "default"
    #: Seconds a line worker holding a job may stay silent before the job goes back to the
    #: front of the queue (at most ``lease_ttl`` in effect).
    line_lease: float = 30.0
    #: Longest line (bytes); a longer one is refused and its connection closed.
    line_max_line: int = 64 * 1024
    #: Open line connections at most, all listeners together.
    line_max_connections: int = 10_000
    #: Open line connections from one client address at most (then ``ERR too many connections
    #: from your address``, closed); 0: no such limit.
    line_max_per_peer: int = 64
    #: Seconds a line connection holding no job may send nothing before it is closed (``ERR
    #: idle: ...``; a worker holding a job is governed by ``line_lease``); 0: never.
    line_idle_timeout: float = 300.0
    #: Seconds a line has, from its first byte, to arrive whole (then ``ERR``, closed; against
    #: peers that send a line a byte at a time); 0: no limit.
    line_partial_timeout: float = 60.0

    #: Majordomo (MDP) door: seconds between the heartbeats the hub sends to MDP workers (the
    #: zguide default, 2.5 s) ...
    mdp_heartbeat: float = 2.5
    #: ... and heartbeats an idle MDP worker may miss before it counts as gone (a busy one is
    #: never expired by silence alone: its job's lease is the limit).
    mdp_liveness: int = 3
    #: Seconds an MDP request for a service that no worker serves waits for one, before the
    #: client gets an error reply instead of silence.
    mdp_no_worker_timeout: float = 10.0
    #: Requests the hub may hand an MDP worker beyond the one it runs, while that worker's
    #: requests take less than ``mdp_prefetch_below`` seconds on average (0: always
    #: Majordomo's one at a time). Queued requests hide the round trip between short
    #: requests; long ones are never queued behind each other.
    mdp_prefetch: int = 8
    mdp_prefetch_below: float = 0.005

    #: HTTP door (REST, WebSocket, dashboard, /metrics): ``HOST:PORT``; ``off`` or empty: none.
    #: If the default address is taken, the hub starts without HTTP and says so.
    http: str = "127.0.0.1:8080"
    #: Largest HTTP request body and WebSocket message (bytes); larger gets 413 / close 1009.
    http_max_body: int = 8 * 1024 * 1024
    #: Messages waiting for one WebSocket reader at most; a monitor past it is resynced, a
    #: client is told which jobs' events it missed.
    http_monitor_queue: int = 1000
    #: Open HTTP connections and WebSocket streams at most (then 503, but for /health and /ready).
    http_max_connections: int = 1000
    #: Open HTTP connections and WebSocket streams from one client address at most (then 503
    #: and the new connection is closed); 0: no such limit (a hub behind a reverse proxy).
    http_max_per_peer: int = 64
    #: Seconds an idle kept-alive HTTP connection stays open between requests.
    http_keepalive: float = 5.0
    #: Seconds a new connection (or the next request on a kept-alive one, from its first byte)
    #: has to send its request line and headers; then 408 and the connection is closed.
    http_header_timeout: float = 10.0
    #: Seconds a request body, or a WebSocket message from its first byte, has to arrive whole;
    #: then the connection is closed (408, WebSocket close 1008).
    http_body_timeout: float = 60.0
    #: Browser origins (``https://dash.example.com``) besides the hub's own that may open its
    #: WebSockets and send it state-changing requests (``--http-allow-origin``, repeatable).
    http_allow_origins: list[str] = field(default_factory=list)

    #: The auth file (``jobq token create``): every door then needs a token, a CURVE key or a
    #: trusted listener. None: no authentication, and the hub binds loopback only.
    auth: str | None = None
    #: Listen beyond loopback without ``--auth``, or trust peers there (at your own risk).
    insecure: bool = False
    #: Where the audit log goes (JSON lines): a file, ``-`` for stderr, None for nowhere.
    audit: str | None = None
    #: TLS for the HTTP door and line listeners marked ``?tls``: PEM certificate and key.
    tls_cert: str | None = None
    tls_key: str | None = None
    #: ZeroMQ listeners marked ``?curve``: the hub's CURVE secret key (Z85), or a file holding it.
    curve_secret: str | None = None

    @property
    def worker_silence(self) -> float:
        return self.heartbeat * self.liveness
