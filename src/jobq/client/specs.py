"""What a client submits and gets back: payloads in their friendly forms, a :class:`JobSpec`
from keyword options (``jobq.client.client`` re-exports both), a job's end as an event."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from jobq.core.model import JSON, TEXT, Frames, Job, JobEvent, JobSpec
from jobq.errors import InvalidRequest

PayloadLike = bytes | bytearray | memoryview | str | Sequence[bytes] | Mapping[str, Any] | None


def to_frames(payload: PayloadLike, content_type: str | None = None) -> tuple[Frames, str | None]:
    """bytes → one frame; str → UTF-8 text; a list of bytes → frames; a dict → JSON."""
    if payload is None:
        return [], content_type
    if isinstance(payload, bytes | bytearray | memoryview):
        return [bytes(payload)], content_type
    if isinstance(payload, str):
        return [payload.encode()], content_type or TEXT
    if isinstance(payload, Mapping):
        return [json.dumps(payload).encode()], content_type or JSON
    frames = list(payload)
    if not all(isinstance(f, bytes) for f in frames):
        raise InvalidRequest("a payload list must hold bytes frames")
    return frames, content_type


def make_spec(service: str, payload: PayloadLike = None, **options: Any) -> JobSpec:
    """A JobSpec from friendly arguments (``requires``, ``priority``, ``customer_id``,
    ``backoff``, ``run_at``...)."""
    frames, content_type = to_frames(payload, options.pop("content_type", None))
    try:
        return JobSpec(service=service, payload=frames, content_type=content_type, **options)
    except TypeError as exc:
        raise InvalidRequest(f"unknown job option: {exc}") from None


def final_event(job: Job) -> JobEvent:
    """The end of a job as an event, for a job whose end was pushed while we were away."""
    return JobEvent(
        id=job.id,
        kind=job.state.value,  # type: ignore[arg-type]
        state=job.state,
        at=job.finished_at or 0.0,
        service=job.service,
        worker=job.worker,
        attempt=job.attempts,
        error=job.error,
        result=job.result,
        customer_id=job.customer_id,
    )
