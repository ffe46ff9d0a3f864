"""The native protocol: jobq's own, on the hub's ZeroMQ ROUTER socket (see docs/protocol.md).

Every message is two frames after the ZeroMQ routing identity::

    [b"JQ1", body]

``body`` is msgpack: an array whose first element is the message tag, then the fields in the
order they are declared below (trailing fields left at their default may be omitted, so new
optional fields can be appended without a new version). The header frame, ``JQ1``, names the
protocol and its version, so the Majordomo protocol can share the socket (its headers are
``MDPC0x`` / ``MDPW0x``) and a later ``JQ2`` can live beside ``JQ1``.

Requests from clients carry ``rid``, a number the client picks; the reply carries it back, so
a DEALER client may have many requests outstanding. ``credential`` (a token, last field of
every message a client or worker sends, left out when there is none) says who speaks: a hub
with ``--auth`` refuses a message without one (``error`` ``unauthorized``) unless its listener
is trusted or CURVE-authenticated, and one whose token lacks the right (``forbidden``).
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

import msgspec

from jobq.core.model import (
    Assignment,
    Frames,
    GroupSpec,
    Job,
    JobEvent,
    JobFilter,
    JobSpec,
    StoreStats,
    WorkerInfo,
)
from jobq.core.views import ExplainInfo, ServiceInfo

HEADER = b"JQ1"

#: Largest native message body the hub accepts by default (bytes).
DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024

#: Largest id, token, offset or count a message may carry: the stores keep them as signed
#: 64-bit integers, and msgpack carries up to 2**64 - 1. Beyond it a message is ``invalid``.
MAX_INT = 2**63 - 1
#: A job id or a fencing token: 0 .. 2**63 - 1.
Id = Annotated[int, msgspec.Meta(ge=0, le=MAX_INT)]
#: A count that fits a signed 64-bit integer (slots: the hub applies its own limits).
Int64 = Annotated[int, msgspec.Meta(ge=-MAX_INT - 1, le=MAX_INT)]


class _Msg(msgspec.Struct, array_like=True, omit_defaults=True, tag_field="t"):
    pass


# ---------------------------------------------------------------- client → hub


class Submit(_Msg, tag="submit"):
    rid: int
    jobs: list[JobSpec]
    #: Push this client an ``events`` message when each job ends.
    watch: bool = False
    credential: str | None = None


class Get(_Msg, tag="get"):
    rid: int
    ids: list[Id]
    payload: bool = False
    credential: str | None = None


class Wait(_Msg, tag="wait"):
    rid: int
    ids: list[Id]
    timeout: float | None = None
    payload: bool = False
    credential: str | None = None


class Cancel(_Msg, tag="cancel"):
    rid: int
    ids: list[Id]
    credential: str | None = None


class Retry(_Msg, tag="retry"):
    rid: int
    ids: list[Id]
    credential: str | None = None


class ListJobs(_Msg, tag="list"):
    rid: int
    query: JobFilter
    blocked: bool = False
    credential: str | None = None


class Subscribe(_Msg, tag="subscribe"):
    """Receive ``events`` for these jobs (all jobs when ``ids`` is empty)."""

    rid: int
    ids: list[Id] = msgspec.field(default_factory=list)
    credential: str | None = None


class Unsubscribe(_Msg, tag="unsubscribe"):
    rid: int
    ids: list[Id] = msgspec.field(default_factory=list)
    credential: str | None = None


class Info(_Msg, tag="info"):
    """``what`` is ``workers``, ``services``, ``stats`` or ``explain`` (with ``id``)."""

    rid: int
    what: str
    id: Id = 0
    service: str | None = None
    credential: str | None = None


class Ping(_Msg, tag="ping"):
    rid: int
    credential: str | None = None


class WorkerCommand(_Msg, tag="worker"):
    """An operator's ``drain``, ``resume`` or ``evict`` of a worker (its id, or a name only it
    has); ``reason`` goes with a drain. Admin only. Answered ``reply`` with the worker notice."""

    rid: int
    action: str
    worker: str
    reason: str | None = None
    credential: str | None = None


class ServiceCommand(_Msg, tag="service"):
    """An operator's ``pause`` or ``resume`` of a service's queue (``core/operations.py``).
    Admin only. Answered ``reply`` with ``{service, paused, changed}``."""

    rid: int
    action: str
    service: str
    credential: str | None = None


class BulkJobs(_Msg, tag="bulk"):
    """``cancel`` or ``retry`` the jobs ``query`` selects (``blocked``: only queued jobs no worker
    can run), each checked as one cancel or retry. Answered ``reply`` with ``{action, matched,
    done, skipped: [{id, reason}]}``."""

    rid: int
    action: str
    query: JobFilter
    blocked: bool = False
    credential: str | None = None


class ScheduleCommand(_Msg, tag="schedule"):
    """Cron schedules (docs/workflows.md): ``action`` is ``add`` (``name``, ``cron``, ``spec``,
    ``tz``, ``catch_up``, ``coalesce``), ``list``, ``get``, ``pause``, ``resume`` or ``remove``
    (``name``). Answered ``reply`` with the schedule as a map (``list``: a list of them;
    ``remove``: nil)."""

    rid: int
    action: str
    name: str = ""
    cron: str = ""
    spec: JobSpec | None = None
    tz: str = "UTC"
    catch_up: float | None = None
    coalesce: bool = True
    credential: str | None = None


class SubmitGroup(_Msg, tag="submit_group"):
    """Submit one group: ``spec`` (a spec with ``expand``, expanded by the hub) or ``group``
    (explicit members). Answered ``reply`` with ``{group: {...}, members: [ids], created}``."""

    rid: int
    spec: JobSpec | None = None
    group: GroupSpec | None = None
    credential: str | None = None


class GroupGet(_Msg, tag="group"):
    """A group's view (``id, state, total, counts, ended, progress, finalize, ...``); with
    ``wait``, once it has ended (at most ``timeout`` seconds) and with its result. Answered
    ``reply``."""

    rid: int
    id: Id
    wait: bool = False
    timeout: float | None = None
    credential: str | None = None


class GroupWatch(_Msg, tag="group_watch"):
    """Receive the group's own ``events`` (kinds ``group_progress``, ``group_finalizing``,
    ``group_ended``; ``id`` the group's) until it ends; ``unsubscribe`` with its id stops them.
    Answered ``reply`` with the group's view; one that has ended has its ``group_ended`` pushed
    at once."""

    rid: int
    id: Id
    credential: str | None = None


class GroupCancel(_Msg, tag="group_cancel"):
    """Cancel a group that has not ended. Answered ``reply`` with the group's view."""

    rid: int
    id: Id
    credential: str | None = None


class HistoryQuery(_Msg, tag="history"):
    """The hub's history (``core/history.py``, as ``GET /api/history``) of the last ``minutes``
    (1..10080), of one ``service`` or summed. Admin and monitor tokens. Answered ``reply``."""

    rid: int
    minutes: int = 60
    service: str | None = None
    credential: str | None = None


# ---------------------------------------------------------------- hub → client


class Accepted(_Msg, tag="accepted"):
    """Reply to ``submit``: one (id, state, created) per accepted job, in submit order, and one
    (index, code, message) per refused spec, its index in the submit's ``jobs``. A refused spec
    fails alone; ``errors`` is left out when every spec was accepted."""

    rid: int
    jobs: list[tuple[int, str, bool]]
    errors: list[tuple[int, str, str]] = msgspec.field(default_factory=list)


class _AcceptedAll(_Msg, tag="accepted"):
    """``accepted`` without ``errors``, as :func:`encode` writes it when every spec was
    accepted: msgspec writes every field of an array-like struct, defaults included."""

    rid: int
    jobs: list[tuple[int, str, bool]]


class Jobs(_Msg, tag="jobs"):
    rid: int
    jobs: list[Job | None]


class Reply(_Msg, tag="reply"):
    """A generic answer carrying any msgpack value."""

    rid: int
    value: Any = None


class Error(_Msg, tag="error"):
    rid: int
    code: str
    message: str


class Events(_Msg, tag="events"):
    events: list[JobEvent]


class Pong(_Msg, tag="pong"):
    rid: int
    hub: str = ""


# ---------------------------------------------------------------- worker ↔ hub


class Hello(_Msg, tag="hello"):
    worker_id: str
    services: list[str]
    slots: Int64 = 1
    capabilities: dict[str, Any] = msgspec.field(default_factory=dict)
    name: str | None = None
    #: (job id, token) attempts the worker still runs from a previous connection.
    held: list[tuple[Id, Id]] = msgspec.field(default_factory=list)
    #: Service → JSON Schema of its payload (advertised plugins).
    schemas: dict[str, Any] = msgspec.field(default_factory=dict)
    version: int = 1
    credential: str | None = None
    #: Services whose backend is down (connectors' health checks): service → reason.
    unhealthy: dict[str, str] = msgspec.field(default_factory=dict)


class Welcome(_Msg, tag="welcome"):
    heartbeat: float
    lease_ttl: float
    #: Ids from ``held`` the worker may finish; it must drop the others.
    kept: list[int] = msgspec.field(default_factory=list)
    hub: str = ""


class Heartbeat(_Msg, tag="hb"):
    metrics: dict[str, float] = msgspec.field(default_factory=dict)
    credential: str | None = None
    #: From a worker with connectors: its services whose backend is down now (service →
    #: reason; empty when all are healthy). None: it runs no connector.
    unhealthy: dict[str, str] | None = None


class SetSlots(_Msg, tag="slots"):
    slots: Int64
    credential: str | None = None


class Assign(_Msg, tag="assign"):
    jobs: list[Assignment]


class Done(_Msg, tag="done"):
    """Results of attempts: (job id, token, result frames) each."""

    results: list[tuple[Id, Id, Frames]]
    credential: str | None = None


class Fail(_Msg, tag="fail"):
    id: Id
    token: Id
    error: str
    retryable: bool = True
    credential: str | None = None
    #: The handler's formatted traceback (the worker SDK cuts it to TRACEBACK_LIMIT bytes, the
    #: hub again); None for a failure raised on purpose. Trailing: older peers leave it out.
    traceback: str | None = None


class Progress(_Msg, tag="progress"):
    id: Id
    token: Id
    value: float | None = None
    message: str | None = None
    credential: str | None = None
    #: A small preview of the work so far (an image a diffusion service shows mid-way): passed
    #: to listeners with the progress event, not kept (at most PREVIEW_LIMIT bytes).
    preview: bytes | None = None


class Release(_Msg, tag="release"):
    """Give running attempts back to the queue without finishing them (drain)."""

    jobs: list[tuple[Id, Id]]
    credential: str | None = None


class CancelJobs(_Msg, tag="stop"):
    """Hub → worker: stop these attempts (cancelled, or their lease or time ran out)."""

    ids: list[int]


class Finished(_Msg, tag="finished"):
    """Hub → worker: a group this worker ran members of has ended (after its finalize job):
    drop what was kept for it. Sent once per group, to each worker that ran one of its members."""

    group: int


class Reconnect(_Msg, tag="reconnect"):
    """Hub → worker: the hub does not know this connection; send ``hello`` again."""

    reason: str = ""


class Bye(_Msg, tag="bye"):
    credential: str | None = None


ClientMessage = (
    (Submit | Get | Wait | Cancel | Retry | ListJobs | Subscribe | Unsubscribe | Info | Ping | WorkerCommand)
    | ServiceCommand
    | BulkJobs
    | ScheduleCommand
    | SubmitGroup
    | GroupGet
    | GroupCancel
    | HistoryQuery
    | GroupWatch
)
WorkerMessage = Hello | Heartbeat | SetSlots | Done | Fail | Progress | Release | Bye
Inbound = ClientMessage | WorkerMessage
#: Every message tag a hub accepts (what fuzzers and docs enumerate).
INBOUND_TAGS: tuple[str, ...] = tuple(str(kind.__struct_config__.tag) for kind in get_args(Inbound))
Outbound = (
    Accepted | Jobs | Reply | Error | Events | Pong | Welcome | Heartbeat | Assign | CancelJobs | Reconnect
) | Finished

_encoder = msgspec.msgpack.Encoder()
_inbound: msgspec.msgpack.Decoder[Inbound] = msgspec.msgpack.Decoder(Inbound)
_outbound: msgspec.msgpack.Decoder[Outbound] = msgspec.msgpack.Decoder(Outbound)


def encode(message: Inbound | Outbound) -> bytes:
    """The body of a message: trailing fields at their default are left out where the protocol
    added them later (``accepted``'s ``errors``), so older peers read the same bytes."""
    if type(message) is Accepted and not message.errors:
        return _encoder.encode(_AcceptedAll(rid=message.rid, jobs=message.jobs))
    return _encoder.encode(message)


def decode_inbound(body: bytes) -> Inbound:
    """Raises ``msgspec.DecodeError`` / ``msgspec.ValidationError`` on bad input."""
    return _inbound.decode(body)


def decode_outbound(body: bytes) -> Outbound:
    return _outbound.decode(body)


__all__ = [
    "HEADER",
    "Accepted",
    "Assign",
    "BulkJobs",
    "Bye",
    "Cancel",
    "CancelJobs",
    "Done",
    "Error",
    "Events",
    "ExplainInfo",
    "Fail",
    "Finished",
    "Get",
    "GroupCancel",
    "GroupGet",
    "GroupWatch",
    "Heartbeat",
    "Hello",
    "HistoryQuery",
    "Info",
    "Jobs",
    "ListJobs",
    "Ping",
    "Pong",
    "Progress",
    "Reconnect",
    "Release",
    "Reply",
    "Retry",
    "ScheduleCommand",
    "ServiceCommand",
    "ServiceInfo",
    "SetSlots",
    "StoreStats",
    "Submit",
    "SubmitGroup",
    "Subscribe",
    "Unsubscribe",
    "Wait",
    "Welcome",
    "WorkerCommand",
    "WorkerInfo",
]
