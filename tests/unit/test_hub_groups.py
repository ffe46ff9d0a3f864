"""Groups in the hub (hub/groups.py) over the embedded stores: expansion in the hub, the
finalize job exactly once with its input in member order, policies, cancel, FINISHED to the
workers that took part and no other, and a SQLite store read back with its groups.

A fake clock and fake worker links (as tests/unit/test_hub.py); the real processes are in
tests/integration/test_groups.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import msgspec
import pytest

from jobq.config import HubConfig
from jobq.core.model import Completion, GroupSpec, Job, JobFilter, JobSpec
from jobq.core.states import JobState
from jobq.core.views import WorkerHello
from jobq.core.workflow import GroupState, concat, read_finalize_input
from jobq.errors import Conflict, InvalidRequest, JobqError
from jobq.hub.hub import Hub
from jobq.store.base import open_store

T0 = 1_000_000.0


async def until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not met")
        await asyncio.sleep(0)


class Link:
    def __init__(self) -> None:
        self.pushes = True
        self.jobs: list[Job] = []
        self.finished: list[int] = []
        self.stops: list[int] = []

    def deliver(self, jobs: Sequence[Job]) -> None:
        self.jobs.extend(msgspec.structs.replace(job) for job in jobs)

    def stop(self, job_ids: Sequence[int]) -> None:
        self.stops.extend(job_ids)

    def disconnect(self, reason: str) -> None:
        pass

    def group_finished(self, group_id: int) -> None:
        self.finished.append(group_id)


class Rig:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.now = T0

    async def attach(self, worker_id: str, services: Sequence[str] = ("echo",), slots: int = 100) -> Link:
        link = Link()
        await self.hub.attach(WorkerHello(id=worker_id, services=list(services), slots=slots), link)
        return link

    async def run(self, worker_id: str, link: Link, result: Callable[[Job], bytes | None]) -> list[Job]:
        """Finish every attempt the link got so far: a result, or a failure (None)."""
        await until(lambda: not self.hub._tasks)
        done, link.jobs = link.jobs, []
        for job in done:
            out = result(job)
            if out is None:
                await self.hub.fail(worker_id, job.id, job.token, "boom", retryable=False)
            else:
                await self.hub.complete(worker_id, [Completion(job.id, job.token, [out])])
        await until(lambda: not self.hub._tasks)
        return done


@pytest.fixture(params=["memory", "sqlite"], name="rig")  # also tests/unit/test_hub_group_events.py's
async def embedded_rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    """A hub on each embedded store (this module's ``rig``)."""
    url = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/jobq.db"
    config = HubConfig(store=url, tick=3600.0, heartbeat=1.0, liveness=5, lease_ttl=30.0)
    hub = Hub(open_store(url), config, clock=lambda: T0, rand=lambda: 0.0)
    await hub.start()
    yield Rig(hub)
    await hub.stop(grace=0)


def echo_n(job: Job) -> bytes:
    return str(json.loads(job.payload[0])["n"]).encode()


def expanding(expand: dict[str, object], finalize: str | None = "concat", **kw: object) -> JobSpec:
    fin = JobSpec(service=finalize, payload=[b'{"separator": ","}']) if finalize else None
    return JobSpec(service="echo", payload=[b'{"base": 1}'], expand=expand, finalize=fin, **kw)  # type: ignore[arg-type]


async def test_expansion_makes_members_in_order_and_finalize_runs_once(rig: Rig) -> None:
    hub = rig.hub
    a = await rig.attach("a", slots=3)
    b = await rig.attach("b", slots=3)
    idle = await rig.attach("idle", services=["other"])
    fin = await rig.attach("f", services=["concat"])
    out = await hub.submit_group(expanding({"n": "1..3", "c": ["x", "y"]}))
    group = out.group
    assert group.total == 6 and out.members == list(range(group.id + 1, group.id + 7))
    assert group.counts == {"queued": 6} and group.state is GroupState.RUNNING
    first = await hub.get(out.members[0])
    assert json.loads(first.payload[0]) == {"base": 1, "n": 1, "c": "x"} and first.group == group.id
    await until(lambda: len(a.jobs) == 3 and len(b.jobs) == 3)
    await rig.run("a", a, echo_n)
    await rig.run("b", b, echo_n)
    view = await hub.group(group.id)
    assert view.state is GroupState.FINALIZING and view.finalize is not None
    assert view.counts == {"completed": 6} and view.progress == 100.0
    [finalize] = await rig.run("f", fin, lambda job: concat(job.payload)[0])
    assert finalize.id == view.finalize and finalize.group == group.id
    manifest = read_finalize_input(finalize.payload).manifest
    assert [m.id for m in manifest.members] == out.members
    ended = await hub.wait_group(group.id, 1.0)
    assert ended.state is GroupState.COMPLETED and ended.result == [b"1,1,2,2,3,3"]
    # FINISHED: once, to the workers that ran a member (not the finalize worker)
    await until(lambda: a.finished and b.finished)
    assert a.finished == [group.id] and b.finished == [group.id]
    assert fin.finished == [] and idle.finished == []
    assert len(await hub.list_jobs(JobFilter(group=group.id))) == 7


async def test_all_completed_fails_without_finalize_all_ended_finalizes(rig: Rig) -> None:
    hub = rig.hub
    a = await rig.attach("a")
    fin = await rig.attach("f", services=["concat"])
    strict = await hub.submit_group(expanding({"n": "1..3"}))
    await rig.run("a", a, lambda job: None if b'"n":2' in job.payload[0] else echo_n(job))
    view = await hub.group(strict.group.id)
    assert view.state is GroupState.FAILED and view.finalize is None
    assert view.reason == "1 of 3 members did not complete (1 failed)"
    lenient = await hub.submit_group(expanding({"n": "1..3"}, group_policy="all_ended"))
    await rig.run("a", a, lambda job: None if b'"n":2' in job.payload[0] else echo_n(job))
    [finalize] = await rig.run("f", fin, lambda job: concat(job.payload)[0])
    members = read_finalize_input(finalize.payload).manifest.members
    assert [(m.state, m.error) for m in members] == [
        ("completed", None),
        ("failed", "boom"),
        ("completed", None),
    ]
    assert (await hub.wait_group(lenient.group.id, 1.0)).result == [b"1,3"]


async def test_explicit_group_and_cancel(rig: Rig) -> None:
    hub = rig.hub
    a = await rig.attach("a", slots=1)
    out = await hub.submit_group(
        GroupSpec(members=[JobSpec(service="echo", payload=[b'{"n": %d}' % i]) for i in range(3)])
    )
    await until(lambda: a.jobs)
    running = a.jobs[0].id
    view = await hub.cancel_group(out.group.id)
    assert view.state is GroupState.CANCELLED and view.counts == {"cancelled": 3}
    assert a.stops == [running]
    assert (await hub.get(out.members[2])).state is JobState.CANCELLED
    await until(lambda: a.finished == [out.group.id])
    with pytest.raises(Conflict):
        await hub.cancel_group(out.group.id)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (
            expanding({"a": "1..1000", "b": "1..101"}),
            "expand makes 101,000 members (a 1,000 x b 101); the limit is 100,000",
        ),
        (expanding({"a": "9..1"}), "smaller bound first"),
        (expanding({}), "expand names no key"),
        (JobSpec(service="echo", payload=[b"[1]"], expand={"a": "1..2"}), "it is an array"),
        (expanding({"a": "1..2"}, group_policy="sometimes"), "group_policy must be one of"),
        (
            JobSpec(service="echo", expand={"a": "1..2"}, finalize=JobSpec(service="f", payload=[b"{"])),
            "must be JSON",
        ),
    ],
)
async def test_bad_group_specs_are_refused_with_the_reason(rig: Rig, spec: JobSpec, reason: str) -> None:
    with pytest.raises(JobqError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        await rig.hub.submit_group(spec)


async def test_a_plain_submit_refuses_group_fields(rig: Rig) -> None:
    [outcome] = await rig.hub.submit([expanding({"a": "1..2"})])
    assert isinstance(outcome, InvalidRequest) and "make a group" in outcome.message


async def test_sqlite_reads_groups_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/jobq.db"
    config = HubConfig(store=url, tick=3600.0, heartbeat=1.0, liveness=5, lease_ttl=30.0)
    hub = Hub(open_store(url), config, clock=lambda: T0)
    await hub.start()
    rig = Rig(hub)
    a = await rig.attach("a")
    out = await hub.submit_group(expanding({"n": "1..4"}))
    await until(lambda: len(a.jobs) == 4)
    a.jobs = a.jobs[:2]
    await rig.run("a", a, echo_n)
    await hub.stop(grace=0)
    hub = Hub(open_store(url), dataclasses.replace(config), clock=lambda: T0 + 100)
    await hub.start()
    try:
        view = await hub.group(out.group.id)
        assert view.counts.get("completed") == 2 and view.state is GroupState.RUNNING
        again = await hub.submit_group(expanding({"n": "1..2"}))
        assert again.group.id > out.group.id + 4
    finally:
        await hub.stop(grace=0)


def test_group_policies_and_a_specs_checks_are_written_once() -> None:
    from jobq.core import model, validate, workflow
    from jobq.hub.groups import GroupSide

    for module in (workflow, validate):  # imported from core/model.py, not written again
        assert vars(module)["GROUP_POLICIES"] is model.GROUP_POLICIES
    assert vars(workflow)["GroupPolicy"] is model.GroupPolicy
    assert "_check_spec" not in vars(GroupSide)  # a group's specs are checked by Hub.check
