"""Who holds a door's connections: the count per client address and in all, each with a limit.

Shared by the line door, jobq's ZMTP router and the HTTP door (whose ``doors/http/limits.py``
adds the room that lets the probes through when it is full). A connection is counted from the moment it is
accepted until it closes; one past either limit is refused at once, so that one peer's idle or
slow connections cannot take every place. No I/O here.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Literal

#: Which limit refused a connection: the door's total, or the one per client address.
Refusal = Literal["total", "per_peer"]
#: Seconds between two reports of refused connections (the first is reported at once).
REPORT_EVERY = 60.0


class Admission:
    """Open connections by client address; not thread-safe (the hub is one event loop)."""

    __slots__ = ("_by_peer", "_open", "_reported", "_unreported", "per_peer", "refused", "total")

    def __init__(self, total: int, per_peer: int = 0) -> None:
        """``total``: connections at most, every address together; ``per_peer``: from one
        address at most. 0: no such limit."""
        self.total = max(0, total)
        self.per_peer = max(0, per_peer)
        self._open: dict[object, str] = {}
        self._by_peer: Counter[str] = Counter()
        #: Connections refused since start.
        self.refused = 0
        self._unreported = 0
        self._reported = -REPORT_EVERY

    @property
    def open(self) -> int:
        return len(self._open)

    def of_peer(self, peer: str) -> int:
        return self._by_peer.get(peer, 0)

    def admit(self, connection: object, peer: str) -> Refusal | None:
        """Count ``connection`` of ``peer`` (its host; "" when it has none, as on a Unix socket:
        then only the total applies), or say which limit refuses it."""
        if connection in self._open:
            return None
        refusal: Refusal | None = None
        if self.total and len(self._open) >= self.total:
            refusal = "total"
        elif self.per_peer and peer and self._by_peer[peer] >= self.per_peer:
            refusal = "per_peer"
        if refusal is not None:
            self.refused += 1
            self._unreported += 1
            return refusal
        self._open[connection] = peer
        self._by_peer[peer] += 1
        return None

    def count(self, connection: object, peer: str) -> None:
        """Count ``connection`` whatever the limits (one already admitted that changed hands:
        counting it again is a no-op)."""
        if connection not in self._open:
            self._open[connection] = peer
            self._by_peer[peer] += 1

    def explain(self, refusal: Refusal, peer: str) -> str:
        """Why a connection was refused, in words (``peer``: how to name its address)."""
        if refusal == "total":
            return f"too many connections (the limit is {self.total})"
        return f"too many connections from {peer} (the limit is {self.per_peer} per client address)"

    def release(self, connection: object) -> None:
        """The connection closed (a connection never admitted is ignored)."""
        peer = self._open.pop(connection, None)
        if peer is None:
            return
        left = self._by_peer[peer] - 1
        if left > 0:
            self._by_peer[peer] = left
        else:
            del self._by_peer[peer]

    def report(self) -> int:
        """Refusals not reported yet, when a report is due (the first refusal at once, then
        at most one report every :data:`REPORT_EVERY` seconds); else 0. For one log line per
        burst of refusals instead of one per connection."""
        now = time.monotonic()
        if not self._unreported or now - self._reported < REPORT_EVERY:
            return 0
        count, self._unreported, self._reported = self._unreported, 0, now
        return count


__all__ = ["REPORT_EVERY", "Admission", "Refusal"]
