"""A cron schedule as the hub shows it (every door: CLI, SDK, REST, the dashboard).

Pure, like ``core/schedule.py`` whose :class:`~jobq.core.schedule.Schedule` it summarizes, and
the rules of who may manage which schedule (``docs/workflows.md``, "Schedules": admins manage
every schedule; a client token the ones it added; a monitor reads them all).
"""

from __future__ import annotations

import msgspec

from jobq.core.auth import Principal
from jobq.core.errors import InvalidRequest
from jobq.core.model import JobSpec
from jobq.core.schedule import Schedule


class ScheduleInfo(msgspec.Struct, kw_only=True):
    name: str
    cron: str
    #: The IANA zone its cron is read in.
    timezone: str
    service: str
    paused: bool
    #: Its next firing (POSIX seconds); None while paused, or when it never fires again.
    next: float | None
    #: The latest firing considered (run, coalesced or skipped), or when counting started.
    cursor: float
    catch_up: float
    coalesce: bool
    created_at: float
    priority: int = 0
    customer_id: str | None = None
    #: The token that added it (None: added without authentication, or by the local admin).
    owner: str | None = None


def schedule_info(schedule: Schedule, following: float | None) -> ScheduleInfo:
    spec = schedule.spec
    return ScheduleInfo(
        name=schedule.name,
        cron=schedule.cron,
        timezone=schedule.tz,
        service=spec.service,
        paused=schedule.paused,
        next=None if schedule.paused else following,
        cursor=schedule.cursor,
        catch_up=schedule.catch_up,
        coalesce=schedule.coalesce,
        created_at=schedule.created_at,
        priority=spec.priority,
        customer_id=spec.customer_id,
        owner=schedule.owner,
    )


def check_schedule_spec(spec: JobSpec) -> None:
    """What a schedule's job spec may not hold (each firing makes its own job)."""
    if spec.idempotency_key is not None:
        raise InvalidRequest("a schedule's jobs are keyed by their firing: leave idempotency_key out")
    if spec.run_at is not None:
        raise InvalidRequest("a schedule's jobs cannot take run_at (a fixed time); use delay")
    if spec.after or spec.ref is not None or spec.after_policy != "completed":
        # Each firing is a job of its own, made by the hub's clock: it has no batch to name, and
        # prerequisites fixed at add time would have ended long before the later firings.
        raise InvalidRequest("a schedule's jobs cannot take after, after_policy or ref")


def may_manage(principal: Principal, schedule: Schedule) -> bool:
    """Admins manage every schedule; a client the ones its token added."""
    return principal.role == "admin" or (principal.role == "client" and schedule.owner == principal.name)


def may_read(principal: Principal, schedule: Schedule) -> bool:
    """Admins and monitors read every schedule; a client the ones its token added."""
    return principal.role == "monitor" or may_manage(principal, schedule)
