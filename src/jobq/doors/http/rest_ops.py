"""REST handlers of an operator's control of the queue: pause and resume a service, and cancel
or retry a filtered selection of jobs (``hub/queue_control.py``; the rules are
``core/operations.py``'s). Decode, call the hub, encode: no rules here.

Bodies are JSON only (the gate answers 415 to another ``Content-Type``) and decoded strictly.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, post
from litestar.params import Parameter

from jobq.core.model import JobFilter
from jobq.core.operations import (
    DEFAULT_BULK_LIMIT,
    MAX_BULK_LIMIT,
    MAX_SERVICE,
    BulkResult,
    PauseAction,
    ServicePause,
)
from jobq.doors.http import models as m
from jobq.doors.http.frames import check_nesting, field_error
from jobq.doors.http.rest_common import ErrorResponses, empty_body, states_of
from jobq.doors.http.state import caller_of, door_of
from jobq.errors import InvalidRequest

ServiceParam = Annotated[str, Parameter(min_length=1, max_length=MAX_SERVICE, description="The service.")]
OptionalName = Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None


class BulkRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/jobs/bulk``: the action and the filter of a job listing (at least one)."""

    action: Literal["cancel", "retry"]
    #: States, comma-separated (as ``GET /api/jobs?status=``).
    status: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    #: The same as ``status`` (jobq's name).
    state: Annotated[str, msgspec.Meta(max_length=200)] | None = None
    service: OptionalName = None
    customer_id: OptionalName = None
    #: A worker's id.
    worker: OptionalName = None
    #: Only queued jobs no connected worker can run.
    blocked: bool = False
    ids: Annotated[list[m.JobId], msgspec.Meta(max_length=MAX_BULK_LIMIT)] = msgspec.field(
        default_factory=list
    )
    #: Jobs selected at most (newest first).
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_BULK_LIMIT)] = DEFAULT_BULK_LIMIT


_bulk_request = msgspec.json.Decoder(BulkRequest)


_errors = ErrorResponses({})


def _service_action(action: PauseAction, summary: str, description: str) -> Any:
    """``POST /api/services/{service}/<action>``: admin only (hub/queue_control.py)."""

    @post(
        f"/api/services/{{service:str}}/{action}",
        summary=summary,
        description=description + " Admin only; the body, if any, is `{}`.",
        status_code=200,
        tags=["cluster"],
        operation_id=f"{action}Service",
        responses=_errors(400, 415),
    )
    async def handler(request: Request[Any, Any, Any], service: ServiceParam) -> ServicePause:
        await empty_body(request)
        return await door_of(request).hub.control_service(action, service, caller=caller_of(request))

    return handler


pause_service = _service_action(
    "pause",
    "Pause a service's queue",
    "Its jobs are still accepted, none is handed out until it is resumed; running jobs finish. "
    "Durable, and the same for every hub on one Redis.",
)
resume_service = _service_action("resume", "Resume a paused service", "Its jobs are handed out again.")


@post(
    "/api/jobs/bulk",
    summary="Cancel or retry the jobs a filter selects",
    description="Body: `action` (`cancel` or `retry`) and at least one of `status` (comma-separated), "
    "`service`, `customer_id`, `worker`, `blocked`, `ids`; `limit` (default "
    f"{DEFAULT_BULK_LIMIT}, at most {MAX_BULK_LIMIT}) jobs are selected, newest first. Each job is "
    "checked as a single cancel or retry (a client acts on its own jobs only); `cancel` skips "
    "ended jobs, `retry` all but failed, quarantined and cancelled ones, each with the reason.",
    status_code=200,
    tags=["jobs"],
    responses=_errors(400, 415, 503),
)
async def bulk_jobs(request: Request[Any, Any, Any]) -> BulkResult:
    body = await request.body()
    if not body.strip():
        raise InvalidRequest('a JSON body is required: {"action": "cancel" | "retry", "status": ...}')
    check_nesting(body)
    try:
        req = _bulk_request.decode(body)
    except msgspec.ValidationError as exc:
        path = str(exc).rsplit(" - at `$.", 1)
        field = path[1].rstrip("`").split("[")[0] if len(path) == 2 else "body"
        raise field_error(field, f"bad bulk request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None
    query = JobFilter(
        states=states_of(req.status) + states_of(req.state, "state"),
        service=req.service,
        customer_id=req.customer_id,
        worker=req.worker,
        ids=list(req.ids),
        limit=req.limit,
    )
    hub = door_of(request).hub
    return await hub.bulk(req.action, query, blocked=req.blocked, caller=caller_of(request))


HANDLERS = [pause_service, resume_service, bulk_jobs]

__all__ = ["HANDLERS", "BulkRequest", "bulk_jobs", "pause_service", "resume_service"]
