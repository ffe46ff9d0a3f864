"""Live streams of the HTTP door: event messages, bounded outboxes, the monitor fan-out, the
recent-events log and the figures a monitor sees every second.

The hub hands events to a subscriber (``Hub.watch``, ``watch_all``) once per event-loop turn
and never waits for it. Every WebSocket here has an :class:`Outbox` with a bound: a monitor
that cannot keep up has its backlog dropped and gets ``resync_required`` then a fresh
``full_state_snapshot``; a client gets ``resync_required`` with the jobs whose events it
missed. A slow reader costs the hub nothing but the bound.

Monitors are grouped by principal (:class:`MonitorGroup`): each group is one subscriber of the
hub's, which hears only what that principal may see (a monitor token: no results), and each
event is encoded once per group. Without ``--auth`` every monitor is in the one group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from jobq.core.auth import Caller, Principal
from jobq.core.model import Job, JobEvent
from jobq.core.states import TERMINAL
from jobq.core.views import WorkerNotice
from jobq.doors.http.figures import Figures, now_ms, worker_changes
from jobq.doors.http.frames import frames_to_wire
from jobq.doors.http.group_stream import group_message, is_group_message
from jobq.hub.hub import Hub

log = logging.getLogger("jobq.doors.http.app")

#: Seconds between ``system_stats`` messages (and worker change checks) while monitors listen.
STATS_INTERVAL = 1.0
#: Jobs whose recent events the door remembers, and events kept per job.
LOG_JOBS = 10_000
LOG_EVENTS = 50

#: The message type a monitor or client sees for each kind of job event.
MESSAGE_TYPES = {
    "submitted": "job_submitted",
    "started": "job_assigned",
    "progress": "update_job_progress",
    "completed": "complete_job",
    "failed": "job_failed",
    "cancelled": "job_status_changed",
    "retrying": "job_status_changed",
    "requeued": "job_status_changed",
}

_encode = msgspec.json.Encoder().encode


class EventMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A job event as monitors and subscribed clients receive it (``type`` from the event):
    ``id``, ``state``, ``kind``, ``worker`` (jobq's names) and ``job_id``, ``status``, ``event``,
    ``worker_id`` (the same, EmProps')."""

    type: str
    id: int
    job_id: int
    state: str
    status: str
    kind: str
    event: str
    service: str
    #: Milliseconds since the epoch (EmProps style); ``at`` has the same in seconds.
    timestamp: int
    at: float
    worker: str | None = None
    worker_id: str | None = None
    attempt: int = 0
    progress: float | None = None
    message: str | None = None
    error: str | None = None
    customer_id: str | None = None
    result: Any = None
    result_encoding: str | None = None
    partial: Any = None
    partial_encoding: str | None = None


def event_message(event: JobEvent) -> EventMessage:
    msg = EventMessage(
        type=MESSAGE_TYPES.get(event.kind, "job_status_changed"),
        id=event.id,
        job_id=event.id,
        state=event.state.value,
        status=event.state.value,
        kind=event.kind,
        event=event.kind,
        service=event.service,
        timestamp=int(event.at * 1000),
        at=event.at,
        worker=event.worker,
        worker_id=event.worker,
        attempt=event.attempt,
        progress=event.progress,
        message=event.message,
        error=event.error,
        customer_id=event.customer_id,
    )
    if event.result is not None:
        msg.result, msg.result_encoding = frames_to_wire(event.result)
    if event.partial is not None:
        msg.partial, msg.partial_encoding = frames_to_wire(event.partial)
    return msg


def encode(message: Any) -> str:
    return _encode(message).decode()


class Outbox:
    """Text frames waiting to go out on one WebSocket.

    Replies are always queued (the reader stops reading while the outbox is over its bound,
    so a client that does not read its replies is slowed by TCP, not by memory). Events are
    dropped when the outbox is full; ``dropped`` counts them until the sender says so.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.queue: deque[str] = deque()
        self.dropped = 0
        self.dropped_ids: set[int] = set()
        self.closed = False
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def put(self, text: str) -> None:
        self.queue.append(text)
        self._wake.set()
        if len(self.queue) >= self.limit:
            self._room.clear()

    def offer(self, texts: Sequence[str], ids: Iterable[int] = ()) -> bool:
        """Queue events unless that would pass the bound; False (and counted) if dropped."""
        if self.dropped or len(self.queue) + len(texts) > self.limit:
            self.dropped += len(texts)
            if len(self.dropped_ids) < 1000:
                self.dropped_ids.update(ids)
            self._wake.set()
            return False
        self.queue.extend(texts)
        self._wake.set()
        return True

    def clear(self) -> None:
        self.queue.clear()
        self._room.set()

    async def room(self) -> None:
        await self._room.wait()

    async def next(self) -> None:
        await self._wake.wait()
        self._wake.clear()

    def sent(self) -> None:
        if len(self.queue) < self.limit:
            self._room.set()

    def close(self) -> None:
        self.closed = True
        self._wake.set()
        self._room.set()


class _Recorder:
    """A bus subscriber that writes into the event log (hashable by identity)."""

    def __init__(self, log: EventLog) -> None:
        self.log = log

    def push(self, events: list[JobEvent]) -> None:
        self.log.record(events)


class EventLog:
    """Recent events of recent jobs, for ``GET /api/jobs/{id}/events`` and the dashboard.

    Jobs submitted over HTTP are watched; every job is recorded while a monitor is connected
    (the hub builds events only when someone listens, so an idle door costs it nothing).
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._jobs: OrderedDict[int, list[JobEvent]] = OrderedDict()
        self._watcher = _Recorder(self)
        self._firehose = _Recorder(self)
        self._all = False

    def submitted(self, jobs: Sequence[Job], now: float) -> None:
        """Jobs submitted through the door: record their start and follow them."""
        fresh = [job for job in jobs if job.id not in self._jobs]
        self.record([_submitted(job, job.submitted_at or now) for job in fresh])
        live = [job.id for job in jobs if job.state not in TERMINAL]
        if live:
            self.hub.watch(self._watcher, live)

    def record_all(self, on: bool) -> None:
        if on and not self._all:
            self.hub.watch_all(self._firehose)
        elif not on and self._all:
            self.hub.unwatch(self._firehose)
        self._all = on

    def record(self, events: list[JobEvent]) -> None:
        jobs = self._jobs
        for event in events:
            kept = jobs.get(event.id)
            if kept is None:
                kept = jobs[event.id] = []
                if len(jobs) > LOG_JOBS:
                    jobs.popitem(last=False)
            elif any(_same(e, event) for e in kept[-3:]):
                continue  # the same event through the watcher and the firehose
            kept.append(event)
            if len(kept) > LOG_EVENTS:
                del kept[: len(kept) - LOG_EVENTS]

    def events(self, job_id: int) -> list[JobEvent]:
        return list(self._jobs.get(job_id, ()))

    def close(self) -> None:
        self.hub.unwatch(self._watcher)
        self.record_all(False)


def _submitted(job: Job, at: float) -> JobEvent:
    """The door's own record of a submit: the hub announces one only to listeners it already
    has, and nobody could listen for a job before it had an id."""
    return JobEvent(
        id=job.id,
        kind="submitted",
        state=job.state,
        at=at,
        service=job.service,
        worker=job.worker,
        attempt=job.attempts,
        progress=job.progress,
        message=job.progress_message,
        error=job.error,
        customer_id=job.customer_id,
    )


def _same(a: JobEvent, b: JobEvent) -> bool:
    """One happening seen twice (or the door's own record of a submit, then the hub's)."""
    return a is b or (
        a.kind == b.kind and a.kind != "progress" and a.attempt == b.attempt and abs(a.at - b.at) < 1.0
    )


class Monitor:
    """One ``/ws/monitor`` connection, as the fan-out sees it."""

    def __init__(self, limit: int, batch: bool) -> None:
        self.outbox = Outbox(limit)
        self.batch = batch
        self.resyncs = 0
        self.group: MonitorGroup | None = None


class MonitorGroup:
    """The monitors of one principal: the hub's subscriber for them (scoped by the hub to what
    that principal may see), each event encoded once, and the figures as it may see them."""

    def __init__(self, streams: Streams, caller: Caller) -> None:
        self.streams = streams
        self.caller = caller
        self.monitors: set[Monitor] = set()
        self.figures = Figures(streams.hub, caller)

    def push(self, events: list[JobEvent]) -> None:
        texts = [encode(group_message(e) if is_group_message(e) else event_message(e)) for e in events]
        batch: list[str] = []
        for monitor in list(self.monitors):
            if monitor.batch:
                if not batch:
                    batch = ['{"type":"event_batch","events":[' + ",".join(texts) + "]}"]
                self.streams.offer(monitor, batch)
            else:
                self.streams.offer(monitor, texts)


class Streams:
    """What every stream of the door shares: the event log, the monitors and their figures."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.log = EventLog(hub)
        self.monitors: set[Monitor] = set()
        self.groups: dict[Principal, MonitorGroup] = {}
        self.connections: dict[str, int] = {"client": 0, "worker": 0, "monitor": 0}
        self.resyncs = 0
        self.dropped = 0
        self._ticker: asyncio.Task[None] | None = None
        self._workers: dict[str, tuple[Any, ...]] = {}
        hub.on_worker_notice(self._worker_notice)

    def _worker_notice(self, notice: WorkerNotice) -> None:
        """A worker drained (by an operator or automatically), resumed or evicted: monitors
        hear it at once (``worker_drained``, ``worker_resumed``, ``worker_evicted``)."""
        if self.monitors:
            message = {
                "type": f"worker_{notice.kind}",
                "worker": notice.worker,
                "worker_id": notice.worker,
                "drained": notice.drained,
                "by": notice.by,
                "requeued": notice.requeued,
                "timestamp": int(notice.at * 1000),
            }
            self.broadcast(message)

    # ------------------------------------------------------------------ monitors

    def add_monitor(self, monitor: Monitor, caller: Caller) -> None:
        """Start sending this monitor events and figures; Forbidden (from the hub) when the
        caller may not watch events."""
        group = self.groups.get(caller.principal)
        if group is None:
            group = MonitorGroup(self, caller)
            self.hub.watch_all(group, caller=caller)
            self.hub.watch_groups(group, caller=caller)  # groups' own events: http/group_stream.py
            self.groups[caller.principal] = group
        if not self.monitors:
            self.log.record_all(True)
            self._ticker = asyncio.create_task(self._tick_forever(), name="jobq-http-stats")
        group.monitors.add(monitor)
        monitor.group = group
        self.monitors.add(monitor)

    def remove_monitor(self, monitor: Monitor) -> None:
        monitor.outbox.close()
        if monitor not in self.monitors:
            return
        self.monitors.discard(monitor)
        group = monitor.group
        if group is not None:
            group.monitors.discard(monitor)
            if not group.monitors:
                self.hub.unwatch(group)
                self.groups.pop(group.caller.principal, None)
        if not self.monitors:
            self.log.record_all(False)
            if self._ticker is not None:
                self._ticker.cancel()
                self._ticker = None

    def offer(self, monitor: Monitor, texts: Sequence[str]) -> None:
        if not monitor.outbox.offer(texts) and monitor.outbox.dropped == len(texts):
            # First overflow since the last resync: drop the backlog too, resync from scratch.
            monitor.outbox.clear()
            self.resyncs += 1
            monitor.resyncs += 1
        if monitor.outbox.dropped:
            self.dropped += len(texts)

    def broadcast(self, message: Any, monitors: Iterable[Monitor] | None = None) -> None:
        text = encode(message)
        for monitor in list(self.monitors if monitors is None else monitors):
            self.offer(monitor, [text])

    async def snapshot(self, monitor: Monitor, jobs_limit: int = 200) -> dict[str, Any]:
        """The full state as this monitor's caller may see it."""
        assert monitor.group is not None
        return await monitor.group.figures.snapshot(jobs_limit, len(self.monitors))

    async def close(self) -> None:
        for monitor in list(self.monitors):
            self.remove_monitor(monitor)
        self.log.close()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            try:
                # Every caller admitted to the monitor stream may view the workers.
                statuses = await self.hub.worker_statuses()
                changes, self._workers = worker_changes(self._workers, statuses)
                for message in changes:
                    self.broadcast(message)
                for group in list(self.groups.values()):
                    stats = await group.figures.system_stats(statuses, len(self.monitors))
                    self.broadcast(stats, group.monitors)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("monitor figures failed")


__all__ = [
    "EventLog",
    "EventMessage",
    "Monitor",
    "MonitorGroup",
    "Outbox",
    "Streams",
    "encode",
    "event_message",
    "now_ms",
]
