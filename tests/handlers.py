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


async def poison_or_sleep(payload: bytes, ctx: JobContext) -> bytes:
    """``poison`` kills the worker's process (``os._exit``: no goodbye) after noting the start;
    any other payload is ``traced_sleep``'s."""
    if payload == b"poison":
        _trace("started", ctx)
        os._exit(1)
    return await traced_sleep(payload, ctx)


async def slow_first(payload: bytes, ctx: JobContext) -> bytes:
    """Sleeps the seconds in the payload on the job's first attempt only; later ones end at once."""
    _trace("started", ctx)
    if ctx.attempt == 1:
        await ctx.sleep(float(payload or b"0"))
    return b"attempt %d" % ctx.attempt


def missing_key(payload: bytes) -> bytes:
    """Raises ``KeyError: 'missing'`` from this line (its traceback names this file and line)."""
    found: dict[str, bytes] = {}
    return found["missing"]  # the line a failure's traceback names
