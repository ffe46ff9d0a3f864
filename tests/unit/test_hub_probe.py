"""``Hub.health()``: the liveness and readiness every door's probes answer (issue 12, finding 10):
the store is read with a timeout, at most once per ``STORE_PROBE_EVERY`` whoever asks, and a
store that fails or hangs makes the hub ``store_down`` with the reason, then ``ok`` again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jobq.config import HubConfig
from jobq.core.model import Job
from jobq.errors import Unavailable
from jobq.hub import views
from jobq.hub.hub import Hub
from jobq.store.base import open_store


class Flaky:
    """What the store's ``get`` does: answer, fail, or hang; and how often it was asked."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0

    async def get(self, job_id: int) -> Job | None:
        self.calls += 1
        if self.mode == "fail":
            raise Unavailable("the store is unavailable: redis at 10.0.0.1:6379/0 did not answer (refused)")
        if self.mode == "hang":
            await asyncio.sleep(3600)
        return None


@pytest.fixture
async def probed(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Hub, Flaky]]:
    monkeypatch.setattr(views, "STORE_PROBE_EVERY", 0.05)
    monkeypatch.setattr(views, "STORE_PROBE_TIMEOUT", 0.1)
    store: Any = open_store("memory://")
    flaky = Flaky()
    hub = Hub(store, HubConfig(store="memory://", tick=3600.0))
    await hub.start()
    monkeypatch.setattr(store, "get", flaky.get)
    yield hub, flaky
    if not hub.draining:
        await hub.stop(grace=0)


async def test_a_healthy_store_is_asked_once_whoever_asks(probed: tuple[Hub, Flaky]) -> None:
    hub, store = probed
    answers = await asyncio.gather(*(hub.health() for _ in range(100)))
    assert {(a.status, a.store_ok, a.ready, a.reason) for a in answers} == {("ok", True, True, None)}
    assert store.calls == 1
    for _ in range(10):
        await hub.health()  # within the cache: no more calls
    assert store.calls == 1
    await asyncio.sleep(0.06)
    await hub.health()
    assert store.calls == 2


async def test_a_failing_store_makes_the_hub_store_down_then_ok_again(probed: tuple[Hub, Flaky]) -> None:
    hub, store = probed
    store.mode = "fail"
    found = await hub.health()
    assert (found.status, found.store_ok, found.ready) == ("store_down", False, False)
    assert found.reason is not None and "redis at 10.0.0.1:6379/0 did not answer" in found.reason
    store.mode = "ok"
    await asyncio.sleep(0.06)
    found = await hub.health()
    assert (found.status, found.ready, found.reason) == ("ok", True, None)


async def test_a_hanging_store_counts_as_down_after_the_timeout(probed: tuple[Hub, Flaky]) -> None:
    hub, store = probed
    store.mode = "hang"
    started = asyncio.get_running_loop().time()
    found = await hub.health()
    assert asyncio.get_running_loop().time() - started < 1
    assert found.status == "store_down" and found.reason == "the store did not answer within 0.1s"


async def test_a_caller_that_gives_up_does_not_cancel_the_probe(probed: tuple[Hub, Flaky]) -> None:
    hub, store = probed
    store.mode = "hang"
    impatient = asyncio.ensure_future(hub.health())
    await asyncio.sleep(0.01)
    impatient.cancel()
    found = await hub.health()  # the same probe, still under way, answers this one
    assert found.status == "store_down" and store.calls == 1


async def test_a_draining_hub_is_not_ready(probed: tuple[Hub, Flaky]) -> None:
    hub, _ = probed
    await hub.stop(grace=0)
    found = await hub.health()
    assert (found.status, found.draining, found.ready) == ("draining", True, False)
