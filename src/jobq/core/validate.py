"""Checks a submitted job spec against the model's rules and the hub's limits (pure)."""

from __future__ import annotations

import math
import re

import msgspec

from jobq.core.dependencies import check_after
from jobq.core.errors import InvalidRequest, PayloadTooLarge
from jobq.core.expand import parse_expand
from jobq.core.model import GROUP_POLICIES, ISOLATIONS, PRIORITY_MAX, PRIORITY_MIN, JobSpec

#: Default largest payload (all frames together), in bytes.
DEFAULT_MAX_PAYLOAD = 16 * 1024 * 1024
MAX_FRAMES = 1024
MAX_NAME = 255
MAX_ATTEMPTS = 1000
MAX_SECONDS = 366 * 24 * 3600.0

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _name(field: str, value: str | None, *, required: bool = False) -> None:
    if value is None:
        if required:
            raise InvalidRequest(f"{field} is required")
        return
    if not value or len(value.encode()) > MAX_NAME:
        raise InvalidRequest(f"{field} must be 1 to {MAX_NAME} bytes long")
    if _CONTROL.search(value):
        raise InvalidRequest(f"{field} must not contain control characters")


def _seconds(field: str, value: float | None, *, zero_ok: bool = True) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
        raise InvalidRequest(f"{field} must be a {'non-negative' if zero_ok else 'positive'} number")
    if value > MAX_SECONDS:
        raise InvalidRequest(f"{field} must be at most {int(MAX_SECONDS)} seconds")


#: Integers a job or worker may carry in its requirements and capabilities: what every store
#: can encode (msgpack, SQLite and Lua all stop at 64 bits).
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
#: Deepest nesting of those documents (they are small maps of small values).
MAX_DEPTH = 32


def check_document(field: str, value: object, depth: int = 0) -> None:
    """Refuse what no store can keep in a requirements or capabilities document: integers
    beyond 64 bits (one reached a SQLite commit, which then failed every retry) and deep
    nesting."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
        return
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise InvalidRequest(f"{field}: integers must fit in 64 bits")
        return
    if depth >= MAX_DEPTH:
        raise InvalidRequest(f"{field} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        for item in value.values():
            check_document(field, item, depth + 1)
    elif isinstance(value, (list, tuple)):
        for item in value:
            check_document(field, item, depth + 1)


def validate_spec(spec: JobSpec, max_payload: int = DEFAULT_MAX_PAYLOAD, *, group: bool = False) -> None:
    """Raise :class:`InvalidRequest` naming the first field that breaks a rule or a limit.
    ``group``: the spec is submitted as a group (``expand``, ``finalize`` allowed)."""
    _name("service", spec.service, required=True)
    if len(spec.payload) > MAX_FRAMES:
        raise InvalidRequest(f"payload has more than {MAX_FRAMES} frames")
    payload = spec.payload
    size = len(payload[0]) if len(payload) == 1 else sum(map(len, payload))
    if size > max_payload:
        raise PayloadTooLarge(f"payload is {size} bytes; the limit is {max_payload}")
    if not PRIORITY_MIN <= spec.priority <= PRIORITY_MAX:
        raise InvalidRequest(f"priority must be between {PRIORITY_MIN} and {PRIORITY_MAX}")
    if not 1 <= spec.max_attempts <= MAX_ATTEMPTS:
        raise InvalidRequest(f"max_attempts must be between 1 and {MAX_ATTEMPTS}")
    if not 1 <= spec.max_losses <= MAX_ATTEMPTS:
        raise InvalidRequest(f"max_losses must be between 1 and {MAX_ATTEMPTS}")
    if spec.isolation not in ISOLATIONS:
        raise InvalidRequest(f"isolation must be one of {', '.join(ISOLATIONS)}")
    # Most specs leave these out: skip the calls then (this runs for every job submitted).
    if spec.requires:
        check_document("requires", spec.requires)
    if spec.must_not:
        check_document("must_not", spec.must_not)
    if spec.customer_id is not None:
        _name("customer_id", spec.customer_id)
    if spec.idempotency_key is not None:
        _name("idempotency_key", spec.idempotency_key)
    if spec.content_type is not None:
        _name("content_type", spec.content_type)
    if spec.timeout is not None or spec.delay is not None or spec.result_ttl is not None or spec.backoff:
        _seconds("timeout", spec.timeout, zero_ok=False)
        _seconds("delay", spec.delay)
        _seconds("result_ttl", spec.result_ttl)
        _seconds("backoff", spec.backoff)
    if spec.run_at is not None and (not math.isfinite(spec.run_at) or spec.run_at < 0):
        raise InvalidRequest("run_at must be a POSIX time")
    if spec.expand is not None or spec.finalize is not None or spec.group_policy != "all_completed":
        _group_fields(spec, max_payload, group)
    if spec.after or spec.after_policy != "completed" or spec.ref is not None:
        _after_fields(spec)


def _after_fields(spec: JobSpec) -> None:
    """``after`` (``dependencies.check_after``), ``after_policy``, and a ``ref`` name; a group
    (``expand``) and a finalize spec cannot wait for other jobs (not wired: docs/workflows.md)."""
    if spec.expand is not None or spec.finalize is not None:
        raise InvalidRequest("a group cannot wait for other jobs (after) yet; submit it once they ended")
    check_after(spec.after, spec.after_policy)
    if spec.ref is not None:
        _name("ref", spec.ref, required=True)


def _group_fields(spec: JobSpec, max_payload: int, group: bool) -> None:
    if not group:
        raise InvalidRequest(
            "expand, finalize and group_policy make a group: submit it as one "
            "(submit_group, or one spec to POST /api/jobs)"
        )
    if spec.group_policy not in GROUP_POLICIES:
        raise InvalidRequest(f"group_policy must be one of {', '.join(GROUP_POLICIES)}")
    if spec.expand is not None:
        parse_expand(spec.expand)  # sizes only: the members are made by the hub
    if spec.finalize is not None:
        validate_finalize(spec.finalize, max_payload)


def validate_finalize(spec: JobSpec, max_payload: int = DEFAULT_MAX_PAYLOAD) -> None:
    """A finalize spec: an ordinary spec with no group fields, whose payload (its handler's
    args) is empty or JSON."""
    if spec.expand is not None or spec.finalize is not None or spec.group_policy != "all_completed":
        raise InvalidRequest("a finalize spec has no expand, finalize or group_policy of its own")
    if spec.after or spec.ref is not None:
        raise InvalidRequest("a finalize spec cannot wait for other jobs (after): it runs at its group's end")
    validate_spec(spec, max_payload)
    if spec.payload:
        try:
            msgspec.json.decode(b"".join(spec.payload))
        except msgspec.DecodeError:
            raise InvalidRequest("a finalize spec's payload (its handler's args) must be JSON") from None
