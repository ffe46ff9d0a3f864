"""Cron schedules in every store: add, list with the next firing, pause, resume, remove, and a
firing's compare-and-set with its job (``docs/workflows.md``, "Exactly-once firings").

Times are explicit: ``T0`` is 1970-01-12 13:46:40 UTC, so ``*/5 * * * *`` fires next at
``T0 + 200`` (13:50), then every 300 s.
"""

from __future__ import annotations

import asyncio

import pytest

from jobq.core.model import JobFilter
from jobq.core.schedule import FIRING_MARK, Schedule, firing_key, new_schedule
from jobq.store.base import Store
from tests.contract.support import T0, Backend, spec

FIRST = T0 + 200  # 13:50:00
EVERY = 300.0


def every_five(name: str = "five", now: float = T0, **kw: object) -> Schedule:
    return new_schedule(name, "*/5 * * * *", spec("report", b'{"x": 1}', priority=3), now, **kw)  # type: ignore[arg-type]


async def jobs_of(store: Store, name: str) -> dict[str, int]:
    """Jobs per firing key of schedule ``name``: each firing must have made exactly one."""
    found: dict[str, int] = {}
    for job in await store.list_jobs(JobFilter(limit=10_000)):
        key = job.idempotency_key or ""
        if key.startswith(FIRING_MARK + f"schedule:{name}@"):
            found[key] = found.get(key, 0) + 1
    return found


async def test_add_list_get_pause_resume_remove(store: Store) -> None:
    await store.put_schedule(every_five())
    await store.put_schedule(every_five("another", tz="Europe/Amsterdam"))
    listed = await store.list_schedules()
    assert [(s.name, at) for s, at in listed] == [("another", FIRST), ("five", FIRST)]
    got = await store.get_schedule("another")
    assert got is not None and got.tz == "Europe/Amsterdam" and got.spec.priority == 3
    assert got.spec.payload == [b'{"x": 1}'] and got.cursor == T0
    assert await store.get_schedule("nope") is None

    paused = await store.pause_schedule("five", T0 + 10)
    assert paused is not None and paused.paused
    assert {s.name: at for s, at in await store.list_schedules()}["five"] is None
    assert await store.due_schedules(T0 + 10_000) == [await store.get_schedule("another")]

    # Resumed after two firings were due: they are not caught up; it fires from the resume on.
    resumed = await store.resume_schedule("five", FIRST + EVERY + 1)
    assert resumed is not None and not resumed.paused and resumed.cursor == FIRST + EVERY + 1
    assert {s.name: at for s, at in await store.list_schedules()}["five"] == FIRST + 2 * EVERY
    assert await store.pause_schedule("nope", T0) is None
    assert await store.resume_schedule("nope", T0) is None

    assert await store.remove_schedule("five") is True
    assert await store.remove_schedule("five") is False
    assert [s.name for s, _ in await store.list_schedules()] == ["another"]


async def test_a_firing_is_a_compare_and_set_of_the_cursor_with_its_job(store: Store) -> None:
    schedule = every_five()
    await store.put_schedule(schedule)
    assert await store.due_schedules(FIRST - 1) == []
    [due] = await store.due_schedules(FIRST)
    assert due.name == "five"

    done = await store.fire(due, FIRST, FIRST + 0.5)
    assert done is not None and done.created
    job = done.job
    assert job.service == "report" and job.priority == 3 and job.payload == [b'{"x": 1}']
    assert job.idempotency_key == FIRING_MARK + firing_key("five", FIRST)
    # The same firing again (another hub, a retry after a crash), or an earlier one: nothing.
    assert await store.fire(due, FIRST, FIRST + 1) is None
    assert await store.fire(due, FIRST - EVERY, FIRST + 1) is None
    after = await store.get_schedule("five")
    assert after is not None and after.cursor == FIRST
    assert await store.due_schedules(FIRST + 1) == []
    assert [at for _, at in await store.list_schedules()] == [FIRST + EVERY]

    # Coalesced or skipped firings move the cursor without a job, with the same rule.
    assert await store.advance_schedule("five", FIRST + 3 * EVERY) is True
    assert await store.advance_schedule("five", FIRST + 2 * EVERY) is False
    assert await store.fire(due, FIRST + 2 * EVERY, FIRST + 1000) is None
    assert [at for _, at in await store.list_schedules()] == [FIRST + 4 * EVERY]
    assert await jobs_of(store, "five") == {FIRING_MARK + firing_key("five", FIRST): 1}


async def test_a_paused_or_removed_schedule_does_not_fire(store: Store) -> None:
    schedule = every_five()
    await store.put_schedule(schedule)
    await store.pause_schedule("five", T0)
    assert await store.fire(schedule, FIRST, FIRST) is None
    assert await store.advance_schedule("five", FIRST) is False
    await store.resume_schedule("five", T0 + 1)
    await store.remove_schedule("five")
    assert await store.fire(schedule, FIRST, FIRST) is None
    assert await store.due_schedules(FIRST + 10 * EVERY) == []
    assert await jobs_of(store, "five") == {}


async def test_adding_a_schedule_again_replaces_it_from_that_time(store: Store) -> None:
    await store.put_schedule(every_five())
    await store.pause_schedule("five", T0)
    later = new_schedule("five", "0 * * * *", spec("other"), FIRST + EVERY)
    await store.put_schedule(later)
    got = await store.get_schedule("five")
    assert got is not None and not got.paused and got.cron == "0 * * * *" and got.cursor == FIRST + EVERY
    # A firing planned from the old one (before the new cursor) is not made.
    assert await store.fire(got, FIRST, FIRST + EVERY + 1) is None


async def test_concurrent_fires_of_one_firing_make_one_job(store: Store) -> None:
    schedule = every_five()
    await store.put_schedule(schedule)
    outcomes = await asyncio.gather(*(store.fire(schedule, FIRST, FIRST + i) for i in range(5)))
    assert sum(1 for o in outcomes if o is not None) == 1
    assert await jobs_of(store, "five") == {FIRING_MARK + firing_key("five", FIRST): 1}


async def test_schedules_and_their_cursors_survive_a_restart(backend: Backend) -> None:
    if not backend.durable:
        pytest.skip("the memory store keeps nothing")
    store = await backend.open()
    schedule = every_five()
    await store.put_schedule(schedule)
    await store.put_schedule(every_five("quiet"))
    await store.pause_schedule("quiet", T0)
    await store.fire(schedule, FIRST, FIRST)
    store = await backend.reopen(store, FIRST + 10)
    listed = {s.name: (s, at) for s, at in await store.list_schedules()}
    assert listed["five"][0].cursor == FIRST and listed["five"][1] == FIRST + EVERY
    assert listed["quiet"][0].paused and listed["quiet"][1] is None
    assert await store.fire(schedule, FIRST, FIRST + 11) is None
    assert await jobs_of(store, "five") == {FIRING_MARK + firing_key("five", FIRST): 1}
