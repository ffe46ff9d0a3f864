"""The hub's history: per-service counts and latencies in time buckets, pure arithmetic.

A hub counts what happens to jobs (submitted, completed, failed), samples each service's queue
depth, and keeps each job's wait (submit or due time → start) and run time (start → end of an
attempt) as a *latency summary*: counts in fixed, log-spaced bins, so summaries of several hubs
(or of six 10-second buckets) merge by adding counts, and percentiles are read at the end.

Two resolutions are kept (``docs/operations.md``, retention):

- 10-second buckets for 24 hours (8,640 per service at most);
- 1-minute buckets for 7 days (10,080 per service at most).

A question for the last ``minutes`` is answered from 10-second buckets up to 24 hours, from
1-minute buckets beyond (up to :data:`MAX_MINUTES`, 7 days). Nothing here does I/O: the hub
accumulates :class:`HistoryRow`\\ s (``hub/history.py``) and stores write and read them.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from jobq.core.errors import InvalidRequest

#: Bucket widths in seconds.
FINE = 10
COARSE = 60
RESOLUTIONS = (FINE, COARSE)
#: How long buckets of each resolution are kept, in seconds.
KEPT = {FINE: 24 * 3600, COARSE: 7 * 24 * 3600}
#: The most a question may span.
MAX_MINUTES = KEPT[COARSE] // 60
#: Buckets kept per service and resolution at most (the bound of the store's history).
MAX_BUCKETS = {res: KEPT[res] // res for res in RESOLUTIONS}

#: Latency bins: bin 0 holds values up to :data:`LOWEST_MS`; bin ``i`` (``i >= 1``) holds
#: ``(LOWEST_MS * 2**((i-1)/8), LOWEST_MS * 2**(i/8)]``. A percentile is reported as its bin's
#: geometric middle: within 4.5% of the true value. The top bin holds everything above ~10 days.
LOWEST_MS = 0.1
BINS_PER_DOUBLING = 8
TOP_BIN = 33 * BINS_PER_DOUBLING
#: The percentiles reported.
QUANTILES = (0.5, 0.95, 0.99)

#: A latency summary: bin → observations.
Bins = dict[int, int]


def _by_formula(ms: float) -> int:
    """A latency's bin (``ms > LOWEST_MS``) as the bins are defined: the rule ``BIN_EDGES`` is
    derived from."""
    return min(TOP_BIN, max(1, math.ceil(math.log2(ms / LOWEST_MS) * BINS_PER_DOUBLING)))


def _edge(index: int) -> float:
    """The largest float whose bin (``_by_formula``) is ``index`` or lower: bin ``index``'s
    upper edge, exactly as the formula rounds it."""
    edge = LOWEST_MS * 2 ** (index / BINS_PER_DOUBLING)
    while _by_formula(edge) > index:
        edge = math.nextafter(edge, 0.0)
    while _by_formula(math.nextafter(edge, math.inf)) <= index:
        edge = math.nextafter(edge, math.inf)
    return edge


#: The upper edges of bins 1 .. ``TOP_BIN - 1`` (milliseconds): a latency's bin is one more than
#: the number of edges below it (a bisection in C instead of a log2 and a ceil per sample; the
#: same bins as the formula, float for float).
BIN_EDGES = tuple(_edge(index) for index in range(1, TOP_BIN))


def bucket_start(t: float, resolution: int) -> int:
    """The start (unix seconds) of the bucket of ``resolution`` seconds that holds ``t``."""
    return int(t // resolution) * resolution


def bin_of(ms: float) -> int:
    """The bin of a latency in milliseconds (negative or NaN counts as 0)."""
    return bisect_left(BIN_EDGES, ms) + 1 if ms > LOWEST_MS else 0


def bin_value(index: int) -> float:
    """The value a bin stands for, in milliseconds: its geometric middle (bin 0: 0)."""
    if index <= 0:
        return 0.0
    return LOWEST_MS * 2 ** ((index - 0.5) / BINS_PER_DOUBLING)


def observe(bins: Bins, seconds: float) -> None:
    """Count one latency of ``seconds`` in ``bins`` (``bin_of`` inlined: the hub's hot path)."""
    ms = seconds * 1000.0
    index = bisect_left(BIN_EDGES, ms) + 1 if ms > LOWEST_MS else 0
    bins[index] = bins.get(index, 0) + 1


def add_bins(into: Bins, other: Bins) -> None:
    for index, count in other.items():
        into[index] = into.get(index, 0) + count


class Percentiles(msgspec.Struct, kw_only=True):
    """Latency percentiles in milliseconds."""

    p50: float
    p95: float
    p99: float


def percentiles(bins: Bins) -> Percentiles | None:
    """p50, p95, p99 of a summary; None when it is empty."""
    total = sum(count for count in bins.values() if count > 0)
    if total <= 0:
        return None
    ordered = sorted((index, count) for index, count in bins.items() if count > 0)
    found: list[float] = []
    for q in QUANTILES:
        rank = max(1, math.ceil(q * total))
        running = 0
        for index, count in ordered:
            running += count
            if running >= rank:
                found.append(round(bin_value(index), 3))
                break
    return Percentiles(p50=found[0], p95=found[1], p99=found[2])


class HistoryRow(msgspec.Struct, kw_only=True):
    """One service in one bucket: what a hub adds to its store, and what a store reads back.

    Counts and bins add up (across flushes, hubs and the six 10-second buckets of a minute);
    ``depth`` is a gauge: the queue depth last sampled in the bucket (None: not sampled)."""

    resolution: int
    t: int
    service: str
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    depth: int | None = None
    wait: Bins = msgspec.field(default_factory=dict)
    run: Bins = msgspec.field(default_factory=dict)

    @property
    def key(self) -> tuple[int, int, str]:
        return (self.resolution, self.t, self.service)

    def merge(self, other: HistoryRow) -> None:
        """Add ``other`` (of the same bucket and service, and later) into this row."""
        self.submitted += other.submitted
        self.completed += other.completed
        self.failed += other.failed
        if other.depth is not None:
            self.depth = other.depth
        add_bins(self.wait, other.wait)
        add_bins(self.run, other.run)

    def copy(self) -> HistoryRow:
        return HistoryRow(
            resolution=self.resolution,
            t=self.t,
            service=self.service,
            submitted=self.submitted,
            completed=self.completed,
            failed=self.failed,
            depth=self.depth,
            wait=dict(self.wait),
            run=dict(self.run),
        )


def rollup(rows: Iterable[HistoryRow], resolution: int = COARSE) -> list[HistoryRow]:
    """Finer rows merged into rows of ``resolution`` (oldest first: the last depth wins)."""
    out: dict[tuple[int, str], HistoryRow] = {}
    for row in sorted(rows, key=lambda r: r.t):
        key = (bucket_start(row.t, resolution), row.service)
        found = out.get(key)
        if found is None:
            found = out[key] = HistoryRow(resolution=resolution, t=key[0], service=row.service)
        found.merge(row)
    return list(out.values())


def merged(rows: Iterable[HistoryRow]) -> dict[tuple[int, int, str], HistoryRow]:
    """Rows of the same bucket and service merged into one (later rows' depth wins)."""
    out: dict[tuple[int, int, str], HistoryRow] = {}
    for row in rows:
        found = out.get(row.key)
        if found is None:
            out[row.key] = row.copy()
        else:
            found.merge(row)
    return out


@dataclass(frozen=True, slots=True)
class Window:
    """The buckets that answer a question about the last minutes: ``[since, until)``."""

    resolution: int
    since: int
    until: int

    @property
    def starts(self) -> range:
        return range(self.since, self.until, self.resolution)


def window(now: float, minutes: int) -> Window:
    """The buckets of the last ``minutes`` (1..:data:`MAX_MINUTES`), the current one last:
    10-second buckets up to 24 hours, 1-minute buckets beyond."""
    if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= MAX_MINUTES:
        raise InvalidRequest(f"minutes must be a whole number from 1 to {MAX_MINUTES}")
    resolution = FINE if minutes * 60 <= KEPT[FINE] else COARSE
    until = bucket_start(now, resolution) + resolution
    count = math.ceil(minutes * 60 / resolution)
    return Window(resolution=resolution, since=until - count * resolution, until=until)


def cutoff(now: float, resolution: int) -> int:
    """Buckets of ``resolution`` that start before this are no longer kept."""
    return bucket_start(now - KEPT[resolution], resolution)


class HistoryPoint(msgspec.Struct, kw_only=True):
    """One bucket of ``GET /api/history``: summed over services unless one was asked for."""

    #: The bucket's start, unix seconds.
    t: int
    submitted: int
    completed: int
    failed: int
    #: Jobs queued when last sampled in the bucket (summed over services); None: not sampled.
    depth: int | None
    #: Wait (queued → started) of the jobs started in the bucket; None: none started.
    wait_ms: Percentiles | None
    #: Run time (started → ended) of the attempts that ended in the bucket; None: none ended.
    run_ms: Percentiles | None


class History(msgspec.Struct, kw_only=True):
    """``GET /api/history``: one point per bucket of ``[since, until)``, oldest first."""

    #: Seconds per bucket (10 up to 24 hours, 60 beyond).
    bucket: int
    since: int
    until: int
    #: The service asked for; None: every service summed.
    service: str | None
    #: Services with history in the window.
    services: list[str]
    points: list[HistoryPoint]


def history_of(rows: Iterable[HistoryRow], win: Window, service: str | None = None) -> History:
    """The answer for ``win`` from stored rows (and the hub's unflushed ones, after them)."""
    buckets: dict[int, list[HistoryRow]] = {}
    services: set[str] = set()
    for row in merged(r for r in rows if r.resolution == win.resolution).values():
        if not win.since <= row.t < win.until:
            continue
        services.add(row.service)
        if service is None or row.service == service:
            buckets.setdefault(row.t, []).append(row)
    points = []
    for t in win.starts:
        found = buckets.get(t, [])
        wait: Bins = {}
        run: Bins = {}
        depths = [row.depth for row in found if row.depth is not None]
        for row in found:
            add_bins(wait, row.wait)
            add_bins(run, row.run)
        points.append(
            HistoryPoint(
                t=t,
                submitted=sum(row.submitted for row in found),
                completed=sum(row.completed for row in found),
                failed=sum(row.failed for row in found),
                depth=sum(depths) if depths else None,
                wait_ms=percentiles(wait),
                run_ms=percentiles(run),
            )
        )
    return History(
        bucket=win.resolution,
        since=win.since,
        until=win.until,
        service=service,
        services=sorted(services),
        points=points,
    )


__all__ = [
    "BIN_EDGES",
    "COARSE",
    "FINE",
    "KEPT",
    "LOWEST_MS",
    "MAX_BUCKETS",
    "MAX_MINUTES",
    "RESOLUTIONS",
    "Bins",
    "History",
    "HistoryPoint",
    "HistoryRow",
    "Percentiles",
    "Window",
    "add_bins",
    "bin_of",
    "bin_value",
    "bucket_start",
    "cutoff",
    "history_of",
    "merged",
    "observe",
    "percentiles",
    "rollup",
    "window",
]
