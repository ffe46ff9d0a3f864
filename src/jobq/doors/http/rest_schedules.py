"""REST handlers of cron schedules (``hub/schedules.py``; rules in ``core/schedule.py``,
``docs/workflows.md``): ``GET|POST /api/schedules``, ``GET|DELETE /api/schedules/{name}``,
``POST /api/schedules/{name}/pause|resume``. Decode, call the hub, encode: no rules here.

A schedule is answered as ``core/schedule_info.ScheduleInfo``: ``name``, ``cron``,
``timezone``, ``service``, ``paused``, ``next`` (POSIX seconds, null while paused), ``cursor``,
``catch_up``, ``coalesce``, ``created_at``, ``priority``, ``customer_id``, ``owner``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, delete, get, post
from litestar.params import Parameter

from jobq.core.schedule import DEFAULT_CATCH_UP, MAX_CATCH_UP
from jobq.core.schedule_info import ScheduleInfo
from jobq.doors.http import models as m
from jobq.doors.http.frames import FieldError, check_nesting
from jobq.doors.http.rest_common import ErrorResponses, empty_body
from jobq.doors.http.state import caller_of, door_of
from jobq.errors import InvalidRequest

NameParam = Annotated[str, Parameter(min_length=1, max_length=200, description="The schedule's name.")]


class ScheduleRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /api/schedules``: a schedule of that name is replaced (it fires from now on)."""

    #: 1-200 of ``A-Z a-z 0-9 . _ -``, starting alphanumeric.
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    #: Five fields, ``minute hour day-of-month month day-of-week`` (or a macro: ``@daily``).
    cron: Annotated[str, msgspec.Meta(min_length=1, max_length=1000)]
    #: The IANA zone the expression is read in.
    timezone: Annotated[str, msgspec.Meta(min_length=1, max_length=100)] = "UTC"
    #: Seconds a missed firing may be late and still run (at least 60 are used).
    catch_up: Annotated[float, msgspec.Meta(ge=0, le=MAX_CATCH_UP)] = DEFAULT_CATCH_UP
    #: After downtime, run only the latest missed firing (else each, in order).
    coalesce: bool = True
    #: The job each firing submits, as the body of ``POST /api/jobs``.
    job: m.JobRequest


_decoder = msgspec.json.Decoder(ScheduleRequest)


class Removed(msgspec.Struct, kw_only=True):
    name: str
    removed: bool = True


_errors = ErrorResponses(
    {
        400: "Malformed body, a bad expression, zone or name (the reason says which).",
        403: "The token does not allow it (a client manages only the schedules it added).",
        404: "No such schedule.",
    }
)


def _decode(body: bytes) -> ScheduleRequest:
    check_nesting(body)
    try:
        return _decoder.decode(body)
    except msgspec.ValidationError as exc:
        name = m.field_of(exc)
        reason = str(exc).split(" - at ")[0]
        raise FieldError(f"invalid {name or 'body'}: {reason}", [name] if name else []) from None
    except msgspec.MsgspecError as exc:
        raise InvalidRequest(f"the body is not valid JSON: {exc}") from None


@post(
    "/api/schedules",
    summary="Add (or replace) a cron schedule",
    description="`{name, cron, timezone, catch_up, coalesce, job}`: `job` is the body of `POST /api/jobs`, "
    "submitted at each firing, exactly once (docs/workflows.md).",
    status_code=201,
    tags=["schedules"],
    responses=_errors(400, 415, 503),
)
async def add_schedule(request: Request[Any, Any, Any]) -> ScheduleInfo:
    door = door_of(request)
    wanted = _decode(await request.body())
    try:
        spec = m.spec_of(wanted.job, door.hub.config.max_payload)
    except FieldError as exc:
        raise FieldError(exc.message, [f"job.{f}" for f in exc.fields], hint=exc.hint) from None
    return await door.hub.add_schedule(
        wanted.name,
        wanted.cron,
        spec,
        tz=wanted.timezone,
        catch_up=wanted.catch_up,
        coalesce=wanted.coalesce,
        caller=caller_of(request),
    )


@get(
    "/api/schedules",
    summary="Cron schedules, each with its next firing",
    tags=["schedules"],
    responses=_errors(),
)
async def list_schedules(request: Request[Any, Any, Any]) -> list[ScheduleInfo]:
    return await door_of(request).hub.list_schedules(caller=caller_of(request))


@get(
    "/api/schedules/{name:str}", summary="One cron schedule", tags=["schedules"], responses=_errors(400, 404)
)
async def get_schedule(request: Request[Any, Any, Any], name: NameParam) -> ScheduleInfo:
    return await door_of(request).hub.get_schedule(name, caller=caller_of(request))


@delete(
    "/api/schedules/{name:str}",
    summary="Remove a cron schedule (the jobs it submitted stay)",
    status_code=200,
    tags=["schedules"],
    responses=_errors(400, 404),
)
async def remove_schedule(request: Request[Any, Any, Any], name: NameParam) -> Removed:
    await door_of(request).hub.remove_schedule(name, caller=caller_of(request))
    return Removed(name=name)


@post(
    "/api/schedules/{name:str}/pause",
    summary="Pause a cron schedule",
    description="Nothing fires while paused, nor is caught up after. The body, if any, is `{}`.",
    status_code=200,
    tags=["schedules"],
    responses=_errors(400, 404, 415),
)
async def pause_schedule(request: Request[Any, Any, Any], name: NameParam) -> ScheduleInfo:
    await empty_body(request)
    return await door_of(request).hub.pause_schedule(name, caller=caller_of(request))


@post(
    "/api/schedules/{name:str}/resume",
    summary="Resume a paused cron schedule",
    description="It fires again from now on. The body, if any, is `{}`.",
    status_code=200,
    tags=["schedules"],
    responses=_errors(400, 404, 415),
)
async def resume_schedule(request: Request[Any, Any, Any], name: NameParam) -> ScheduleInfo:
    await empty_body(request)
    return await door_of(request).hub.resume_schedule(name, caller=caller_of(request))


HANDLERS = [add_schedule, list_schedules, get_schedule, remove_schedule, pause_schedule, resume_schedule]

__all__ = ["HANDLERS"]
