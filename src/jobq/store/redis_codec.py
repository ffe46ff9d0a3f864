"""How the Redis store writes jobs, shapes, profiles and workers (pure: no I/O).

A job is one Redis hash (layout in ``docs/redis.md``): the static part of the job as one
msgpack field ``d`` (only Python reads it), the payload in ``p``, and a short field per thing a
Lua script reads or changes. Shapes and profiles are named by a digest of their canonical form,
so every hub names them alike.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from jobq.core.matching import Constraint, Profile, Shape
from jobq.core.model import AttemptError, Frames, Isolation, Job, JobSpec, Mark, WorkerInfo
from jobq.core.retry import DEFAULT_MAX_LOSSES
from jobq.core.states import JobState

#: Queue order: priority descending as hex of (PRIORITY_BIAS - priority), 8 characters.
PRIORITY_BIAS = 2**31 - 1


class Static(msgspec.Struct, array_like=True):
    """What never changes about a job (field ``d`` of its hash)."""

    service: str
    submitted_at: float
    content_type: str | None
    priority: int
    requires: dict[str, Any]
    must_not: dict[str, Any]
    customer_id: str | None
    isolation: Isolation
    max_attempts: int
    timeout: float | None
    idempotency_key: str | None
    result_ttl: float | None
    backoff: float | None
    owner: str | None = None


_encode = msgspec.msgpack.Encoder().encode
_decode_static = msgspec.msgpack.Decoder(Static).decode
_decode_frames = msgspec.msgpack.Decoder(Frames).decode
_decode_info = msgspec.msgpack.Decoder(WorkerInfo).decode
_decode_metrics = msgspec.msgpack.Decoder(dict[str, float]).decode
_decode_any = msgspec.msgpack.Decoder().decode
_decode_attempt_errors = msgspec.msgpack.Decoder(list[AttemptError]).decode
_decode_timeline = msgspec.msgpack.Decoder(list[Mark]).decode


def num(value: str | float | int | None) -> str:
    """A number as the Lua scripts take it: exact (``repr`` of a float round-trips)."""
    if value is None:
        return ""
    return repr(float(value)) if isinstance(value, float) else str(value)


_length = struct.Struct(">I").pack


def frame(values: Iterable[bytes | str]) -> bytes:
    """Many values as one script argument (the scripts' ``unframe``): length, bytes, ..."""
    parts = []
    for value in values:
        raw = value.encode() if isinstance(value, str) else value
        parts.append(_length(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def priority_prefix(priority: int) -> str:
    return f"{PRIORITY_BIAS - priority:08x}"


def encode_static(spec: JobSpec, now: float) -> bytes:
    return _encode(
        Static(
            service=spec.service,
            submitted_at=now,
            content_type=spec.content_type,
            priority=spec.priority,
            requires=spec.requires,
            must_not=spec.must_not,
            customer_id=spec.customer_id,
            isolation=spec.isolation,
            max_attempts=spec.max_attempts,
            timeout=spec.timeout,
            idempotency_key=spec.idempotency_key,
            result_ttl=spec.result_ttl,
            backoff=spec.backoff,
            owner=spec.owner,
        )
    )


def decode_static(blob: bytes) -> Static:
    return _decode_static(blob)


def encode_frames(frames: Sequence[bytes]) -> bytes:
    return _encode(list(frames))


def encode_attempt_errors(history: list[AttemptError]) -> bytes:
    """``Job.attempt_errors`` as field ``ae`` of the job's hash (msgpack; Python reads it)."""
    return _encode(history)


def decode_attempt_errors(raw: bytes | None) -> list[AttemptError]:
    return _decode_attempt_errors(raw) if raw else []


def decode_timeline(raw: bytes | None, submitted_at: float) -> list[Mark]:
    """``Job.timeline`` from key ``tl:<id>`` (written by the scripts' ``mark``); a job with none
    has had nothing happen to it since its submit."""
    return _decode_timeline(raw) if raw else [Mark(at=submitted_at, kind="submitted")]


def _float(raw: bytes | None) -> float | None:
    return None if raw is None else float(raw)


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode()


def job_of(job_id: int, fields: Mapping[bytes, bytes]) -> Job:
    """A Job from the fields of its hash."""
    s = _decode_static(fields[b"d"])
    payload = fields.get(b"p")
    result = fields.get(b"res")
    return Job(
        id=job_id,
        service=s.service,
        state=JobState(fields[b"state"].decode()),
        seq=int(fields[b"m"][8:20], 16),
        submitted_at=s.submitted_at,
        payload=_decode_frames(payload) if payload else [],
        content_type=s.content_type,
        priority=s.priority,
        requires=s.requires,
        must_not=s.must_not,
        customer_id=s.customer_id,
        isolation=s.isolation,
        max_attempts=s.max_attempts,
        max_losses=int(fields.get(b"maxl", DEFAULT_MAX_LOSSES)),
        timeout=s.timeout,
        idempotency_key=s.idempotency_key,
        result_ttl=s.result_ttl,
        backoff=s.backoff,
        owner=s.owner,
        attempts=int(fields.get(b"att", b"0")),
        # Written before tokens were kept apart: the attempt number was the token.
        token=int(fields.get(b"tok") or fields.get(b"att", b"0")),
        failures=int(fields.get(b"fl", b"0")),
        losses=int(fields.get(b"ls", b"0")),
        worker=_text(fields.get(b"w")),
        holder=_text(fields.get(b"hp")) or None,
        after=[int(item) for item in fields[b"aft"].split(b",")] if b"aft" in fields else [],
        after_policy="always" if fields.get(b"ap") == b"always" else "completed",
        group=int(fields[b"grp"]) if b"grp" in fields else None,
        run_at=_float(fields.get(b"run")),
        started_at=_float(fields.get(b"st")),
        finished_at=_float(fields.get(b"fin")),
        lease_expires=_float(fields.get(b"lease")),
        progress=_float(fields.get(b"pg")),
        progress_message=_text(fields.get(b"pm")),
        result=_decode_frames(result) if result is not None else None,
        error=_text(fields.get(b"err")),
        avoid_worker=_text(fields.get(b"avoid")),
        expires_at=_float(fields.get(b"exp")),
        attempt_errors=decode_attempt_errors(fields.get(b"ae")),
        timeline=decode_timeline(fields.get(b"tl"), s.submitted_at),
    )


def job_of_flat(flat: Sequence[Any]) -> Job:
    """A Job from a script's answer: ``[id, field, value, field, value, ...]``."""
    it = iter(flat[1:])
    return job_of(int(flat[0]), dict(zip(it, it, strict=True)))


# --------------------------------------------------------------------------- shapes, profiles


def _digest(blob: bytes) -> str:
    return hashlib.blake2b(blob, digest_size=10).hexdigest()


def _value(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def encode_shape(shape: Shape) -> tuple[str, bytes, str]:
    """(id, blob, meta) of a shape. ``meta`` is what Lua needs: GPU demand, isolation, customer."""
    blob = _encode(
        [
            shape.service,
            [
                [c.key, c.op, list(c.value) if isinstance(c.value, tuple) else c.value]
                for c in shape.constraints
            ],
            shape.customer,
            shape.isolation,
            shape.text_line,
        ]
    )
    meta = f"{num(shape.gpu_demand)}\t{shape.isolation}\t{shape.customer or ''}"
    return _digest(blob), blob, meta


def decode_shape(blob: bytes) -> Shape:
    service, constraints, customer, isolation, text_line = _decode_any(blob)
    return Shape(
        service,
        tuple(Constraint(key, op, _value(value)) for key, op, value in constraints),
        customer,
        isolation,
        text_line,
    )


def encode_profile(profile: Profile) -> tuple[str, bytes]:
    blob = _encode(
        [
            sorted(profile.services),
            [
                [key, list(value) if isinstance(value, tuple) else value]
                for key, value in profile.capabilities
            ],
        ]
    )
    return _digest(blob), blob


def decode_profile(blob: bytes) -> Profile:
    services, capabilities = _decode_any(blob)
    caps = tuple((key, _value(value)) for key, value in capabilities)
    return Profile(frozenset(services), caps, dict(caps))


# --------------------------------------------------------------------------- workers


def encode_info(info: WorkerInfo) -> bytes:
    """The registry's copy of a worker (what changes with each heartbeat is kept apart)."""
    return _encode(msgspec.structs.replace(info, running=[], metrics={}))


def encode_metrics(metrics: Mapping[str, float]) -> bytes:
    return _encode(dict(metrics))


def info_of(fields: Mapping[bytes, bytes], running: Sequence[bytes]) -> WorkerInfo:
    info = _decode_info(fields[b"info"])
    info.slots = int(fields.get(b"slots", b"0"))
    info.last_seen = float(fields.get(b"seen", b"0"))
    metrics = fields.get(b"met")
    if metrics:
        info.metrics = _decode_metrics(metrics)
    info.running = sorted(int(job_id) for job_id in running)
    return info
