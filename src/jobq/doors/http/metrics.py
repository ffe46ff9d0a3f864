"""``GET /metrics``: the hub's figures in the Prometheus text format.

A custom collector reads the hub's stats taken at scrape time (the store's counts need an
await, collectors are synchronous); each scrape has its own registry, so there is no process
global. Every figure is the hub's (``Hub.stats``) or the door's own (its streams and refusals).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from jobq.core.auth import LOCAL_CALLER, Caller
from jobq.core.views import ClusterStats
from jobq.doors.http.state import DoorState, caller_of, door_of
from jobq.hub.metrics import Histogram

_COUNTERS = {
    "submitted": "Jobs accepted by submit",
    "completed": "Attempts that completed their job",
    "failed": "Jobs that ended failed (attempts exhausted or not retryable)",
    "retried": "Failed attempts that will be retried",
    "cancelled": "Jobs cancelled",
    "requeued": "Running jobs given back to the queue (worker gone, drained or lease lost)",
    "lost": "Attempts lost with their worker (gone, or its lease expired): the max_losses budget",
    "quarantined": "Jobs that ended quarantined (their worker lost max_losses times)",
    "claimed": "Attempts handed to workers",
    "lease_lost": "Results refused because the attempt had lost its lease",
}


class HubCollector(Collector):
    """The figures of one scrape: the hub's stats taken for it, and the door's own."""

    def __init__(self, door: DoorState, stats: ClusterStats) -> None:
        self.door = door
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        hub = self.door.hub
        stats = self.stats
        jobs = GaugeMetricFamily(
            "jobq_jobs", "Jobs the store holds, by state and service", labels=["state", "service"]
        )
        for service, states in sorted(stats.jobs.by_service.items()):
            for state, count in sorted(states.items()):
                jobs.add_metric([state, service], count)
        yield jobs
        for name, doc in _COUNTERS.items():
            counter = CounterMetricFamily(f"jobq_jobs_{name}", doc)
            counter.add_metric([], stats.counters.get(name, 0))
            yield counter
        yield _histograms(
            "jobq_queue_wait_seconds", "Seconds from due to started", "service", hub.metrics.queue_wait
        )
        yield _histograms(
            "jobq_run_seconds", "Seconds from started to completed", "service", hub.metrics.run_time
        )
        yield _histograms(
            "jobq_store_latency_seconds", "Seconds a store call took", "operation", hub.metrics.store_latency
        )
        workers = GaugeMetricFamily(
            "jobq_workers_connected", "Workers connected to this hub, by door", labels=["door"]
        )
        slots = GaugeMetricFamily("jobq_worker_slots", "Job slots of connected workers", labels=["door"])
        free = GaugeMetricFamily("jobq_worker_slots_free", "Job slots not running a job", labels=["door"])
        for door, load in sorted(stats.by_door.items()):
            workers.add_metric([door], load.workers)
            slots.add_metric([door], load.slots)
            free.add_metric([door], load.free)
        yield workers
        yield slots
        yield free
        streams = self.door.streams
        conns = GaugeMetricFamily("jobq_http_websockets", "Open WebSocket streams", labels=["kind"])
        for kind, count in sorted(streams.connections.items()):
            conns.add_metric([kind], count)
        yield conns
        yield _counter(
            "jobq_http_monitor_resyncs", "Streams that fell behind and were resynced", streams.resyncs
        )
        yield _counter(
            "jobq_http_events_dropped", "Events dropped for streams that fell behind", streams.dropped
        )
        yield _counter("jobq_http_rejected_requests", "HTTP requests answered with a 4xx", self.door.rejected)
        limits = self.door.limits
        open_now = GaugeMetricFamily("jobq_http_connections", "Open HTTP connections and WebSocket streams")
        open_now.add_metric([], limits.open)
        yield open_now
        yield _counter(
            "jobq_http_connections_refused",
            "Connections refused: too many from one client address, or in all",
            limits.refused,
        )
        yield _counter(
            "jobq_http_timeouts", "Requests and WebSocket messages cut for arriving slowly", limits.timed_out
        )
        yield _counter(
            "jobq_http_busy_refusals",
            "Bodies and WebSocket messages refused: the hub's budget of partly received bytes was spent",
            limits.busy,
        )
        inflight = GaugeMetricFamily(
            "jobq_inflight_bytes", "Bytes of partly received messages the hub holds, every door together"
        )
        inflight.add_metric([], limits.budget.used)
        yield inflight
        uptime = GaugeMetricFamily("jobq_hub_uptime_seconds", "Seconds since the hub started")
        uptime.add_metric([], stats.uptime)
        yield uptime
        draining = GaugeMetricFamily("jobq_hub_draining", "1 while the hub shuts down")
        draining.add_metric([], 1 if stats.draining else 0)
        yield draining


def _counter(name: str, doc: str, value: int) -> CounterMetricFamily:
    counter = CounterMetricFamily(name, doc)
    counter.add_metric([], value)
    return counter


def _histograms(name: str, doc: str, label: str, table: dict[str, Histogram]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=[label])
    for key, hist in sorted(table.items()):
        buckets = [
            ("+Inf" if bound == float("inf") else repr(float(bound)), count)
            for bound, count in hist.cumulative()
        ]
        family.add_metric([key], buckets, hist.total)
    return family


async def render(door: DoorState, caller: Caller = LOCAL_CALLER) -> bytes:
    """The door's figures in the Prometheus text format, as ``caller`` may see them."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(door, await door.hub.stats(caller=caller)))
    return generate_latest(registry)


@get("/metrics", summary="Prometheus metrics", tags=["cluster"], media_type=CONTENT_TYPE_LATEST)
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    return Response(await render(door_of(request), caller_of(request)), media_type=CONTENT_TYPE_LATEST)
