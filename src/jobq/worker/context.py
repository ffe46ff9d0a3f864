"""What a handler sees of the job it runs (payload, attempt, progress, cancellation), and how
it says it failed."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any

from jobq.core.model import Assignment, Frames

#: Largest progress preview a worker sends (bytes); larger ones are left out.
PREVIEW_LIMIT = 256 * 1024

#: A handler: called with the payload (and the context when it takes two arguments).
HandlerFn = Callable[..., Any]


class HandlerError(Exception):
    """A handler's failure. ``retryable=False`` ends the job ``failed`` without more attempts."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class JobCancelled(Exception):
    """Raised by :meth:`JobContext.check` once the hub has cancelled the job."""


class JobContext:
    def __init__(
        self,
        assignment: Assignment,
        report_progress: Callable[[float | None, str | None, bytes | None], None],
    ) -> None:
        self.assignment = assignment
        self._report = report_progress
        # A threading.Event so that sync handlers running in threads can watch it too.
        self._cancelled = threading.Event()

    @property
    def id(self) -> int:
        return self.assignment.id

    @property
    def service(self) -> str:
        return self.assignment.service

    @property
    def attempt(self) -> int:
        return self.assignment.attempt

    @property
    def frames(self) -> Frames:
        return self.assignment.payload

    @property
    def payload(self) -> bytes:
        frames = self.assignment.payload
        return frames[0] if len(frames) == 1 else b"".join(frames)

    @property
    def content_type(self) -> str | None:
        return self.assignment.content_type

    def json(self) -> Any:
        return json.loads(self.payload)

    def text(self) -> str:
        return self.payload.decode()

    def progress(
        self, value: float | None = None, message: str | None = None, *, preview: bytes | None = None
    ) -> None:
        """Report progress (a number, say a percentage, and/or a message), with an optional
        small preview (an image of the work so far) for clients that watch. Thread-safe. A
        preview over :data:`PREVIEW_LIMIT` bytes is left out (the progress still goes)."""
        if preview is not None and len(preview) > PREVIEW_LIMIT:
            preview = None
        self._report(value, message, preview)

    @property
    def cancelled(self) -> bool:
        """True once the hub has told this worker to stop the job."""
        return self._cancelled.is_set()

    def check(self) -> None:
        """Raise :class:`JobCancelled` if the job was cancelled (call it between steps)."""
        if self._cancelled.is_set():
            raise JobCancelled(f"job {self.id} was cancelled")

    def cancel(self) -> None:
        self._cancelled.set()

    async def sleep(self, seconds: float) -> None:
        """Sleep, but wake up (raising JobCancelled) as soon as the job is cancelled."""
        step = 0.05
        remaining = seconds
        while remaining > 0:
            self.check()
            await asyncio.sleep(min(step, remaining))
            remaining -= step
        self.check()
