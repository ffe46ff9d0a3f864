"""Cron schedules in the hub: managing them (every door calls these) and firing them on the clock.

Each tick, after the store's own tick, the hub asks the store for the schedules whose next firing
is due and, for each, applies the core's plan (``core/schedule.plan``: what is due, coalesced or
skipped after downtime), fires each due firing with the store's compare-and-set
(``Store.fire``: the cursor and the job, atomically), then moves the cursor past what was
coalesced or skipped and logs those. Several hubs on one Redis may all find a firing due: only
the first ``fire`` makes its job. ``docs/workflows.md`` ("Schedules") has the rules.

Access: admins manage every schedule; a client token adds schedules whose jobs are submitted as
its own submits are (its customer, its name as owner) and manages only those; a monitor reads
them all (``core/schedule_info.py``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from jobq.core.auth import LOCAL_CALLER, Action, Caller, scoped_spec
from jobq.core.matching import shape_of
from jobq.core.model import JobSpec
from jobq.core.schedule import DEFAULT_CATCH_UP, Schedule, firing_id, new_schedule, next_at, plan
from jobq.core.schedule_info import ScheduleInfo, check_schedule_spec, may_manage, may_read, schedule_info
from jobq.core.validate import validate_spec
from jobq.errors import InvalidRequest, JobqError, NotFound, Unavailable
from jobq.hub.views import ClusterViews

log = logging.getLogger("jobq.hub.schedules")


def _utc(at: float) -> str:
    return f"{datetime.fromtimestamp(at, UTC):%Y-%m-%dT%H:%M:%SZ}"


class ScheduleSide(ClusterViews):
    """The schedule half of :class:`~jobq.hub.hub.Hub` (a base class of it)."""

    # ------------------------------------------------------------------ managing

    async def add_schedule(
        self,
        name: str,
        cron: str,
        spec: JobSpec,
        *,
        tz: str = "UTC",
        catch_up: float = DEFAULT_CATCH_UP,
        coalesce: bool = True,
        caller: Caller = LOCAL_CALLER,
    ) -> ScheduleInfo:
        """Add a schedule, or replace the one of that name (it then fires from now on)."""
        if self._draining:
            raise Unavailable("the hub is shutting down")
        owner = None
        if not caller.unrestricted:
            self._access.require(caller, Action.SUBMIT, f"schedule {name}")
            scoped = scoped_spec(caller.principal, spec)
            if isinstance(scoped, str):
                raise self._access.refuse(caller, "schedule", name, scoped)
            spec, owner = scoped, caller.name
        check_schedule_spec(spec)
        validate_spec(spec, self.config.max_payload)
        self._schemas.check(spec)
        shape_of(spec.service, spec.requires, spec.must_not, spec.customer_id, spec.isolation)
        schedule = new_schedule(
            name, cron, spec, self.clock(), tz=tz, catch_up=catch_up, coalesce=coalesce, owner=owner
        )
        if not caller.unrestricted:
            old = await self._store.get_schedule(name)
            if old is not None and not may_manage(caller.principal, old):
                raise self._access.refuse(caller, "schedule", name, f"schedule {name} is not one of yours")
        self.guard.audit.write("action", caller, "schedule add", f"schedule {name}")
        await self._store.put_schedule(schedule)
        return schedule_info(schedule, next_at(schedule))

    async def list_schedules(self, *, caller: Caller = LOCAL_CALLER) -> list[ScheduleInfo]:
        """Every schedule the caller may read, by name, with its next firing."""
        if not caller.unrestricted:
            self._access.require(caller, Action.READ, "schedules")
        principal = caller.principal
        return [
            schedule_info(schedule, following)
            for schedule, following in await self._store.list_schedules()
            if caller.unrestricted or may_read(principal, schedule)
        ]

    async def _schedule(self, name: str, caller: Caller, action: str) -> Schedule:
        if not isinstance(name, str) or not name:
            raise InvalidRequest("a schedule name is needed")
        if not caller.unrestricted:
            self._access.require(
                caller, Action.READ if action == "read" else Action.SUBMIT, f"schedule {name}"
            )
        found = await self._store.get_schedule(name)
        allowed = found is not None and (
            caller.unrestricted or (may_read if action == "read" else may_manage)(caller.principal, found)
        )
        if found is None:
            raise NotFound(f"no schedule {name!r}")
        if not allowed:  # as for jobs: "not one of yours"
            raise self._access.refuse(
                caller, action, f"schedule {name}", f"schedule {name} is not one of yours"
            )
        return found

    async def get_schedule(self, name: str, *, caller: Caller = LOCAL_CALLER) -> ScheduleInfo:
        schedule = await self._schedule(name, caller, "read")
        return schedule_info(schedule, next_at(schedule))

    async def pause_schedule(self, name: str, *, caller: Caller = LOCAL_CALLER) -> ScheduleInfo:
        """Nothing fires while paused (nor is caught up after); pausing twice is harmless."""
        await self._schedule(name, caller, "pause")
        self.guard.audit.write("action", caller, "schedule pause", f"schedule {name}")
        done = await self._store.pause_schedule(name, self.clock())
        if done is None:
            raise NotFound(f"no schedule {name!r}")
        return schedule_info(done, None)

    async def resume_schedule(self, name: str, *, caller: Caller = LOCAL_CALLER) -> ScheduleInfo:
        """Fire again from now on (what would have fired while paused does not)."""
        await self._schedule(name, caller, "resume")
        self.guard.audit.write("action", caller, "schedule resume", f"schedule {name}")
        done = await self._store.resume_schedule(name, self.clock())
        if done is None:
            raise NotFound(f"no schedule {name!r}")
        return schedule_info(done, next_at(done))

    async def remove_schedule(self, name: str, *, caller: Caller = LOCAL_CALLER) -> None:
        """Remove it; jobs it already submitted are not touched."""
        await self._schedule(name, caller, "remove")
        self.guard.audit.write("action", caller, "schedule remove", f"schedule {name}")
        if not await self._store.remove_schedule(name):
            raise NotFound(f"no schedule {name!r}")

    # ------------------------------------------------------------------ firing

    async def tick(self) -> None:
        """The store's tick (``WorkerSide.tick``), then the schedules that are due."""
        await super().tick()
        if self._draining:
            return
        try:
            await self.fire_schedules(self.clock())
        except Unavailable as exc:  # the store is away (logged by it): the next tick catches up
            log.debug("schedules not fired: %s", exc.message)

    async def fire_schedules(self, now: float) -> int:
        """Fire what is due at ``now``; returns the number of jobs made."""
        made = 0
        for schedule in await self._store.due_schedules(now):
            made += await self._fire(schedule, now)
        if made:
            self.kick()
        return made

    async def _fire(self, schedule: Schedule, now: float) -> int:
        name = schedule.name
        planned = plan(schedule, now)
        made = 0
        moved = False
        for at in planned.due:
            try:
                done = await self._store.fire(schedule, at, now)
            except Unavailable:
                raise
            except JobqError as exc:  # its spec no longer fits this hub (a requirement, a schema)
                log.error("schedule %s: firing %s refused: %s", name, firing_id(name, at), exc.message)
                moved = await self._store.advance_schedule(name, at) or moved
                continue
            if done is None:
                continue  # another hub (or an earlier tick) made it
            moved = True
            if done.created:
                made += 1
                self._counters["submitted"] += 1
                self._announce(done.job, "submitted", now)
                log.info("schedule %s fired %s: job %d", name, firing_id(name, at), done.job.id)
        handled = planned.due[-1] if planned.due else schedule.cursor
        if planned.cursor > handled:
            moved = await self._store.advance_schedule(name, planned.cursor) or moved
        if moved:  # this hub handled them: it logs what was not run
            if planned.coalesced:
                log.info(
                    "schedule %s: %d missed firings (%s to %s) coalesced into the one at %s",
                    name,
                    len(planned.coalesced),
                    _utc(planned.coalesced[0]),
                    _utc(planned.coalesced[-1]),
                    _utc(planned.due[-1]),
                )
            skipped = planned.skipped
            if skipped is not None:
                log.warning(
                    "schedule %s: skipped %d%s firings from %s to %s (older than its catch-up window of %gs)",
                    name,
                    skipped.count,
                    "+" if skipped.more else "",
                    _utc(skipped.first),
                    _utc(skipped.last),
                    schedule.catch_up,
                )
        return made


__all__ = ["ScheduleSide"]
