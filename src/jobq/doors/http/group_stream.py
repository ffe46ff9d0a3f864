"""A group's own events on the monitor stream (``/ws/monitor``, the dashboard's feed).

The hub hands a monitor every group's events (``Hub.watch_groups``): ``group_submitted``,
``group_progress`` (at most one per group per turn of the hub), ``group_finalizing``,
``group_ended``. Each goes out as a message of that ``type`` with ``group_id`` (and ``id``, the
same: jobq's name), never ``job_id``, so a reader of job events cannot take it for a job's.
"""

from __future__ import annotations

import msgspec

from jobq.core.model import JobEvent


class GroupMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A group event as monitors receive it: ``progress`` is the percent of members ended,
    ``counts`` the ended members per state, ``error`` why it failed or was cancelled."""

    type: str
    group_id: int
    id: int
    kind: str
    event: str
    state: str
    status: str
    service: str
    #: Milliseconds since the epoch; ``at`` has the same in seconds.
    timestamp: int
    at: float
    total: int | None = None
    progress: float | None = None
    counts: dict[str, int] | None = None
    message: str | None = None
    error: str | None = None
    customer_id: str | None = None


def group_message(event: JobEvent) -> GroupMessage:
    state = event.state.value
    return GroupMessage(
        type=event.kind, group_id=event.id, id=event.id, kind=event.kind, event=event.kind,
        state=state, status=state, service=event.service, timestamp=int(event.at * 1000),
        at=event.at, total=event.total, progress=event.progress, counts=event.counts,
        message=event.message, error=event.error, customer_id=event.customer_id,
    )  # fmt: skip


def is_group_message(event: JobEvent) -> bool:
    """Whether the event is a group's own (its ``id`` is its group's)."""
    return event.group is not None and event.group == event.id


__all__ = ["GroupMessage", "group_message", "is_group_message"]
