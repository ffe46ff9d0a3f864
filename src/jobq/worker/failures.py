"""Failed attempts as the worker SDK reports them.

- A handler that raised: the failure carries its formatted traceback (the frames of the SDK
  that ran it left out, cut to ``TRACEBACK_LIMIT`` bytes keeping the innermost frames). A
  ``HandlerError`` (a failure on purpose, with a message) carries none.
- Each failure is logged on ``jobq.worker``: WARNING when the job may be retried, ERROR when
  it ends (not retryable, or its last attempt), with the traceback as ``logging.exception``
  shows one. The job's id, service and attempt are named; never its payload or any token.
"""

from __future__ import annotations

import logging
import traceback
from types import TracebackType

from jobq.core.model import Assignment, bound_traceback
from jobq.protocol import native as jqp

log = logging.getLogger("jobq.worker")

#: Modules whose frames lead a handler's traceback (the SDK running it), left out of it.
_RUNNERS = ("jobq.worker.", "concurrent.futures.", "asyncio.")


def _handler_frames(exc: BaseException) -> TracebackType | None:
    """The traceback of ``exc`` from the first frame that is not the SDK's (the handler's)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        module = str(tb.tb_frame.f_globals.get("__name__", ""))
        if not module.startswith(_RUNNERS):
            break
        tb = tb.tb_next
    return tb


def format_traceback(exc: BaseException) -> str | None:
    """What a failure carries: the handler's traceback, at most ``TRACEBACK_LIMIT`` bytes."""
    text = "".join(traceback.format_exception(type(exc), exc, _handler_frames(exc)))
    return bound_traceback(text)


def failure(
    assignment: Assignment, error: str, retryable: bool, exc: BaseException | None = None
) -> jqp.Fail:
    """Log a failed attempt and make its message. ``exc`` is the exception its handler
    raised, if it is to be shown (None for a ``HandlerError``)."""
    final = not retryable or assignment.attempt >= assignment.max_attempts
    trace = None
    exc_info: tuple[type[BaseException], BaseException, TracebackType | None] | None = None
    if exc is not None:
        trace = format_traceback(exc)
        exc_info = (type(exc), exc, _handler_frames(exc))
    log.log(
        logging.ERROR if final else logging.WARNING,
        "job %d (%s) failed on attempt %d of %d%s: %s",
        assignment.id,
        assignment.service,
        assignment.attempt,
        assignment.max_attempts,
        "" if final else " (retryable)",
        error,
        exc_info=exc_info,
    )
    return jqp.Fail(
        id=assignment.id, token=assignment.token, error=error[:4000], retryable=retryable, traceback=trace
    )
