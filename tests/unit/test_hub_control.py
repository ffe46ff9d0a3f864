"""Operator control of workers and the automatic drain (hub/control.py), on the hub alone: a
memory store, an injected clock and fake links (see test_hub.py)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jobq.config import HubConfig
from jobq.core.auth import Caller, Principal
from jobq.core.errors import Forbidden
from jobq.core.model import Completion, Job, WorkerInfo
from jobq.core.states import JobState
from jobq.core.views import WorkerHello, WorkerNotice
from jobq.errors import Conflict, InvalidRequest, NotFound
from jobq.hub.hub import Hub
from jobq.store.base import open_store
from tests.unit.test_hub import FakeClock, FakeLink, spec, submitted, until

OPERATOR = Caller(principal=Principal(name="ops", role="admin"))


class Rig:
    def __init__(self, hub: Hub, clock: FakeClock) -> None:
        self.hub = hub
        self.clock = clock
        self.notices: list[WorkerNotice] = []
        hub.on_worker_notice(self.notices.append)

    async def attach(
        self, worker_id: str, *, slots: int = 1, pushes: bool = True, name: str | None = None
    ) -> FakeLink:
        link = FakeLink(pushes)
        await self.hub.attach(WorkerHello(id=worker_id, services=["echo"], slots=slots, name=name), link)
        return link

    async def submit(self, count: int = 1, **options: Any) -> list[int]:
        outcomes = await self.hub.submit([spec(**options) for _ in range(count)])
        return [submitted(outcome).job.id for outcome in outcomes]

    async def settle(self) -> None:
        await until(lambda: not self.hub._tasks)

    async def complete(self, worker_id: str, job_id: int, token: int) -> Job:
        [outcome] = await self.hub.complete(worker_id, [Completion(job_id, token, [b"ok"])])
        assert isinstance(outcome, Job), outcome
        return outcome

    async def state(self, job_id: int) -> JobState:
        return (await self.hub.get(job_id)).state

    async def drained(self, worker_id: str) -> str | None:
        return next(w.drained for w in await self.hub.workers() if w.id == worker_id)


@pytest.fixture
async def make() -> AsyncIterator[Any]:
    hubs: list[Hub] = []

    async def make(**config: Any) -> Rig:
        base = HubConfig(store="memory://", tick=3600.0, heartbeat=1.0, liveness=5, lease_ttl=30.0)
        clock = FakeClock()
        hub = Hub(open_store("memory://"), dataclasses.replace(base, **config), clock=clock, rand=lambda: 0.0)
        await hub.start()
        hubs.append(hub)
        return Rig(hub, clock)

    yield make
    for hub in hubs:
        if not hub.draining:
            await hub.stop(grace=0)


# ---------------------------------------------------------------- drain and resume


async def test_a_drained_worker_gets_no_new_jobs_and_finishes_its_own(make: Any) -> None:
    rig = await make()
    link = await rig.attach("w", slots=4)
    [first] = await rig.submit()
    await until(lambda: link.ids == [first])
    notice = await rig.hub.drain_worker("w", "disk full", caller=OPERATOR)
    assert notice.kind == "drained" and notice.drained == "disk full" and notice.by == "ops"
    assert rig.notices == [notice]
    later = await rig.submit(2)
    await rig.settle()
    assert link.ids == [first]  # nothing new pushed
    assert await rig.hub.claim("w", 4) == []  # nor handed to a pull
    assert (await rig.complete("w", first, 1)).state is JobState.COMPLETED  # its own job finishes
    await rig.settle()
    assert link.ids == [first]
    assert await rig.drained("w") == "disk full"
    [status] = await rig.hub.worker_statuses()
    assert status.info.drained == "disk full"
    explained = await rig.hub.explain(later[0])
    assert explained.eligible == [] and explained.ineligible == {"w": "drained: disk full"}
    assert explained.summary == "no eligible worker is connected"

    resumed = await rig.hub.resume_worker("w", caller=OPERATOR)
    assert resumed.kind == "resumed" and resumed.drained is None
    await until(lambda: sorted(link.ids) == sorted([first, *later]))
    assert await rig.drained("w") is None


async def test_a_pull_worker_that_is_drained_claims_nothing(make: Any) -> None:
    rig = await make()
    await rig.attach("puller", pushes=False)
    [job_id] = await rig.submit()
    await rig.hub.drain_worker("puller")
    assert await rig.hub.claim("puller", 1) == []
    await rig.hub.resume_worker("puller")
    assert [job.id for job in await rig.hub.claim("puller", 1)] == [job_id]


async def test_a_drained_worker_stays_drained_when_it_reconnects(make: Any) -> None:
    rig = await make()
    await rig.attach("w")
    await rig.hub.drain_worker("w")
    await rig.hub.detach("w", "connection closed")
    link = await rig.attach("w")
    await rig.submit()
    await rig.settle()
    assert link.deliveries == []
    assert await rig.drained("w") == "drained by local"


async def test_a_worker_is_found_by_a_name_only_it_has(make: Any) -> None:
    rig = await make()
    await rig.attach("gpu-1-a1b2", name="gpu-1")
    await rig.attach("cpu-1-c3d4", name="cpu")
    await rig.attach("cpu-2-e5f6", name="cpu")
    assert (await rig.hub.drain_worker("gpu-1")).worker == "gpu-1-a1b2"
    with pytest.raises(InvalidRequest, match="2 workers are named 'cpu'"):
        await rig.hub.drain_worker("cpu")
    with pytest.raises(NotFound):
        await rig.hub.drain_worker("nobody")
    with pytest.raises(NotFound):
        await rig.hub.evict_worker("nobody")
    with pytest.raises(InvalidRequest, match="unknown worker action"):
        await rig.hub.control_worker("delete", "gpu-1")


async def test_only_an_admin_may_drain_resume_or_evict(make: Any) -> None:
    rig = await make()
    await rig.attach("w")
    for role in ("client", "worker", "monitor"):
        caller = Caller(principal=Principal(name=f"a-{role}", role=role))
        for action in ("drain", "resume", "evict"):
            with pytest.raises(Forbidden, match=f"only an admin token may {action} workers"):
                await rig.hub.control_worker(action, "w", caller=caller)
    assert await rig.drained("w") is None and rig.notices == []
    assert "w" in rig.hub.connected()


# ---------------------------------------------------------------- evict


async def test_evict_puts_its_running_jobs_back_and_tells_it_to_go(make: Any) -> None:
    rig = await make()
    bad = await rig.attach("bad", slots=2)
    [one, two] = await rig.submit(2)
    await until(lambda: sorted(bad.ids) == [one, two])
    notice = await rig.hub.evict_worker("bad", caller=OPERATOR)
    assert notice.kind == "evicted" and notice.requeued == 2 and notice.drained == "evicted by ops"
    assert [sorted(ids) for ids in bad.stops] == [[one, two]]
    assert bad.disconnects == ["evicted by an operator"]
    assert "bad" not in rig.hub.connected()
    assert {await rig.state(one), await rig.state(two)} == {JobState.QUEUED}
    good = await rig.attach("good", slots=2)
    pending = {one, two}
    while pending:  # (jobs lost with a worker may be handed out one at a time)
        await until(lambda: pending & set(good.ids))
        for job_id, token in good.attempts:
            if job_id in pending:
                pending.discard(job_id)
                await rig.complete("good", job_id, token)
    # It says hello again: attached, but drained until resumed.
    again = await rig.attach("bad")
    await rig.submit()
    await rig.settle()
    assert again.deliveries == []
    assert await rig.drained("bad") == "evicted by ops"


async def test_an_eviction_is_not_counted_as_the_workers_failure(make: Any) -> None:
    rig = await make(auto_drain=1)
    link = await rig.attach("w")
    await rig.submit()
    await until(lambda: link.ids)
    await rig.hub.evict_worker("w")
    await rig.hub.resume_worker("w")
    assert [n.kind for n in rig.notices] == ["evicted", "resumed"]


# ---------------------------------------------------------------- automatic drain


async def test_a_worker_failing_job_after_job_is_drained_automatically(make: Any) -> None:
    rig = await make(auto_drain=3)
    link = await rig.attach("w", slots=1)
    jobs = await rig.submit(5, max_attempts=1)
    for n, job_id in enumerate(jobs[:3]):
        await until(lambda n=n: len(link.ids) == n + 1)  # type: ignore[misc]
        assert link.ids[-1] == job_id
        await rig.hub.fail("w", job_id, 1, "CUDA error")
    await rig.settle()
    assert len(link.ids) == 3  # drained after its third failure in a row: no fourth job
    [notice] = rig.notices
    assert notice.kind == "drained" and notice.by == "hub"
    assert notice.drained == "automatic: 3 failed or lost attempts in a row"
    assert await rig.drained("w") == notice.drained
    assert (await rig.hub.stats()).counters["auto_drained"] == 1
    await rig.hub.resume_worker("w")
    await until(lambda: len(link.ids) == 4)


async def test_a_success_resets_the_count_and_a_non_retryable_failure_says_nothing(make: Any) -> None:
    rig = await make(auto_drain=2)
    link = await rig.attach("w", slots=1)
    jobs = await rig.submit(5, max_attempts=1)
    outcomes = ["fail", "ok", "fail", "bad input", "ok"]
    for n, (job_id, outcome) in enumerate(zip(jobs, outcomes, strict=True)):
        await until(lambda n=n: len(link.ids) == n + 1)  # type: ignore[misc]
        if outcome == "ok":
            await rig.complete("w", job_id, 1)
        else:
            await rig.hub.fail("w", job_id, 1, outcome, retryable=outcome == "fail")
    assert rig.notices == []


async def test_a_worker_that_dies_holding_jobs_again_and_again_is_drained(make: Any) -> None:
    rig = await make(auto_drain=2)
    [job_id] = await rig.submit(max_attempts=10)
    for _ in range(2):
        link = await rig.attach("crashy")
        await until(lambda link=link: link.ids)  # type: ignore[misc]
        await rig.hub.detach("crashy", "connection closed")
    assert [n.kind for n in rig.notices] == ["drained"]
    link = await rig.attach("crashy")
    await rig.settle()
    assert link.deliveries == [] and await rig.state(job_id) is JobState.QUEUED


async def test_timeouts_count_and_zero_turns_the_automatic_drain_off(make: Any) -> None:
    rig = await make(auto_drain=2)
    link = await rig.attach("slow", slots=2)
    await rig.submit(2, timeout=5, max_attempts=1)
    await until(lambda: len(link.ids) == 2)
    rig.clock.now += 6
    assert await rig.hub.heartbeat("slow")  # alive, but its jobs overran their timeout
    await rig.hub.tick()
    assert [n.kind for n in rig.notices] == ["drained"]

    off = await make(auto_drain=0)
    link = await off.attach("w", slots=1)
    for job_id in await off.submit(8, max_attempts=1):
        await until(lambda job_id=job_id: job_id in link.ids)  # type: ignore[misc]
        await off.hub.fail("w", job_id, 1, "boom")
    assert off.notices == []


async def test_a_worker_of_another_hub_is_drained_there(make: Any) -> None:
    rig = await make()
    await rig.hub._store.attach_worker(WorkerInfo(id="far", services=["echo"], hub="other"), rig.clock())
    with pytest.raises(Conflict, match="attached to hub other"):
        await rig.hub.drain_worker("far")
