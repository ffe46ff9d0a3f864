"""Cron schedules in the embedded stores (memory, SQLite): the rules of ``docs/workflows.md``.

Every schedule is held in memory with its next firing; SQLite writes each change in the same
commit as the jobs of that turn (``store/sqlite_schedules.py``), so a firing's cursor and its
job reach the disk together or not at all. One hub owns an embedded store, so the
compare-and-set of a firing (``cursor < at`` → ``cursor = at``, then the job) needs no lock: it
runs in one turn of the event loop.
"""

from __future__ import annotations

import msgspec

from jobq.core.model import Submitted
from jobq.core.schedule import MAX_SCHEDULES, Schedule, firing_spec, next_at, pause, resume
from jobq.errors import Conflict
from jobq.store.embedded import EmbeddedStore


def too_many() -> Conflict:
    """What adding a schedule past :data:`~jobq.core.schedule.MAX_SCHEDULES` raises."""
    return Conflict(f"there are {MAX_SCHEDULES} schedules already (the limit); remove some first")


class ScheduledEmbeddedStore(EmbeddedStore):
    """An embedded store with schedules; ``_schedule_saved`` / ``_schedule_dropped`` persist."""

    def _book(self) -> dict[str, tuple[Schedule, float | None]]:
        """Schedules by name, each with its next firing (None: paused, or never again)."""
        book: dict[str, tuple[Schedule, float | None]] | None = self.__dict__.get("_schedule_book")
        if book is None:
            book = self.__dict__["_schedule_book"] = {}
        return book

    # ------------------------------------------------------------------ persistence hooks

    def _schedule_saved(self, schedule: Schedule, next_firing: float | None) -> None:
        """A schedule was added or changed (written with the next commit)."""

    def _schedule_dropped(self, name: str) -> None:
        """A schedule was removed."""

    def _adopt_schedule(self, schedule: Schedule) -> None:
        """A schedule read back at open (not written again)."""
        self._book()[schedule.name] = (schedule, next_at(schedule))

    def _keep(self, schedule: Schedule) -> Schedule:
        following = next_at(schedule)
        self._book()[schedule.name] = (schedule, following)
        self._schedule_saved(schedule, following)
        return schedule

    # ------------------------------------------------------------------ the contract

    async def put_schedule(self, schedule: Schedule) -> Schedule:
        book = self._book()
        if schedule.name not in book and len(book) >= MAX_SCHEDULES:
            raise too_many()
        self._keep(schedule)
        await self._durable()
        return schedule

    async def get_schedule(self, name: str) -> Schedule | None:
        entry = self._book().get(name)
        return None if entry is None else entry[0]

    async def list_schedules(self) -> list[tuple[Schedule, float | None]]:
        return [self._book()[name] for name in sorted(self._book())]

    async def pause_schedule(self, name: str, now: float) -> Schedule | None:
        entry = self._book().get(name)
        if entry is None:
            return None
        if entry[0].paused:
            return entry[0]
        done = self._keep(pause(entry[0]))
        await self._durable()
        return done

    async def resume_schedule(self, name: str, now: float) -> Schedule | None:
        entry = self._book().get(name)
        if entry is None:
            return None
        if not entry[0].paused:
            return entry[0]
        done = self._keep(resume(entry[0], now))
        await self._durable()
        return done

    async def remove_schedule(self, name: str) -> bool:
        if self._book().pop(name, None) is None:
            return False
        self._schedule_dropped(name)
        await self._durable()
        return True

    async def due_schedules(self, now: float, limit: int = 1000) -> list[Schedule]:
        due = [s for s, at in self._book().values() if at is not None and at <= now]
        return due[:limit]

    async def fire(self, schedule: Schedule, at: float, now: float) -> Submitted | None:
        entry = self._book().get(schedule.name)
        if entry is None or entry[0].paused or not entry[0].cursor < at:
            return None  # removed, paused, or this firing (or a later one) was handled
        self._keep(msgspec.structs.replace(entry[0], cursor=at))
        # The cursor's write is pending; the job's joins it in the same commit (submit waits).
        (done,) = await self.submit([firing_spec(entry[0], at)], now)
        return done

    async def advance_schedule(self, name: str, cursor: float) -> bool:
        entry = self._book().get(name)
        if entry is None or entry[0].paused or not entry[0].cursor < cursor:
            return False
        self._keep(msgspec.structs.replace(entry[0], cursor=cursor))
        await self._durable()
        return True
