"""Groups on every store (memory, SQLite, Redis): members with consecutive ids, each end
recorded on its group in the same step (``record_end``; on Redis, lua/groups.lua), the finalize
job made exactly once with its members' outcomes in member order, cancel as a whole, FINISHED
to the workers that ran a member, and a durable store read back with its groups."""

from __future__ import annotations

import json

import msgspec
import pytest

from jobq.core.model import Completion, JobFilter, JobSpec
from jobq.core.states import JobState
from jobq.core.workflow import Group, GroupState, read_finalize_input
from jobq.errors import Conflict, NotFound
from jobq.store.base import Store
from tests.contract.support import T0, TTL, Backend, attach, spec


def group_of(total: int, *, finalize: bool = True, policy: str = "all_completed") -> Group:
    fin = JobSpec(service="merge", payload=[b'{"separator": ","}']) if finalize else None
    return Group(id=0, service="echo", total=total, created_at=T0, finalize=fin, policy=policy)  # type: ignore[arg-type]


async def run_all(store: Store, worker: str, fail: set[int] = frozenset(), now: float = T0) -> list[int]:  # type: ignore[assignment]
    """Claim everything the worker may take, then complete (or fail, for ids in ``fail``)."""
    jobs = await store.claim(worker, 100, now, TTL)
    for job in jobs:
        if job.id in fail:
            await store.fail(job.id, job.token, "boom", now, retryable=False)
        else:
            await store.complete([Completion(job.id, job.token, [b"r%d" % job.id])], now)
    return [job.id for job in jobs]


async def test_members_take_consecutive_ids_and_finalize_is_made_once_in_member_order(store: Store) -> None:
    """group.lua (submit.lua's code, one script) ↔ EmbeddedGroups.submit_group; groups.lua
    group_end ↔ workflow.record_end / record_finalize; finalize.lua ↔ _submit_finalize."""
    await attach(store, "w1", slots=10)
    await attach(store, "f", services=("merge",), slots=1)
    group, jobs, created = await store.submit_group(
        group_of(3), [spec(payload=b"%d" % i) for i in range(3)], T0
    )
    assert created and [j.id for j in jobs] == [group.id + 1, group.id + 2, group.id + 3]
    assert all(j.group == group.id for j in jobs)
    found = await store.get_group(group.id)
    assert found is not None and found[1] == {"queued": 3} and found[0].state is GroupState.RUNNING
    await run_all(store, "w1")
    assert await store.finished_groups([group.id]) == []  # finalizing, not ended: nobody told yet
    again = await store.finished_groups([group.id])  # asking twice makes no second finalize job
    assert again == []
    found = await store.get_group(group.id)
    assert found is not None
    ended, live = found
    assert ended.state is GroupState.FINALIZING and ended.ended == {"completed": 3} and live == {}
    finals = await store.claim("f", 5, T0 + 1, TTL)
    assert [j.id for j in finals] == [ended.finalize_id] and finals[0].group == group.id
    manifest = read_finalize_input(finals[0].payload).manifest
    assert [m.id for m in manifest.members] == [j.id for j in jobs]
    assert manifest.args == {"separator": ","}
    await store.complete([Completion(finals[0].id, finals[0].token, [b"all"])], T0 + 2)
    found = await store.get_group(group.id)
    assert found is not None and found[0].state is GroupState.COMPLETED
    assert await store.finished_groups([group.id]) == [(group.id, ["w1"])]  # members' worker only
    assert await store.finished_groups([group.id]) == []  # once
    listed = await store.list_jobs(JobFilter(group=group.id))
    assert sorted(j.id for j in listed) == [*(j.id for j in jobs), finals[0].id]


@pytest.mark.parametrize(
    ("policy", "expected", "reason"),
    [
        ("all_completed", GroupState.FAILED, "1 of 3 members did not complete (1 failed)"),
        ("all_ended", GroupState.FINALIZING, None),
    ],
)
async def test_policies(store: Store, policy: str, expected: GroupState, reason: str | None) -> None:
    """groups.lua group_end / group_failure ↔ workflow.record_end / _failure_reason."""
    await attach(store, "w1", slots=10)
    group, jobs, _ = await store.submit_group(group_of(3, policy=policy), [spec() for _ in range(3)], T0)
    await run_all(store, "w1", fail={jobs[1].id})
    await store.finished_groups([group.id])
    found = await store.get_group(group.id)
    assert found is not None and found[0].state is expected and found[0].reason == reason
    assert found[0].ended == {"completed": 2, "failed": 1}
    assert (found[0].finalize_id is not None) == (policy == "all_ended")


async def test_a_group_without_finalize_completes_with_its_last_member(store: Store) -> None:
    await attach(store, "w1", slots=10)
    group, _, _ = await store.submit_group(group_of(2, finalize=False), [spec(), spec()], T0)
    await run_all(store, "w1")
    found = await store.get_group(group.id)
    assert found is not None and found[0].state is GroupState.COMPLETED and found[0].finalize_id is None


async def test_cancel_a_group(store: Store) -> None:
    """gcancel.lua ↔ workflow.cancel_group: its live members end cancelled, no finalize job."""
    await attach(store, "w1", slots=1)
    group, jobs, _ = await store.submit_group(group_of(3), [spec() for _ in range(3)], T0)
    (_running,) = await store.claim("w1", 1, T0, TTL)
    cancelled, stopped = await store.cancel_group(group.id, T0 + 1)
    assert cancelled.state is GroupState.CANCELLED
    assert sorted((j.id, w) for j, w in stopped) == [
        (jobs[0].id, "w1"),
        (jobs[1].id, None),
        (jobs[2].id, None),
    ]
    found = await store.get_group(group.id)
    assert found is not None and found[0].ended == {"cancelled": 3} and found[0].finalize_id is None
    with pytest.raises(Conflict):
        await store.cancel_group(group.id, T0 + 2)
    with pytest.raises(NotFound):
        await store.cancel_group(10**9, T0)
    assert await store.finished_groups([group.id]) == [(group.id, ["w1"])]


async def test_a_key_names_the_group(store: Store) -> None:
    first, _jobs, created = await store.submit_group(group_of(2), [spec(), spec()], T0, "k1")
    again, more, created_again = await store.submit_group(group_of(2), [spec(), spec()], T0, "k1")
    assert created and not created_again and again.id == first.id and more == []


async def test_groups_survive_a_restart(backend: Backend) -> None:
    if not backend.durable:
        pytest.skip("the memory store keeps nothing")
    store = await backend.open()
    await attach(store, "w1", slots=10)
    group, jobs, _ = await store.submit_group(group_of(4), [spec() for _ in range(4)], T0)
    claimed = await store.claim("w1", 2, T0, TTL)
    for job in claimed:
        await store.complete([Completion(job.id, job.token, [b"x"])], T0)
    store = await backend.reopen(store, T0 + 10)
    found = await store.get_group(group.id)
    assert found is not None and found[0].ended == {"completed": 2} and found[0].state is GroupState.RUNNING
    await attach(store, "w2", slots=10)
    await store.tick(T0 + 100)  # the rest's leases lapse: queued again
    await run_all(store, "w2", now=T0 + 101)
    await store.finished_groups([group.id])
    found = await store.get_group(group.id)
    assert found is not None and found[0].state is GroupState.FINALIZING
    payload = json.loads((await store.get(found[0].finalize_id or 0)).payload[0])  # type: ignore[union-attr]
    assert [m["id"] for m in payload["members"]] == [j.id for j in jobs]
    assert msgspec.json.decode(json.dumps(payload["counts"])) == {"completed": 4}
    assert JobState.COMPLETED.value == "completed"
