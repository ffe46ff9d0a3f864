"""The hub's answers as the HTTP door shows them: jobs, events, workers and stats.

Translations only: every figure (health, free slots, uptime, ...) is the hub's own
(:mod:`jobq.core.views`), renamed to the door's JSON fields.
"""

from __future__ import annotations

from typing import Any

from jobq.core import timeline
from jobq.core.model import Job, JobEvent, Mark
from jobq.core.views import ClusterStats, WorkerNotice, WorkerStatus
from jobq.doors.http.frames import frames_to_wire
from jobq.doors.http.models import EventView, JobView, State, StatsView, WorkerActionView, WorkerView


def job_view(job: Job, *, full: bool = False) -> JobView:
    view = JobView(
        id=job.id,
        job_id=job.id,
        service=job.service,
        state=job.state.value,
        status=job.state.value,
        priority=job.priority,
        customer_id=job.customer_id,
        isolation=job.isolation,
        requires=job.requires,
        must_not=job.must_not,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        worker=job.worker,
        worker_id=job.worker,
        submitted_at=job.submitted_at,
        created_at=job.submitted_at,
        run_at=job.run_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        lease_expires=job.lease_expires,
        expires_at=job.expires_at,
        timeout=job.timeout,
        idempotency_key=job.idempotency_key,
        progress=job.progress,
        progress_message=job.progress_message,
        error=job.error,
        content_type=job.content_type,
        after=job.after,
        after_policy=job.after_policy,
        group=job.group,
    )
    if full:
        view.payload, view.payload_encoding = frames_to_wire(job.payload, job.content_type)
        if job.result is not None:
            view.result, view.result_encoding = frames_to_wire(job.result)
        view.traceback, view.attempt_errors = job.traceback, job.attempt_errors
    return view


def _event(kind: str, state: State, at: float, worker: str | None = None, **more: Any) -> EventView:
    """An event under jobq's names (``kind``, ``state``, ``worker``) and EmProps' aliases."""
    return EventView(
        kind=kind, event=kind, state=state, status=state, at=at, worker=worker, worker_id=worker, **more
    )


def event_view(event: JobEvent) -> EventView:
    return _event(
        event.kind,
        event.state.value,
        event.at,
        event.worker,
        attempt=event.attempt,
        progress=event.progress,
        message=event.message,
        error=event.error,
    )


#: Kinds of marks whose detail is an error (else it is a message: progress, why it was requeued).
_ERRORS = frozenset({timeline.RETRYING, timeline.FAILED, timeline.QUARANTINED})


def mark_view(mark: Mark) -> EventView:
    """One mark of a job's timeline (``core/timeline.py``) as an event."""
    error = mark.kind in _ERRORS
    progress = mark.kind == timeline.PROGRESS
    return _event(
        mark.kind,
        timeline.state_after(mark).value,
        mark.at,
        mark.worker,
        attempt=mark.attempt,
        progress=mark.value if progress else None,
        message=None if error else mark.detail,
        error=mark.detail if error else None,
        run_at=None if progress else mark.value,
    )


def timeline_events(job: Job) -> list[EventView]:
    return [mark_view(mark) for mark in job.timeline]


def rebuilt_events(job: Job) -> list[EventView]:
    """What can be told of a job's life from its times alone (a job stored without a timeline)."""
    out = [_event("submitted", "queued", job.submitted_at)]
    if job.started_at is not None:
        out.append(_event("started", "running", job.started_at, job.worker, attempt=job.attempts))
    if job.finished_at is not None:
        state: State = job.state.value
        out.append(_event(state, state, job.finished_at, job.worker, attempt=job.attempts, error=job.error))
    return out


def worker_view(status: WorkerStatus) -> WorkerView:
    """A registered worker with the health the hub judged."""
    info = status.info
    return WorkerView(
        id=info.id,
        worker_id=info.id,
        services=info.services,
        door=info.door,
        slots=info.slots,
        running=status.running,
        slots_free=max(0, info.slots - status.running),
        health=status.health,
        capabilities=info.capabilities,
        name=info.name,
        hub=info.hub,
        connected_at=info.connected_at,
        last_seen=status.last_seen,
        metrics=info.metrics,
        unhealthy=info.unhealthy,
        drained=info.drained,
    )


def worker_action_view(notice: WorkerNotice) -> WorkerActionView:
    return WorkerActionView(
        worker=notice.worker,
        worker_id=notice.worker,
        action=notice.kind,
        at=notice.at,
        drained=notice.drained,
        by=notice.by,
        requeued=notice.requeued,
    )


def stats_view(stats: ClusterStats) -> StatsView:
    return StatsView(
        hub=stats.hub,
        uptime=stats.uptime,
        jobs_by_state=stats.jobs.by_state,
        jobs_by_service=stats.jobs.by_service,
        counters=stats.counters,
        workers=stats.workers,
        slots=stats.slots,
        slots_free=stats.slots_free,
    )


__all__ = [
    "event_view",
    "job_view",
    "mark_view",
    "rebuilt_events",
    "stats_view",
    "timeline_events",
    "worker_action_view",
    "worker_view",
]
