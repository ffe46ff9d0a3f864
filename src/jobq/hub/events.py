"""The hub's event bus: who hears about which job, and waiting for a job to end.

Events are collected during one event-loop turn and handed to each subscriber once, as a list,
at the end of the turn, so a door can send one message for many events. A subscriber that
cannot keep up is the door's to bound (drop and resync): the bus never blocks on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable, Iterable
from typing import Protocol

from jobq.core.model import Frames, Job, JobEvent
from jobq.core.states import TERMINAL


class Subscriber(Hashable, Protocol):
    def push(self, events: list[JobEvent]) -> None:
        """Events for this subscriber from one turn (must not block)."""


def event_of(
    job: Job, kind: str, now: float, *, with_result: bool = False, partial: Frames | None = None
) -> JobEvent:
    return JobEvent(
        id=job.id,
        kind=kind,  # type: ignore[arg-type]
        state=job.state,
        at=now,
        service=job.service,
        worker=job.worker,
        attempt=job.attempts,
        progress=job.progress,
        message=job.progress_message,
        error=job.error,
        result=job.result if with_result and job.state in TERMINAL else None,
        customer_id=job.customer_id,
        partial=partial,
        owner=job.owner,
        group=job.group,
    )


class EventBus:
    def __init__(self) -> None:
        self._by_job: dict[int, set[Subscriber]] = {}
        #: Subscribers of a job's end only (a submit with ``watch``): no other event is built
        #: or sent for them.
        self._ends: dict[int, set[Subscriber]] = {}
        self._all: set[Subscriber] = set()
        self._waiters: dict[int, list[asyncio.Future[None]]] = {}
        self._pending: dict[Subscriber, list[JobEvent]] = {}
        self._flush_scheduled = False
        self.published = 0
        #: Subscribers of one group's events (``group_*`` kinds, ``id`` the group's), and of
        #: every group's (monitors): a job's subscribers hear none of them.
        self._groups: dict[int, set[Subscriber]] = {}
        self._group_all: set[Subscriber] = set()

    # ------------------------------------------------------------------ subscribing

    def watch(self, subscriber: Subscriber, ids: Iterable[int], *, ends_only: bool = False) -> None:
        """Events of these jobs until each ends (with ``ends_only``, just the final one)."""
        table = self._ends if ends_only else self._by_job
        for job_id in ids:
            subs = table.get(job_id)
            if subs is None:
                table[job_id] = {subscriber}
            else:
                subs.add(subscriber)

    def subscribe_all(self, subscriber: Subscriber) -> None:
        self._all.add(subscriber)

    def unsubscribe(self, subscriber: Subscriber, ids: Iterable[int] | None = None) -> None:
        """Stop events for ``ids`` (or everything) to this subscriber."""
        for table in (self._by_job, self._ends):
            for job_id in list(table) if ids is None else list(ids):
                subs = table.get(job_id)
                if subs is not None:
                    subs.discard(subscriber)
                    if not subs:
                        del table[job_id]
        for group_id in list(self._groups) if ids is None else list(ids):  # ids: jobs' or groups'
            subs = self._groups.get(group_id)
            if subs is not None:
                subs.discard(subscriber)
                if not subs:
                    del self._groups[group_id]
        if ids is None:
            self._all.discard(subscriber)
            self._group_all.discard(subscriber)
            self._pending.pop(subscriber, None)

    def wants(self, job_id: int, final: bool = True) -> bool:
        """Whether anyone listens for this job's event (``final``: the one that ends it)."""
        if self._all or job_id in self._by_job:
            return True
        return final and (job_id in self._ends or job_id in self._waiters)

    def watch_group(self, subscriber: Subscriber, group_id: int) -> None:
        """The events of this group until it ends (not its members' own events)."""
        self._groups.setdefault(group_id, set()).add(subscriber)

    def subscribe_groups(self, subscriber: Subscriber) -> None:
        """The events of every group."""
        self._group_all.add(subscriber)

    def wants_group(self, group_id: int) -> bool:
        """Whether anyone listens for this group's events (or waits for its end)."""
        return bool(self._group_all) or group_id in self._groups or group_id in self._waiters

    # ------------------------------------------------------------------ waiting

    def waiter(self, job_id: int) -> asyncio.Future[None]:
        """A future resolved when the job's next terminal event is published."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, []).append(future)
        return future

    def drop_waiter(self, job_id: int, future: asyncio.Future[None]) -> None:
        waiting = self._waiters.get(job_id)
        if waiting and future in waiting:
            waiting.remove(future)
            if not waiting:
                del self._waiters[job_id]

    # ------------------------------------------------------------------ publishing

    def publish(self, event: JobEvent) -> None:
        self.published += 1
        job_id = event.id
        subs = self._by_job.get(job_id)
        if event.state in TERMINAL:
            if subs is not None:
                del self._by_job[job_id]
            ends = self._ends.pop(job_id, None)
            if ends is not None:
                subs = ends if subs is None else subs | ends
            for future in self._waiters.pop(job_id, ()):
                if not future.done():
                    future.set_result(None)
        targets: Iterable[Subscriber] = (
            self._all if subs is None else (subs | self._all if self._all else subs)
        )
        for sub in targets:
            pending = self._pending.get(sub)
            if pending is None:
                self._pending[sub] = [event]
            else:
                pending.append(event)
        if self._pending and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def publish_group(self, event: JobEvent) -> None:
        """A group's event (``event.id`` is the group's): to its watchers and those of every
        group; its end (``group_ended``) ends its watches and wakes who waits for it."""
        self.published += 1
        group_id = event.id
        if event.kind == "group_ended":
            subs = self._groups.pop(group_id, None)
            for future in self._waiters.pop(group_id, ()):
                if not future.done():
                    future.set_result(None)
        else:
            subs = self._groups.get(group_id)
        targets = self._group_all if subs is None else subs | self._group_all
        for sub in targets:
            self._pending.setdefault(sub, []).append(event)
        if self._pending and not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, {}
        for sub, events in pending.items():
            sub.push(events)
