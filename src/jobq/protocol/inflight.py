"""One memory budget for everything partly received, across every door.

A message being read (a ZMTP frame whose header announced its size, an HTTP body, a WebSocket
message, a long line) holds memory before the hub can judge it. Each door limits one message;
this budget limits all of them together (``HubConfig.max_inflight``, 256 MiB by default), so
many peers that each start a large message cannot exhaust the hub. A door reserves the
announced (or growing) size before it buffers, and releases it when the message is complete,
refused or its connection closes. A reservation that does not fit is refused: the door answers
with a clear "too large / busy" error instead.
"""

from __future__ import annotations


class InflightBudget:
    """A counter of reserved bytes with a ceiling. Not thread-safe: the hub is one loop."""

    __slots__ = ("limit", "refused", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        #: Reservations refused since start (for metrics).
        self.refused = 0

    def reserve(self, size: int) -> bool:
        """Take ``size`` bytes from the budget; False (and nothing taken) when it does not fit."""
        if size < 0:
            raise ValueError("size must not be negative")
        if self.used + size > self.limit:
            self.refused += 1
            return False
        self.used += size
        return True

    def release(self, size: int) -> None:
        """Give back bytes taken by :meth:`reserve` (never below zero)."""
        self.used = max(0, self.used - size)

    @property
    def free(self) -> int:
        return max(0, self.limit - self.used)
