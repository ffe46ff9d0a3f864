"""``sqlite:///path``: the embedded, durable default.

Live jobs and the ready index are kept in memory (see :mod:`jobq.store.embedded`); SQLite in WAL
mode holds every job, so a restart reads the live ones back. Writes are coalesced per job and
committed once per event-loop turn (group commit): every call made in one turn waits for the same
commit, then returns.

Durability levels (``?durability=``):

- ``normal`` (default): ``synchronous=NORMAL``. The commit is in the WAL file (the OS's page
  cache) before anything is acknowledged, so a crash of the hub process loses nothing
  acknowledged. A power loss can lose the last commits. The commit runs on the event loop.
- ``full``: ``synchronous=FULL``: every commit is fsynced before acknowledging, and survives
  power loss. The commit runs on a writer thread so the hub keeps taking requests meanwhile;
  everything that arrives during one fsync shares the next one.

One hub owns a database file at a time (an exclusive lock on ``<path>.lock``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec

from jobq.core.lease import DEFAULT_LEASE_TTL
from jobq.core.model import Job, JobFilter
from jobq.core.states import TERMINAL
from jobq.errors import InvalidRequest, Unavailable
from jobq.store.embedded import EmbeddedStore

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    service TEXT NOT NULL,
    customer_id TEXT,
    worker TEXT,
    idempotency_key TEXT UNIQUE,
    expires_at REAL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, id);
CREATE INDEX IF NOT EXISTS jobs_by_service ON jobs (service, id);
CREATE INDEX IF NOT EXISTS jobs_by_customer ON jobs (customer_id, id) WHERE customer_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_by_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL;
"""

UPSERT = (
    "INSERT OR REPLACE INTO jobs (id, state, service, customer_id, worker, idempotency_key,"
    " expires_at, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)

Row = tuple[int, str, str, str | None, str | None, str | None, float | None, bytes]

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Job).decode
_LIVE = ("queued", "scheduled", "running")
_TERMINAL = tuple(sorted(TERMINAL))


def _connect(path: str, durability: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durability == 'full' else 'NORMAL'}")
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


def _write(conn: sqlite3.Connection, rows: list[Row], deletes: list[int]) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        if rows:
            conn.executemany(UPSERT, rows)
        if deletes:
            conn.executemany("DELETE FROM jobs WHERE id = ?", [(i,) for i in deletes])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class SqliteStore(EmbeddedStore):
    def __init__(self, path: str, *, durability: str = "normal", **options: float) -> None:
        if durability not in ("normal", "full"):
            raise InvalidRequest("sqlite durability must be 'normal' or 'full'")
        super().__init__(**options)
        self.path = path
        self.durability = durability
        self.url = f"sqlite:///{path}" + ("?durability=full" if durability == "full" else "")
        self._conn: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._lock_fd: int | None = None
        #: Latest version of every job changed since the last commit (None: delete it).
        self._pending: dict[int, Job | None] = {}
        self._batch: asyncio.Future[None] | None = None
        self._committing: asyncio.Future[None] | None = None

    # ------------------------------------------------------------------ life cycle

    async def open(self, now: float) -> None:
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
        if self.durability == "full":
            self._writer = _connect(self.path, self.durability)
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="jobq-sqlite-writer")
        marks = ",".join("?" * len(_LIVE))
        for (body,) in conn.execute(f"SELECT body FROM jobs WHERE state IN ({marks})", _LIVE):
            self._adopt_loaded(_decode(body), now, DEFAULT_LEASE_TTL)
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

    async def close(self) -> None:
        if self._conn is None:
            return
        with contextlib.suppress(Exception):
            await self._durable()
        if self._committing is not None:
            with contextlib.suppress(Exception):
                await self._committing
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        for conn in (self._writer, self._conn):
            if conn is not None:
                conn.close()
        self._conn = self._writer = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise Unavailable("the store is not open")
        return self._conn

    # ------------------------------------------------------------------ group commit

    def _save(self, job: Job, *, new: bool = False) -> None:
        self._pending[job.id] = job
        self._schedule()

    def _retire(self, job: Job) -> None:
        self._pending[job.id] = job
        self._schedule()

    def _schedule(self) -> None:
        if self._batch is None:
            loop = asyncio.get_running_loop()
            self._batch = loop.create_future()
            if self._committing is None:
                loop.call_soon(self._commit)

    async def _durable(self) -> None:
        if self._batch is not None:
            await asyncio.shield(self._batch)

    def _take_batch(self) -> tuple[list[Row], list[int]]:
        rows: list[Row] = []
        deletes: list[int] = []
        for job_id, job in self._pending.items():
            if job is None:
                deletes.append(job_id)
            else:
                rows.append(
                    (
                        job.id,
                        job.state.value,
                        job.service,
                        job.customer_id,
                        job.worker,
                        job.idempotency_key,
                        job.expires_at,
                        _encode(job),
                    )
                )
        self._pending = {}
        return rows, deletes

    def _commit(self) -> None:
        batch, self._batch = self._batch, None
        if batch is None:
            return
        rows, deletes = self._take_batch()
        if self._executor is None:
            try:
                _write(self.conn, rows, deletes)
            except sqlite3.Error as exc:
                batch.set_exception(Unavailable(f"the store could not commit: {exc}"))
                batch.exception()  # retrieved here; waiters get it through shield
            else:
                batch.set_result(None)
            return
        loop = asyncio.get_running_loop()
        assert self._writer is not None
        future = loop.run_in_executor(self._executor, _write, self._writer, rows, deletes)
        self._committing = asyncio.ensure_future(future)
        self._committing.add_done_callback(lambda done: self._committed(done, batch))

    def _committed(self, done: asyncio.Future[None], batch: asyncio.Future[None]) -> None:
        self._committing = None
        exc = done.exception()
        if exc is not None:
            batch.set_exception(Unavailable(f"the store could not commit: {exc}"))
            batch.exception()
        else:
            batch.set_result(None)
        if self._batch is not None:
            self._commit()

    # ------------------------------------------------------------------ finished jobs

    def _load(self, job_id: int) -> Job | None:
        if job_id in self._pending:
            return self._pending[job_id]
        row = self.conn.execute("SELECT body FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else _decode(row[0])

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
        sql = f"SELECT body FROM jobs WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?"
        args.append(query.offset + query.limit)
        found = {job.id: job for job in (_decode(b) for (b,) in self.conn.execute(sql, args))}
        for job_id, job in self._pending.items():
            if job is None:
                found.pop(job_id, None)
            elif job.state.terminal and query.matches(job):
                found[job_id] = job
        return sorted(found.values(), key=lambda j: j.id, reverse=True)

    def _purge(self, now: float) -> list[Job]:
        rows = self.conn.execute("SELECT body FROM jobs WHERE expires_at <= ? LIMIT 10000", (now,)).fetchall()
        gone = [_decode(b) for (b,) in rows]
        gone = [job for job in gone if self._pending.get(job.id, job) is not None]
        for job in gone:
            if job.id not in self._live:
                self._pending[job.id] = None
        if gone:
            self._schedule()
        return [job for job in gone if job.id not in self._live]

    def rows(self) -> Iterable[tuple[int, str]]:
        """Every stored (id, state), for tests and tools."""
        return self.conn.execute("SELECT id, state FROM jobs ORDER BY id").fetchall()
