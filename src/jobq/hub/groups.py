"""Groups in the hub: submit (parameter expansion here, in the hub), read, wait, watch, cancel,
the group's own events (``hub/group_events.py``), and the FINISHED notice to the workers that
ran a group's members once it has ended.

Part of :class:`~jobq.hub.hub.Hub`. The rules are the core's (``core/expand.py``,
``core/workflow.py``); the store applies them atomically (a member's end, the group's counts
and the finalize job in one step). The hub learns that a group may have ended from the ends of
its jobs (every end is announced: :meth:`_announce`), asks the store once per turn which of
those groups ended and were not told yet, and tells their workers (on Redis, every hub tells
its own: the store's bus note, :meth:`on_group_finished`) and the group's watchers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec

from jobq.core.auth import LOCAL_CALLER, Action, Caller
from jobq.core.expand import parse_expand
from jobq.core.matching import shape_of
from jobq.core.model import GroupSpec, Job, JobEvent, JobFilter, JobSpec
from jobq.core.states import QUEUED
from jobq.core.validate import validate_finalize, validate_spec
from jobq.core.workflow import (
    Group,
    GroupSubmitted,
    GroupView,
    check_group,
    member_ids,
    view_of,
)
from jobq.errors import InvalidRequest, JobqError, NotFound, Timeout, Unavailable
from jobq.hub.access import scoped, without_data
from jobq.hub.events import Subscriber
from jobq.hub.group_events import GroupNews, group_event, is_group_event
from jobq.hub.workers import WorkerSide

log = logging.getLogger("jobq.hub")

#: Members listed at most per call (``group_members``).
MAX_MEMBERS_LISTED = 10_000
#: Seconds between re-reads of a group a caller waits for, on a store several hubs share: its
#: end is an event too, but one another hub sends after the change and may die before it does.
WAIT_POLL = 1.0


@dataclass
class _Tracking:
    """Groups whose jobs ended in this turn (to ask the store about once), and what this hub
    told of each."""

    touched: set[int] = field(default_factory=set)
    scheduled: bool = False
    news: GroupNews = field(default_factory=GroupNews)


class GroupSide(WorkerSide):
    """The group operations of the hub's API."""

    def _tracking(self) -> _Tracking:
        tracking: _Tracking | None = self.__dict__.get("_group_tracking")
        if tracking is None:
            tracking = self.__dict__["_group_tracking"] = _Tracking()
        return tracking

    # ------------------------------------------------------------------ submit

    async def submit_group(
        self, request: JobSpec | GroupSpec, *, caller: Caller = LOCAL_CALLER
    ) -> GroupSubmitted:
        """Submit a group: a spec with ``expand`` (one member per combination, made here), or a
        :class:`~jobq.core.model.GroupSpec` (explicit members). Raises the reason it is refused."""
        if self._draining:
            raise Unavailable("the hub is shutting down and takes no new jobs")
        now = self.clock()
        limit = self.config.max_payload
        if isinstance(request, JobSpec):
            base = self._scoped_for_group(request, caller)
            validate_spec(base, limit, group=True)
            if base.expand is None:
                raise InvalidRequest("a group needs an expand mapping (or a list of members)")
            expansion = parse_expand(base.expand)
            payloads = expansion.payloads(base.payload, content_type=base.content_type, max_payload=limit)
            template = msgspec.structs.replace(
                base, expand=None, finalize=None, group_policy="all_completed", idempotency_key=None,
                content_type=base.content_type or "application/json",
            )  # fmt: skip
            self.check(template)
            replace = msgspec.structs.replace
            members = [replace(template, payload=[payload]) for payload in payloads]
            finalize, policy, key, source = (
                base.finalize,
                base.group_policy,
                base.idempotency_key,
                expansion.source,
            )
        else:
            if not request.members:
                raise InvalidRequest("a group needs at least one member")
            members = [self._scoped_for_group(spec, caller) for spec in request.members]
            for index, spec in enumerate(members):
                try:
                    self.check(spec)
                except JobqError as exc:
                    raise type(exc)(f"member {index}: {exc.message}") from None
                if spec.idempotency_key is not None:
                    raise InvalidRequest(f"member {index}: the group's idempotency_key names the group")
                if spec.after or spec.ref is not None:  # (dependencies: hub/dependencies.py)
                    raise InvalidRequest(f"member {index}: a group's members cannot wait for jobs (after)")
            key = request.idempotency_key
            if key is not None and not caller.unrestricted:
                key = self._scoped_for_group(
                    JobSpec(service=members[0].service, idempotency_key=key), caller
                ).idempotency_key
            finalize, policy, source = request.finalize, request.policy, None
        if finalize is not None:
            finalize = self._scoped_for_group(finalize, caller)
            validate_finalize(finalize, limit)
            shape_of(
                finalize.service,
                finalize.requires,
                finalize.must_not,
                finalize.customer_id,
                finalize.isolation,
            )
        services = {spec.service for spec in members}
        customers = {spec.customer_id for spec in members}
        group = check_group(
            Group(
                id=0, service=services.pop() if len(services) == 1 else "", total=len(members),
                created_at=now, policy=policy, finalize=finalize, expand=source,
                owner=members[0].owner, customer_id=customers.pop() if len(customers) == 1 else None,
            )
        )  # fmt: skip
        stored, jobs, created = await self._store.submit_group(group, members, now, key)
        if created:
            self._counters["submitted"] += len(jobs)
            for job in jobs:
                self._announce(job, "submitted", now)
            self.kick()
            if self._shared or self._events.wants_group(stored.id):
                self._publish_group(group_event(stored, "group_submitted", now))
        else:
            self._access.readable(caller, _stand_in(stored))
        live = {QUEUED.value: len(jobs)} if created else None
        view = view_of(stored, live) if created else await self.group(stored.id, caller=caller)
        return GroupSubmitted(group=view, members=list(member_ids(stored)), created=created)

    if TYPE_CHECKING:  # Hub's (hub/hub.py): a spec's checks, and its scope for the caller

        def check(self, spec: JobSpec) -> None: ...

        def _scoped(
            self, specs: Sequence[JobSpec], caller: Caller
        ) -> tuple[list[JobSpec], dict[int, JobqError]]: ...

    def _scoped_for_group(self, spec: JobSpec, caller: Caller) -> JobSpec:
        """``Hub._scoped`` for one spec of a group: a group is taken whole or refused, so the
        refusal is raised rather than kept for its index."""
        if caller.unrestricted:
            return spec
        (allowed,), refused = self._scoped([spec], caller)
        if refused:
            raise refused[0]
        return allowed

    # ------------------------------------------------------------------ read, wait, cancel

    async def _group(
        self, group_id: int, caller: Caller, action: Action = Action.READ
    ) -> tuple[Group, dict[str, int]]:
        found = await self._store.get_group(group_id)
        if found is None:
            raise NotFound(f"no group {group_id}")
        if not caller.unrestricted:
            stand_in = _stand_in(found[0])
            if action is Action.READ:
                self._access.readable(caller, stand_in)
            else:
                self._access.touchable(caller, stand_in, action)
        return found

    async def group(
        self, group_id: int, *, with_result: bool = False, caller: Caller = LOCAL_CALLER
    ) -> GroupView:
        """The group: state, counts per state, progress, finalize job; ``with_result``: the
        group's result (its finalize job's) once it completed."""
        group, live = await self._group(group_id, caller)
        view = view_of(group, live)
        if with_result and group.finalize_id is not None and group.state.ended:
            job = await self._store.get(group.finalize_id)
            if job is not None and job.result is not None and caller.principal.sees_payloads:
                view = msgspec.structs.replace(view, result=job.result)
        return view

    async def group_members(
        self, group_id: int, *, offset: int = 0, limit: int = 1000, caller: Caller = LOCAL_CALLER
    ) -> list[Job]:
        """Members in member order (``offset``, at most ``limit``), then the finalize job."""
        if not 0 <= limit <= MAX_MEMBERS_LISTED or offset < 0:
            raise InvalidRequest(f"limit must be 0..{MAX_MEMBERS_LISTED} and offset non-negative")
        group, _ = await self._group(group_id, caller)
        ids = list(member_ids(group)[offset : offset + limit])  # a range's slice: no full list
        if group.finalize_id is not None and len(ids) < limit:
            ids.append(group.finalize_id)
        if not ids:
            return []
        jobs = await self._store.list_jobs(JobFilter(ids=ids, limit=len(ids)))
        if not caller.principal.sees_payloads:
            jobs = [without_data(job) for job in jobs]
        return sorted(jobs, key=lambda job: job.id)

    async def wait_group(
        self, group_id: int, timeout: float | None, *, caller: Caller = LOCAL_CALLER
    ) -> GroupView:
        """The group once it has ended (after its finalize job), with its result; raises
        Timeout after ``timeout`` seconds. Woken by the group's ``group_ended`` event (from
        another hub too, on Redis, where the group is also read again every second)."""
        if timeout is not None and not 0 <= timeout < math.inf:
            raise InvalidRequest("timeout must be a non-negative number of seconds")
        timeout = self.config.max_wait if timeout is None else min(timeout, self.config.max_wait)
        deadline = time.monotonic() + timeout
        while True:
            waiter = self._events.waiter(group_id)  # before the read: an end after it wakes us
            try:
                view = await self.group(group_id, with_result=True, caller=caller)
                if view.state.ended:
                    return view
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout(f"group {group_id} did not end within {timeout:g}s")
                wait = min(left, WAIT_POLL) if self._shared else left
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), wait)
                except TimeoutError:
                    pass
            finally:
                self._events.drop_waiter(group_id, waiter)

    async def watch_group(
        self, subscriber: Subscriber, group_id: int, *, caller: Caller = LOCAL_CALLER
    ) -> GroupView:
        """The group's events (``group_progress``, ``group_finalizing``, ``group_ended``) to
        ``subscriber`` until it ends, and its view now; a group that has ended already has its
        ``group_ended`` pushed at once."""
        found, live = await self._group(group_id, caller)
        subscriber = scoped(subscriber, caller)
        self._events.watch_group(subscriber, group_id)
        latest = await self._store.group_records([group_id])  # it may have ended meanwhile
        group = latest[0] if latest else found
        if group.state.ended:
            self._events.unsubscribe(subscriber, [group_id])
            subscriber.push([group_event(group, "group_ended", self.clock())])
        return view_of(group, None if group.state.ended else live)

    def watch_groups(self, subscriber: Subscriber, *, caller: Caller = LOCAL_CALLER) -> None:
        """Every group's events (a monitor's stream): those of the groups the caller may see."""
        if not caller.unrestricted:
            self._access.require(caller, Action.READ, "events")
        self._events.subscribe_groups(scoped(subscriber, caller))

    async def cancel_group(self, group_id: int, *, caller: Caller = LOCAL_CALLER) -> GroupView:
        """Cancel a group that has not ended: its live members and its finalize job, and no
        finalize job is ever submitted for it (Conflict once it has ended)."""
        await self._group(group_id, caller, Action.CANCEL)
        self.guard.audit.write("action", caller, "cancel", f"group {group_id}")
        now = self.clock()
        _, stopped = await self._store.cancel_group(group_id, now)
        self._group_touched((group_id,))  # ended: its workers are told FINISHED
        for job, worker in stopped:
            self._counters["cancelled"] += 1
            if worker is not None:
                self._stop_attempts(worker, [job.id])
            self._announce(job, "cancelled", now)
        self.kick()
        return await self.group(group_id, caller=caller)

    # ------------------------------------------------------------------ ends and FINISHED

    def _group_touched(self, group_ids: Iterable[int]) -> None:
        tracking = self._tracking()
        tracking.touched.update(group_ids)
        if not tracking.scheduled:
            tracking.scheduled = True
            asyncio.get_running_loop().call_soon(self._groups_turn)

    def _groups_turn(self) -> None:
        tracking = self._tracking()
        touched, tracking.touched, tracking.scheduled = sorted(tracking.touched), set(), False
        self.spawn(self._after_group_ends(touched))

    async def _after_group_ends(self, group_ids: Sequence[int]) -> None:
        """A job of each of these groups ended: a finalize job may have been created (dispatch),
        the groups' watchers hear what changed, and groups that ended have their workers told
        FINISHED, once."""
        finished = await self._store.finished_groups(group_ids)  # on Redis, may make finalize jobs
        self.kick()
        ended = {group_id for group_id, _ in finished}
        wanted = [g for g in group_ids if self._shared or self._events.wants_group(g)]
        if wanted:
            now, news = self.clock(), self._tracking().news
            for group in await self._store.group_records(wanted):
                for event in news.events(group, group.id in ended, now):
                    self._publish_group(event)
        self._tracking().news.forget(ended)  # wanted or not: what it keeps stays bounded
        for group_id, workers in finished:
            told = self.on_group_finished(group_id, workers)
            if self._shared:
                self._store.notify_finished(group_id, workers)  # the other hubs tell theirs
            log.info("group %d ended; %d of its %d worker(s) told here", group_id, told, len(workers))

    def on_group_finished(self, group_id: int, workers: Sequence[str]) -> int:
        """Tell those of ``workers`` attached here that group ``group_id`` has ended (FINISHED;
        on Redis, the store calls this for a group whose end another hub saw). Returns how many
        were told: a door without the message (Majordomo, line) tells nothing."""
        told = 0
        for worker in workers:
            session = self._sessions.get(worker)
            notify = getattr(session.link, "group_finished", None) if session is not None else None
            if notify is not None:
                notify(group_id)
                told += 1
        return told

    def _publish_group(self, event: JobEvent) -> None:
        self._events.publish_group(event)
        if self._shared:
            self._store.broadcast(event)

    def on_event(self, event: JobEvent) -> None:
        """An event that happened at another hub: a group's goes to the group's watchers."""
        if event.group is not None and is_group_event(event):
            if event.kind == "group_ended":
                self._tracking().news.forget((event.id,))
            self._events.publish_group(event)
        else:
            super().on_event(event)


def _stand_in(group: Group) -> Job:
    """A job with the group's owner and customer: what the access rules of jobs decide on."""
    return Job(
        id=group.id, service=group.service, state=QUEUED, seq=0, submitted_at=group.created_at,
        owner=group.owner, customer_id=group.customer_id,
    )  # fmt: skip


__all__ = ["GroupSide"]
