"""Paused services in the embedded stores (memory, SQLite): the set, and its SQLite table.

The hub keeps paused services out of every worker's profile (``core/operations.py``); the store
only keeps the set, so a pause survives a restart of the hub (SQLite) and is the same for every
hub on one Redis (``RedisStore.set_paused``).
"""

from __future__ import annotations

import sqlite3
import time

from jobq.core.errors import InvalidRequest
from jobq.core.operations import MAX_PAUSED

PAUSED_SCHEMA = "CREATE TABLE IF NOT EXISTS paused (service TEXT PRIMARY KEY, at REAL NOT NULL);"


class PausedServices:
    """``set_paused`` and ``paused_services`` for a store that keeps the set in memory; a
    durable one also writes each change (``_keep_paused``) before it is acknowledged."""

    #: Replaced, never changed in place (so the class default is shared safely).
    _paused: frozenset[str] = frozenset()

    def _keep_paused(self, service: str, paused: bool) -> None:
        """Persist one change (a no-op for the memory store)."""

    async def set_paused(self, service: str, paused: bool) -> bool:
        """Pause (or resume) a service; True when that changed anything."""
        if (service in self._paused) == paused:
            return False
        if paused and len(self._paused) >= MAX_PAUSED:
            raise InvalidRequest(f"at most {MAX_PAUSED} services may be paused at once")
        self._keep_paused(service, paused)
        self._paused = self._paused | {service} if paused else self._paused - {service}
        return True

    async def paused_services(self) -> list[str]:
        """The paused services, by name."""
        return sorted(self._paused)


def load_paused(conn: sqlite3.Connection) -> frozenset[str]:
    """Create the table if it is new, and read the paused services."""
    conn.executescript(PAUSED_SCHEMA)
    return frozenset(service for (service,) in conn.execute("SELECT service FROM paused"))


def write_paused(conn: sqlite3.Connection, service: str, paused: bool) -> None:
    """One change, committed at once (its own transaction: pausing is rare); ``at`` is when
    it was paused, for whoever reads the database."""
    if paused:
        conn.execute("INSERT OR REPLACE INTO paused (service, at) VALUES (?, ?)", (service, time.time()))
    else:
        conn.execute("DELETE FROM paused WHERE service = ?", (service,))


__all__ = ["PAUSED_SCHEMA", "PausedServices", "load_paused", "write_paused"]
