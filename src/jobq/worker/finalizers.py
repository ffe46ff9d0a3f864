"""The built-in finalize handlers (``docs/workflows.md``, "Finalize"): ``concat`` and
``arrow-concat``, served like any handler (``jobq worker --service concat --handler concat``).

A finalize job's payload is the manifest of its group's members (in member order) and their
inlined results (``core/workflow.finalize_input``). A result too big to be inlined is referenced
by its member's id; these handlers refuse such input (not retryable), saying so: fetch those
results yourself in a handler of your own (``read_finalize_input`` and ``Client.result``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from jobq.core.errors import InvalidRequest
from jobq.core.model import Frames
from jobq.core.workflow import concat as concat_results
from jobq.core.workflow import read_finalize_input
from jobq.worker.context import HandlerError, HandlerFn, JobContext


async def concat(payload: bytes, ctx: JobContext) -> Frames:
    """The completed members' results in member order, joined (args ``mode``, ``separator``)."""
    try:
        return concat_results(ctx.frames)
    except InvalidRequest as exc:
        raise HandlerError(f"concat: {exc.message}", retryable=False) from None


def arrow_concat_frames(frames: Sequence[bytes]) -> bytes:
    """The completed members' Arrow IPC stream results, as one Arrow IPC stream (their record
    batches in member order; every member must have the same schema). Needs ``jobq[arrow]``."""
    try:
        import pyarrow as pa  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        raise HandlerError("arrow-concat needs pyarrow: pip install 'jobq[arrow]'", retryable=False) from None
    try:
        found = read_finalize_input(frames)
        tables = []
        for entry in found.manifest.members:
            if entry.state != "completed":
                continue
            result = found.result(entry)
            if result:
                tables.append(pa.ipc.open_stream(pa.py_buffer(b"".join(result))).read_all())
    except InvalidRequest as exc:
        raise HandlerError(f"arrow-concat: {exc.message}", retryable=False) from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise HandlerError(
            f"arrow-concat: a member's result is not an Arrow IPC stream: {exc}", retryable=False
        ) from None
    if not tables:
        return b""
    try:
        table = pa.concat_tables(tables)
    except pa.ArrowInvalid as exc:
        raise HandlerError(f"arrow-concat: the members' schemas differ: {exc}", retryable=False) from None
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


async def arrow_concat(payload: bytes, ctx: JobContext) -> bytes:
    return arrow_concat_frames(ctx.frames)


FINALIZERS: dict[str, HandlerFn] = {"concat": concat, "arrow-concat": arrow_concat}
