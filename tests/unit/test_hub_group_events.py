"""A group's own events in the hub (hub/groups.py, hub/group_events.py) over the embedded
stores: who hears them (a group's watchers and every group's subscribers, never a job's),
progress coalesced per turn, finalizing and the end told once, a watch of an ended group, the
hub's wait woken by the end, members' events naming their group, access.

Fake clock and fake worker links (tests/unit/test_hub_groups.py); real processes are in
tests/integration/test_group_events.py.
"""

from __future__ import annotations

import asyncio

import pytest

from jobq.core.auth import Caller, Principal
from jobq.core.model import Completion, JobEvent, JobSpec
from jobq.core.states import JobState
from jobq.core.workflow import GroupState
from jobq.errors import Forbidden
from jobq.hub import groups as hub_groups
from jobq.hub.group_events import group_event
from tests.unit.test_hub_groups import (
    Rig,
    echo_n,
    embedded_rig,  # noqa: F401 - the fixture rig
    expanding,
    until,
)


class Listener:
    def __init__(self) -> None:
        self.events: list[JobEvent] = []

    def push(self, events: list[JobEvent]) -> None:
        self.events.extend(events)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


async def test_a_watcher_hears_progress_once_per_turn_then_finalizing_and_the_end(rig: Rig) -> None:
    hub = rig.hub
    a = await rig.attach("a", slots=10)
    fin = await rig.attach("f", services=["concat"])
    every, jobs_only = Listener(), Listener()
    hub.watch_groups(every)
    hub.watch_all(jobs_only)
    out = await hub.submit_group(expanding({"n": "1..6"}))
    gid = out.group.id
    watcher = Listener()
    view = await hub.watch_group(watcher, gid)
    assert view.state is GroupState.RUNNING and view.total == 6
    await until(lambda: len(a.jobs) == 6)
    await until(lambda: not hub._tasks)
    jobs, a.jobs = a.jobs, []
    # Two completions in one call (one turn), then four in another: one progress event each.
    await hub.complete("a", [Completion(j.id, j.token, [echo_n(j)]) for j in jobs[:2]])
    await until(lambda: len(watcher.events) == 1)
    first = watcher.events[0]
    assert (first.kind, first.id, first.group, first.state) == ("group_progress", gid, gid, JobState.RUNNING)
    assert (first.progress, first.counts, first.total) == (33.33, {"completed": 2}, 6)
    await hub.complete("a", [Completion(j.id, j.token, [echo_n(j)]) for j in jobs[2:]])
    await until(lambda: watcher.kinds() == ["group_progress", "group_progress", "group_finalizing"])
    assert watcher.events[1].counts == {"completed": 6} and watcher.events[1].progress == 100.0
    await rig.run("f", fin, lambda job: b"merged")
    await until(lambda: watcher.kinds()[-1:] == ["group_ended"])
    end = watcher.events[-1]
    assert end.state is JobState.COMPLETED and end.error is None
    assert watcher.kinds() == ["group_progress", "group_progress", "group_finalizing", "group_ended"]
    # Every group's subscriber heard the same, and its submit first; a job's heard none of it.
    assert every.kinds() == ["group_submitted", *watcher.kinds()]
    assert not any(e.kind.startswith("group_") for e in jobs_only.events)
    members = [e for e in jobs_only.events if e.id in out.members]
    assert members and all(e.group == gid for e in members)  # members' own events name it
    assert gid not in hub._events._groups  # the watch ended with the group


async def test_a_watch_of_an_ended_group_hears_its_end_at_once(rig: Rig) -> None:
    hub = rig.hub
    a = await rig.attach("a")
    out = await hub.submit_group(expanding({"n": [1, 2]}, finalize=None))
    await until(lambda: len(a.jobs) == 2)
    await rig.run("a", a, lambda job: None)  # both fail: under all_completed the group fails
    late = Listener()
    view = await hub.watch_group(late, out.group.id)
    assert view.state is GroupState.FAILED
    await until(lambda: late.events)
    (end,) = late.events
    assert end.kind == "group_ended" and end.state is JobState.FAILED
    assert end.error == "2 of 2 members did not complete (2 failed)"


async def test_the_hubs_wait_is_woken_by_the_end_not_by_polling(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hub_groups, "WAIT_POLL", 3600.0)  # an embedded store is never re-read
    hub = rig.hub
    a = await rig.attach("a")
    out = await hub.submit_group(expanding({"n": "1..3"}, finalize=None))
    waiting = asyncio.ensure_future(hub.wait_group(out.group.id, 600))
    await until(lambda: len(a.jobs) == 3)
    await rig.run("a", a, echo_n)
    view = await asyncio.wait_for(waiting, 10)
    assert view.state is GroupState.COMPLETED and view.counts == {"completed": 3}
    assert not hub._events._waiters


async def test_cancel_and_retry_each_tell_the_end_again(rig: Rig) -> None:
    """A member retried in a failed group runs it again: its next end is told too (the
    watchers' group_ended and FINISHED), as on Redis (group_retry in lua/groups.lua)."""
    hub = rig.hub
    a = await rig.attach("a")
    out = await hub.submit_group(expanding({"n": [1, 2]}, finalize=None))
    gid = out.group.id
    await until(lambda: len(a.jobs) == 2)
    await rig.run("a", a, lambda job: None if echo_n(job) == b"2" else b"ok")
    await until(lambda: a.finished == [gid])
    assert (await hub.group(gid)).state is GroupState.FAILED
    watcher = Listener()
    await hub.watch_group(watcher, gid)  # ended: its end at once
    await until(lambda: watcher.kinds() == ["group_ended"])
    await hub.retry(out.members[1])
    assert (await hub.group(gid)).state is GroupState.RUNNING
    again = Listener()
    await hub.watch_group(again, gid)
    await until(lambda: len(a.jobs) == 1)
    await rig.run("a", a, echo_n)
    await until(lambda: again.kinds() == ["group_progress", "group_ended"])
    assert again.events[-1].state is JobState.COMPLETED
    await until(lambda: a.finished == [gid, gid])
    # cancel: the end is told with the reason
    other = await hub.submit_group(JobSpec(service="nobody", payload=[b"{}"], expand={"n": [1, 2]}))
    watched = Listener()
    await hub.watch_group(watched, other.group.id)
    await hub.cancel_group(other.group.id)
    await until(lambda: watched.kinds() == ["group_progress", "group_ended"])  # its members ended
    assert watched.events[1].state is JobState.CANCELLED and watched.events[1].error == "cancelled"
    assert watched.events[0].counts == {"cancelled": 2}


async def test_a_client_watches_only_its_own_groups(rig: Rig) -> None:
    hub = rig.hub
    alice = Caller(principal=Principal(name="alice", role="client"), door="test")
    bob = Caller(principal=Principal(name="bob", role="client"), door="test")
    out = await hub.submit_group(JobSpec(service="echo", payload=[b"{}"], expand={"n": "1..2"}), caller=alice)
    mine = Listener()
    await hub.watch_group(mine, out.group.id, caller=alice)
    with pytest.raises(Forbidden):
        await hub.watch_group(Listener(), out.group.id, caller=bob)
    spy = Listener()
    hub.watch_groups(spy, caller=bob)  # every group's events, as bob may see them: none of alice's
    await hub.cancel_group(out.group.id, caller=alice)
    await until(lambda: mine.kinds() == ["group_progress", "group_ended"])
    await asyncio.sleep(0)
    assert spy.events == [] and {e.owner for e in mine.events} == {"alice"}


async def test_what_the_hub_told_of_groups_is_forgotten_once_they_end(rig: Rig) -> None:
    """GroupNews keeps one entry per open group it told of: a group that ended is dropped
    whether a watcher still listened (read then), had left (never read again), or nobody
    ever watched; a group_ended heard from another hub drops it too."""
    hub = rig.hub
    news = hub._tracking().news
    a = await rig.attach("a")
    watched, left, unwatched = Listener(), Listener(), Listener()
    gids = []
    for listener in (watched, left, unwatched):
        out = await hub.submit_group(expanding({"n": "1..2"}, finalize=None))
        gids.append(out.group.id)
        if listener is not unwatched:
            await hub.watch_group(listener, out.group.id)
    await until(lambda: len(a.jobs) == 6)
    await until(lambda: not hub._tasks)
    first = [j for j in a.jobs if echo_n(j) == b"1"]
    rest = [j for j in a.jobs if echo_n(j) != b"1"]
    a.jobs = []
    await hub.complete("a", [Completion(j.id, j.token, [echo_n(j)]) for j in first])
    await until(lambda: len(watched.events) == 1 and len(left.events) == 1)
    await until(lambda: not hub._tasks)
    assert len(news) == 2  # the two watched groups, told of once each
    hub.unwatch(left, [gids[1]])
    assert not hub._events.wants_group(gids[1])
    await hub.complete("a", [Completion(j.id, j.token, [echo_n(j)]) for j in rest])
    await until(lambda: watched.kinds()[-1:] == ["group_ended"])
    await until(lambda: not hub._tasks)
    assert [(await hub.group(g)).state for g in gids] == [GroupState.COMPLETED] * 3
    assert len(news) == 0
    # Another hub's group_ended (on Redis, from the bus) drops a group this hub told of.
    other = await hub.submit_group(JobSpec(service="nobody", payload=[b"{}"], expand={"n": [1, 2]}))
    gid = other.group.id
    group = (await hub._store.group_records([gid]))[0]
    news.events(group, False, 0.0)  # told: a progress of 0
    assert len(news) == 1
    hub.on_event(group_event(group, "group_ended", 0.0))
    assert len(news) == 0
