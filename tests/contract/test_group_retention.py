"""Groups and retention on every store (memory, SQLite, Redis), with a fake clock: a member of
a group that has not ended is not forgotten, it is kept its ttl from the group's end, and the
group itself is forgotten its ttl after its end (its key free again). Also ``group_records``.

lua/tick.lua kept_until and the gexp loop ↔ EmbeddedGroups._kept_until and EmbeddedGroups.tick;
lua/groups.lua group_closed ↔ EmbeddedGroups._group_ended.
"""

from __future__ import annotations

from jobq.core.model import Completion
from jobq.core.workflow import Group, GroupState
from jobq.store.base import Store
from tests.contract.support import T0, TTL, Backend, attach, spec

KEEP = 100.0


def plain_group(total: int) -> Group:
    return Group(id=0, service="echo", total=total, created_at=T0)


async def complete_one(store: Store, worker: str, now: float) -> int:
    (job,) = await store.claim(worker, 1, now, TTL)
    await store.complete([Completion(job.id, job.token, [b"done"])], now)
    return job.id


async def test_members_are_kept_until_their_group_ended_plus_their_ttl(backend: Backend) -> None:
    store = await backend.open(result_ttl=KEEP, failed_ttl=KEEP)
    await attach(store, "w1", slots=1)
    group, _jobs, _ = await store.submit_group(plain_group(2), [spec(), spec()], T0, "nightly")
    first = await complete_one(store, "w1", T0)
    await store.tick(T0 + 2 * KEEP)  # its own ttl is over, but its group runs
    assert await store.get(first) is not None
    second = await complete_one(store, "w1", T0 + 3 * KEEP)  # the group ends now
    found = await store.get_group(group.id)
    assert found is not None and found[0].state is GroupState.COMPLETED
    assert found[0].ended_at == T0 + 3 * KEEP
    await store.tick(T0 + 3.5 * KEEP)
    assert await store.get(first) is not None and await store.get(second) is not None
    assert await store.get_group(group.id) is not None
    await store.tick(T0 + 4 * KEEP + 1)  # the group's end + the ttl: all of it forgotten
    assert await store.get(first) is None and await store.get(second) is None
    assert await store.get_group(group.id) is None
    assert await store.group_records([group.id]) == []
    again, _, created = await store.submit_group(plain_group(1), [spec()], T0 + 5 * KEEP, "nightly")
    assert created and again.id != group.id  # its key names no group any more


async def test_a_forgotten_group_stays_forgotten_after_a_restart(backend: Backend) -> None:
    if not backend.durable:
        return
    store = await backend.open(result_ttl=KEEP, failed_ttl=KEEP)
    await attach(store, "w1", slots=1)
    group, _, _ = await store.submit_group(plain_group(1), [spec()], T0)
    kept, _, _ = await store.submit_group(plain_group(1), [spec(service="other")], T0)
    await complete_one(store, "w1", T0)
    await store.tick(T0 + KEEP + 1)
    assert await store.get_group(group.id) is None
    await store.close()
    backend.opened.remove(store)
    store = await backend.open(T0 + KEEP + 2, result_ttl=KEEP, failed_ttl=KEEP)
    assert await store.get_group(group.id) is None
    assert [g.id for g in await store.group_records([group.id, kept.id])] == [kept.id]


async def test_group_records_are_the_groups_without_live_counts(store: Store) -> None:
    await attach(store, "w1", slots=1)
    group, _, _ = await store.submit_group(plain_group(3), [spec(), spec(), spec()], T0)
    await complete_one(store, "w1", T0)
    (record,) = await store.group_records([group.id, 10**9])
    assert (record.id, record.total, record.ended, record.state) == (
        group.id, 3, {"completed": 1}, GroupState.RUNNING,
    )  # fmt: skip


async def test_one_purge_forgets_the_expired_and_keeps_members_of_a_running_group(backend: Backend) -> None:
    """Expired jobs interleaved with members of a group that runs: one tick forgets every one
    of the former and none of the latter (SQLite splits its batch of rows in one pass)."""
    store = await backend.open(result_ttl=KEEP, failed_ttl=KEEP)
    await attach(store, "wp", services=("plain",), slots=1)
    plain, members = [], []
    for i in range(3):
        await store.submit([spec(service="plain")], T0)
        plain.append(await complete_one(store, "wp", T0))
        await attach(store, f"w{i}", services=(f"g{i}",), slots=1)
        await store.submit_group(plain_group(2), [spec(service=f"g{i}"), spec(service=f"g{i}")], T0, None)
        members.append(await complete_one(store, f"w{i}", T0))  # its other member is queued
    assert (await store.tick(T0 + 2 * KEEP)).purged == 3
    assert [await store.get(i) for i in plain] == [None] * 3
    assert None not in [await store.get(i) for i in members]
