"""Figures the hub keeps about itself: counters and latency histograms (cheap, in memory).

Doors that expose metrics (Prometheus on the HTTP door) read them from here.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

#: Seconds; Prometheus-style upper bounds.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)


@dataclass(slots=True)
class Histogram:
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[float, int]]:
        """(upper bound, observations at or below it) per bucket, +Inf last."""
        out = []
        running = 0
        for bound, n in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out


@dataclass(slots=True)
class HubMetrics:
    queue_wait: dict[str, Histogram] = field(default_factory=dict)
    run_time: dict[str, Histogram] = field(default_factory=dict)
    store_latency: dict[str, Histogram] = field(default_factory=dict)

    @staticmethod
    def _get(table: dict[str, Histogram], key: str) -> Histogram:
        found = table.get(key)
        if found is None:
            found = table[key] = Histogram()
        return found

    def job_started(self, service: str, waited: float) -> None:
        self._get(self.queue_wait, service).observe(max(0.0, waited))

    def job_finished(self, service: str, ran: float) -> None:
        self._get(self.run_time, service).observe(max(0.0, ran))

    def store_call(self, operation: str, seconds: float) -> None:
        self._get(self.store_latency, operation).observe(seconds)
