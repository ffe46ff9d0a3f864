"""The hub's history: the pure bucket arithmetic (``core/history.py``) and the keeper that counts
events in memory and flushes them to a store (``hub/history.py``), with an injected clock."""

from __future__ import annotations

import math

import pytest

from jobq.core.auth import Caller, Principal
from jobq.core.history import (
    COARSE,
    FINE,
    KEPT,
    MAX_BUCKETS,
    MAX_MINUTES,
    HistoryRow,
    bin_of,
    bin_value,
    bucket_start,
    history_of,
    observe,
    percentiles,
    rollup,
    window,
)
from jobq.core.model import Job, JobSpec, StoreStats, new_job
from jobq.errors import Forbidden, InvalidRequest
from jobq.hub.history import HistoryKeeper
from jobq.hub.hub import Hub
from jobq.store.memory import MemoryStore

T0 = 1_000_020.0  # a multiple of 60: bucket starts are easy to read


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def job(service: str = "echo", submitted: float = T0, started: float | None = None) -> Job:
    made = new_job(JobSpec(service=service, payload=[b"x"]), 1, submitted)
    made.started_at = started
    return made


# ---------------------------------------------------------------- buckets and windows


def test_bucket_starts() -> None:
    assert bucket_start(T0 + 9.99, FINE) == T0
    assert bucket_start(T0 + 10, FINE) == T0 + 10
    assert bucket_start(T0 + 59, COARSE) == T0
    assert bucket_start(T0 - 0.5, FINE) == T0 - 10


def test_a_window_uses_10_second_buckets_up_to_a_day_then_minutes() -> None:
    five = window(T0 + 3, 5)
    assert (five.resolution, five.until, five.since) == (FINE, T0 + 10, T0 + 10 - 300)
    assert len(five.starts) == 30 and five.starts[-1] == T0  # the current bucket is the last
    day = window(T0, 24 * 60)
    assert day.resolution == FINE and len(day.starts) == MAX_BUCKETS[FINE] == 8640
    longer = window(T0 + 3, 24 * 60 + 1)
    assert longer.resolution == COARSE and len(longer.starts) == 24 * 60 + 1
    week = window(T0, MAX_MINUTES)
    assert week.resolution == COARSE and len(week.starts) == MAX_BUCKETS[COARSE] == 10080
    assert KEPT == {FINE: 86400, COARSE: 7 * 86400}


@pytest.mark.parametrize("minutes", [0, -1, MAX_MINUTES + 1, 2.5, True])
def test_a_window_refuses_what_is_not_1_to_10080_minutes(minutes: object) -> None:
    with pytest.raises(InvalidRequest, match="1 to 10080"):
        window(T0, minutes)  # type: ignore[arg-type]


# ---------------------------------------------------------------- latency summaries


def test_bins_are_log_spaced_and_a_bin_stands_within_5_percent_of_its_values() -> None:
    assert bin_of(0) == 0 and bin_of(-3) == 0 and bin_of(float("nan")) == 0 and bin_value(0) == 0
    previous = 0
    for ms in (0.2, 1, 3.3, 10, 250, 1_000, 60_000, 3_600_000):
        index = bin_of(ms)
        assert index > previous
        previous = index
        assert abs(bin_value(index) - ms) / ms < 0.045
    assert bin_of(1e15) == bin_of(1e18)  # the top bin takes everything above it


def test_percentiles_of_a_summary() -> None:
    bins: dict[int, int] = {}
    assert percentiles(bins) is None
    for ms in range(1, 101):  # 1..100 ms
        observe(bins, ms / 1000)
    found = percentiles(bins)
    assert found is not None
    for value, expected in ((found.p50, 50), (found.p95, 95), (found.p99, 99)):
        assert math.isclose(value, expected, rel_tol=0.05)


def test_summaries_merge_by_adding_counts() -> None:
    a = HistoryRow(resolution=FINE, t=int(T0), service="echo", submitted=2, depth=5)
    b = HistoryRow(resolution=FINE, t=int(T0), service="echo", completed=1, failed=1, depth=3)
    observe(a.wait, 0.010)
    observe(b.wait, 0.010)
    observe(b.run, 2.0)
    a.merge(b)
    assert (a.submitted, a.completed, a.failed, a.depth) == (2, 1, 1, 3)  # the later depth
    assert sum(a.wait.values()) == 2 and sum(a.run.values()) == 1


def test_rollup_of_10_second_rows_into_minutes() -> None:
    rows = [
        HistoryRow(resolution=FINE, t=int(T0) + 10 * i, service=s, submitted=1, depth=i)
        for i in range(8)
        for s in ("a", "b")
    ]
    minutes = {(r.t, r.service): r for r in rollup(rows)}
    base = int(T0)
    assert set(minutes) == {(base, "a"), (base, "b"), (base + 60, "a"), (base + 60, "b")}
    first, second = minutes[(base, "a")], minutes[(base + 60, "a")]
    assert (first.resolution, first.submitted, first.depth) == (COARSE, 6, 5)  # the last depth
    assert (second.submitted, second.depth) == (2, 7)


def test_history_zero_fills_sums_services_and_filters_one() -> None:
    win = window(T0 + 25, 1)  # 6 buckets: T0-30 .. T0+20
    rows = [
        HistoryRow(resolution=FINE, t=int(T0), service="a", submitted=3, completed=2, depth=4),
        HistoryRow(resolution=FINE, t=int(T0), service="b", submitted=1, failed=1, depth=1),
        HistoryRow(resolution=FINE, t=int(T0), service="a", submitted=1),  # not flushed yet
        HistoryRow(resolution=FINE, t=int(T0) - 600, service="old", submitted=9),  # out of range
        HistoryRow(resolution=COARSE, t=int(T0), service="a", submitted=9),  # other resolution
    ]
    observe(rows[0].run, 0.5)
    everything = history_of(rows, win)
    assert [p.t for p in everything.points] == list(range(int(T0) - 30, int(T0) + 30, 10))
    assert everything.services == ["a", "b"] and everything.service is None
    point = everything.points[3]
    assert (point.submitted, point.completed, point.failed, point.depth) == (5, 2, 1, 5)
    assert point.run_ms is not None and math.isclose(point.run_ms.p50, 500, rel_tol=0.05)
    assert point.wait_ms is None
    empty = everything.points[0]
    assert (empty.submitted, empty.depth, empty.wait_ms) == (0, None, None)
    only_b = history_of(rows, win, "b")
    assert only_b.services == ["a", "b"] and only_b.service == "b"
    assert (only_b.points[3].submitted, only_b.points[3].failed) == (1, 1)


# ---------------------------------------------------------------- the keeper


async def test_the_keeper_counts_events_flushes_them_and_reads_back_store_plus_memory() -> None:
    clock, store = Clock(T0 + 1), MemoryStore()
    keeper = HistoryKeeper(store, clock)
    for _ in range(3):
        keeper.note(job(), "submitted", clock.now)
    keeper.note(job("other"), "submitted", clock.now)
    keeper.note(job(submitted=T0), "started", T0 + 1.5)  # waited 1.5 s
    keeper.note(job(started=T0 + 1.5), "completed", T0 + 2)  # ran 0.5 s
    keeper.note(job(started=T0 + 1.5), "retrying", T0 + 3)  # an attempt failed, retried later
    keeper.note(job(started=T0 + 1.5), "failed", T0 + 4)
    keeper.note(job(), "progress", T0 + 4)  # not counted
    assert await store.read_history(0, 2**40, FINE) == []
    await keeper.flush()
    clock.now = T0 + 12
    keeper.note(job(), "submitted", clock.now)  # in memory only

    answer = await keeper.read(5, None)
    counts = {p.t: (p.submitted, p.completed, p.failed) for p in answer.points if p.submitted}
    assert counts == {T0: (4, 1, 1), T0 + 10: (1, 0, 0)}
    at_t0 = next(p for p in answer.points if p.t == T0)
    assert at_t0.wait_ms is not None and math.isclose(at_t0.wait_ms.p50, 1500, rel_tol=0.05)
    assert at_t0.run_ms is not None and math.isclose(at_t0.run_ms.p99, 2500, rel_tol=0.05)
    assert answer.services == ["echo", "other"]
    echo = await keeper.read(5, "echo")
    assert sum(p.submitted for p in echo.points) == 4
    # the flush also wrote the minute's roll-up
    [minute] = await store.read_history(int(T0), int(T0) + 60, COARSE, "echo")
    assert (minute.submitted, minute.completed, minute.failed) == (3, 1, 1)
    longer = await keeper.read(24 * 60 + 1, None)
    assert longer.bucket == COARSE and sum(p.submitted for p in longer.points) == 5


async def test_the_keeper_samples_queue_depth_per_service() -> None:
    clock, store = Clock(T0 + 1), MemoryStore()
    keeper = HistoryKeeper(store, clock)
    stats = StoreStats(
        by_state={},
        by_service={"busy": {"queued": 7, "running": 2}, "idle": {"completed": 40}},
    )
    keeper.sample(stats, clock.now)
    await store.record_history(list(keeper.pending()), clock.now)
    answer = await keeper.read(1, None)
    assert answer.services == ["busy"]  # a service with no live job and no activity: no row
    assert answer.points[-1].depth == 7
    keeper.sample(StoreStats(by_state={}, by_service={"busy": {"completed": 9}}), T0 + 11)
    assert [r.depth for r in keeper.pending() if r.t == T0 + 10] == [0]  # the queue emptied


async def test_a_failed_flush_keeps_its_rows_for_the_next() -> None:
    clock, store = Clock(T0 + 1), MemoryStore()
    keeper = HistoryKeeper(store, clock)
    keeper.note(job(), "submitted", clock.now)

    async def refuse(rows: object, now: float) -> None:
        raise OSError("disk full")

    store.record_history = refuse  # type: ignore[method-assign]
    with pytest.raises(OSError, match="disk full"):
        await keeper.flush()
    keeper.note(job(), "submitted", clock.now)
    del store.record_history  # the store's own again
    await keeper.flush()
    [row] = await store.read_history(int(T0), int(T0) + 10, FINE)
    assert row.submitted == 2


async def test_only_admins_and_monitors_read_the_history() -> None:
    hub = Hub(MemoryStore(), clock=Clock())
    monitor = Caller(principal=Principal(name="m", role="monitor"))
    client = Caller(principal=Principal(name="c", role="client"))
    assert (await hub.history(5, caller=monitor)).bucket == FINE
    with pytest.raises(Forbidden):
        await hub.history(5, caller=client)
    with pytest.raises(InvalidRequest):
        await hub.history(0)
    with pytest.raises(InvalidRequest):
        await hub.history(5, "x" * 256)
