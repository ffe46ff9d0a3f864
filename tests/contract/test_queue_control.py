"""The store's part of an operator's control of the queue, on every store: the set of paused
services (kept across a reopen by the durable stores), and cursor paging of job listings
(``JobFilter.before_id``)."""

from __future__ import annotations

import pytest

from jobq.core.model import Completion, JobFilter, WorkerInfo
from jobq.core.operations import MAX_PAUSED
from jobq.core.states import JobState
from jobq.errors import InvalidRequest
from jobq.store.base import Store
from tests.contract.support import T0, TTL, Backend, spec


async def test_paused_services_are_a_set(store: Store) -> None:
    assert await store.paused_services() == []
    assert await store.set_paused("render", True)
    assert not await store.set_paused("render", True)
    assert await store.set_paused("audio", True)
    assert await store.paused_services() == ["audio", "render"]
    assert await store.set_paused("render", False)
    assert not await store.set_paused("render", False)
    assert await store.paused_services() == ["audio"]


async def test_paused_services_survive_a_reopen(backend: Backend) -> None:
    if not backend.durable:
        pytest.skip("the memory store keeps nothing")
    store = await backend.open()
    await store.set_paused("render", True)
    await store.set_paused("gone", True)
    await store.set_paused("gone", False)
    store = await backend.reopen(store, T0 + 10)
    assert await store.paused_services() == ["render"]


async def test_the_number_of_paused_services_is_bounded(store: Store) -> None:
    for i in range(MAX_PAUSED):
        await store.set_paused(f"s{i}", True)
    with pytest.raises(InvalidRequest):
        await store.set_paused("one-more", True)
    assert await store.set_paused("s0", False)


async def test_a_paused_service_left_out_of_a_profile_gets_no_claims(store: Store) -> None:
    """How the hub pauses: the worker's profile leaves the service out (``WorkerInfo.paused``)."""
    [render, echo] = await store.submit([spec("render"), spec("echo")], T0)
    info = WorkerInfo(id="w1", services=["render", "echo"], slots=10, paused=["render"])
    await store.attach_worker(info, T0)
    assert [j.id for j in await store.claim("w1", 10, T0, TTL)] == [echo.job.id]
    info.paused = []
    await store.attach_worker(info, T0 + 1)
    assert [j.id for j in await store.claim("w1", 10, T0 + 1, TTL)] == [render.job.id]


async def test_cursor_paging_gives_every_job_exactly_once(store: Store) -> None:
    done = await store.submit([spec("echo", payload=str(i).encode()) for i in range(250)], T0)
    ids = [d.job.id for d in done]
    # Some of them end, so pages mix live and finished jobs (kept apart by the embedded stores).
    await store.attach_worker(WorkerInfo(id="w1", services=["echo"], slots=60), T0)
    claimed = await store.claim("w1", 60, T0, TTL)
    await store.complete([Completion(j.id, j.token, [b"ok"]) for j in claimed[:40]], T0)
    seen: list[int] = []
    before: int | None = None
    pages = 0
    while True:
        page = await store.list_jobs(JobFilter(limit=100, before_id=before))
        pages += 1
        seen.extend(job.id for job in page)
        if len(page) < 100:
            break
        before = page[-1].id
    assert pages == 3
    assert seen == sorted(ids, reverse=True)
    completed = await store.list_jobs(JobFilter(states=[JobState.COMPLETED], limit=100, before_id=ids[20]))
    assert [j.id for j in completed] == sorted((j.id for j in claimed[:40] if j.id < ids[20]), reverse=True)
    queued = await store.list_jobs(JobFilter(states=[JobState.QUEUED], limit=5, before_id=ids[-1]))
    assert [j.id for j in queued] == sorted(ids, reverse=True)[1:6]
