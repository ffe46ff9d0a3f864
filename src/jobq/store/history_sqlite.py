"""The history of ``sqlite://`` (``core/history.py``): a table of its own in the job database.

One row per (resolution, bucket start, service): the counts as columns, the latency bins as
msgpack. The hub adds rows every few seconds (``hub/history.py``), so a write is a handful of
rows: each is read, merged and written back in one transaction on the store's writer thread
(serialised with the group commits by the store's connection lock), and buckets older than the
store keeps are deleted in the same transaction. Bound: per service, 8,640 10-second rows and
10,080 1-minute rows (``core.history.MAX_BUCKETS``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec

from jobq.core.history import RESOLUTIONS, Bins, HistoryRow, cutoff
from jobq.errors import Unavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    resolution INTEGER NOT NULL,
    t INTEGER NOT NULL,
    service TEXT NOT NULL,
    submitted INTEGER NOT NULL,
    completed INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    depth INTEGER,
    wait BLOB NOT NULL,
    run BLOB NOT NULL,
    PRIMARY KEY (resolution, t, service)
) WITHOUT ROWID
"""
COLUMNS = "resolution, t, service, submitted, completed, failed, depth, wait, run"

_encode = msgspec.msgpack.Encoder().encode
_decode_bins = msgspec.msgpack.Decoder(dict[int, int]).decode


def _row(found: Sequence[Any]) -> HistoryRow:
    resolution, t, service, submitted, completed, failed, depth, wait, run = found
    return HistoryRow(
        resolution=resolution,
        t=t,
        service=service,
        submitted=submitted,
        completed=completed,
        failed=failed,
        depth=depth,
        wait=_decode_bins(wait),
        run=_decode_bins(run),
    )


def _bins(bins: Bins) -> bytes:
    return _encode(bins)


def write_history(conn: sqlite3.Connection, rows: Sequence[HistoryRow], now: float) -> None:
    """Merge ``rows`` into the table and delete what is no longer kept, in one transaction."""
    conn.execute(SCHEMA)
    conn.execute("BEGIN IMMEDIATE")
    try:
        for row in rows:
            found = conn.execute(
                f"SELECT {COLUMNS} FROM history WHERE resolution = ? AND t = ? AND service = ?",
                (row.resolution, row.t, row.service),
            ).fetchone()
            if found is not None:
                merged = _row(found)
                merged.merge(row)
                row = merged
            conn.execute(
                f"INSERT OR REPLACE INTO history ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    row.resolution,
                    row.t,
                    row.service,
                    row.submitted,
                    row.completed,
                    row.failed,
                    row.depth,
                    _bins(row.wait),
                    _bins(row.run),
                ),
            )
        for resolution in RESOLUTIONS:
            conn.execute(
                "DELETE FROM history WHERE resolution = ? AND t < ?", (resolution, cutoff(now, resolution))
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class SqliteHistory:
    """The Store protocol's history operations for ``sqlite://`` (a base of ``SqliteStore``)."""

    _db_lock: threading.Lock
    _executor: ThreadPoolExecutor | None

    @property
    def conn(self) -> sqlite3.Connection:
        raise NotImplementedError

    def _write_history(self, rows: Sequence[HistoryRow], now: float) -> None:
        with self._db_lock:
            write_history(self.conn, rows, now)

    async def record_history(self, rows: Sequence[HistoryRow], now: float) -> None:
        executor = self._executor
        if executor is None:
            raise Unavailable("the store is not open")
        if not rows:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._write_history, rows, now)
        except sqlite3.Error as exc:
            raise Unavailable(f"the store could not write the history: {exc}") from None

    async def read_history(
        self, since: int, until: int, resolution: int, service: str | None = None
    ) -> list[HistoryRow]:
        sql = f"SELECT {COLUMNS} FROM history WHERE resolution = ? AND t >= ? AND t < ?"
        args: list[object] = [resolution, since, until]
        if service is not None:
            sql += " AND service = ?"
            args.append(service)
        with self._db_lock:
            self.conn.execute(SCHEMA)
            found = self.conn.execute(sql + " ORDER BY t, service", args).fetchall()
        return [_row(item) for item in found]


__all__ = ["SCHEMA", "SqliteHistory", "write_history"]
