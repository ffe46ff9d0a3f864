"""What the REST handler modules share (``rest.py``, ``rest_ops.py``, ``rest_schedules.py``,
``rest_groups.py``): the OpenAPI description of their error answers, state names read from a
query or body, and the optional empty body of an action. No rules here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar import Request
from litestar.openapi.datastructures import ResponseSpec

from jobq.core.states import JobState
from jobq.doors.http.frames import FieldError
from jobq.doors.http.models import ErrorBody
from jobq.errors import InvalidRequest

#: What an error answer means, unless a module says more of it (its 403, 404, 409...).
COMMON_ERRORS: Mapping[int, str] = {
    400: "Malformed body, wrong type or value, or a missing or unknown field.",
    401: "No token, or an unknown or revoked one (`Authorization: Bearer TOKEN`).",
    403: "The token does not allow it.",
    415: "A state-changing request whose Content-Type is not application/json.",
    503: "The hub is shutting down.",
}


class ErrorResponses:
    """``errors(*codes)``: the OpenAPI ``responses`` of a handler that may answer those codes
    (and 401 and 403, as every handler may), described by ``specific`` over the common ones."""

    def __init__(self, specific: Mapping[int, str]) -> None:
        self.descriptions = {**COMMON_ERRORS, **specific}

    def __call__(self, *codes: int) -> dict[int, ResponseSpec]:
        return {
            code: ResponseSpec(data_container=ErrorBody, description=self.descriptions.get(code, "Error."))
            for code in (*codes, 401, 403)
        }


def states_of(text: str | None, field: str = "status") -> list[JobState]:
    """Comma-separated state names → states; a 400 naming ``field`` for an unknown one."""
    states: list[JobState] = []
    for name in (text or "").split(","):
        name = name.strip()
        if not name:
            continue
        try:
            states.append(JobState(name))
        except ValueError:
            raise FieldError(
                f"unknown {field} {name[:40]!r}: use " + ", ".join(s.value for s in JobState), [field]
            ) from None
    return states


async def empty_body(request: Request[Any, Any, Any]) -> None:
    """An action's body, if any, is ``{}``: anything else is a 400."""
    body = (await request.body()).strip()
    if body and body != b"{}":
        raise InvalidRequest("the body must be empty or {}")


__all__ = ["COMMON_ERRORS", "ErrorResponses", "empty_body", "states_of"]
