"""The job model: what a client submits, what the hub keeps, what a worker receives.

Plain msgspec Structs with no I/O handles. Times are POSIX seconds (floats) passed in by the
caller; nothing here reads a clock.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from jobq.core.dependencies import AfterPolicy
from jobq.core.retry import DEFAULT_MAX_LOSSES
from jobq.core.states import JobState

Isolation = Literal["strict", "loose", "none"]
GroupPolicy = Literal["all_completed", "all_ended"]
ISOLATIONS: tuple[str, ...] = ("strict", "loose", "none")
#: A group's finalize policies (``core/workflow.py``), as ``GroupPolicy`` names them.
GROUP_POLICIES: tuple[GroupPolicy, ...] = ("all_completed", "all_ended")

#: Payloads are kept as frames: a plain bytes payload is one frame. The Majordomo door needs
#: frame boundaries kept end to end, so they are first class everywhere.
Frames = list[bytes]

JSON = "application/json"
TEXT = "text/plain"
BINARY = "application/octet-stream"

PRIORITY_MIN = -(2**31)
PRIORITY_MAX = 2**31 - 1

#: Bytes (UTF-8) of a handler's traceback kept with a failed attempt. A longer one keeps its end
#: (the innermost frames and the exception itself) after a line saying how much was cut.
TRACEBACK_LIMIT = 16 * 1024
#: Failed attempts a job keeps in ``Job.attempt_errors``: the last ones.
ATTEMPT_ERRORS_KEPT = 10


def bound_traceback(text: str | None, limit: int = TRACEBACK_LIMIT) -> str | None:
    """``text`` cut to ``limit`` UTF-8 bytes from its end, at a frame's (or line's) start;
    None if empty."""
    if not text:
        return None
    raw = text.encode()
    if len(raw) <= limit:
        return text
    room = limit - 80  # the marker line is shorter than 80 bytes
    tail = raw[len(raw) - room :].decode(errors="ignore")
    start = tail.find('\n  File "')  # at a frame's start, or else a line's
    start = tail.find("\n") if start < 0 else start
    tail = tail[start + 1 :] if 0 <= start < len(tail) - 1 else tail
    return f"[{len(raw) - len(tail.encode())} bytes cut; the innermost frames follow]\n{tail}"


class AttemptError(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """One failed attempt of a job (its handler failed, or it timed out)."""

    attempt: int
    #: The attempt's fencing token (tells attempts apart across operator retries).
    token: int
    error: str
    at: float
    worker: str | None = None
    #: The handler's traceback (at most TRACEBACK_LIMIT bytes), when a Python handler raised.
    traceback: str | None = None


def with_attempt_error(history: list[AttemptError], entry: AttemptError) -> list[AttemptError]:
    """``history`` with ``entry`` added, only the last ATTEMPT_ERRORS_KEPT kept."""
    return [*history[max(0, len(history) - ATTEMPT_ERRORS_KEPT + 1) :], entry]


class Mark(
    msgspec.Struct,
    kw_only=True,
    omit_defaults=True,
    gc=False,
    rename={"at": "t", "kind": "k", "attempt": "a", "worker": "w", "detail": "d", "value": "v"},
):
    """One moment of a job's life in ``Job.timeline`` (kinds, bounds: ``core/timeline.py``).
    Short field names on the wire and in stores (``t``, ``k``, ``a``, ``w``, ``d``, ``v``)."""

    at: float
    kind: str
    #: The attempt it is about (0: none), and the worker that ran that attempt.
    attempt: int = 0
    worker: str | None = None
    #: An error, a reason, or a progress message (at most ``timeline.DETAIL_LIMIT`` bytes).
    detail: str | None = None
    #: A progress value (percent), or when the job may run (``submitted`` delayed, ``retrying``).
    value: float | None = None


class JobSpec(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """What a client asks for. Everything but ``service`` has a default."""

    service: str
    payload: Frames = msgspec.field(default_factory=list)
    content_type: str | None = None
    priority: int = 0
    #: Capability requirements, dotted keys (``hardware.gpu_memory_gb``) or nested objects.
    #: A string must equal (or be one of) the worker's value, a list must all be among the
    #: worker's values, a number is a minimum.
    requires: dict[str, Any] = msgspec.field(default_factory=dict)
    #: Workers that have any of these values are excluded.
    must_not: dict[str, Any] = msgspec.field(default_factory=dict)
    customer_id: str | None = None
    isolation: Isolation = "none"
    #: Attempts its handler may fail (or overrun ``timeout``) before the job ends ``failed``.
    max_attempts: int = 3
    #: Workers it may lose (died, gone, lease expired) before it ends ``quarantined``.
    max_losses: int = DEFAULT_MAX_LOSSES
    #: Seconds one attempt may run before it is failed (and retried if attempts are left).
    timeout: float | None = None
    #: Run no earlier than this POSIX time (``delay`` is relative to the submit).
    run_at: float | None = None
    delay: float | None = None
    #: A second submit with the same key returns the first job instead of a new one.
    idempotency_key: str | None = None
    #: Seconds a finished job (and its result) is kept.
    result_ttl: float | None = None
    #: First retry delay in seconds; doubles each attempt, with jitter, up to a cap.
    backoff: float | None = None
    #: Who submitted it (a token's name). Set by the hub from the caller, never by a client:
    #: with authentication on, whatever a client sends here is replaced.
    owner: str | None = None
    #: Makes the submit a group: one member per combination of these keys' values
    #: (``core/expand.py``), each the payload (a JSON object) with its combination merged in.
    expand: dict[str, Any] | None = None
    #: The group's finalize job, submitted once every member has ended (``core/workflow.py``);
    #: its payload is the handler's JSON args.
    finalize: JobSpec | None = None
    #: When the finalize job runs: every member completed, or every member ended.
    group_policy: GroupPolicy = "all_completed"
    #: Jobs it waits for (ids), or specs of the same batch (their ``ref``): it starts
    #: ``waiting`` and runs once they are done (``core/dependencies.py``).
    after: list[int | str] = msgspec.field(default_factory=list)
    #: ``completed``: runs when every prerequisite completed, ends ``cancelled`` as soon as one
    #: did not; ``always``: runs once every prerequisite ended, whatever the outcome.
    after_policy: AfterPolicy = "completed"
    #: Its name within its batch, for other specs' ``after`` (batch-local, not kept).
    ref: str | None = None


class Job(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """A job as the hub keeps it: the spec plus its life so far.

    ``gc=False``: a hub may hold millions of these and they never form reference cycles, so
    the cycle collector need not walk them.
    """

    id: int
    service: str
    state: JobState
    #: Position for FIFO within a priority; a released job keeps its place at the front.
    seq: int
    submitted_at: float
    payload: Frames = msgspec.field(default_factory=list)
    content_type: str | None = None
    priority: int = 0
    requires: dict[str, Any] = msgspec.field(default_factory=dict)
    must_not: dict[str, Any] = msgspec.field(default_factory=dict)
    customer_id: str | None = None
    isolation: Isolation = "none"
    max_attempts: int = 3
    max_losses: int = DEFAULT_MAX_LOSSES
    timeout: float | None = None
    idempotency_key: str | None = None
    result_ttl: float | None = None
    backoff: float | None = None
    #: Who submitted it (the caller's name when authentication is on).
    owner: str | None = None
    #: The group it belongs to: a member (job ``group + 1 + index``) or its finalize job (an id
    #: beyond the members).
    group: int | None = None
    #: The jobs it waits for (``waiting`` until they are done), and what their outcomes must be.
    after: list[int] = msgspec.field(default_factory=list)
    after_policy: AfterPolicy = "completed"
    #: Attempts started so far (an attempt given back unstarted does not count).
    attempts: int = 0
    #: The fencing token of the current (or last) attempt: strictly increasing per job, across
    #: restarts and operator retries (``core/lease.py``).
    token: int = 0
    #: Attempts its handler failed or that timed out (the ``max_attempts`` budget).
    failures: int = 0
    #: Attempts lost with their worker (the ``max_losses`` budget).
    losses: int = 0
    worker: str | None = None
    #: The principal (token name) whose worker runs the current attempt, recorded at claim:
    #: after a hub restart, or through another hub, only it may attach under that worker id.
    holder: str | None = None
    run_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    lease_expires: float | None = None
    progress: float | None = None
    progress_message: str | None = None
    result: Frames | None = None
    error: str | None = None
    #: The worker whose attempt failed last; another eligible worker is preferred.
    avoid_worker: str | None = None
    #: When a finished job is forgotten.
    expires_at: float | None = None
    #: Its last failed attempts (``with_attempt_error``), oldest first; an operator's retry keeps
    #: them. Empty for a job that never failed, so a successful job pays nothing for it.
    attempt_errors: list[AttemptError] = msgspec.field(default_factory=list)
    #: What happened to it, oldest first (``core/timeline.py``): bounded, kept as long as the job.
    timeline: list[Mark] = msgspec.field(default_factory=list)

    @property
    def traceback(self) -> str | None:
        """The last failed attempt's traceback (None when its handler raised none: a timeout, a
        ``HandlerError``, a worker that sends no traceback)."""
        return self.attempt_errors[-1].traceback if self.attempt_errors else None

    def note_failure(self, error: str, now: float, traceback: str | None = None) -> None:
        """Its current attempt failed with ``error`` (and ``traceback``): kept in the history."""
        self.error = error
        entry = AttemptError(
            attempt=self.attempts,
            token=self.token,
            error=error,
            at=now,
            worker=self.worker,
            traceback=bound_traceback(traceback),
        )
        self.attempt_errors = with_attempt_error(self.attempt_errors, entry)

    @property
    def payload_bytes(self) -> bytes:
        return b"".join(self.payload)

    @property
    def result_bytes(self) -> bytes:
        return b"".join(self.result or ())


def start_time(spec: JobSpec, now: float) -> float | None:
    """When a job submitted ``now`` may first run, if that is later than now (``run_at``, or
    ``delay`` seconds from now, whichever is later)."""
    run_at = spec.run_at
    if spec.delay:
        run_at = max(run_at or 0.0, now + spec.delay)
    return run_at if run_at is not None and run_at > now else None


def new_job(spec: JobSpec, job_id: int, now: float, after: list[int] | None = None) -> Job:
    """The job a store creates for ``spec``: queued, or scheduled when it may not run yet, or
    waiting when it names prerequisites: ``after``, ``spec.after`` with its refs replaced by ids,
    given by a store that applies dependencies (``store/embedded_deps.py``), which then decides
    at once (``dependencies.after_decision``). Without it the job has none."""
    run_at = start_time(spec, now)
    after = after or []
    return Job(
        id=job_id,
        service=spec.service,
        state=JobState.WAITING if after else JobState.QUEUED if run_at is None else JobState.SCHEDULED,
        seq=job_id,
        submitted_at=now,
        run_at=run_at,
        payload=spec.payload,
        content_type=spec.content_type,
        priority=spec.priority,
        requires=spec.requires,
        must_not=spec.must_not,
        customer_id=spec.customer_id,
        isolation=spec.isolation,
        max_attempts=spec.max_attempts,
        max_losses=spec.max_losses,
        timeout=spec.timeout,
        idempotency_key=spec.idempotency_key,
        result_ttl=spec.result_ttl,
        backoff=spec.backoff,
        owner=spec.owner,
        after=after,
        after_policy=spec.after_policy,
        timeline=[Mark(at=now, kind="submitted", value=run_at)],
    )


class Assignment(msgspec.Struct, kw_only=True, omit_defaults=True, array_like=True):
    """One attempt of a job, as handed to a worker."""

    id: int
    token: int
    service: str
    payload: Frames
    content_type: str | None = None
    attempt: int = 1
    max_attempts: int = 3
    #: Seconds this attempt may run, if limited.
    timeout: float | None = None
    customer_id: str | None = None


def assignment_of(job: Job) -> Assignment:
    return Assignment(
        id=job.id,
        token=job.token,
        service=job.service,
        payload=job.payload,
        content_type=job.content_type,
        attempt=job.attempts,
        max_attempts=job.max_attempts,
        timeout=job.timeout,
        customer_id=job.customer_id,
    )


class GroupSpec(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """An explicit group: these members (in member order), and an optional finalize job."""

    members: list[JobSpec]
    finalize: JobSpec | None = None
    policy: GroupPolicy = "all_completed"
    #: A second submit with the same key returns the first group instead of a new one.
    idempotency_key: str | None = None


class Submitted(msgspec.Struct, kw_only=True, array_like=True):
    """The answer to one submit: the job, and whether the submit created it."""

    job: Job
    created: bool = True


class JobFilter(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Which jobs a listing returns (newest first)."""

    states: list[JobState] = msgspec.field(default_factory=list)
    service: str | None = None
    customer_id: str | None = None
    worker: str | None = None
    ids: list[int] = msgspec.field(default_factory=list)
    limit: int = 100
    offset: int = 0
    #: Any of these customers (the hub narrows a client's listing to its token's customers).
    customers: list[str] = msgspec.field(default_factory=list)
    #: Submitted by this caller (a client token that names no customer sees only its own).
    owner: str | None = None
    #: Members (and the finalize job) of this group.
    group: int | None = None
    #: Cursor paging: only jobs with an id below this one (the listing is newest first, so a
    #: page's last id is the next page's ``before_id``).
    before_id: int | None = None

    def matches(self, job: Job) -> bool:
        return (
            (self.before_id is None or job.id < self.before_id)
            and (not self.states or job.state in self.states)
            and (self.service is None or job.service == self.service)
            and (self.customer_id is None or job.customer_id == self.customer_id)
            and (self.worker is None or job.worker == self.worker)
            and (not self.ids or job.id in self.ids)
            and (not self.customers or job.customer_id in self.customers)
            and (self.owner is None or job.owner == self.owner)
            and (self.group is None or job.group == self.group)
        )


class StoreStats(msgspec.Struct, kw_only=True):
    """Counts of jobs by state, overall and per service."""

    by_state: dict[str, int]
    by_service: dict[str, dict[str, int]]


EventKind = Literal[
    "submitted",
    "started",
    "progress",
    "completed",
    "retrying",
    "requeued",
    "failed",
    "cancelled",
    "quarantined",
    # A group's own events (docs/workflows.md, "Group events"): ``id`` and ``group`` are its id.
    "group_submitted",
    "group_progress",
    "group_finalizing",
    "group_ended",
]


class JobEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Something that happened to a job, as subscribers see it."""

    id: int
    kind: EventKind
    state: JobState
    at: float
    service: str = ""
    worker: str | None = None
    attempt: int = 0
    progress: float | None = None
    message: str | None = None
    error: str | None = None
    result: Frames | None = None
    customer_id: str | None = None
    #: A partial result streamed by the worker (Majordomo PARTIAL); not kept.
    partial: Frames | None = None
    #: Who submitted the job (set when authentication is on): scopes who hears of it.
    owner: str | None = None
    #: The job's group (a member, or its finalize job). A group event has its group's id here
    #: and as ``id``, the group's state as ``state`` (``running`` while finalizing), members
    #: ended in percent as ``progress``, ended members per state as ``counts``, and ``total``.
    group: int | None = None
    counts: dict[str, int] | None = None
    total: int | None = None


class WorkerInfo(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A worker as the registry shows it."""

    id: str
    services: list[str]
    capabilities: dict[str, Any] = msgspec.field(default_factory=dict)
    slots: int = 1
    name: str | None = None
    door: str = "zmq"
    hub: str | None = None
    connected_at: float = 0.0
    last_seen: float = 0.0
    running: list[int] = msgspec.field(default_factory=list)
    #: Figures from the last heartbeat (cpu percent, memory, ...).
    metrics: dict[str, float] = msgspec.field(default_factory=dict)
    #: Plugins the worker advertises: service → JSON Schema of its payload.
    schemas: dict[str, Any] = msgspec.field(default_factory=dict)
    #: Services whose backend (a connector's service: ComfyUI, an HTTP API) is not healthy:
    #: service → the reason. It gets no new jobs of those until they are healthy again.
    unhealthy: dict[str, str] = msgspec.field(default_factory=dict)
    #: Why the worker is drained (an operator's ``jobq workers drain``, or the hub's automatic
    #: drain): it takes no new jobs. Set in listings by the hub it is attached to
    #: (hub/control.py), never stored.
    drained: str | None = None
    #: The principal (token name) that attached it: its claims record it as ``Job.holder``.
    principal: str | None = None

    #: Services of it an operator paused (``jobq services pause``): set by the hub on every
    #: worker it attaches (hub/queue_control.py): it gets no new jobs of those until they resume.
    paused: list[str] = msgspec.field(default_factory=list)

    def serving(self) -> list[str]:
        """The services it takes new jobs of now: those it serves, less the unhealthy and the
        paused ones."""
        if not self.unhealthy and not self.paused:
            return self.services
        return [name for name in self.services if name not in self.unhealthy and name not in self.paused]


class Completion(msgspec.Struct, array_like=True):
    """A worker's result for one attempt."""

    job_id: int
    token: int
    result: Frames
    worker: str | None = None
