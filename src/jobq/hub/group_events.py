"""A group's own events (``docs/workflows.md``, "Group events"): what they say, and which of
them one turn of the hub tells.

Kinds: ``group_submitted`` (made), ``group_progress`` (members ended: at most one per group per
event-loop turn of a hub, however many of its members ended in that turn), ``group_finalizing``
(every member ended and its finalize job was made), ``group_ended`` (completed, failed or
cancelled: once, by the hub that the store let tell the group's end, ``Store.finished_groups``).
A group event is a :class:`~jobq.core.model.JobEvent` whose ``id`` and ``group`` are the group's
id: group ids and job ids share one sequence, so no job's watcher mistakes it for its job's.
"""

from __future__ import annotations

from collections.abc import Iterable

from jobq.core.model import EventKind, JobEvent
from jobq.core.states import JobState
from jobq.core.workflow import Group, GroupState

#: The state a group event carries for each group state (a job state: ``running`` while it
#: finalizes, the kind says so).
_STATES = {
    GroupState.RUNNING: JobState.RUNNING,
    GroupState.FINALIZING: JobState.RUNNING,
    GroupState.COMPLETED: JobState.COMPLETED,
    GroupState.FAILED: JobState.FAILED,
    GroupState.CANCELLED: JobState.CANCELLED,
}


def group_event(group: Group, kind: EventKind, now: float) -> JobEvent:
    """The event ``kind`` of ``group`` as it is now."""
    ended = sum(group.ended.values())
    return JobEvent(
        id=group.id, kind=kind, state=_STATES[group.state], at=now, service=group.service,
        progress=round(100.0 * ended / group.total, 2) if group.total else 100.0,
        message=f"{ended} of {group.total} members ended", error=group.reason,
        customer_id=group.customer_id, owner=group.owner, group=group.id,
        counts=dict(group.ended), total=group.total,
    )  # fmt: skip


def is_group_event(event: JobEvent) -> bool:
    return event.group is not None and event.group == event.id


class GroupNews:
    """What this hub last told of each group it follows, to tell each change once: progress
    when more members ended, finalizing when it starts, the end when the store says so.
    Bounded by the open groups: a group is forgotten once it has ended, whether this hub read
    it then (``events``), learnt it from the store (``forget``: every group whose end the store
    let this hub tell) or heard it from another hub (its ``group_ended`` on the bus)."""

    def __init__(self) -> None:
        #: Group id → (members ended, state) as last told; dropped once the group has ended.
        self._told: dict[int, tuple[int, GroupState]] = {}

    def __len__(self) -> int:
        """Groups followed now (each one open)."""
        return len(self._told)

    def forget(self, group_ids: Iterable[int]) -> None:
        """These groups have ended: nothing more is told of them (until one runs again)."""
        for group_id in group_ids:
            self._told.pop(group_id, None)

    def events(self, group: Group, ended_now: bool, now: float) -> list[JobEvent]:
        """This turn's events of ``group`` (read after its members' ends of the turn);
        ``ended_now``: this hub tells its end."""
        done = sum(group.ended.values())
        told_done, told_state = self._told.get(group.id, (-1, GroupState.RUNNING))
        out = []
        if done != told_done and (ended_now or not group.state.ended):
            out.append(group_event(group, "group_progress", now))
        if group.state is GroupState.FINALIZING and told_state is not GroupState.FINALIZING:
            out.append(group_event(group, "group_finalizing", now))
        if ended_now:
            out.append(group_event(group, "group_ended", now))
        if group.state.ended:
            self._told.pop(group.id, None)
        else:
            self._told[group.id] = (done, group.state)
        return out


__all__ = ["GroupNews", "group_event", "is_group_event"]
