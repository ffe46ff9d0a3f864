"""``/health`` and ``/ready``: probes for load balancers and orchestrators, open without a token
(no data in them) and answered even while the door holds more connections than its limit.

Both ask the hub (``Hub.health``, the same answer for every door): its store is read once, with
a timeout, at most once a second whoever asks, so a flood of probes cannot hammer the store.

- ``/health``: 200 while the hub lives and its store answers; 503 ``store_down`` with the reason
  while the store does not answer, 503 ``draining`` while the hub shuts down.
- ``/ready``: 200 while the hub takes work (its store answers, it is not shutting down, and this
  door is not past ``http_max_connections``); 503 otherwise.

With ``--auth`` the reason a store is down is not shown (it names hosts): only that it does not
answer; the hub's log has the rest.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.openapi.datastructures import ResponseSpec

from jobq.doors.http import models as m
from jobq.doors.http.limits import RETRY_AFTER
from jobq.doors.http.state import DoorState, door_of


async def _health(door: DoorState) -> tuple[m.Health, bool]:
    """The answer, and whether the hub takes work."""
    hub = door.hub
    found = await hub.health()
    reason = found.reason
    if found.status == "store_down" and hub.guard.enabled:
        reason = "the store does not answer (the hub's log says why)"
    ready = found.ready and not door.limits.full
    if found.ready and not ready:
        reason = f"the HTTP door holds more than {door.limits.total} connections"
    body = m.Health(
        status="draining" if found.draining else "store_down" if not found.store_ok else "ok",
        hub=hub.config.name,
        uptime=found.uptime,
        store="ok" if found.store_ok else "down",
        ready=ready,
        reason=reason,
    )
    return body, ready


def _answer(body: m.Health, ok: bool) -> Response[m.Health]:
    if ok:
        return Response(body)
    return Response(body, status_code=503, headers={"Retry-After": str(RETRY_AFTER)})


@get(
    "/health",
    summary="Liveness: the hub lives and its store answers",
    description="200 while the hub lives and its store answers (asked at most once a second); 503 "
    "`store_down` with the reason while it does not, 503 `draining` while the hub shuts down.",
    tags=["cluster"],
    responses={503: ResponseSpec(data_container=m.Health, description="Store down, or shutting down.")},
)
async def health(request: Request[Any, Any, Any]) -> Response[m.Health]:
    body, _ = await _health(door_of(request))
    return _answer(body, body.status == "ok")


@get(
    "/ready",
    summary="Readiness: the hub takes work",
    description="200 while the hub takes work: its store answers, it is not shutting down and the "
    "HTTP door is not past its connection limit; 503 otherwise, with the reason.",
    tags=["cluster"],
    responses={503: ResponseSpec(data_container=m.Health, description="Not taking work now.")},
)
async def ready(request: Request[Any, Any, Any]) -> Response[m.Health]:
    body, ok = await _health(door_of(request))
    return _answer(body, ok)


HANDLERS = [health, ready]
