"""The SQLite store's ``groups`` table: one row per group (``docs/workflows.md``).

Groups live in memory (``store/embedded_groups.py``) and are read back at open. A group changed
in a turn is written once, in that turn's commit (``SqliteStore._side``), beside the rows of the
jobs whose ends changed it and of the finalize job it created: one transaction, so a hub killed
before the commit lost them all, after it the group says ``finalize_id`` and nothing submits
the finalize job again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

import msgspec

from jobq.core.model import Job
from jobq.store.embedded_groups import GroupRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS groups (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    body BLOB NOT NULL
);
"""

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(GroupRecord).decode
_decode_job = msgspec.msgpack.Decoder(Job).decode

SAVE = "INSERT OR REPLACE INTO groups (id, state, body) VALUES (?, ?, ?)"


def create_and_load(conn: sqlite3.Connection) -> list[GroupRecord]:
    """Create the table if needed and read every group back."""
    conn.executescript(SCHEMA)
    return [_decode(body) for (body,) in conn.execute("SELECT body FROM groups ORDER BY id")]


def saved(records: Iterable[GroupRecord]) -> list[tuple[str, tuple[object, ...]]]:
    """The statements that write these groups."""
    return [(SAVE, (r.group.id, r.group.state.value, _encode(r))) for r in records]


def dropped(group_id: int) -> tuple[str, tuple[object, ...]]:
    """The statement that forgets a group (its retention ended)."""
    return ("DELETE FROM groups WHERE id = ?", (group_id,))


def load_range(conn: sqlite3.Connection, first: int, last: int) -> dict[int, Job]:
    """Jobs ``first`` to ``last`` (inclusive) as stored."""
    rows = conn.execute("SELECT body FROM jobs WHERE id BETWEEN ? AND ?", (first, last)).fetchall()
    return {job.id: job for job in (_decode_job(body) for (body,) in rows)}
