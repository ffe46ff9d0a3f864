"""The built-in finalize handlers (worker/finalizers.py) and the worker's FINISHED hooks
(worker/group_hooks.py), called directly."""

from __future__ import annotations

import asyncio
import io

import pytest

from jobq.core.model import Assignment, JobSpec
from jobq.core.states import JobState
from jobq.core.workflow import Group, MemberOutcome, finalize_input
from jobq.worker.context import HandlerError, JobContext
from jobq.worker.finalizers import arrow_concat_frames, concat
from jobq.worker.group_hooks import GroupHooks
from jobq.worker.handlers import resolve


def finalize_payload(
    results: list[bytes | None], args: bytes = b"", budget: int | None = None
) -> list[bytes]:
    group = Group(
        id=10,
        service="s",
        total=len(results),
        created_at=0.0,
        finalize=JobSpec(service="f", payload=[args] if args else []),
    )
    outcomes = [
        MemberOutcome(index=i, id=11 + i, state=JobState.COMPLETED if r is not None else JobState.FAILED,
                      result=[r] if r is not None else None, error=None if r is not None else "boom")
        for i, r in enumerate(results)
    ]  # fmt: skip
    return finalize_input(group, outcomes, **({"inline_budget": budget} if budget is not None else {}))


def context(frames: list[bytes]) -> JobContext:
    return JobContext(Assignment(id=99, token=1, service="concat", payload=frames), lambda *_: None)


async def test_concat_joins_completed_members_in_order() -> None:
    frames = finalize_payload([b"a", None, b"c"], b'{"separator": "+"}')
    assert await concat(b"", context(frames)) == [b"a+c"]
    assert resolve("concat").name == "concat" and resolve("arrow-concat").name == "arrow-concat"


async def test_concat_refuses_results_it_cannot_see_without_retrying() -> None:
    frames = finalize_payload([b"aaaa", b"bbbb"], budget=4)  # the second is referenced
    with pytest.raises(HandlerError, match="not fetched") as caught:
        await concat(b"", context(frames))
    assert caught.value.retryable is False


def test_arrow_concat_fuses_members_streams_in_order() -> None:
    pa = pytest.importorskip("pyarrow", reason="arrow-concat needs the jobq[arrow] extra (pyarrow)")

    def stream(values: list[int]) -> bytes:
        table = pa.table({"well": [f"A{v:02d}" for v in values], "value": values})
        sink = io.BytesIO()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return sink.getvalue()

    frames = finalize_payload([stream([1, 2]), None, stream([3])])
    fused = pa.ipc.open_stream(pa.py_buffer(arrow_concat_frames(frames))).read_all()
    assert fused.column("value").to_pylist() == [1, 2, 3]
    assert fused.column("well").to_pylist() == ["A01", "A02", "A03"]
    with pytest.raises(HandlerError, match="not an Arrow IPC stream"):
        arrow_concat_frames(finalize_payload([b"not arrow"]))
    other = pa.table({"x": [1.5]})
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, other.schema) as writer:
        writer.write_table(other)
    with pytest.raises(HandlerError, match="schemas differ"):
        arrow_concat_frames(finalize_payload([stream([1]), sink.getvalue()]))


async def test_group_finished_hooks_run_sync_and_async_and_survive_a_failing_one() -> None:
    hooks = GroupHooks()
    told: list[tuple[str, int]] = []

    @hooks.on_group_finished
    def first(group_id: int) -> None:
        told.append(("sync", group_id))

    @hooks.on_group_finished
    def broken(group_id: int) -> None:
        raise RuntimeError("oops")

    @hooks.on_group_finished
    async def later(group_id: int) -> None:
        await asyncio.sleep(0)
        told.append(("async", group_id))

    hooks._group_finished(7)
    for _ in range(5):
        await asyncio.sleep(0)
    assert told == [("sync", 7), ("async", 7)]
