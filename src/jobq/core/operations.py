"""An operator's actions on the queue as a whole: paused services, and cancelling or retrying a
selection of jobs at once. The rules and result types, pure; the hub applies them
(``hub/queue_control.py``).

- **Pause** a service: its jobs are still taken (submits succeed) but none is handed out until
  it is resumed; attempts already running finish. The hub takes the paused services out of
  every worker's profile as the store sees it (``WorkerInfo.paused``, ``serving()``), the way an
  unhealthy backend is, so no store's claim path knows about pausing.
- **Bulk** cancel or retry: the jobs a listing's filter selects (newest first, at most
  ``limit``), each acted on as a single cancel or retry would be, with its own access check;
  those the action does not apply to are skipped with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from typing import Literal

import msgspec

from jobq.core.errors import InvalidRequest
from jobq.core.model import Job, JobFilter, WorkerInfo
from jobq.core.states import CANCELLED, FAILED, QUARANTINED, TERMINAL
from jobq.core.views import ExplainInfo, ServiceInfo

PauseAction = Literal["pause", "resume"]
PAUSE_ACTIONS: tuple[PauseAction, ...] = ("pause", "resume")
BulkAction = Literal["cancel", "retry"]
BULK_ACTIONS: tuple[BulkAction, ...] = ("cancel", "retry")

#: Jobs one bulk action selects unless told otherwise, and at most.
DEFAULT_BULK_LIMIT = 1000
MAX_BULK_LIMIT = 10_000
#: Services that may be paused at once.
MAX_PAUSED = 1000
#: Longest service name (bytes), as for a job's service (``core/validate.py``).
MAX_SERVICE = 255
#: States a job may be retried from (as ``retry`` of one job).
RETRYABLE = frozenset({FAILED, CANCELLED, QUARANTINED})

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class ServicePause(msgspec.Struct, kw_only=True):
    """What ``pause`` and ``resume`` of a service answer."""

    service: str
    #: Whether the service is paused now.
    paused: bool
    #: Whether this call changed it (False: it already was).
    changed: bool


class BulkSkip(msgspec.Struct, kw_only=True):
    """A selected job the bulk action left as it was, and why."""

    id: int
    reason: str


class BulkResult(msgspec.Struct, kw_only=True):
    """What a bulk action did: ``matched`` jobs selected, ``done`` acted on, the rest skipped."""

    action: str
    matched: int
    done: int
    skipped: list[BulkSkip] = msgspec.field(default_factory=list)


def check_service(name: str) -> str:
    """``name`` if it may name a service, else InvalidRequest."""
    if not name or len(name.encode()) > MAX_SERVICE or _CONTROL.search(name):
        raise InvalidRequest(f"a service name is 1 to {MAX_SERVICE} bytes without control characters")
    return name


def paused_of(services: Iterable[str], paused: Collection[str]) -> list[str]:
    """Which of a worker's services are paused (its ``WorkerInfo.paused``), in its order."""
    if not paused:
        return []
    return [name for name in services if name in paused]


def mark_paused(services: Sequence[ServiceInfo], paused: Collection[str]) -> list[ServiceInfo]:
    """The ``services`` listing with each paused service marked, and the paused services that
    neither a worker serves nor a job waits for listed too (so an operator sees every pause)."""
    out = list(services)
    if not paused:
        return out
    listed = {service.name for service in out}
    for service in out:
        service.paused = service.name in paused
    for name in paused:
        if name not in listed:
            out.append(ServiceInfo(name=name, workers=0, slots=0, queued=0, running=0, paused=True))
    return sorted(out, key=lambda s: s.name)


def paused_summary(service: str) -> str:
    return f"service {service} is paused (`jobq services resume {service}` hands its jobs out again)"


def with_paused(info: ExplainInfo, service: str, workers: Sequence[WorkerInfo]) -> ExplainInfo:
    """``explain`` of a queued job whose service is paused: that is why it waits, whatever the
    workers; each worker that serves the service says so."""
    info.summary = paused_summary(service)
    info.blocked = f"service {service} is paused"
    info.eligible = []
    info.estimated_start = None
    for worker in workers:
        if service in worker.services:
            info.ineligible[worker.id] = f"{service} is paused"
    return info


def check_bulk(action: str, query: JobFilter, *, blocked: bool) -> None:
    """Refuse a bulk action that is unknown, unbounded or selects by nothing at all."""
    if action not in BULK_ACTIONS:
        raise InvalidRequest(f"unknown bulk action {action[:40]!r}: use cancel or retry")
    if not 1 <= query.limit <= MAX_BULK_LIMIT:
        raise InvalidRequest(f"limit must be 1..{MAX_BULK_LIMIT} (default {DEFAULT_BULK_LIMIT})")
    selective = (
        query.states
        or query.service is not None
        or query.customer_id is not None
        or query.worker is not None
        or query.ids
        or query.before_id is not None
        or blocked
    )
    if not selective:
        raise InvalidRequest(
            "a bulk action needs a filter (status, service, customer_id, worker, blocked or ids):"
            " it does not act on every job by default"
        )


def skip_reason(action: str, job: Job) -> str | None:
    """Why ``action`` does not apply to ``job`` (None: it does)."""
    if action == "cancel":
        return f"already ended {job.state.value}" if job.state in TERMINAL else None
    if job.state not in RETRYABLE:
        return f"is {job.state.value}: only failed, quarantined or cancelled jobs can be retried"
    return None


__all__ = [
    "BULK_ACTIONS",
    "DEFAULT_BULK_LIMIT",
    "MAX_BULK_LIMIT",
    "MAX_PAUSED",
    "PAUSE_ACTIONS",
    "RETRYABLE",
    "BulkAction",
    "BulkResult",
    "BulkSkip",
    "PauseAction",
    "ServicePause",
    "check_bulk",
    "check_service",
    "mark_paused",
    "paused_of",
    "paused_summary",
    "skip_reason",
    "with_paused",
]
