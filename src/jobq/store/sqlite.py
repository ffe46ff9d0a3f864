"""``sqlite:///path``: the embedded, durable default.

Live jobs and the ready index are kept in memory (see :mod:`jobq.store.embedded`); SQLite in WAL
mode holds every job, so a restart reads the live ones back. Writes are coalesced per job and
committed once per event-loop turn (group commit): every call made in one turn waits for the same
commit, then returns.

Durability levels (``?durability=``):

- ``normal`` (default): ``synchronous=NORMAL``. The commit is in the WAL file (the OS's page
  cache) before anything is acknowledged, so a crash of the hub process loses nothing
  acknowledged. A power loss can lose the last commits. Commits run on the event loop.
- ``full``: ``synchronous=FULL``: every commit is fsynced before acknowledging, and survives
  power loss. The commit runs on a writer thread so the hub keeps taking requests meanwhile;
  everything that arrives during one fsync shares the next one.

One hub owns a database file at a time (an exclusive lock on ``<path>.lock``).

A claim is written lazily (with the next commit): a crash may lose it, and the job is then
handed out again. Its fencing token must not be handed out again with it: each open counts
itself in ``meta`` (``opens``, one commit) and uses the count before it as the store's epoch,
folded into every token (``core/lease.py``), so tokens strictly increase across restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from jobq.core.lease import DEFAULT_LEASE_TTL
from jobq.core.model import Job, JobFilter
from jobq.core.schedule import Schedule
from jobq.core.states import TERMINAL, JobState
from jobq.errors import InvalidRequest, Unavailable
from jobq.store import sqlite_groups, sqlite_schedules
from jobq.store.embedded_groups import EmbeddedGroups, GroupRecord
from jobq.store.embedded_query import EmbeddedLookups
from jobq.store.embedded_schedules import ScheduledEmbeddedStore
from jobq.store.embedded_timeline import EmbeddedTimeline
from jobq.store.history_sqlite import SqliteHistory
from jobq.store.paused import PausedServices, load_paused, write_paused
from jobq.store.sqlite_schedules import Statement

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    service TEXT NOT NULL,
    customer_id TEXT,
    worker TEXT,
    idempotency_key TEXT,
    expires_at REAL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, id);
CREATE INDEX IF NOT EXISTS jobs_by_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
"""
# Every index is paid for on each commit of the hot path (a page written per index touched), so
# there are only these three: listing by state, purging by expiry, idempotency keys. Listing
# finished jobs by service or customer walks the state index; live jobs are listed from memory.

INSERT = (
    "INSERT INTO jobs (id, state, service, customer_id, worker, idempotency_key, expires_at, body)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
UPDATE = "UPDATE jobs SET state = ?, worker = ?, expires_at = ?, body = ? WHERE id = ?"

NewRow = tuple[int, str, str, str | None, str | None, str | None, float | None, bytes]
ChangedRow = tuple[str, str | None, float | None, bytes, int]

#: Seconds between WAL checkpoints, run off the event loop.
CHECKPOINT_EVERY = 1.0

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Job).decode
_LIVE = ("queued", "scheduled", "running", "waiting")
_TERMINAL = tuple(sorted(TERMINAL))

# A parameter that is not an exact int, float or str goes through the sqlite3 module's adapters,
# and with none registered for its type that costs a failed attribute lookup (an AttributeError
# formatted and dropped, ~1,500 instructions): about 20 per job (None, bytes, a JobState). These
# give the same values, found at once (docs/performance.md).
_NULLS: dict[None, None] = {}
sqlite3.register_adapter(bytes, bytes)
sqlite3.register_adapter(type(None), _NULLS.get)  # None → None, in C
sqlite3.register_adapter(JobState, str)  # its text, as before


def _connect(path: str, durability: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # The hub owns the file (see the .lock): holding SQLite's lock for good spares two fcntl
    # calls per transaction, about 40% of a small commit. Other processes cannot open the
    # database while the hub runs.
    conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
    # Checkpoints are run by the writer thread (SqliteStore._checkpoint), never in a commit.
    conn.execute("PRAGMA wal_autocheckpoint=0")
    return conn


def _next_epoch(conn: sqlite3.Connection) -> int:
    """This open's epoch: how many times the database was opened before (one commit). Every
    fencing token handed out from now on is above those of earlier opens (``core/lease.py``),
    though claims reach the disk lazily."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'opens'").fetchone()
    epoch = int(row[0]) if row else 0
    conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('opens', ?)", (str(epoch + 1),))
    return epoch


def _write(
    conn: sqlite3.Connection,
    new: list[NewRow],
    changed: list[ChangedRow],
    deletes: list[int],
    side: Sequence[Statement] = (),
) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        if new:
            conn.executemany(INSERT, new)
        if changed:
            conn.executemany(UPDATE, changed)
        if deletes:
            conn.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in deletes])
        for sql, args in side:  # other tables' rows of this turn (schedules): the same commit
            conn.execute(sql, args)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


# paused services: store/paused.py; groups: store/embedded_groups.py
class SqliteStore(
    SqliteHistory, PausedServices, EmbeddedGroups, EmbeddedLookups, EmbeddedTimeline, ScheduledEmbeddedStore
):
    def __init__(self, path: str, *, durability: str = "normal", **options: float) -> None:
        if durability not in ("normal", "full"):
            raise InvalidRequest("sqlite durability must be 'normal' or 'full'")
        super().__init__(**options)
        self.path = path
        self.durability = durability
        self.url = f"sqlite:///{path}" + ("?durability=full" if durability == "full" else "")
        self._conn: sqlite3.Connection | None = None
        #: The one connection is used from the event loop and the writer thread, one at a time.
        self._db_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._lock_fd: int | None = None
        #: Latest version of every job changed since the last commit (None: delete it).
        self._pending: dict[int, Job | None] = {}
        #: Ids in ``_pending`` that have no row yet.
        self._unwritten: set[int] = set()
        #: Calls waiting for the next commit.
        self._waiters: list[asyncio.Future[None]] = []
        self._commit_scheduled = False
        self._committing: asyncio.Future[None] | None = None
        self._checkpoints: asyncio.TimerHandle | None = None
        #: Statements on other tables than ``jobs`` for the next commit (sqlite_schedules.py).
        self._side: list[Statement] = []
        #: Groups changed in this turn, written once each with its commit (sqlite_groups.py).
        self._dirty_groups: dict[int, GroupRecord] = {}

    # ------------------------------------------------------------------ life cycle

    async def open(self, now: float, lease_ttl: float = DEFAULT_LEASE_TTL) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise Unavailable(f"{self.path} is in use by another hub") from exc
        conn = self._conn = _connect(self.path, self.durability)
        conn.executescript(SCHEMA)
        conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
        self.epoch = _next_epoch(conn)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="jobq-sqlite-writer")
        marks = ",".join("?" * len(_LIVE))
        for (body,) in conn.execute(f"SELECT body FROM jobs WHERE state IN ({marks})", _LIVE):
            self._adopt_loaded(_decode(body), now, lease_ttl)
        for key, job_id in conn.execute(
            "SELECT idempotency_key, id FROM jobs WHERE idempotency_key IS NOT NULL"
        ):
            self._idempotent[key] = job_id
        for service, state, count in conn.execute(
            "SELECT service, state, count(*) FROM jobs GROUP BY service, state"
        ):
            self._counts[(service, state)] = count
        (top,) = conn.execute("SELECT coalesce(max(id), 0) FROM jobs").fetchone()
        self._next_id = max(self._next_id, top + 1)
        for record in sqlite_groups.create_and_load(conn):
            self._adopt_group(record)
        for schedule in sqlite_schedules.create_and_load(conn):
            self._adopt_schedule(schedule)
        self._paused = load_paused(conn)  # store/paused.py
        self._checkpoints = asyncio.get_running_loop().call_later(CHECKPOINT_EVERY, self._checkpoint_soon)

    async def close(self) -> None:
        if self._conn is None:
            return
        if self._pending:
            self._schedule()
        with contextlib.suppress(Exception):
            await self._durable()
        if self._committing is not None:
            with contextlib.suppress(Exception):
                await self._committing
        if self._checkpoints is not None:
            self._checkpoints.cancel()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        with self._db_lock, contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()
        self._conn = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _checkpoint_soon(self) -> None:
        """Move the WAL into the database file now and then, on the writer thread (a checkpoint
        reads and writes many pages; in a commit it would stall every caller)."""
        if self._executor is not None and self._conn is not None:
            self._executor.submit(self._checkpoint)
            self._checkpoints = asyncio.get_running_loop().call_later(CHECKPOINT_EVERY, self._checkpoint_soon)

    def _checkpoint(self) -> None:
        with self._db_lock, contextlib.suppress(sqlite3.Error):
            self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _write(
        self, new: list[NewRow], changed: list[ChangedRow], deletes: list[int], side: Sequence[Statement] = ()
    ) -> None:
        with self._db_lock:
            _write(self.conn, new, changed, deletes, side)

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        with self._db_lock:
            return self.conn.execute(sql, args).fetchall()

    def _keep_paused(self, service: str, paused: bool) -> None:  # store/paused.py
        with self._db_lock:
            write_paused(self.conn, service, paused)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise Unavailable("the store is not open")
        return self._conn

    # ------------------------------------------------------------------ group commit

    def _save(self, job: Job, *, new: bool = False, urgent: bool = True) -> None:
        self._pending[job.id] = job
        if new:
            self._unwritten.add(job.id)
        if urgent:
            self._schedule()

    def _retire(self, job: Job) -> None:
        self._pending[job.id] = job
        self._schedule()

    def _schedule_saved(self, schedule: Schedule, next_firing: float | None) -> None:
        self._side.append(sqlite_schedules.saved(schedule, next_firing))
        self._schedule()

    def _schedule_dropped(self, name: str) -> None:
        self._side.append(sqlite_schedules.dropped(name))
        self._schedule()

    def _schedule(self) -> None:
        """Commit at the end of this turn (or when the commit in flight ends)."""
        if not self._commit_scheduled:
            self._commit_scheduled = True
            if self._committing is None:
                asyncio.get_running_loop().call_soon(self._commit)

    async def _durable(self) -> None:
        if not self._commit_scheduled:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def _take_batch(self) -> tuple[list[NewRow], list[ChangedRow], list[int]]:
        new: list[NewRow] = []
        changed: list[ChangedRow] = []
        deletes: list[int] = []
        unwritten = self._unwritten
        for job_id, job in self._pending.items():
            if job is None:
                if job_id not in unwritten:
                    deletes.append(job_id)
            elif job_id in unwritten:
                new.append(
                    (
                        job_id,
                        job.state,  # a StrEnum: SQLite stores it as its text
                        job.service,
                        job.customer_id,
                        job.worker,
                        job.idempotency_key,
                        job.expires_at,
                        _encode(job),
                    )
                )
            else:
                changed.append((job.state, job.worker, job.expires_at, _encode(job), job_id))
        self._pending = {}
        self._unwritten = set()
        return new, changed, deletes

    def _commit(self) -> None:
        self._commit_scheduled = False
        waiters, self._waiters = self._waiters, []
        new, changed, deletes = self._take_batch()
        if self._dirty_groups:
            self._side.extend(sqlite_groups.saved(self._dirty_groups.values()))
            self._dirty_groups = {}
        side, self._side = self._side, []
        executor = self._executor
        assert executor is not None
        if self.durability != "full":
            # No fsync: quicker here than a hand-off to the writer thread, even for big batches
            # (the thread would fight the loop for the GIL on every row it binds).
            try:
                self._write(new, changed, deletes, side)
            except sqlite3.Error as exc:
                self._settle(waiters, exc)
            else:
                self._settle(waiters, None)
            return
        # An fsync: on the writer thread (SQLite lets go of the GIL while it waits for the
        # disk), so the hub keeps working meanwhile; whatever arrives shares the next commit.
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(executor, self._write, new, changed, deletes, side)
        self._committing = asyncio.ensure_future(future)
        self._committing.add_done_callback(lambda done: self._committed(done, waiters))

    def _committed(self, done: asyncio.Future[None], waiters: list[asyncio.Future[None]]) -> None:
        self._committing = None
        self._settle(waiters, done.exception())
        if self._commit_scheduled:
            self._commit()

    @staticmethod
    def _settle(waiters: list[asyncio.Future[None]], error: BaseException | None) -> None:
        for waiter in waiters:
            if waiter.done():
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(Unavailable(f"the store could not commit: {error}"))

    def _flush_lazy(self) -> None:
        if self._pending and not self._commit_scheduled:
            self._schedule()

    # ------------------------------------------------------------------ finished jobs

    def _save_group(self, record: GroupRecord, *, urgent: bool = True) -> None:
        self._dirty_groups[record.group.id] = record
        if urgent:
            self._schedule()

    def _drop_group(self, group_id: int) -> None:
        self._dirty_groups.pop(group_id, None)
        self._side.append(sqlite_groups.dropped(group_id))
        self._schedule()

    def _load_members(self, ids: range) -> dict[int, Job]:
        with self._db_lock:
            found = sqlite_groups.load_range(self.conn, ids.start, ids.stop - 1) if ids else {}
        for job_id in ids:
            job = self._live.get(job_id) or self._pending.get(job_id)
            if job is not None:
                found[job_id] = job
        return found

    def _load(self, job_id: int) -> Job | None:
        if job_id in self._pending:
            return self._pending[job_id]
        rows = self._read("SELECT body FROM jobs WHERE id = ?", (job_id,))
        return _decode(rows[0][0]) if rows else None

    def _query(self, query: JobFilter) -> list[Job]:
        wanted = [s.value for s in query.states if s.terminal] or list(_TERMINAL)
        where = [f"state IN ({','.join('?' * len(wanted))})"]
        args: list[object] = list(wanted)
        for column, value in (
            ("service", query.service),
            ("customer_id", query.customer_id),
            ("worker", query.worker),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if query.ids:
            where.append(f"id IN ({','.join('?' * len(query.ids))})")
            args.extend(query.ids)
        if query.customers:
            where.append(f"customer_id IN ({','.join('?' * len(query.customers))})")
            args.extend(query.customers)
        if query.before_id is not None:  # cursor paging: the state index's (state, id) order
            where.append("id < ?")
            args.append(query.before_id)
        if query.group is not None:  # its members, then its finalize job
            if (record := self._groups.get(query.group)) is None:
                return []
            where.append("id BETWEEN ? AND ?")
            args += [query.group + 1, max(query.group + record.group.total, record.group.finalize_id or 0)]
        sql = f"SELECT body FROM jobs WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ? OFFSET ?"
        want = query.offset + query.limit
        found: dict[int, Job] = {}
        # The owner is not a column (no index is paid for on the hot path): rows are read a
        # page at a time and checked until the listing is full.
        sift = query.owner is not None or query.group is not None
        page = max(want, 500) if sift else want
        skip = 0
        while True:
            rows = self._read(sql, [*args, page, skip])
            for row in (_decode(b) for (b,) in rows):
                if not sift or query.matches(row):
                    found[row.id] = row
            if not sift or len(rows) < page or len(found) >= want:
                break
            skip += page
        for job_id, job in self._pending.items():
            if job is None:
                found.pop(job_id, None)
            elif job.state.terminal and query.matches(job):
                found[job_id] = job
        return sorted(found.values(), key=lambda j: j.id, reverse=True)

    def _purge(self, now: float) -> list[Job]:
        rows = self._read("SELECT body FROM jobs WHERE expires_at <= ? LIMIT 10000", (now,))
        found = [job for job in (_decode(b) for (b,) in rows) if self._pending.get(job.id, job) is not None]
        gone: list[Job] = []
        for job in found:  # kept longer (a member of a group that has not ended long enough ago)?
            later = None if job.group is None or job.id in self._live else self._kept_until(job, now)
            if later is not None:
                job.expires_at = later
                self._pending[job.id] = job
            else:
                gone.append(job)
        for job in gone:
            if job.id not in self._live:
                self._pending[job.id] = None
        if gone:
            self._schedule()
        self._flush_lazy()  # claims and other lazy changes reach the disk within one tick
        return [job for job in gone if job.id not in self._live]
