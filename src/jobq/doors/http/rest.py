"""REST handlers of the HTTP door: decode, call the hub, encode. No rules here.

``POST`` bodies are read as bytes and decoded strictly by :mod:`~jobq.doors.http.models`
(Litestar's own body parsing coerces types, which would let ``"priority": "5"`` through). Path
and query parameters carry their bounds, so a bad one is a 400 before any hub call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Parameter

from jobq.core.auth import Caller
from jobq.core.model import Job, JobFilter
from jobq.core.states import COMPLETED, TERMINAL
from jobq.doors.http import models as m
from jobq.doors.http import views as v
from jobq.doors.http.rest_common import ErrorResponses, states_of
from jobq.doors.http.rest_groups import GroupCreated, submit_group
from jobq.doors.http.state import DoorState, caller_of, door_of
from jobq.errors import InvalidRequest, JobFailed, JobqError, Timeout, Unavailable
from jobq.hub.control import WorkerAction
from jobq.hub.hub import SubmitOutcome

JobIdParam = Annotated[int, Parameter(ge=1, le=m.MAX_ID, description="The job's id.")]


_errors = ErrorResponses(
    {
        403: "The token does not allow it (its role, or the job is not one of its customers').",
        404: "No such job.",
        409: "The job's state does not allow it.",
        413: "The body or payload is larger than the limit.",
    }
)


def _created(door: DoorState, placed: Sequence[tuple[SubmitOutcome, int | None]]) -> list[m.JobCreated]:
    """The jobs as created (or found), each with its place in the queue; the first refusal
    if a spec was refused."""
    out = []
    for outcome, position in placed:
        if isinstance(outcome, JobqError):
            raise outcome
        out.append(
            m.JobCreated(
                id=outcome.job.id,
                job_id=outcome.job.id,
                state=outcome.job.state.value,
                status=outcome.job.state.value,
                queue_position=position,
                created=outcome.created,
            )
        )
    fresh = [outcome.job for outcome, _ in placed if not isinstance(outcome, JobqError) and outcome.created]
    door.streams.log.submitted(fresh, door.hub.clock())
    return out


@post(
    "/api/jobs",
    summary="Submit a job",
    description="The EmProps body (`type`, `payload`, `priority`, `requirements`, `customer_id`) and jobq's "
    "own fields. 201 when created, 200 when an `idempotency_key` matched an existing job.",
    status_code=201,
    tags=["jobs"],
    responses={200: ResponseSpec(data_container=m.JobCreated, description="An existing job (same key).")}
    | _errors(400, 413, 415, 503),
)
async def submit_job(request: Request[Any, Any, Any]) -> Response[m.JobCreated | GroupCreated]:
    door = door_of(request)
    spec = m.spec_of(m.decode_job_request(await request.body()), door.hub.config.max_payload)
    if spec.expand is not None or spec.finalize is not None:  # a group: rest_groups.py
        group = await submit_group(request, spec)
        return Response(group, status_code=201 if group.created else 200)
    [created] = _created(door, await door.hub.submit_placed([spec], caller=caller_of(request)))
    return Response(created, status_code=201 if created.created else 200)


@post(
    "/api/jobs/batch",
    summary="Submit many jobs at once",
    description=f"Up to {m.MAX_BATCH} jobs in one call, each as in `POST /api/jobs`; all or none.",
    status_code=201,
    tags=["jobs"],
    responses=_errors(400, 413, 415, 503),
)
async def submit_batch(request: Request[Any, Any, Any]) -> m.BatchCreated:
    door = door_of(request)
    batch = m.decode_batch_request(await request.body())
    limit = door.hub.config.max_payload
    specs = []
    for i, item in enumerate(batch.jobs):
        try:
            specs.append(m.spec_of(item, limit))
        except m.FieldError as exc:
            raise m.FieldError(exc.message, [f"jobs[{i}].{f}" for f in exc.fields], hint=exc.hint) from None
    for spec in specs:  # all or none: a spec the hub would refuse refuses the batch
        door.hub.check(spec)
    return m.BatchCreated(jobs=_created(door, await door.hub.submit_placed(specs, caller=caller_of(request))))


@get(
    "/api/jobs",
    summary="List jobs, newest first",
    tags=["jobs"],
    responses=_errors(400),
)
async def list_jobs(
    request: Request[Any, Any, Any],
    status: Annotated[
        str | None,
        Parameter(
            description="States, comma-separated: queued, scheduled, running, completed, failed, cancelled."
        ),
    ] = None,
    state_names: Annotated[  # ``state`` is a name Litestar keeps for itself
        str | None,
        Parameter(query="state", max_length=200, description="The same as `status` (jobq's name)."),
    ] = None,
    service: Annotated[str | None, Parameter(max_length=255)] = None,
    customer_id: Annotated[str | None, Parameter(max_length=255)] = None,
    worker: Annotated[str | None, Parameter(max_length=255)] = None,
    blocked: Annotated[bool, Parameter(description="Only queued jobs no connected worker can run.")] = False,
    limit: Annotated[int, Parameter(ge=0, le=m.MAX_LIST)] = 100,
    offset: Annotated[int, Parameter(ge=0, le=10**9)] = 0,
    before: Annotated[
        int | None,
        Parameter(ge=1, le=m.MAX_ID, description="Only jobs with a smaller id: the previous page's `next`."),
    ] = None,
    q: Annotated[
        str | None, Parameter(max_length=100, description="Search: a job id (`123` or `#123`).")
    ] = None,
) -> m.JobList:
    query = JobFilter(
        states=states_of(state_names, "state") + states_of(status),
        service=service,
        customer_id=customer_id,
        worker=worker,
        limit=limit + 1,  # one more: is there a next page?
        offset=offset,
        before_id=before,
    )
    if q is not None and q.strip():  # a job id; other text finds nothing (docs/http.md)
        wanted = q.strip().removeprefix("#")
        if not (wanted.isascii() and wanted.isdigit()) or not 1 <= int(wanted) <= m.MAX_ID:
            return m.JobList(jobs=[], limit=limit, offset=offset)
        query = msgspec.structs.replace(query, ids=[int(wanted)])
    jobs = await door_of(request).hub.list_jobs(query, blocked=blocked, caller=caller_of(request))
    cursor = jobs[limit - 1].id if len(jobs) > limit and limit > 0 else None
    return m.JobList(jobs=[v.job_view(job) for job in jobs[:limit]], limit=limit, offset=offset, next=cursor)


@get(
    "/api/jobs/{job_id:int}",
    summary="A job, with its payload and result",
    tags=["jobs"],
    responses=_errors(400, 404),
)
async def get_job(request: Request[Any, Any, Any], job_id: JobIdParam) -> m.JobView:
    return v.job_view(await door_of(request).hub.get(job_id, caller=caller_of(request)), full=True)


@delete(
    "/api/jobs/{job_id:int}",
    summary="Cancel a job",
    description="A queued job never runs; a running one is told to stop. 409 if it already ended.",
    status_code=200,
    tags=["jobs"],
    responses=_errors(400, 404, 409, 415),
)
async def cancel_job(request: Request[Any, Any, Any], job_id: JobIdParam) -> m.JobView:
    return v.job_view(await door_of(request).hub.cancel(job_id, caller=caller_of(request)))


@post(
    "/api/jobs/{job_id:int}/retry",
    summary="Queue a failed or cancelled job again",
    status_code=200,
    tags=["jobs"],
    responses=_errors(400, 404, 409, 415, 503),
)
async def retry_job(request: Request[Any, Any, Any], job_id: JobIdParam) -> m.JobView:
    return v.job_view(await door_of(request).hub.retry(job_id, caller=caller_of(request)))


@get(
    "/api/jobs/{job_id:int}/result",
    summary="A job's result",
    description="200 with the result once completed; 202 while it has not ended (after waiting up to "
    "`wait` seconds); 409 if it ended without one. `raw=true` answers the result's bytes themselves.",
    tags=["jobs"],
    responses={202: ResponseSpec(data_container=m.ResultView, description="Not ended yet.")}
    | _errors(400, 404, 409),
)
async def get_result(
    request: Request[Any, Any, Any],
    job_id: JobIdParam,
    wait: Annotated[float, Parameter(ge=0, le=3600, description="Seconds to wait for the end.")] = 0,
    raw: bool = False,
) -> Response[Any]:
    door = door_of(request)
    hub = door.hub
    caller = caller_of(request)
    job: Job = await hub.get(job_id, caller=caller)
    if wait > 0 and job.state not in TERMINAL:
        job = await _wait(door, job_id, wait, caller) or await hub.get(job_id, caller=caller)
    if job.state not in TERMINAL:
        state: m.State = job.state.value
        return Response(m.ResultView(id=job.id, job_id=job.id, state=state, status=state), status_code=202)
    if job.state is not COMPLETED:
        raise JobFailed(f"job {job.id} ended {job.state}: {job.error or 'no result'}")
    if raw:
        _, encoding = m.frames_to_wire(job.result)
        media = {"json": "application/json", "text": "text/plain; charset=utf-8"}.get(encoding)
        return Response(job.result_bytes, media_type=media or "application/octet-stream")
    result, encoding = m.frames_to_wire(job.result)
    done = m.ResultView(id=job.id, job_id=job.id, state="completed", status="completed", result=result)
    done.result_encoding = encoding
    return Response(done)


async def _wait(door: DoorState, job_id: int, seconds: float, caller: Caller) -> Job | None:
    """The job once it ends within ``seconds``, else None; 503 if the door closes meanwhile."""
    ended = asyncio.ensure_future(door.hub.wait(job_id, seconds, caller=caller))
    closing = asyncio.ensure_future(door.closing.wait())
    try:
        await asyncio.wait({ended, closing}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        closing.cancel()
        if not ended.done():
            ended.cancel()
    if not ended.done() or ended.cancelled():
        raise Unavailable("the hub is shutting down")
    if isinstance(ended.exception(), Timeout):
        return None
    return ended.result()


@get(
    "/api/jobs/{job_id:int}/events",
    summary="What happened to a job",
    description="The job's timeline, kept with it on every store whether or not anybody watched: "
    "its submit, each attempt started and ended (with its worker), retries, sampled progress, "
    "cancel, lost workers, its end (at most 64 events: the first 8 and the latest). A job stored "
    "by a jobq without timelines gets events rebuilt from its times (`recorded: false`).",
    tags=["jobs"],
    responses=_errors(400, 404),
)
async def get_events(request: Request[Any, Any, Any], job_id: JobIdParam) -> m.EventHistory:
    door = door_of(request)
    job = await door.hub.get(job_id, caller=caller_of(request))
    if job.timeline:
        return m.EventHistory(id=job_id, job_id=job_id, events=v.timeline_events(job), recorded=True)
    return m.EventHistory(id=job_id, job_id=job_id, events=v.rebuilt_events(job), recorded=False)


@get(
    "/api/jobs/{job_id:int}/explain",
    summary="Why a job is not running",
    description="Its place, the workers that could run it, and why the others cannot.",
    tags=["jobs"],
    responses=_errors(400, 404),
)
async def explain_job(request: Request[Any, Any, Any], job_id: JobIdParam) -> m.ExplainInfo:
    return await door_of(request).hub.explain(job_id, caller=caller_of(request))


@get("/api/workers", summary="Connected workers", tags=["cluster"], responses=_errors())
async def list_workers(request: Request[Any, Any, Any]) -> list[m.WorkerView]:
    hub = door_of(request).hub
    return [v.worker_view(status) for status in await hub.worker_statuses(caller=caller_of(request))]


WorkerIdParam = Annotated[str, Parameter(min_length=1, max_length=255, description="The worker's id.")]
_worker_request = msgspec.json.Decoder(m.WorkerActionRequest)


def _worker_action(action: WorkerAction, summary: str, description: str) -> HTTPRouteHandler:
    """``POST /api/workers/{worker_id}/<action>``: admin only (hub/control.py)."""

    @post(
        f"/api/workers/{{worker_id:str}}/{action}",
        summary=summary,
        description=description + " Admin only.",
        status_code=200,
        tags=["cluster"],
        operation_id=f"{action}Worker",
        responses=_errors(400, 404, 409, 415),
    )
    async def handler(request: Request[Any, Any, Any], worker_id: WorkerIdParam) -> m.WorkerActionView:
        body = await request.body()
        try:
            reason = _worker_request.decode(body).reason if body.strip() else None
        except msgspec.MsgspecError as exc:
            raise InvalidRequest(f'the body must be {{}} or {{"reason": TEXT}}: {exc}') from None
        hub = door_of(request).hub
        notice = await hub.control_worker(action, worker_id, reason=reason, caller=caller_of(request))
        return v.worker_action_view(notice)

    return handler


drain_worker = _worker_action(
    "drain",
    "Drain a worker",
    "It takes no new jobs and finishes what it runs; it stays drained if it reconnects. Optional "
    'body: {"reason": TEXT} (what listings show).',
)
resume_worker = _worker_action("resume", "Resume a drained worker", "It takes jobs again.")
evict_worker = _worker_action(
    "evict",
    "Evict a worker",
    "Drain it and detach it now: its running jobs go back to the queue, and it is told to stop them.",
)


@get(
    "/api/services",
    summary="Services: workers, slots, queued and running jobs",
    tags=["cluster"],
    responses=_errors(),
)
async def list_services(request: Request[Any, Any, Any]) -> list[m.ServiceInfo]:
    return await door_of(request).hub.services(caller=caller_of(request))


@get(
    "/api/stats",
    summary="Jobs by state and service, hub counters, slots",
    tags=["cluster"],
    responses=_errors(),
)
async def get_stats(request: Request[Any, Any, Any]) -> m.StatsView:
    return v.stats_view(await door_of(request).hub.stats(caller=caller_of(request)))


HANDLERS = [
    submit_job,
    submit_batch,
    list_jobs,
    get_job,
    cancel_job,
    retry_job,
    get_result,
    get_events,
    explain_job,
    list_workers,
    drain_worker,
    resume_worker,
    evict_worker,
    list_services,
    get_stats,
]
