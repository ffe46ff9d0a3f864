"""The figures a monitor sees: ``system_stats`` every second and the ``full_state_snapshot``,
each as one caller may see them (every number comes from the hub, asked with that caller: a
client's job counts are its own, a monitor never sees a payload or a result).

One :class:`Figures` per group of monitors sharing a principal (``streams.MonitorGroup``): the
rates and latency quantiles are differences since that group's last tick.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from jobq.core.auth import Caller
from jobq.core.model import JobFilter
from jobq.core.states import QUEUED
from jobq.core.views import WorkerStatus
from jobq.doors.http.views import job_view, worker_view
from jobq.hub.hub import Hub
from jobq.hub.metrics import Histogram

#: The queued-jobs breakdown by service and priority is refreshed every this many stats ticks,
#: from at most QUEUE_SAMPLE queued jobs (``queues_sampled`` says when the sample was full).
QUEUE_EVERY = 5
QUEUE_SAMPLE = 5000
#: Up to this many queued jobs, the breakdown is refreshed at once when a service's count changes.
QUEUE_FRESH = 1000


def now_ms() -> int:
    return int(time.time() * 1000)


class Figures:
    """What one caller's monitors see, with the state the per-second differences need."""

    def __init__(self, hub: Hub, caller: Caller) -> None:
        self.hub = hub
        self.caller = caller
        self._last_at = 0.0
        self._last_counters: dict[str, int] = {}
        self._last_hist: dict[str, dict[str, list[int]]] = {}
        self._queues: list[dict[str, Any]] = []
        self._queues_sampled = False
        self._queued: dict[str, int] = {}
        self._ticks = 0

    async def system_stats(self, statuses: Sequence[WorkerStatus], monitors: int) -> dict[str, Any]:
        """The hub's stats, with rates and latency quantiles since the last tick, the queues by
        priority and each worker's last contact."""
        hub = self.hub
        now = hub.clock()
        stats = await hub.stats(caller=self.caller)
        counters = stats.counters
        elapsed = now - self._last_at if self._last_at else 0.0
        rates = {
            name: round((counters.get(name, 0) - self._last_counters.get(name, 0)) / elapsed, 3)
            if elapsed > 0
            else 0.0
            for name in ("submitted", "completed", "failed", "retried", "cancelled")
        }
        self._last_at, self._last_counters = now, counters
        queued = {service: counts.get("queued", 0) for service, counts in stats.jobs.by_service.items()}
        # Every QUEUE_EVERY ticks; and at once when a short queue changed, so the breakdown by
        # priority never lags the per-service counts shown beside it.
        changed = queued != self._queued and sum(queued.values()) <= QUEUE_FRESH
        if self._ticks % QUEUE_EVERY == 0 or changed:
            self._queued = queued
            await self._refresh_queues()
        self._ticks += 1
        seen = {status.info.id: status.last_seen for status in statuses if status.local}
        return {
            "type": "system_stats",
            "timestamp": int(now * 1000),
            "at": now,
            "hub": stats.hub,
            "uptime": stats.uptime,
            "jobs": {"by_state": stats.jobs.by_state, "by_service": stats.jobs.by_service},
            "counters": counters,
            "rates": rates,
            "latency": {
                "queue_wait": self._quantiles("queue_wait", hub.metrics.queue_wait),
                "run_time": self._quantiles("run_time", hub.metrics.run_time),
            },
            "workers": stats.workers,
            "slots": stats.slots,
            "slots_free": stats.slots_free,
            "queues": self._queues,
            "queues_sampled": self._queues_sampled,
            "worker_seen": {worker_id: seen[worker_id] for worker_id in hub.connected() if worker_id in seen},
            "monitors": monitors,
        }

    async def _refresh_queues(self) -> None:
        jobs = await self.hub.list_jobs(JobFilter(states=[QUEUED], limit=QUEUE_SAMPLE), caller=self.caller)
        counts: dict[tuple[str, int], int] = {}
        for job in jobs:
            key = (job.service, job.priority)
            counts[key] = counts.get(key, 0) + 1
        self._queues = [
            {"service": s, "priority": p, "queued": n}
            for (s, p), n in sorted(counts.items(), key=lambda kv: (kv[0][0], -kv[0][1]))
        ]
        self._queues_sampled = len(jobs) >= QUEUE_SAMPLE

    def _quantiles(self, name: str, table: dict[str, Histogram]) -> dict[str, float | int | None]:
        """p50 and p95 of what was observed since the last tick (all services together)."""
        before = self._last_hist.setdefault(name, {})
        buckets: tuple[float, ...] = ()
        delta: list[int] = []
        for service, hist in table.items():
            buckets = hist.buckets
            old = before.get(service, [0] * len(hist.counts))
            if not delta:
                delta = [0] * len(hist.counts)
            for i, (new, was) in enumerate(zip(hist.counts, old, strict=False)):
                delta[i] += new - was
            before[service] = list(hist.counts)
        total = sum(delta)
        return {"count": total, "p50": _quantile(buckets, delta, 0.5), "p95": _quantile(buckets, delta, 0.95)}

    async def snapshot(self, jobs_limit: int, monitors: int) -> dict[str, Any]:
        hub = self.hub
        caller = self.caller
        jobs = await hub.list_jobs(JobFilter(limit=jobs_limit), caller=caller)
        statuses = await hub.worker_statuses(caller=caller)
        self._ticks = 0  # refresh the queue breakdown now
        stats = await self.system_stats(statuses, monitors)
        stats.pop("type")
        return {
            "type": "full_state_snapshot",
            "timestamp": now_ms(),
            "hub": hub.config.name,
            "heartbeat": hub.config.heartbeat,
            "workers": [worker_view(status) for status in statuses],
            "services": await hub.services(caller=caller),
            "jobs": [job_view(job) for job in jobs],
            "stats": stats,
        }


def worker_changes(
    before: dict[str, tuple[Any, ...]], statuses: Sequence[WorkerStatus]
) -> tuple[list[dict[str, Any]], dict[str, tuple[Any, ...]]]:
    """Messages for the workers that came, went or changed since ``before``; and the new state."""
    views = {status.info.id: worker_view(status) for status in statuses}
    out: list[dict[str, Any]] = []
    stamp = now_ms()
    for worker_id in before.keys() - views.keys():
        gone = {"type": "worker_disconnected", "worker": worker_id, "worker_id": worker_id}
        out.append({**gone, "timestamp": stamp})
    current: dict[str, tuple[Any, ...]] = {}
    for worker_id, view in views.items():
        key: tuple[Any, ...] = (view.slots, view.running, view.health, tuple(view.services))
        key += (tuple(view.unhealthy.items()), view.drained)  # drained: hub/control.py
        current[worker_id] = key
        was = before.get(worker_id)
        if was is None:
            out.append({"type": "worker_connected", "worker": view, "timestamp": stamp})
        elif was != key:
            out.append({"type": "worker_status_changed", "worker": view, "timestamp": stamp})
    return out, current


def _quantile(buckets: Sequence[float], counts: Sequence[int], q: float) -> float | None:
    total = sum(counts)
    if total <= 0 or not buckets:
        return None
    target = q * total
    seen = 0
    lower = 0.0
    for i, n in enumerate(counts):
        upper = buckets[i] if i < len(buckets) else buckets[-1]
        if n and seen + n >= target:
            return round(lower + (upper - lower) * (target - seen) / n, 6)
        seen += n
        lower = upper
    return buckets[-1]


__all__ = ["QUEUE_EVERY", "QUEUE_SAMPLE", "Figures", "now_ms", "worker_changes"]
