"""The SQLite store's ``schedules`` table: one row per cron schedule (``docs/workflows.md``).

The schedules live in memory (``store/embedded_schedules.py``) and are read back at open; each
change is a statement that rides in the commit of its turn, beside the jobs' rows
(``SqliteStore._side``), so a firing's cursor and the job it created are one transaction: a
hub killed before that commit lost both (the firing is still due after a restart), after it
neither is done again. ``next`` (the next firing, NULL when paused) is for people reading the
file; nothing queries it.
"""

from __future__ import annotations

import sqlite3

import msgspec

from jobq.core.schedule import Schedule

SCHEMA = """
CREATE TABLE IF NOT EXISTS schedules (
    name TEXT PRIMARY KEY,
    next REAL,
    body BLOB NOT NULL
);
"""

#: A statement and its arguments, run in the next commit.
Statement = tuple[str, tuple[object, ...]]

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Schedule).decode


def create_and_load(conn: sqlite3.Connection) -> list[Schedule]:
    """Create the table if needed and read every schedule back."""
    conn.executescript(SCHEMA)
    return [_decode(body) for (body,) in conn.execute("SELECT body FROM schedules ORDER BY name")]


def saved(schedule: Schedule, next_firing: float | None) -> Statement:
    return (
        "INSERT OR REPLACE INTO schedules (name, next, body) VALUES (?, ?, ?)",
        (schedule.name, next_firing, _encode(schedule)),
    )


def dropped(name: str) -> Statement:
    return ("DELETE FROM schedules WHERE name = ?", (name,))
