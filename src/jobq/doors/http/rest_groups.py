"""REST handlers of groups (``hub/groups.py``; rules in ``core/workflow.py``,
``docs/workflows.md``): ``GET /api/groups/{id}``, ``GET /api/groups/{id}/members``,
``POST /api/groups/{id}/cancel``; ``POST /api/jobs`` with ``expand`` answers with the group
(:func:`submit_group`). Decode, call the hub, encode: no rules here.

A group is answered as ``core/workflow.GroupView``: ``id``, ``state`` (running, finalizing,
completed, failed, cancelled), ``total``, ``counts`` (members per state), ``ended``,
``progress`` (percent of members ended), ``finalize`` (the finalize job's id once submitted),
``policy``, ``service``, ``created_at``, ``ended_at``, ``reason``.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Request, get, post
from litestar.params import Parameter

from jobq.core.model import JobSpec
from jobq.core.workflow import GroupView
from jobq.doors.http import models as m
from jobq.doors.http import views as v
from jobq.doors.http.rest_common import ErrorResponses
from jobq.doors.http.state import caller_of, door_of

GroupIdParam = Annotated[int, Parameter(ge=1, le=m.MAX_ID, description="The group's id.")]


class GroupCreated(msgspec.Struct, kw_only=True):
    """``POST /api/jobs`` with ``expand``: the group, its members' ids in member order, and
    false when an ``idempotency_key`` matched an existing group."""

    group: GroupView
    members: list[int]
    created: bool


class MemberList(msgspec.Struct, kw_only=True):
    """Members in member order (then the finalize job), ``offset`` and ``limit`` as asked."""

    jobs: list[m.JobView]
    offset: int
    limit: int


_errors = ErrorResponses(
    {
        400: "Malformed request or parameter.",
        403: "The token does not allow it (a client sees and cancels only its own groups).",
        404: "No such group.",
        409: "The group has already ended.",
    }
)


def _shown(view: GroupView) -> GroupView:
    return msgspec.structs.replace(view, result=None)


async def submit_group(request: Request[Any, Any, Any], spec: JobSpec) -> GroupCreated:
    """``POST /api/jobs`` of a spec with ``expand``: one group, expanded by the hub."""
    done = await door_of(request).hub.submit_group(spec, caller=caller_of(request))
    return GroupCreated(group=_shown(done.group), members=done.members, created=done.created)


@get(
    "/api/groups/{group_id:int}",
    summary="A group: state, counts, progress",
    tags=["groups"],
    responses=_errors(400, 404),
)
async def get_group(request: Request[Any, Any, Any], group_id: GroupIdParam) -> GroupView:
    return _shown(await door_of(request).hub.group(group_id, caller=caller_of(request)))


@get(
    "/api/groups/{group_id:int}/members",
    summary="A group's members, in member order, then its finalize job",
    tags=["groups"],
    responses=_errors(400, 404),
)
async def group_members(
    request: Request[Any, Any, Any],
    group_id: GroupIdParam,
    offset: Annotated[int, Parameter(ge=0, le=10**9)] = 0,
    limit: Annotated[int, Parameter(ge=0, le=m.MAX_LIST)] = 100,
) -> MemberList:
    hub = door_of(request).hub
    jobs = await hub.group_members(group_id, offset=offset, limit=limit, caller=caller_of(request))
    return MemberList(jobs=[v.job_view(job) for job in jobs], offset=offset, limit=limit)


@post(
    "/api/groups/{group_id:int}/cancel",
    summary="Cancel a group",
    description="Its members not yet ended and its finalize job are cancelled; no finalize job is "
    "submitted for it. 409 once it has ended.",
    status_code=200,
    tags=["groups"],
    responses=_errors(400, 404, 409, 415),
)
async def cancel_group(request: Request[Any, Any, Any], group_id: GroupIdParam) -> GroupView:
    return _shown(await door_of(request).hub.cancel_group(group_id, caller=caller_of(request)))


HANDLERS = [get_group, group_members, cancel_group]
