"""The handler ``bench.chaos`` workers run (``--handler bench.chaos_handlers:work``).

Every attempt it starts and every result it returns is one line appended to
``$JOBQ_CHAOS_TRACE/<pid>.trace`` with a single ``write`` (so a SIGKILL leaves whole lines):

    S <job id> <token> <attempt> <pid> <unix time>     an attempt started
    E <job id> <token> <attempt> <pid> <unix time>     it finished; its result goes to the hub

The result names the attempt (``<job id>:<token>:<pid>``), so the result the hub stored can
be matched with the attempt that produced it. The payload is the seconds to sleep, or
``poison``: the handler then kills its own process (``os._exit(1)``) after noting the start.
"""

from __future__ import annotations

import asyncio
import os
import time

from jobq.worker.context import JobContext

POISON = b"poison"

_fd: int | None = None


def _note(kind: str, ctx: JobContext) -> None:
    global _fd
    if _fd is None:
        folder = os.environ.get("JOBQ_CHAOS_TRACE", ".")
        _fd = os.open(f"{folder}/{os.getpid()}.trace", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    line = f"{kind} {ctx.id} {ctx.assignment.token} {ctx.attempt} {os.getpid()} {time.time():.6f}\n"
    os.write(_fd, line.encode())


async def work(payload: bytes, ctx: JobContext) -> bytes:
    """Sleeps the seconds in the payload (not cancellable: a worker that lost its lease still
    sends its late result, which the hub must refuse), or dies on ``poison``."""
    _note("S", ctx)
    if payload == POISON:
        os._exit(1)
    await asyncio.sleep(float(payload or b"0"))
    _note("E", ctx)
    return f"{ctx.id}:{ctx.assignment.token}:{os.getpid()}".encode()
