"""One contract, every store: each behaviour is written once and runs on every backend.

The rules the Redis store's Lua scripts mirror from Python have their cases in
``test_mirrored_rules.py`` (the map is in docs/redis.md)."""

from __future__ import annotations

import pytest

from jobq.core.model import Completion, Job, JobFilter, WorkerInfo
from jobq.core.states import JobState
from jobq.errors import Conflict, LeaseLost, NotFound
from jobq.store.base import Store
from tests.contract.support import T0, TTL, Backend, attach, spec, submit_one

# ---------------------------------------------------------------- submit and get


async def test_submit_assigns_increasing_ids_and_keeps_payload_exactly(store: Store) -> None:
    frames = [b"", bytes(range(256)), b"\x00" * 70_000, b"last"]
    done = await store.submit([spec(payload=b"a"), spec(payload=frames), spec(payload=[])], T0)
    ids = [d.job.id for d in done]
    assert ids == sorted(ids) and len(set(ids)) == 3 and ids[0] >= 1
    assert all(d.created and d.job.state is JobState.QUEUED for d in done)
    job = await store.get(ids[1])
    assert job is not None and job.payload == frames
    empty = await store.get(ids[2])
    assert empty is not None and empty.payload == []
    assert await store.get(999_999) is None


async def test_idempotency_key_returns_the_first_job(store: Store) -> None:
    first = await submit_one(store, spec(idempotency_key="k1"))
    again = await store.submit(
        [
            spec(payload=b"other", idempotency_key="k1"),
            spec(idempotency_key="k2"),
            spec(idempotency_key="k2"),
        ],
        T0,
    )
    assert again[0].job.id == first.id and not again[0].created
    assert again[1].created and not again[2].created and again[2].job.id == again[1].job.id


async def test_delay_makes_a_scheduled_job_that_becomes_queued_on_time(store: Store) -> None:
    job = await submit_one(store, spec(delay=5))
    assert job.state is JobState.SCHEDULED
    await attach(store)
    assert await store.claim("w1", 1, T0 + 1, TTL) == []
    assert (await store.tick(T0 + 4)).promoted == 0
    assert (await store.tick(T0 + 5.01)).promoted == 1
    (claimed,) = await store.claim("w1", 1, T0 + 5.02, TTL)
    assert claimed.id == job.id


async def test_run_at_in_the_past_is_queued_at_once(store: Store) -> None:
    job = await submit_one(store, spec(run_at=T0 - 100))
    assert job.state is JobState.QUEUED


# ---------------------------------------------------------------- claiming


async def test_claim_priority_then_fifo_and_slots(store: Store) -> None:
    low = await submit_one(store, spec(priority=0))
    high1 = await submit_one(store, spec(priority=10))
    high2 = await submit_one(store, spec(priority=10))
    await attach(store, slots=2)
    claimed = await store.claim("w1", 5, T0, TTL)
    assert [j.id for j in claimed] == [high1.id, high2.id]
    assert all(j.state is JobState.RUNNING and j.attempts == 1 and j.worker == "w1" for j in claimed)
    assert await store.claim("w1", 5, T0, TTL) == []
    await store.complete([Completion(high1.id, 1, [b"r"])], T0)
    (next_job,) = await store.claim("w1", 5, T0, TTL)
    assert next_job.id == low.id


async def test_claim_only_what_the_worker_can_run(store: Store) -> None:
    gpu = await submit_one(store, spec(requires={"hardware.gpu_memory_gb": 16}))
    other = await submit_one(store, spec(service="resize"))
    plain = await submit_one(store)
    await attach(store, "small", slots=10, caps={"hardware.gpu_memory_gb": 8})
    assert [j.id for j in await store.claim("small", 10, T0, TTL)] == [plain.id]
    await attach(store, "big", services=("echo", "resize"), slots=10, caps={"hardware.gpu_memory_gb": 24})
    assert sorted(j.id for j in await store.claim("big", 10, T0, TTL)) == [gpu.id, other.id]


async def test_a_claim_records_the_principal_that_attached_the_worker(store: Store) -> None:
    first, second = await submit_one(store), await submit_one(store)
    await store.attach_worker(WorkerInfo(id="w1", services=["echo"], principal="gpu"), T0)
    (claimed,) = await store.claim("w1", 1, T0, TTL)
    assert claimed.holder == "gpu"
    assert (await store.get(claimed.id)).holder == "gpu"  # type: ignore[union-attr]
    await store.attach_worker(WorkerInfo(id="w1", services=["echo"], slots=2), T0)  # no principal now
    (other,) = await store.claim("w1", 1, T0, TTL)
    assert {claimed.id, other.id} == {first.id, second.id} and other.holder is None


async def test_unknown_worker_claims_nothing(store: Store) -> None:
    await submit_one(store)
    assert await store.claim("nobody", 1, T0, TTL) == []


# ---------------------------------------------------------------- finishing


async def test_complete_keeps_result_and_fences_stale_tokens(store: Store) -> None:
    job = await submit_one(store)
    await attach(store)
    await store.claim("w1", 1, T0, TTL)
    outcome = await store.complete(
        [Completion(job.id, 2, [b"late"]), Completion(job.id, 1, [b"ok", b""])], T0 + 1
    )
    assert isinstance(outcome[0], LeaseLost)
    assert isinstance(outcome[1], Job) and outcome[1].state is JobState.COMPLETED
    again = await store.complete([Completion(job.id, 1, [b"twice"])], T0 + 2)
    assert isinstance(again[0], LeaseLost)
    stored = await store.get(job.id)
    assert stored is not None and stored.result == [b"ok", b""] and stored.finished_at == T0 + 1


async def test_failures_retry_with_backoff_then_end_failed(store: Store) -> None:
    job = await submit_one(store, spec(max_attempts=2, backoff=10))
    await attach(store)
    await store.claim("w1", 1, T0, TTL)
    after = await store.fail(job.id, 1, "boom", T0, rand=0.0)
    assert after.state is JobState.SCHEDULED and after.run_at == T0 + 5 and after.error == "boom"
    await store.tick(T0 + 5)
    (again,) = await store.claim("w1", 1, T0 + 5, TTL)
    assert again.attempts == 2
    with pytest.raises(LeaseLost):
        await store.fail(job.id, 1, "stale", T0 + 6)
    final = await store.fail(job.id, 2, "boom again", T0 + 6)
    assert final.state is JobState.FAILED and final.error == "boom again"
    stored = await store.get(job.id)
    assert stored is not None and stored.state is JobState.FAILED


async def test_not_retryable_fails_at_once(store: Store) -> None:
    job = await submit_one(store, spec(max_attempts=5))
    await attach(store)
    await store.claim("w1", 1, T0, TTL)
    assert (await store.fail(job.id, 1, "bad input", T0, retryable=False)).state is JobState.FAILED


async def test_a_failed_job_avoids_its_worker_when_another_can_run_it(store: Store) -> None:
    job = await submit_one(store, spec(backoff=0))
    await attach(store, "w1", slots=1)
    await attach(store, "w2", slots=1)
    (claimed,) = await store.claim("w1", 1, T0, TTL)
    await store.fail(job.id, 1, "boom", T0)
    await store.tick(T0 + 0.1)
    assert await store.claim("w1", 1, T0 + 0.2, TTL) == []
    (again,) = await store.claim("w2", 1, T0 + 0.2, TTL)
    assert again.id == claimed.id


async def test_release_requeues_at_the_front_and_costs_no_attempt(store: Store) -> None:
    first = await submit_one(store, spec(max_attempts=1))
    second = await submit_one(store)
    await attach(store, slots=1)
    await store.claim("w1", 1, T0, TTL)
    released = await store.release(first.id, 1, T0 + 1)
    assert released.state is JobState.QUEUED and released.attempts == 0
    (again,) = await store.claim("w1", 1, T0 + 2, TTL)
    assert again.id == first.id and again.attempts == 1 and again.token == 2
    final = await store.release(first.id, 2, T0 + 3)
    assert final.state is JobState.QUEUED
    (same,) = await store.claim("w1", 1, T0 + 4, TTL)
    assert same.id == first.id
    await store.complete([Completion(first.id, same.token, [])], T0 + 5)
    (nxt,) = await store.claim("w1", 1, T0 + 6, TTL)
    assert nxt.id == second.id


async def test_detaching_a_worker_requeues_its_jobs(store: Store) -> None:
    a = await submit_one(store)
    b = await submit_one(store)
    await attach(store, "w1", slots=5)
    await store.claim("w1", 5, T0, TTL)
    released = await store.detach_worker("w1", T0 + 1)
    assert sorted(j.id for j in released) == [a.id, b.id]
    assert all(j.state is JobState.QUEUED for j in released)
    await attach(store, "w2", slots=5)
    assert sorted(j.id for j in await store.claim("w2", 5, T0 + 2, TTL)) == [a.id, b.id]


async def test_leases_expire_without_heartbeats_and_heartbeats_renew_them(store: Store) -> None:
    a = await submit_one(store)
    await attach(store)
    await store.claim("w1", 1, T0, TTL)
    await store.touch_worker("w1", T0 + 20, TTL)
    assert (await store.tick(T0 + TTL + 1)).expired == []
    result = await store.tick(T0 + 20 + TTL + 1)
    assert [(j.id, w) for j, w in result.expired] == [(a.id, "w1")]
    job = await store.get(a.id)
    assert job is not None and job.state is JobState.QUEUED


async def test_timeout_fails_the_attempt(store: Store) -> None:
    job = await submit_one(store, spec(timeout=5, max_attempts=1))
    await attach(store)
    await store.claim("w1", 1, T0, TTL)
    await store.touch_worker("w1", T0 + 4, TTL)
    assert (await store.tick(T0 + 4)).expired == []
    result = await store.tick(T0 + 6)
    assert [j.id for j, _ in result.expired] == [job.id]
    stored = await store.get(job.id)
    assert stored is not None and stored.state is JobState.FAILED and "timed out" in (stored.error or "")


async def test_progress_is_fenced(store: Store) -> None:
    job = await submit_one(store)
    await attach(store)
    await store.claim("w1", 1, T0, TTL)
    updated = await store.progress(job.id, 1, 50.0, "half", T0)
    assert updated.progress == 50.0 and updated.progress_message == "half"
    with pytest.raises(LeaseLost):
        await store.progress(job.id, 7, 60.0, None, T0)


async def test_adopt_keeps_held_attempts_whose_lease_holds(store: Store) -> None:
    a = await submit_one(store)
    b = await submit_one(store)
    await attach(store, slots=2)
    await store.claim("w1", 2, T0, TTL)
    await store.release(b.id, 1, T0)
    kept = await store.adopt("w1", [(a.id, 1), (b.id, 1), (a.id, 9)], T0 + 1, TTL)
    assert kept == [a.id]


# ---------------------------------------------------------------- cancelling and retrying


async def test_cancel_queued_running_and_ended(store: Store) -> None:
    queued = await submit_one(store)
    running = await submit_one(store)
    await attach(store, slots=1)
    cancelled, worker = await store.cancel(queued.id, T0)
    assert cancelled.state is JobState.CANCELLED and worker is None
    (claimed,) = await store.claim("w1", 1, T0, TTL)
    assert claimed.id == running.id
    cancelled, worker = await store.cancel(running.id, T0)
    assert worker == "w1"
    late = await store.complete([Completion(running.id, 1, [b"r"])], T0)
    assert isinstance(late[0], LeaseLost)
    with pytest.raises(Conflict):
        await store.cancel(running.id, T0)
    with pytest.raises(NotFound):
        await store.cancel(123_456, T0)
    assert await store.claim("w1", 1, T0, TTL) == []


async def test_cancel_scheduled(store: Store) -> None:
    job = await submit_one(store, spec(delay=1))
    await store.cancel(job.id, T0)
    await attach(store)
    await store.tick(T0 + 2)
    assert await store.claim("w1", 1, T0 + 2, TTL) == []


async def test_retry_a_dead_letter(store: Store) -> None:
    job = await submit_one(store, spec(max_attempts=1))
    await attach(store)
    await store.claim("w1", 1, T0, TTL)
    await store.fail(job.id, 1, "boom", T0)
    again = await store.retry(job.id, T0 + 1)
    assert again.state is JobState.QUEUED and again.attempts == 0 and again.error is None
    (claimed,) = await store.claim("w1", 1, T0 + 1, TTL)
    assert claimed.id == job.id and claimed.attempts == 1
    with pytest.raises(Conflict):
        await store.retry(job.id, T0 + 2)


# ---------------------------------------------------------------- listing, stats, retention


async def test_list_filters_and_pages_newest_first(store: Store) -> None:
    ids = [
        (await submit_one(store, spec(service="a" if i % 2 else "b", customer_id="c1"))).id for i in range(6)
    ]
    await attach(store, services=("a",), slots=1)
    (running,) = await store.claim("w1", 1, T0, TTL)
    await store.complete([Completion(running.id, 1, [])], T0)
    listed = await store.list_jobs(JobFilter(limit=100))
    assert [j.id for j in listed] == sorted(ids, reverse=True)
    only_a = await store.list_jobs(JobFilter(service="a"))
    assert {j.service for j in only_a} == {"a"} and len(only_a) == 3
    done = await store.list_jobs(JobFilter(states=[JobState.COMPLETED]))
    assert [j.id for j in done] == [running.id]
    queued = await store.list_jobs(JobFilter(states=[JobState.QUEUED], limit=2, offset=1))
    assert len(queued) == 2 and all(j.state is JobState.QUEUED for j in queued)
    assert len(await store.list_jobs(JobFilter(customer_id="c1"))) == 6
    assert await store.list_jobs(JobFilter(customer_id="nobody")) == []


async def test_stats_count_by_state_and_service(store: Store) -> None:
    await store.submit([spec(service="a"), spec(service="a"), spec(service="b", delay=60)], T0)
    stats = await store.stats()
    assert stats.by_state == {"queued": 2, "scheduled": 1}
    assert stats.by_service == {"a": {"queued": 2}, "b": {"scheduled": 1}}


async def test_finished_jobs_are_forgotten_after_their_ttl(store: Store) -> None:
    job = await submit_one(store, spec(result_ttl=10, idempotency_key="once"))
    await attach(store)
    await store.claim("w1", 1, T0, TTL)
    await store.complete([Completion(job.id, 1, [b"r"])], T0)
    assert (await store.tick(T0 + 9)).purged == 0
    assert (await store.tick(T0 + 11)).purged == 1
    assert await store.get(job.id) is None
    assert (await store.stats()).by_state.get("completed", 0) == 0
    fresh = await submit_one(store, spec(idempotency_key="once"), T0 + 12)
    assert fresh.id != job.id


async def test_blocked_jobs_name_the_reason(store: Store) -> None:
    job = await submit_one(store, spec(service="nobody-serves-this"))
    blocked = await store.blocked()
    assert [(i, "no connected worker serves nobody-serves-this") for i in [job.id]] == blocked
    await attach(store, services=("nobody-serves-this",))
    assert await store.blocked() == []


# ---------------------------------------------------------------- durability


async def test_a_reopened_store_has_every_job_and_requeues_orphans(backend: Backend) -> None:
    if not backend.durable:
        pytest.skip("memory:// keeps nothing")
    store = await backend.open()
    queued = await submit_one(store, spec(payload=[b"a", b"\x00"]))
    running = await submit_one(store)
    done = await submit_one(store)
    later = await submit_one(store, spec(delay=100))
    await attach(store, slots=2)
    claimed = await store.claim("w1", 2, T0, TTL)
    assert [j.id for j in claimed] == [queued.id, running.id]
    await store.complete([Completion(queued.id, 1, [b"r"])], T0)
    store = await backend.reopen(store, T0 + 1)
    got = await store.get(queued.id)
    assert got is not None and got.state is JobState.COMPLETED and got.result == [b"r"]
    orphan = await store.get(running.id)
    assert orphan is not None and orphan.state is JobState.RUNNING
    # the worker comes back holding it: it keeps it
    await attach(store, slots=2)
    assert await store.adopt("w1", [(running.id, 1)], T0 + 2, TTL) == [running.id]
    (nxt,) = await store.claim("w1", 2, T0 + 2, TTL)
    assert nxt.id == done.id
    sched = await store.get(later.id)
    assert sched is not None and sched.state is JobState.SCHEDULED
    new = await submit_one(store, now=T0 + 3)
    assert new.id > later.id


async def test_reopened_running_job_without_its_worker_is_requeued_by_lease(backend: Backend) -> None:
    if not backend.durable:
        pytest.skip("memory:// keeps nothing")
    store = await backend.open()
    job = await submit_one(store)
    await attach(store)
    await store.claim("w1", 1, T0, TTL)
    store = await backend.reopen(store, T0 + 1)
    result = await store.tick(T0 + 1 + TTL + 1)
    assert [j.id for j, _ in result.expired] == [job.id]
    await attach(store, "w2")
    (again,) = await store.claim("w2", 1, T0 + 40, TTL)
    assert again.id == job.id and again.attempts == 2


# ---------------------------------------------------------------- fairness


async def test_a_flooding_customer_does_not_starve_another(store: Store) -> None:
    await store.submit([spec(customer_id="flood") for _ in range(50)], T0)
    (single,) = await store.submit([spec(customer_id="single")], T0)
    await attach(store, slots=3)
    taken = [j.id for j in await store.claim("w1", 3, T0, TTL)]
    assert single.job.id in taken[:2]


async def test_customer_weights_share_in_proportion(store: Store) -> None:
    await store.set_customer_weight("big", 3)
    await store.submit([spec(customer_id="big") for _ in range(200)], T0)
    await store.submit([spec(customer_id="small") for _ in range(200)], T0)
    await attach(store, slots=200)
    taken = [j.customer_id for j in await store.claim("w1", 200, T0, TTL)]
    assert 140 <= taken.count("big") <= 160


async def test_priority_comes_before_fairness(store: Store) -> None:
    await store.submit([spec(customer_id="a", priority=0)], T0)
    high = await store.submit([spec(customer_id="b", priority=5) for _ in range(3)], T0)
    await attach(store, slots=3)
    assert [j.id for j in await store.claim("w1", 3, T0, TTL)] == [h.job.id for h in high]


async def test_a_listing_by_ids_returns_those_jobs_with_the_other_filters(store: Store) -> None:
    """``JobFilter.ids``: exactly the named jobs that exist, live or ended, the query's other
    filters applied, newest first, paged (the embedded stores look them up: embedded_query.py)."""
    made = [(await submit_one(store, spec(service="a" if i % 2 else "b"))).id for i in range(8)]
    await attach(store, services=("a",), slots=1)
    (running,) = await store.claim("w1", 1, T0, TTL)
    await store.complete([Completion(running.id, 1, [])], T0)
    await store.cancel(made[0], T0)
    named = [made[6], made[0], running.id, made[3], 99_999, made[6]]  # a duplicate, a missing id

    async def listed(**kw: object) -> list[int]:
        return [j.id for j in await store.list_jobs(JobFilter(ids=named, **kw))]  # type: ignore[arg-type]

    every = sorted({made[6], made[0], running.id, made[3]}, reverse=True)
    assert await listed() == every
    assert await listed(service="a") == sorted({running.id, made[3]}, reverse=True)
    assert await listed(states=[JobState.COMPLETED]) == [running.id]
    assert await listed(states=[JobState.CANCELLED, JobState.QUEUED]) == sorted(
        {made[0], made[6], made[3]} - {running.id}, reverse=True
    )
    assert await listed(states=[JobState.QUEUED]) == [i for i in every if i not in (made[0], running.id)]
    assert await listed(limit=2, offset=1) == every[1:3]
    assert await listed(before_id=made[3]) == [i for i in every if i < made[3]]
    assert await listed(customer_id="nobody") == []
    assert [j.id for j in await store.list_jobs(JobFilter(ids=[99_999]))] == []
