"""``GET /api/history``: the hub's history (``core/history.py``), as the dashboard's charts read it.

Decode the query, call ``Hub.history``, encode its answer: no rule here. The answer's shape is
``core.history.History`` (documented in ``docs/http.md``).
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from jobq.core.history import MAX_MINUTES, History
from jobq.doors.http import models as m
from jobq.doors.http.state import caller_of, door_of

#: ``minutes`` when the query has none.
DEFAULT_MINUTES = 60


@get(
    "/api/history",
    summary="Counts, queue depth and latency percentiles over time",
    description=(
        "One point per bucket of the last `minutes` (10-second buckets up to 24 hours, 1-minute "
        f"buckets up to {MAX_MINUTES} minutes, 7 days), oldest first, zero-filled; summed over "
        "services unless `service` is given. Admin and monitor tokens only."
    ),
    tags=["cluster"],
    responses={
        400: ResponseSpec(data_container=m.ErrorBody, description="A bad `minutes` or `service`."),
        401: ResponseSpec(data_container=m.ErrorBody, description="No token, or an unknown one."),
        403: ResponseSpec(data_container=m.ErrorBody, description="Not an admin or monitor token."),
    },
)
async def get_history(
    request: Request[Any, Any, Any],
    minutes: Annotated[
        int, Parameter(ge=1, le=MAX_MINUTES, description="How far back, in minutes (default 60).")
    ] = DEFAULT_MINUTES,
    service: Annotated[
        str | None, Parameter(min_length=1, max_length=255, description="One service only.")
    ] = None,
) -> History:
    return await door_of(request).hub.history(minutes, service, caller=caller_of(request))


HANDLERS = [get_history]

__all__ = ["DEFAULT_MINUTES", "HANDLERS", "get_history"]
