"""What the HTTP door speaks: the JSON bodies of the REST API and the WebSocket streams.

The same msgspec Structs decode requests, encode answers and generate the OpenAPI document,
so the schema cannot drift from the code. Decoding is strict (no coercion of ``"5"`` to
``5``; unknown fields refused); every failure becomes an :class:`InvalidRequest` naming the
fields at fault. Turning a request into a :class:`JobSpec` is a translation only: the rules
live in the core and are checked by the hub. How payloads and results travel (their
*encoding*) is :mod:`jobq.doors.http.frames`; hub answers become these models in
:mod:`jobq.doors.http.views`.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

import msgspec

from jobq.core.model import PRIORITY_MAX, PRIORITY_MIN, AttemptError, JobSpec
from jobq.core.views import ExplainInfo, ServiceInfo
from jobq.doors.http.frames import (
    MAX_NESTING,
    Encoding,
    FieldError,
    check_ints,
    check_nesting,
    field_error,
    frames_from_wire,
    frames_to_wire,
    nesting_ok,
    raw_frames,
)
from jobq.errors import InvalidRequest, PayloadTooLarge

Isolation = Literal["strict", "loose", "none"]
State = Literal[
    "queued", "scheduled", "running", "completed", "failed", "cancelled", "quarantined", "waiting"
]

#: Largest job id the API accepts (the largest integer a JavaScript number holds exactly).
MAX_ID = 2**53 - 1
#: Most jobs in one ``POST /api/jobs/batch``.
MAX_BATCH = 1000
#: Most jobs one listing returns.
MAX_LIST = 1000

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=366 * 24 * 3600.0)]
Positive = Annotated[float, msgspec.Meta(gt=0, le=366 * 24 * 3600.0)]
Amount = Annotated[float, msgspec.Meta(ge=0, le=1e12)]
Count = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]
Priority = Annotated[int, msgspec.Meta(ge=PRIORITY_MIN, le=PRIORITY_MAX)]
JobId = Annotated[int, msgspec.Meta(ge=1, le=MAX_ID)]


# ---------------------------------------------------------------------------- requests


class Hardware(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """Hardware minimums (numbers) or exact values (strings) a worker must offer."""

    gpu_memory_gb: Amount | None = None
    cpu_cores: Count | None = None
    ram_gb: Amount | None = None
    gpu_model: Name | None = None


class Requirements(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """The EmProps requirements object. Anything else a worker advertises can be required
    through the job's ``requires`` (free-form, dotted keys allowed)."""

    service_type: Name | None = None
    component: Name | None = None
    workflow: Name | None = None
    models: list[Name] | None = None
    hardware: Hardware | None = None
    customer_isolation: Isolation | None = None
    geographic_region: Name | None = None
    compliance: list[Name] | None = None
    quality_level: Name | None = None
    timeout_minutes: Annotated[float, msgspec.Meta(gt=0, le=366 * 24 * 60.0)] | None = None


class JobRequest(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """A job to submit: the EmProps body (``type``, ``priority``, ``payload``,
    ``requirements``, ``customer_id``) and jobq's own fields."""

    #: The service that runs the job.
    type: Name
    #: Any JSON value; with ``payload_encoding`` ``text`` a string, with ``base64`` a base64
    #: string (one frame) or a list of them (several frames).
    payload: msgspec.Raw
    payload_encoding: Encoding = "json"
    #: Overrides the content type the encoding implies.
    content_type: Name | None = None
    priority: Priority = 0
    requirements: Requirements | None = None
    #: jobq's free-form requirements: a string must equal (or be among) the worker's value, a
    #: list must be wholly among them, a number is a minimum.
    requires: dict[str, Any] | None = None
    #: Workers having any of these values are excluded.
    must_not: dict[str, Any] | None = None
    customer_id: Name | None = None
    #: Same as ``requirements.customer_isolation``.
    isolation: Isolation | None = None
    #: A second submit with the same key returns the first job (HTTP 200 instead of 201).
    idempotency_key: Name | None = None
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3
    #: Seconds one attempt may run (``requirements.timeout_minutes`` in minutes).
    timeout: Positive | None = None
    #: Run no earlier than this time: POSIX seconds or an RFC 3339 timestamp.
    run_at: Annotated[float, msgspec.Meta(ge=0, le=1e11)] | dt.datetime | None = None
    #: Run no earlier than this many seconds from now.
    delay: Seconds | None = None
    #: Seconds the finished job and its result are kept.
    result_ttl: Seconds | None = None
    #: First retry delay in seconds (doubles each attempt, with jitter).
    backoff: Seconds | None = None
    #: Jobs to wait for (ids), or in a batch the ``ref`` of other specs; ``after_policy``
    #: ``always``: run once they ended, whatever the outcome (docs/workflows.md).
    after: list[int | str] | None = None
    after_policy: Literal["completed", "always"] = "completed"
    ref: Name | None = None
    #: Makes the submit a group: one member per combination (``{"well": "A01..H12", "dose":
    #: [1, 10]}``), the payload a JSON object each combination is merged into; answered with
    #: the group (docs/workflows.md).
    expand: dict[str, Any] | None = None
    #: The group's finalize job (a job as this body), run once every member has ended.
    finalize: JobRequest | None = None
    group_policy: Literal["all_completed", "all_ended"] = "all_completed"


class BatchRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    jobs: Annotated[list[JobRequest], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


# ---------------------------------------------------------------------------- answers


class ErrorBody(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every error answer: a stable code, a sentence, and the fields at fault if any."""

    error: str
    message: str
    fields: list[str] = msgspec.field(default_factory=list)
    hint: str | None = None


class JobCreated(msgspec.Struct, kw_only=True):
    id: int
    job_id: int
    state: State
    status: State
    #: Its place in its service's queue when submitted: queued jobs ahead of it, plus one
    #: (``Hub.submit_placed``; ``/explain`` has the place now); null unless it is queued.
    queue_position: int | None
    #: False when an ``idempotency_key`` matched an existing job.
    created: bool


class BatchCreated(msgspec.Struct, kw_only=True):
    jobs: list[JobCreated]


class JobView(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A job as the API shows it (payload and result only in the single-job view); jobq's field
    names and EmProps' aliases (``job_id``...) both: docs/http.md, *Field names*."""

    id: int
    job_id: int
    service: str
    state: State
    status: State
    priority: int = 0
    customer_id: str | None = None
    isolation: Isolation = "none"
    requires: dict[str, Any] = msgspec.field(default_factory=dict)
    must_not: dict[str, Any] = msgspec.field(default_factory=dict)
    attempts: int = 0
    max_attempts: int = 3
    worker: str | None = None
    worker_id: str | None = None
    submitted_at: float = 0.0
    created_at: float = 0.0
    run_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    lease_expires: float | None = None
    expires_at: float | None = None
    timeout: float | None = None
    idempotency_key: str | None = None
    progress: float | None = None
    progress_message: str | None = None
    error: str | None = None
    content_type: str | None = None
    payload: Any = None
    payload_encoding: Encoding | None = None
    result: Any = None
    result_encoding: Encoding | None = None
    #: The last failed attempt's traceback, and every kept failed attempt (the last 10) with
    #: its error and traceback: in the single-job view only.
    traceback: str | None = None
    attempt_errors: list[AttemptError] = msgspec.field(default_factory=list)
    #: The jobs it waits for (or waited for) and its ``after_policy``.
    after: list[int] = msgspec.field(default_factory=list)
    after_policy: Literal["completed", "always"] = "completed"
    #: The group it is a member (or the finalize job) of.
    group: int | None = None


class JobList(msgspec.Struct, kw_only=True):
    jobs: list[JobView]
    limit: int
    offset: int
    #: The next page's ``before`` (the last job's id here); None when this page is the last.
    next: int | None = None


class ResultView(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: int
    job_id: int
    state: State
    status: State
    result: Any = None
    result_encoding: Encoding | None = None
    error: str | None = None


class EventView(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One thing that happened to a job (``event``, ``status``, ``worker_id``: EmProps' names)."""

    kind: str
    event: str
    state: State
    status: State
    at: float
    attempt: int = 0
    worker: str | None = None
    worker_id: str | None = None
    progress: float | None = None
    message: str | None = None
    error: str | None = None
    #: When the job may run: a delayed submit's start, a retry's (after its backoff).
    run_at: float | None = None


class EventHistory(msgspec.Struct, kw_only=True):
    id: int
    job_id: int
    events: list[EventView]
    #: False when the hub was not recording this job: the events are rebuilt from its times.
    recorded: bool


class WorkerView(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    worker_id: str
    services: list[str]
    door: str
    slots: int
    running: int
    slots_free: int
    #: ``ok`` (heard from lately), ``late`` (a heartbeat or more overdue), ``silent``.
    health: Literal["ok", "late", "silent"]
    capabilities: dict[str, Any] = msgspec.field(default_factory=dict)
    name: str | None = None
    hub: str | None = None
    connected_at: float = 0.0
    last_seen: float = 0.0
    metrics: dict[str, float] = msgspec.field(default_factory=dict)
    #: Services whose backend (a connector's service) is down: service → reason. It takes none
    #: of their jobs until they recover.
    unhealthy: dict[str, str] = msgspec.field(default_factory=dict)
    #: Why it is drained (an operator, or the hub's automatic drain): it takes no new jobs.
    drained: str | None = None


class WorkerActionRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The optional body of ``POST /api/workers/{id}/drain``."""

    reason: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class WorkerActionView(msgspec.Struct, kw_only=True):
    """What a drain, resume or evict did."""

    worker: str
    worker_id: str
    #: ``drained``, ``resumed`` or ``evicted``.
    action: Literal["drained", "resumed", "evicted"]
    at: float
    #: Why it is drained now; null once it takes jobs again.
    drained: str | None
    #: Who asked (the token's name; ``local`` without ``--auth``).
    by: str
    #: ``evict``: its running jobs, given back to the queue.
    requeued: int = 0


class StatsView(msgspec.Struct, kw_only=True):
    hub: str
    uptime: float
    jobs_by_state: dict[str, int]
    jobs_by_service: dict[str, dict[str, int]]
    counters: dict[str, int]
    workers: int
    slots: int
    slots_free: int


class Health(msgspec.Struct, kw_only=True):
    """``/health`` and ``/ready``: the hub lives, its store answers, it takes work."""

    #: ``ok``; ``draining`` (shutting down); ``store_down`` (its store does not answer).
    status: Literal["ok", "draining", "store_down"]
    hub: str
    uptime: float
    #: The store answered a read within 2 s (asked at most once a second, whoever asks).
    store: Literal["ok", "down"] = "ok"
    #: The hub takes work: its store answers, it is not shutting down, the door is not full.
    ready: bool = True
    #: Why not (the store's error; with ``--auth`` only that it does not answer).
    reason: str | None = None


__all__ = [
    "MAX_NESTING",
    "BatchCreated",
    "BatchRequest",
    "Encoding",
    "ErrorBody",
    "EventHistory",
    "EventView",
    "ExplainInfo",
    "FieldError",
    "Hardware",
    "Health",
    "JobCreated",
    "JobList",
    "JobRequest",
    "JobView",
    "Requirements",
    "ResultView",
    "ServiceInfo",
    "StatsView",
    "WorkerActionRequest",
    "WorkerActionView",
    "WorkerView",
    "check_ints",
    "check_nesting",
    "decode_batch_request",
    "decode_job_request",
    "field_of",
    "frames_from_wire",
    "frames_to_wire",
    "nesting_ok",
    "raw_frames",
    "spec_of",
]


# ---------------------------------------------------------------------------- decoding


_job_request = msgspec.json.Decoder(JobRequest)
_batch_request = msgspec.json.Decoder(BatchRequest)
_REQUIRED = ("type", "payload")
_KNOWN = frozenset(JobRequest.__struct_fields__)
_PATH = re.compile(r"at `\$((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)`")
_encode = msgspec.json.encode


def field_of(exc: msgspec.MsgspecError) -> str | None:
    """The dotted field a msgspec error is about (``requirements.hardware.ram_gb``)."""
    text = str(exc)
    found = _PATH.search(text)
    path = found.group(1).lstrip(".") if found else ""
    named = re.search(r"(?:missing required|unknown) field `([^`]+)`", text)
    if named:
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    return path or None


def _invalid(exc: msgspec.MsgspecError, body: bytes, prefix: str = "") -> InvalidRequest:
    """A 400 naming every missing and unknown field of a job (msgspec stops at the first),
    or the one field with a wrong type or value."""
    if not isinstance(exc, msgspec.ValidationError):
        return InvalidRequest(f"the body is not valid JSON: {exc}")
    try:
        loose = msgspec.json.decode(body)
    except msgspec.MsgspecError:
        loose = None
    if isinstance(loose, dict):
        missing = [prefix + name for name in _REQUIRED if name not in loose]
        unknown = [prefix + str(name) for name in loose if name not in _KNOWN]
        if missing or unknown:
            parts = []
            if missing:
                parts.append("missing required field(s): " + ", ".join(missing))
            if unknown:
                parts.append("unknown field(s): " + ", ".join(unknown))
            hint = "custom capabilities go in `requires`" if unknown else None
            return FieldError("; ".join(parts), missing + unknown, hint=hint)
    return _wrong(exc)


def _wrong(exc: msgspec.MsgspecError) -> FieldError:
    name = field_of(exc)
    reason = str(exc).split(" - at ")[0]
    hint = "custom capabilities go in `requires`" if "unknown field" in reason else None
    return FieldError(f"invalid {name or 'body'}: {reason}", [name] if name else [], hint=hint)


def decode_job_request(body: bytes) -> JobRequest:
    check_nesting(body)
    try:
        return _job_request.decode(body)
    except msgspec.MsgspecError as exc:
        raise _invalid(exc, body) from None


def decode_batch_request(body: bytes) -> BatchRequest:
    check_nesting(body)
    try:
        return _batch_request.decode(body)
    except msgspec.ValidationError as exc:
        match = re.match(r"jobs\[(\d+)\]", field_of(exc) or "")
        if match:
            try:
                item = msgspec.json.decode(body)["jobs"][int(match.group(1))]
            except (msgspec.MsgspecError, KeyError, IndexError, TypeError):
                item = None
            if isinstance(item, dict):
                raise _invalid(exc, _encode(item), f"{match.group()}.") from None
        raise _wrong(exc) from None
    except msgspec.MsgspecError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None


def spec_of(request: JobRequest, max_payload: int) -> JobSpec:
    """Translate a request into the hub's JobSpec (no rules here: the hub checks the spec)."""
    frames, implied = frames_from_wire(request.payload, request.payload_encoding)
    size = sum(len(f) for f in frames)
    if size > max_payload:
        raise PayloadTooLarge(f"payload is {size} bytes; the limit is {max_payload}")
    check_ints(request.requires, "requires")
    check_ints(request.must_not, "must_not")
    requires: dict[str, Any] = dict(request.requires or {})
    isolation = request.isolation
    timeout = request.timeout
    if request.requirements is not None:
        wanted = msgspec.to_builtins(request.requirements)
        given_isolation = wanted.pop("customer_isolation", None)
        minutes = wanted.pop("timeout_minutes", None)
        wanted.pop("service_type", None)
        if given_isolation is not None:
            if isolation is not None and isolation != given_isolation:
                raise field_error("isolation", "isolation and requirements.customer_isolation disagree")
            isolation = given_isolation
        if minutes is not None and timeout is None:
            timeout = float(minutes) * 60.0
        for key, value in wanted.items():
            if key in requires and requires[key] != value:
                raise field_error(f"requires.{key}", f"requires.{key} and requirements.{key} disagree")
            requires[key] = value
    run_at = request.run_at
    if isinstance(run_at, dt.datetime):
        if run_at.tzinfo is None:
            raise field_error("run_at", "run_at needs a time zone (e.g. 2030-01-01T00:00:00Z)")
        run_at = run_at.timestamp()
    return JobSpec(
        service=request.type,
        payload=frames,
        content_type=request.content_type or implied,
        priority=request.priority,
        requires=requires,
        must_not=dict(request.must_not or {}),
        customer_id=request.customer_id,
        isolation=isolation or "none",
        max_attempts=request.max_attempts,
        timeout=timeout,
        run_at=run_at,
        delay=request.delay,
        idempotency_key=request.idempotency_key,
        result_ttl=request.result_ttl,
        backoff=request.backoff,
        after=list(request.after or ()),
        after_policy=request.after_policy,
        expand=request.expand,
        finalize=None if request.finalize is None else spec_of(request.finalize, max_payload),
        group_policy=request.group_policy,
        ref=request.ref,
    )
