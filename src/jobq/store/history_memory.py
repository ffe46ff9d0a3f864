"""The history of ``memory://`` (``core/history.py``): rows in a dict, gone with the process."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from jobq.core.history import RESOLUTIONS, HistoryRow, cutoff


class HistoryTable:
    """Rows by (resolution, bucket start, service)."""

    #: Seconds between prunes (each walks every row).
    PRUNE_EVERY = 60.0

    def __init__(self) -> None:
        self.rows: dict[tuple[int, int, str], HistoryRow] = {}
        self._pruned_at = float("-inf")

    def add(self, rows: Iterable[HistoryRow]) -> None:
        for row in rows:
            found = self.rows.get(row.key)
            if found is None:
                self.rows[row.key] = row.copy()
            else:
                found.merge(row)

    def prune(self, now: float) -> None:
        if now - self._pruned_at < self.PRUNE_EVERY:
            return
        self._pruned_at = now
        oldest = {resolution: cutoff(now, resolution) for resolution in RESOLUTIONS}
        for key in [key for key in self.rows if key[1] < oldest.get(key[0], key[1] + 1)]:
            del self.rows[key]

    def read(self, since: int, until: int, resolution: int, service: str | None) -> list[HistoryRow]:
        return [
            row.copy()
            for (res, t, name), row in sorted(self.rows.items())
            if res == resolution and since <= t < until and (service is None or name == service)
        ]


class MemoryHistory:
    """The Store protocol's history operations for ``memory://``."""

    _history_table: HistoryTable | None = None

    @property
    def _history(self) -> HistoryTable:
        if self._history_table is None:
            self._history_table = HistoryTable()
        return self._history_table

    async def record_history(self, rows: Sequence[HistoryRow], now: float) -> None:
        self._history.add(rows)
        self._history.prune(now)

    async def read_history(
        self, since: int, until: int, resolution: int, service: str | None = None
    ) -> list[HistoryRow]:
        return self._history.read(since, until, resolution, service)


__all__ = ["HistoryTable", "MemoryHistory"]
