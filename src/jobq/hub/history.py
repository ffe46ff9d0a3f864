"""The hub's history keeper: counts what happens to jobs in memory, flushes it to the store.

Every event the hub announces passes through :meth:`HistoryKeeper.note` (``_announce``): a
dict lookup and a few additions, never a store call. Every :data:`FLUSH_EVERY` seconds (and at
a clean shutdown) the 10-second rows gathered since the last flush, and their roll-up into
1-minute rows, are added to the store's history in one call (``Store.record_history``), with
each service's queue depth sampled from the store's stats. A question (``read``) is answered
from the store plus what is not flushed yet, so this hub's own figures are never late; other
hubs on a shared store show up within their next flush.

The pure rules (buckets, bins, roll-up, windows) are ``core/history.py``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from bisect import bisect_left
from collections.abc import Callable

from jobq.core.history import (
    BIN_EDGES,
    FINE,
    LOWEST_MS,
    History,
    HistoryRow,
    bucket_start,
    cutoff,
    history_of,
    rollup,
    window,
)
from jobq.core.model import Job, StoreStats
from jobq.store.base import Store

log = logging.getLogger("jobq.hub")

#: Seconds between flushes of the history to the store.
FLUSH_EVERY = 5.0
#: Seconds a clean shutdown waits for its last flush.
LAST_FLUSH_TIMEOUT = 5.0
_LIVE = ("queued", "scheduled", "running")
#: The events the history counts (or times).
_NOTED = frozenset(("submitted", "started", "completed", "failed", "retrying"))


class HistoryKeeper:
    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock
        #: 10-second rows not flushed yet, by (bucket start, service).
        self._open: dict[tuple[int, str], HistoryRow] = {}
        #: The current bucket's rows by service (a shortcut into ``_open`` for ``note``).
        self._current: dict[str, HistoryRow] = {}
        self._current_t = 0.0
        self._current_end = 0.0
        #: Services whose last sampled depth was not 0 (so that a queue emptying is recorded).
        self._deep: set[str] = set()
        #: A read and a flush never overlap: a row is either in the store or in memory.
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ recording

    def _row(self, service: str, now: float) -> HistoryRow:
        if self._current_t <= now < self._current_end:
            row = self._current.get(service)
            if row is not None:
                return row
        else:
            self._current = {}
            self._current_t = bucket_start(now, FINE)
            self._current_end = self._current_t + FINE
        key = (int(self._current_t), service)
        row = self._open.get(key)
        if row is None:
            row = self._open[key] = HistoryRow(resolution=FINE, t=key[0], service=service)
        self._current[service] = row
        return row

    def note(self, job: Job, kind: str, now: float) -> None:
        """An event the hub announces (``_announce``): counted in this bucket. The hot path of
        every job (``_row``'s current-bucket lookup and ``observe`` inlined)."""
        if kind not in _NOTED:
            return
        row = self._current.get(job.service) if self._current_t <= now < self._current_end else None
        if row is None:
            row = self._row(job.service, now)
        if kind == "submitted":
            row.submitted += 1
            return
        if kind == "started":
            bins, ms = row.wait, (now - (job.run_at or job.submitted_at)) * 1000.0
        else:
            if kind == "completed":
                row.completed += 1
            elif kind == "failed":
                row.failed += 1
            if not job.started_at:
                return
            bins, ms = row.run, (now - job.started_at) * 1000.0
        index = bisect_left(BIN_EDGES, ms) + 1 if ms > LOWEST_MS else 0  # core's observe
        bins[index] = bins.get(index, 0) + 1

    def sample(self, stats: StoreStats, now: float) -> None:
        """Each service's queue depth (jobs queued), for services with live jobs, activity
        since the last flush, or a queue that was not empty at the last sample."""
        deep: set[str] = set()
        active = {service for _, service in self._open}
        for service, states in stats.by_service.items():
            queued = states.get("queued", 0)
            live = any(states.get(state, 0) for state in _LIVE)
            if live or service in self._deep or service in active:
                self._row(service, now).depth = queued
            if queued:
                deep.add(service)
        self._deep = deep

    # ------------------------------------------------------------------ flushing

    def start(self) -> None:
        self._stop.clear()
        self._task = asyncio.create_task(self._run(), name="jobq-hub-history")

    async def stop(self) -> None:
        """Flush what is left (the last time) and stop."""
        self._stop.set()
        task, self._task = self._task, None
        if task is None:
            return
        try:
            await asyncio.wait_for(task, LAST_FLUSH_TIMEOUT)
        except TimeoutError:
            log.warning("the last history flush did not end in %gs", LAST_FLUSH_TIMEOUT)
        except Exception:
            log.warning("the last history flush failed", exc_info=True)

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), FLUSH_EVERY)
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("could not write the history: %s", exc)

    async def flush(self) -> None:
        """Sample the queue depths and add the rows gathered since the last flush to the store.
        Rows the store did not take are kept for the next flush."""
        now = self._clock()
        try:
            self.sample(await self._store.stats(), now)
        except Exception as exc:  # the depth is a gauge: a missed sample is only a gap
            log.debug("no queue depth for the history: %s", exc)
        if not self._open:
            return
        async with self._lock:
            rows = list(self._open.values())
            self._open, self._current = {}, {}
            try:
                await self._store.record_history([*rows, *rollup(rows)], now)
            except BaseException:
                self._put_back(rows, now)
                raise

    def _put_back(self, rows: list[HistoryRow], now: float) -> None:
        """Rows a failed flush did not write, back in front of what came since (those older
        than the store keeps are dropped)."""
        oldest = cutoff(now, FINE)
        later, self._open, self._current = self._open, {}, {}
        for row in rows:
            if row.t >= oldest:
                self._open[(row.t, row.service)] = row
        for key, row in later.items():
            found = self._open.get(key)
            if found is None:
                self._open[key] = row
            else:
                found.merge(row)

    # ------------------------------------------------------------------ reading

    def pending(self) -> list[HistoryRow]:
        """The 10-second rows the store does not have yet."""
        return list(self._open.values())

    async def read(self, minutes: int, service: str | None) -> History:
        now = self._clock()
        win = window(now, minutes)
        async with self._lock:
            stored = await self._store.read_history(win.since, win.until, win.resolution, service)
            pending = self.pending()
        if win.resolution != FINE:
            pending = rollup(pending, win.resolution)
        return history_of([*stored, *pending], win, service)


__all__ = ["FLUSH_EVERY", "HistoryKeeper"]
