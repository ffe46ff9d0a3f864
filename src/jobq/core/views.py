"""What the hub answers about the cluster: its result types and the rules behind them.

Every door shows the same figures because they are computed here, once: a worker's health, a
job's position in its queue, the cluster's stats, the handshake a worker gets on attaching.
The hub fills these in; doors only translate them to their wire. Pure data and functions of
data (the clock passed in), like the rest of the core.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from jobq.core.model import Job, StoreStats, WorkerInfo
from jobq.core.states import QUEUED

Health = Literal["ok", "late", "silent"]


class ServiceInfo(msgspec.Struct, kw_only=True):
    """A service as ``services`` lists it: who serves it and what waits for it."""

    name: str
    workers: int
    slots: int
    queued: int
    running: int
    schema: Any = None
    #: An operator paused its queue (``jobq services pause``): it takes jobs, hands out none.
    paused: bool = False


class ExplainInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Why a job is (not) running: eligible workers, what each other worker misses, its place."""

    id: int
    state: str
    summary: str
    eligible: list[str] = msgspec.field(default_factory=list)
    ineligible: dict[str, str] = msgspec.field(default_factory=dict)
    position: int | None = None
    estimated_start: float | None = None
    blocked: str | None = None


class WorkerHello(msgspec.Struct, kw_only=True):
    """What a worker says when it attaches, whatever door it came through."""

    id: str
    services: list[str]
    slots: int = 1
    capabilities: dict[str, Any] = msgspec.field(default_factory=dict)
    name: str | None = None
    #: The door's name for the dashboard and metrics: ``zmq``, ``mdp``, ``line``, ``ws``.
    door: str = "zmq"
    schemas: dict[str, Any] = msgspec.field(default_factory=dict)
    #: Services whose backend is down, with the reason (connectors' health checks).
    unhealthy: dict[str, str] = msgspec.field(default_factory=dict)


class Welcome(msgspec.Struct, kw_only=True):
    """The hub's answer to an attach: how often to heartbeat, how long a lease lasts, and which
    of the attempts the worker still held it may finish (it must drop the others)."""

    heartbeat: float
    lease_ttl: float
    kept: list[int]
    hub: str


class WorkerStatus(msgspec.Struct, kw_only=True):
    """A registered worker with its health as this hub judges it."""

    info: WorkerInfo
    health: Health
    #: The latest sign of life: the registry's, or this hub's session's when newer.
    last_seen: float
    #: Attempts it runs now.
    running: int
    #: Whether the worker is connected to this hub (on a shared store, others are elsewhere).
    local: bool


class WorkerNotice(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A change of a worker's standing (hub/control.py): what ``drain``, ``resume`` and
    ``evict`` answer, and what listeners (the dashboard) hear, the automatic drain included."""

    kind: Literal["drained", "resumed", "evicted"]
    #: The worker's id.
    worker: str
    at: float
    #: Why it is drained now; None once it takes jobs again.
    drained: str | None = None
    #: Who asked: a principal's name, or ``hub`` for the automatic drain.
    by: str = "hub"
    #: ``evict``: the attempts it ran, given back to the queue.
    requeued: int = 0


class DoorLoad(msgspec.Struct, kw_only=True):
    """Workers connected through one door of this hub and their slots."""

    workers: int = 0
    slots: int = 0
    free: int = 0


class ClusterStats(msgspec.Struct, kw_only=True):
    """The queue's and this hub's figures, as ``stats``, ``mmi.stats``, the dashboard and
    ``/metrics`` all show them."""

    hub: str
    uptime: float
    draining: bool
    jobs: StoreStats
    #: What happened since this hub started: submitted, completed, failed, retried, ...
    counters: dict[str, int]
    #: Workers connected to this hub, with their slots, overall and per door.
    workers: int
    slots: int
    slots_free: int
    by_door: dict[str, DoorLoad]


def worker_health(age: float, heartbeat: float, silence: float) -> Health:
    """``ok`` within two heartbeats (and a little slack), ``late`` until the liveness window
    closes, ``silent`` after it."""
    if age <= 2 * heartbeat + 0.5:
        return "ok"
    return "late" if age <= silence else "silent"


def queue_positions(before: StoreStats, jobs: Sequence[tuple[Job, bool]]) -> list[int | None]:
    """Each job's place in its service's queue, counted from the stats taken just before the
    submit that created (``True``) or found (``False``) it: queued jobs of the service ahead of
    it, plus one. Jobs that are not queued (scheduled, running, ended) have no position."""
    added: dict[str, int] = {}
    seen: dict[int, int] = {}
    out: list[int | None] = []
    for job, created in jobs:
        if job.state is not QUEUED:
            out.append(None)
            continue
        queued = before.by_service.get(job.service, {}).get("queued", 0)
        if created:
            place = queued + added.get(job.service, 0) + 1
            added[job.service] = added.get(job.service, 0) + 1
        elif job.id in seen:
            place = seen[job.id]  # created earlier in this batch
        else:
            place = max(1, queued)  # an older job: somewhere among those queued before
        seen.setdefault(job.id, place)
        out.append(place)
    return out


def services_of(workers: Sequence[WorkerInfo], stats: StoreStats) -> list[ServiceInfo]:
    """Every service that a registered worker serves or that has jobs, by name."""
    found: dict[str, ServiceInfo] = {}

    def entry(name: str) -> ServiceInfo:
        info = found.get(name)
        if info is None:
            info = found[name] = ServiceInfo(name=name, workers=0, slots=0, queued=0, running=0)
        return info

    for worker in workers:
        for name in worker.services:
            service = entry(name)
            service.workers += 1
            service.slots += worker.slots
            if name in worker.schemas:
                service.schema = worker.schemas[name]
    for name, states in stats.by_service.items():
        service = entry(name)
        service.queued = states.get("queued", 0) + states.get("scheduled", 0)
        service.running = states.get("running", 0)
    return sorted(found.values(), key=lambda s: s.name)


def estimated_start(ahead: int, workers: int, completed_per_second: float, now: float) -> float | None:
    """When a queued job may start: now when nothing is ahead of it, otherwise the jobs ahead
    at the hub's average completion rate; unknown without an eligible worker or a rate."""
    if not workers:
        return None
    if ahead == 0:
        return now
    return now + ahead / completed_per_second if completed_per_second > 0 else None


def with_health(info: ExplainInfo, service: str, workers: Sequence[WorkerInfo]) -> ExplainInfo:
    """``explain`` naming an unhealthy backend as the reason a worker that serves the job's
    service does not take it (``comfyui on worker X unhealthy: connection refused``)."""
    down = {w.id: w.unhealthy[service] for w in workers if service in w.unhealthy}
    if not down:
        return info
    for worker_id, reason in down.items():
        info.ineligible[worker_id] = f"{service} on worker {worker_id} unhealthy: {reason}"
    if not info.eligible:
        first = next(iter(down))
        info.summary = f"{service} on worker {first} unhealthy: {down[first]}"
    return info


def queued_summary(blocked: str | None, eligible: int, free_slots: int, ahead: int) -> str:
    """``explain``'s first line for a queued job."""
    if blocked:
        return f"blocked: {blocked}"
    if not eligible:
        return "no eligible worker is connected"
    if free_slots and not ahead:
        return "about to start"
    return f"waiting behind {ahead} job(s) for {eligible} eligible worker(s)"


__all__ = [
    "ClusterStats",
    "DoorLoad",
    "ExplainInfo",
    "Health",
    "ServiceInfo",
    "Welcome",
    "WorkerHello",
    "WorkerNotice",
    "WorkerStatus",
    "estimated_start",
    "queue_positions",
    "queued_summary",
    "services_of",
    "with_health",
    "worker_health",
]
