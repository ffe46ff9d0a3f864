"""Cron schedules in the hub, with the injected clock: firing on time, pause and resume, catch-up
after downtime (run once within the window, older skipped and logged), who may manage which
schedule, and a schedule's cursor surviving a restart of a SQLite hub.

``T0`` is 1970-01-12 13:46:40 UTC: ``*/5 * * * *`` fires at ``FIRST`` (13:50) and every 300 s.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest

from jobq.config import HubConfig
from jobq.core.auth import Caller, Principal
from jobq.core.model import JobFilter, JobSpec
from jobq.core.schedule import FIRING_MARK, firing_key
from jobq.errors import Forbidden, InvalidRequest, NotFound
from jobq.hub.hub import Hub
from jobq.store.base import open_store
from tests.unit import test_hub
from tests.unit.test_hub import T0, FakeClock, MakeRig

make_rig = test_hub.make_rig  # the fixture: hubs over memory:// with a fake clock

FIRST = T0 + 200
EVERY = 300.0
SPEC = JobSpec(service="report", payload=[b'{"day": 1}'], priority=2)


def client(name: str, *customers: str) -> Caller:
    return Caller(principal=Principal(name=name, role="client", customers=frozenset(customers)))


async def fired(hub: Hub, name: str = "five") -> list[str]:
    """The firing keys of the jobs schedule ``name`` made, oldest first (one job each)."""
    jobs = await hub.list_jobs(JobFilter(limit=10_000))
    prefix = FIRING_MARK + f"schedule:{name}@"
    keys = [job.idempotency_key or "" for job in sorted(jobs, key=lambda j: j.id)]
    found = [key.removeprefix(FIRING_MARK) for key in keys if key.startswith(prefix)]
    assert len(found) == len(set(found)), "a firing made two jobs"
    return found


def key(at: float, name: str = "five") -> str:
    return firing_key(name, at)


async def test_a_schedule_fires_on_time_once_per_firing(make_rig: MakeRig) -> None:
    rig = await make_rig()
    info = await rig.hub.add_schedule("five", "*/5 * * * *", SPEC)
    assert (info.name, info.next, info.service, info.timezone, info.paused) == (
        "five", FIRST, "report", "UTC", False,
    )  # fmt: skip
    await rig.advance_to(FIRST - 1)
    assert await fired(rig.hub) == []
    await rig.advance_to(FIRST)
    assert await fired(rig.hub) == [key(FIRST)]
    await rig.advance_to(FIRST + 100)  # a tick later: nothing new
    await rig.advance_to(FIRST + EVERY + 0.3)
    assert await fired(rig.hub) == [key(FIRST), key(FIRST + EVERY)]
    [job] = [j for j in await rig.hub.list_jobs(JobFilter(limit=10)) if j.id == max(
        j.id for j in await rig.hub.list_jobs(JobFilter(limit=10)))]  # fmt: skip
    assert (job.service, job.payload, job.priority) == ("report", [b'{"day": 1}'], 2)
    [listed] = await rig.hub.list_schedules()
    assert listed.next == FIRST + 2 * EVERY and listed.cursor == FIRST + EVERY


async def test_pause_and_resume(make_rig: MakeRig) -> None:
    rig = await make_rig()
    await rig.hub.add_schedule("five", "*/5 * * * *", SPEC)
    paused = await rig.hub.pause_schedule("five")
    assert paused.paused and paused.next is None
    await rig.advance_to(FIRST + 2 * EVERY)
    assert await fired(rig.hub) == []
    resumed = await rig.hub.resume_schedule("five")
    # What fell due while paused is not caught up: it fires from the resume on.
    assert not resumed.paused and resumed.next == FIRST + 3 * EVERY
    await rig.advance_to(FIRST + 3 * EVERY)
    assert await fired(rig.hub) == [key(FIRST + 3 * EVERY)]
    await rig.hub.remove_schedule("five")
    await rig.advance_to(FIRST + 4 * EVERY)
    assert await fired(rig.hub) == [key(FIRST + 3 * EVERY)]
    assert await rig.hub.list_schedules() == []
    with pytest.raises(NotFound, match="no schedule 'five'"):
        await rig.hub.pause_schedule("five")


async def test_catch_up_runs_recent_firings_once_and_skips_older_ones(
    make_rig: MakeRig, caplog: pytest.LogCaptureFixture
) -> None:
    rig = await make_rig()
    # Every minute, a 10-minute window, each missed firing run (no coalescing).
    await rig.hub.add_schedule("min", "* * * * *", SPEC, catch_up=600, coalesce=False)
    # Coalescing (the default): the missed firings in the window make one job, the latest.
    await rig.hub.add_schedule("five", "*/5 * * * *", SPEC, catch_up=1200)
    caplog.set_level(logging.INFO, logger="jobq.hub.schedules")
    down = T0 + 30 * 60  # the hub was away for 30 minutes (14:16:40)
    await rig.advance_to(down)
    minutes = [key(at, "min") for at in range(int(down) - 600 + 20, int(down), 60)]
    assert await fired(rig.hub, "min") == minutes  # 14:07 ... 14:16: ten firings, in order
    assert await fired(rig.hub) == [key(T0 + 1800 - 100)]  # 14:15, for 14:00, 14:05, 14:10
    text = caplog.text
    assert "schedule min: skipped 20 firings from 1970-01-12T13:47:00Z to 1970-01-12T14:06:00Z" in text
    assert "schedule five: 3 missed firings (1970-01-12T14:00:00Z to 1970-01-12T14:10:00Z)" in text
    assert "schedule five: skipped 2 firings from 1970-01-12T13:50:00Z" in text
    await rig.advance_to(down + 60)
    assert len(await fired(rig.hub, "min")) == 11


async def test_bad_schedules_are_refused_with_the_reason(make_rig: MakeRig) -> None:
    rig = await make_rig()
    cases = [
        (("bad name", "* * * * *", SPEC), {}, "schedule name"),
        (("x", "* * * *", SPEC), {}, "five are needed"),
        (("x", "0 0 30 2 *", SPEC), {}, "never fires"),
        (("x", "* * * * *", SPEC), {"tz": "Mars/Olympus"}, "unknown time zone"),
        (("x", "* * * * *", SPEC), {"catch_up": -1.0}, "catch_up must be"),
        (("x", "* * * * *", JobSpec(service="s", idempotency_key="k")), {}, "keyed by their firing"),
        (("x", "* * * * *", JobSpec(service="")), {}, "service must be"),
        # Found in review: each firing raised inside the clock, and no job was ever made.
        (("x", "* * * * *", JobSpec(service="s", after=[1])), {}, "cannot take after"),
        (("x", "* * * * *", JobSpec(service="s", ref="a")), {}, "cannot take after"),
    ]
    for args, kwargs, reason in cases:
        with pytest.raises(InvalidRequest, match=reason):
            await rig.hub.add_schedule(*args, **kwargs)  # type: ignore[arg-type]
    assert await rig.hub.list_schedules() == []


async def test_clients_manage_their_own_schedules(make_rig: MakeRig) -> None:
    rig = await make_rig()
    hub = rig.hub
    await hub.add_schedule("admins", "@hourly", SPEC)
    alice, bob = client("alice", "acme"), client("bob")
    mine = await hub.add_schedule("alices", "*/5 * * * *", SPEC, caller=alice)
    assert (mine.owner, mine.customer_id) == ("alice", "acme")
    assert [s.name for s in await hub.list_schedules(caller=alice)] == ["alices"]
    assert [s.name for s in await hub.list_schedules(caller=bob)] == []
    monitor = Caller(principal=Principal(name="eye", role="monitor"))
    assert [s.name for s in await hub.list_schedules(caller=monitor)] == ["admins", "alices"]
    for action in (hub.pause_schedule, hub.resume_schedule, hub.remove_schedule):
        with pytest.raises(Forbidden, match="not one of yours"):
            await action("alices", caller=bob)
    with pytest.raises(Forbidden, match="not one of yours"):
        await hub.add_schedule("admins", "@daily", SPEC, caller=alice)
    with pytest.raises(Forbidden):
        await hub.pause_schedule("admins", caller=monitor)
    worker = Caller(principal=Principal(name="w", role="worker"))
    with pytest.raises(Forbidden):
        await hub.list_schedules(caller=worker)
    assert (await hub.pause_schedule("alices", caller=alice)).paused
    await rig.advance_to(FIRST)
    await hub.resume_schedule("alices", caller=alice)
    await rig.advance_to(FIRST + EVERY)
    [job] = [j for j in await hub.list_jobs(JobFilter(limit=10)) if j.service == "report"]
    assert (job.owner, job.customer_id) == ("alice", "acme")
    await hub.remove_schedule("alices", caller=alice)


async def test_a_sqlite_hub_keeps_its_schedules_and_cursors_across_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobq.db'}"
    config = HubConfig(store=url, tick=3600.0)
    clock = FakeClock()

    async def started() -> Hub:
        hub = Hub(open_store(url), dataclasses.replace(config), clock=clock)
        await hub.start()
        return hub

    hub = await started()
    await hub.add_schedule("five", "*/5 * * * *", SPEC)
    clock.now = FIRST
    await hub.tick()
    assert await fired(hub) == [key(FIRST)]
    await hub.stop(grace=0)
    # Down across the next firing; back within its catch-up window: it runs once, on start.
    clock.now = FIRST + EVERY + 120
    hub = await started()
    await hub.tick()
    assert await fired(hub) == [key(FIRST), key(FIRST + EVERY)]
    [info] = await hub.list_schedules()
    assert info.cursor == FIRST + EVERY and info.next == FIRST + 2 * EVERY
    await hub.stop(grace=0)
