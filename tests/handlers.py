"""Handlers that test workers load as ``tests.handlers:NAME`` (they leave traces in files)."""

from __future__ import annotations

import os
from pathlib import Path

from jobq.worker.context import JobContext


def _trace(kind: str, ctx: JobContext) -> None:
    folder = os.environ.get("JOBQ_TEST_TRACE")
    if folder:
        with (Path(folder) / f"{ctx.id}.{kind}").open("a") as f:
            f.write(f"{os.getpid()} attempt {ctx.attempt}\n")


async def traced_sleep(payload: bytes, ctx: JobContext) -> bytes:
    """Sleeps the seconds in the payload; records started / finished / cancelled per job."""
    _trace("started", ctx)
    try:
        await ctx.sleep(float(payload or b"0"))
    except Exception:
        _trace("cancelled", ctx)
        raise
    _trace("finished", ctx)
    return b"slept " + payload


def upper(payload: bytes) -> bytes:
    return payload.upper()


def flaky(payload: bytes, ctx: JobContext) -> bytes:
    """Fails on the first attempt, succeeds after."""
    if ctx.attempt < 2:
        raise RuntimeError("first attempt fails")
    return payload
