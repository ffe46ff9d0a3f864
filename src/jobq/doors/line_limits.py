"""The line door's limits on connections (``docs/line.md``, *Limits and bad input*), so that
idle or slow connections cannot lock other users out.

- **Per peer** (``HubConfig.line_max_per_peer``, 64; 0: no limit): a client address holding
  that many connections has its next one answered
  ``ERR too many connections from your address (...)`` and closed at once.
- **In all** (``HubConfig.line_max_connections``, 10,000): past it a new connection gets
  ``ERR too many connections (...)`` and is closed.
- **Idle** (``HubConfig.line_idle_timeout``, 300 s; 0: never): a connection that holds no job
  and has sent nothing for that long gets ``ERR idle: ...`` and is closed. A worker holding a
  job is left alone: ``line_lease`` governs it (the hub takes the job back after that much
  silence, and the connection is then idle like any other).
- **A slow line** (``HubConfig.line_partial_timeout``, 60 s; 0: no limit): a line has that long
  from its first byte to arrive whole (its newline), else ``ERR line not received whole ...``
  and the connection is closed, a slowloris that sends a byte now and then included.

A connection notes when it was last heard from and when the line still arriving began (the
door does, per read); :meth:`LineLimits.watch` looks at every connection about once a second
(more often for timeouts shorter than 4 s), so a read pays for no timer. No I/O here.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

from jobq.config import HubConfig
from jobq.protocol.admission import Admission

log = logging.getLogger("jobq.doors.line")


class Watched(Protocol):
    """What the watch reads of a connection."""

    @property
    def heard(self) -> float:
        """``time.monotonic()`` when it last sent anything (or opened)."""

    @property
    def line_since(self) -> float:
        """``time.monotonic()`` when the line still arriving began; 0: none is."""

    @property
    def held(self) -> object:
        """The job it holds as a worker (None: none)."""


W = TypeVar("W", bound=Watched)
#: Called to close a connection: the connection, the reason's key in ``LineDoor.refused``, the
#: reason (sent as ``ERR <reason>``).
Cut = Callable[[W, str, str], None]


class LineLimits:
    """The door's counts of connections, and its timeouts."""

    def __init__(self, config: HubConfig) -> None:
        self.max_connections = config.line_max_connections
        self.per_peer = config.line_max_per_peer
        self.idle_timeout = config.line_idle_timeout
        self.partial_timeout = config.line_partial_timeout
        if self.per_peer < 0 or self.idle_timeout < 0 or self.partial_timeout < 0:
            raise ValueError("line door: per-peer limit and timeouts must not be negative (0: off)")
        self.admission = Admission(self.max_connections, self.per_peer)

    def admit(self, connection: object, host: str) -> str | None:
        """Count a new connection from ``host``; the reason it is refused, if so."""
        refusal = self.admission.admit(connection, host)
        if refusal is None:
            return None
        return self.admission.explain(refusal, "your address")

    def release(self, connection: object) -> None:
        self.admission.release(connection)

    @property
    def interval(self) -> float | None:
        """Seconds between two looks at the connections; None: no timeout to watch."""
        timeouts = [t for t in (self.idle_timeout, self.partial_timeout) if t > 0]
        return max(0.01, min(1.0, min(timeouts) / 4)) if timeouts else None

    def overdue(self, conn: Watched, now: float) -> tuple[str, str] | None:
        """(key, reason) when ``conn`` is to be closed now; else None."""
        partial, idle = self.partial_timeout, self.idle_timeout
        since = conn.line_since
        if partial and since and now - since >= partial:
            return "slow", f"line not received whole within {partial:g}s"
        if idle and conn.held is None and now - conn.heard >= idle:
            return "idle", f"idle: nothing received for {idle:g}s"
        return None

    async def watch(self, connections: Callable[[], Iterable[W]], cut: Cut[W]) -> None:
        """Close the connections past a timeout, until cancelled."""
        interval = self.interval
        if interval is None:
            return
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for conn in list(connections()):
                found = self.overdue(conn, now)
                if found is None:
                    continue
                try:
                    cut(conn, *found)
                except Exception:
                    log.exception("closing a line connection failed")


__all__ = ["LineLimits", "Watched"]
