"""An operator's control of the queue in the hub (hub/queue_control.py, core/operations.py):
a paused service takes jobs and hands out none, ``explain`` and ``services`` say so; bulk
cancel and retry of a filtered selection with a reason for each job skipped; cursor paging.

No process: the hub rig of ``test_hub.py`` over ``memory://`` with a fake clock."""

from __future__ import annotations

import pytest

from jobq.core.auth import Caller, Principal
from jobq.core.errors import Forbidden, InvalidRequest
from jobq.core.model import JobFilter
from jobq.core.operations import BulkSkip, check_service, mark_paused
from jobq.core.states import JobState
from jobq.core.views import ServiceInfo
from tests.unit.test_hub import MakeRig, Rig, spec

ALICE = Caller(principal=Principal(name="alice", role="client"))
BOB = Caller(principal=Principal(name="bob", role="client"))
MONITOR = Caller(principal=Principal(name="eyes", role="monitor"))


async def test_a_paused_service_takes_jobs_and_hands_out_none_until_resumed(rig: Rig) -> None:
    link = await rig.attach("w", slots=10, services=("render", "echo"))
    done = await rig.hub.pause_service("render")
    assert (done.service, done.paused, done.changed) == ("render", True, True)
    assert not (await rig.hub.pause_service("render")).changed  # already paused
    [image, text] = await rig.submit(spec("render"), spec("echo"))
    await rig.settle()
    assert link.ids == [text]  # its other service still flows
    assert await rig.state(image) is JobState.QUEUED

    why = await rig.hub.explain(image)
    assert why.summary.startswith("service render is paused")
    assert why.blocked == "service render is paused" and why.eligible == []
    assert why.ineligible == {"w": "render is paused"}
    services = {s.name: s for s in await rig.hub.services()}
    assert services["render"].paused and not services["echo"].paused
    assert services["render"].queued == 1

    resumed = await rig.hub.resume_service("render")
    assert (resumed.paused, resumed.changed) == (False, True)
    await rig.settle()
    assert link.ids == [text, image]
    assert not any(s.paused for s in await rig.hub.services())


async def test_a_worker_attaching_while_its_service_is_paused_gets_none_of_its_jobs(rig: Rig) -> None:
    await rig.hub.pause_service("render")
    [job] = await rig.submit(spec("render"))
    link = await rig.attach("late", slots=2, services=("render",))
    await rig.settle()
    assert link.ids == []
    [status] = await rig.hub.worker_statuses()
    assert status.info.paused == ["render"] and status.info.services == ["render"]
    await rig.hub.resume_service("render")
    await rig.settle()
    assert link.ids == [job]


async def test_a_running_job_of_a_paused_service_finishes(rig: Rig) -> None:
    link = await rig.attach("w", slots=1, services=("render",))
    [first, second] = await rig.submit(spec("render"), spec("render"))
    await rig.settle()
    assert link.ids == [first]
    await rig.hub.pause_service("render")
    [(job_id, token)] = link.attempts
    assert (await rig.complete("w", job_id, token)).state is JobState.COMPLETED
    await rig.settle()
    assert link.ids == [first]  # the freed slot gets nothing of the paused service
    assert await rig.state(second) is JobState.QUEUED


async def test_a_paused_service_nobody_serves_is_listed(rig: Rig) -> None:
    await rig.hub.pause_service("later")
    [listed] = [s for s in await rig.hub.services() if s.name == "later"]
    assert listed.paused and listed.workers == 0
    assert await rig.hub.paused_services() == ["later"]


async def test_only_an_admin_may_pause_and_names_are_checked(rig: Rig) -> None:
    for caller in (ALICE, MONITOR):
        with pytest.raises(Forbidden):
            await rig.hub.pause_service("echo", caller=caller)
    with pytest.raises(InvalidRequest):
        await rig.hub.control_service("stop", "echo")
    for bad in ("", "a\nb", "x" * 256):
        with pytest.raises(InvalidRequest):
            await rig.hub.pause_service(bad)
    assert await rig.hub.paused_services() == []


# ---------------------------------------------------------------- bulk


async def test_bulk_cancel_selects_by_filter_and_skips_ended_jobs(rig: Rig) -> None:
    queued = await rig.submit(*(spec("render") for _ in range(3)))
    other = await rig.submit(spec("echo"))
    await rig.hub.cancel(queued[0])
    result = await rig.hub.bulk("cancel", JobFilter(service="render", limit=1000))
    assert (result.matched, result.done) == (3, 2)
    assert result.skipped == [BulkSkip(id=queued[0], reason="already ended cancelled")]
    assert [await rig.state(i) for i in queued] == [JobState.CANCELLED] * 3
    assert await rig.state(other[0]) is JobState.QUEUED


async def test_bulk_retry_takes_failed_and_cancelled_jobs_only(rig: Rig) -> None:
    ids = await rig.submit(*(spec() for _ in range(4)))
    for job_id in ids[:2]:
        await rig.hub.cancel(job_id)
    result = await rig.hub.bulk("retry", JobFilter(ids=[*ids, 999], limit=10))
    assert (result.matched, result.done) == (4, 2)
    reasons = {skip.id: skip.reason for skip in result.skipped}
    assert reasons[ids[2]].startswith("is queued: only failed")
    assert reasons[999] == "no such job, or it does not match the filter"
    assert [await rig.state(i) for i in ids] == [JobState.QUEUED] * 4


async def test_bulk_limits_and_filters_are_checked(rig: Rig) -> None:
    with pytest.raises(InvalidRequest, match="needs a filter"):
        await rig.hub.bulk("cancel", JobFilter(limit=10))
    with pytest.raises(InvalidRequest, match="unknown bulk action"):
        await rig.hub.bulk("delete", JobFilter(service="x"))
    for limit in (0, 10_001):
        with pytest.raises(InvalidRequest, match="limit"):
            await rig.hub.bulk("cancel", JobFilter(service="x", limit=limit))


async def test_a_client_bulk_cancels_its_own_jobs_only_and_a_monitor_none(make_rig: MakeRig) -> None:
    rig = await make_rig()
    mine = [o.job.id for o in await rig.hub.submit([spec(), spec()], caller=ALICE)]  # type: ignore[union-attr]
    theirs = [o.job.id for o in await rig.hub.submit([spec()], caller=BOB)]  # type: ignore[union-attr]
    result = await rig.hub.bulk("cancel", JobFilter(states=[JobState.QUEUED], limit=100), caller=ALICE)
    assert (result.matched, result.done, result.skipped) == (2, 2, [])
    assert [await rig.state(i) for i in mine] == [JobState.CANCELLED] * 2
    assert await rig.state(theirs[0]) is JobState.QUEUED
    with pytest.raises(Forbidden):
        await rig.hub.bulk("cancel", JobFilter(states=[JobState.QUEUED], limit=100), caller=MONITOR)


# ---------------------------------------------------------------- paging


async def test_cursor_paging_lists_every_job_once(rig: Rig) -> None:
    ids = await rig.submit(*(spec() for _ in range(25)))
    for job_id in ids[:7]:
        await rig.hub.cancel(job_id)  # finished jobs and live ones on the same pages
    seen: list[int] = []
    before = None
    while True:
        page = await rig.hub.list_jobs(JobFilter(limit=10, before_id=before))
        seen.extend(job.id for job in page)
        if len(page) < 10:
            break
        before = page[-1].id
    assert seen == sorted(ids, reverse=True)
    with pytest.raises(InvalidRequest):
        await rig.hub.list_jobs(JobFilter(before_id=2**63))


# ---------------------------------------------------------------- the pure rules


def test_the_pure_rules() -> None:
    assert check_service("render") == "render"
    listed = mark_paused([ServiceInfo(name="b", workers=1, slots=1, queued=0, running=0)], {"a", "b"})
    assert [(s.name, s.paused) for s in listed] == [("a", True), ("b", True)]
    assert mark_paused([], set()) == []
