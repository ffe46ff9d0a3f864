"""Requirements, capabilities and timeouts hold only what the hub can keep; a refusal costs
nothing.

Found by fuzzing the HTTP door: ``"requires": {"x": 10**30}`` was accepted, and every later
SQLite commit failed encoding it, retried forever: the hub was stuck for everyone.
"""

from __future__ import annotations

import gc
import math
from pathlib import Path

import pytest

from jobq.config import HubConfig
from jobq.core.model import Submitted
from jobq.core.validate import check_document
from jobq.core.views import WorkerHello
from jobq.errors import InvalidRequest, PayloadTooLarge
from jobq.hub.hub import Hub
from jobq.store.base import open_store
from tests.unit.test_hub import FakeLink, MakeRig, Rig, spec


def test_documents_refuse_integers_past_64_bits_and_deep_nesting() -> None:
    check_document("requires", {"gpu": {"memory_gb": 2**63 - 1, "names": ["a", 1.5, None, True]}})
    with pytest.raises(InvalidRequest, match="64 bits"):
        check_document("requires", {"x": 10**30})
    with pytest.raises(InvalidRequest, match="64 bits"):
        check_document("requires", {"x": [-(2**63) - 1]})
    deep: object = 1
    for _ in range(40):
        deep = [deep]
    with pytest.raises(InvalidRequest, match="nested"):
        check_document("requires", {"x": deep})


async def test_a_huge_requirement_is_refused_and_the_store_goes_on(tmp_path: Path) -> None:
    hub = Hub(open_store(f"sqlite:///{tmp_path / 'jobq.db'}"), HubConfig(tick=3600.0))
    await hub.start()
    try:
        bad, good = await hub.submit([spec(requires={"x": 10**30}), spec()])
        assert isinstance(bad, InvalidRequest) and "64 bits" in str(bad)
        assert isinstance(good, Submitted)
        again = await hub.submit_one(spec())  # the store still commits
        assert (await hub.get(again.job.id)).state == "queued"
    finally:
        await hub.stop(grace=0)


async def test_a_worker_with_a_huge_capability_is_refused(rig: Rig) -> None:
    hello = WorkerHello(id="w", services=["echo"], capabilities={"hardware": {"ram_gb": 10**30}}, slots=1)
    with pytest.raises(InvalidRequest, match="64 bits"):
        await rig.hub.attach(hello, FakeLink())


async def test_a_wait_with_a_timeout_that_is_not_a_number_is_refused(rig: Rig) -> None:
    # A NaN reached the event loop's timer (``internal`` and a traceback in the hub's log).
    job = (await rig.hub.submit_one(spec())).job
    for timeout in (math.nan, math.inf, -1.0):
        with pytest.raises(InvalidRequest, match="timeout"):
            await rig.hub.wait(job.id, timeout)


async def test_a_refused_submit_leaves_no_cycle_holding_its_payload(make_rig: MakeRig) -> None:
    # Each refused 20 MiB native submit stayed resident: the refusal, kept as the spec's
    # outcome, held the traceback of the frame that held the outcomes (a cycle the hub's tuned
    # collector practically never reaches).
    rig = await make_rig(max_payload=100)
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        outcomes = await rig.hub.submit([spec(payload=b"x" * 1000), spec(requires={"x": 10**30}), spec()])
        assert [type(o) for o in outcomes] == [PayloadTooLarge, InvalidRequest, Submitted]
        del outcomes
        gc.collect()
        assert not [o for o in gc.garbage if isinstance(o, (PayloadTooLarge, InvalidRequest))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
