"""Client commands of ``jobq``: submit, status, wait, result, cancel, retry, jobs, explain,
workers, services, stats."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any

import click
import msgspec
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jobq.cli import render
from jobq.cli.options import (
    CONTEXT,
    EXIT_JOB_FAILED,
    hub_option,
    option,
    parse_pairs,
    run_async,
    timeout_option,
    token_option,
)
from jobq.client.client import Client, make_spec
from jobq.core.model import JobEvent
from jobq.core.states import COMPLETED, JobState
from jobq.errors import InvalidRequest

json_option = option(
    "--json", "as_json", is_flag=True, default=False, help="Print JSON (one object per line)."
)


def _client(hub: str, connect_timeout: float, token: str | None) -> Client:
    return Client(hub, timeout=connect_timeout, token=token)


def _payload(text: str | None) -> bytes:
    if text is None:
        return b""
    if text == "-":
        return sys.stdin.buffer.read()
    if text.startswith("@"):
        with open(text[1:], "rb") as f:
            return f.read()
    return text.encode()


@click.command(context_settings=CONTEXT)
@hub_option
@timeout_option
@token_option
@click.argument("service")
@click.argument("payload", required=False)
@option("--count", type=int, default=1, show_default=True, help="Submit N jobs; {i} in PAYLOAD is the index.")
@option("--priority", type=int, default=0, show_default=True, help="Higher runs first.")
@option("--wait", is_flag=True, default=False, help="Wait for the jobs to end.")
@json_option
@option(
    "--requires", multiple=True, help="KEY=VALUE requirement (repeatable), e.g. hardware.gpu_memory_gb=16."
)
@option("--must-not", multiple=True, help="KEY=VALUE that excludes workers having it (repeatable).")
@option("--customer", default=None, help="Customer id.")
@option("--isolation", type=click.Choice(["strict", "loose", "none"]), default="none", show_default=True)
@option("--max-attempts", type=int, default=3, show_default=True)
@option("--timeout", type=float, default=None, help="Seconds one attempt may run.")
@option("--delay", type=float, default=None, help="Seconds before the job may run.")
@option("--idempotency-key", default=None, help="A second submit with this key returns the first job.")
@option("--content-type", default=None, help="Content type of the payload (e.g. application/json).")
@option("--result-ttl", type=float, default=None, help="Seconds the result is kept.")
@option("--wait-timeout", type=float, default=None, help="With --wait: give up after this many seconds.")
@run_async
async def submit(
    hub: str,
    connect_timeout: float,
    token: str | None,
    service: str,
    payload: str | None,
    count: int,
    priority: int,
    wait: bool,
    as_json: bool,
    requires: tuple[str, ...],
    must_not: tuple[str, ...],
    customer: str | None,
    isolation: str,
    max_attempts: int,
    timeout: float | None,
    delay: float | None,
    idempotency_key: str | None,
    content_type: str | None,
    result_ttl: float | None,
    wait_timeout: float | None,
) -> int:
    """Submit jobs for SERVICE; PAYLOAD is text, @FILE or - for stdin. Prints each job's id."""
    if count < 1:
        raise InvalidRequest("--count must be at least 1")
    raw = _payload(payload)
    options: dict[str, Any] = {
        "priority": priority,
        "requires": parse_pairs(requires, "--requires"),
        "must_not": parse_pairs(must_not, "--must-not"),
        "customer_id": customer,
        "isolation": isolation,
        "max_attempts": max_attempts,
        "timeout": timeout,
        "delay": delay,
        "idempotency_key": idempotency_key,
        "content_type": content_type,
        "result_ttl": result_ttl,
    }
    specs = []
    for i in range(count):
        body = raw.replace(b"{i}", str(i).encode()) if count > 1 or b"{i}" in raw else raw
        key = options["idempotency_key"]
        specs.append(
            make_spec(
                service, body, **{**options, "idempotency_key": f"{key}-{i}" if key and count > 1 else key}
            )
        )
    async with _client(hub, connect_timeout, token) as client:
        accepted = await client.submit_many(specs, watch=wait)
        if not wait:
            for job_id, state, created in accepted:
                if as_json:
                    render.print_json({"id": job_id, "state": state, "created": created})
                else:
                    click.echo(job_id)
            return 0
        return await _follow(client, [a[0] for a in accepted], as_json, wait_timeout)


async def _follow(client: Client, ids: list[int], as_json: bool, wait_timeout: float | None) -> int:
    started = time.perf_counter()
    ends: dict[int, JobEvent] = {}
    deadline = None if wait_timeout is None else time.monotonic() + wait_timeout
    show_bar = len(ids) > 1 and not as_json
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=render.errors,
        disable=not show_bar,
    ) as bar:
        task = bar.add_task("jobs", total=len(ids))
        for job_id in ids:
            remaining = None if deadline is None else max(0.001, deadline - time.monotonic())
            event = await client.finished(job_id, remaining)
            ends[job_id] = event
            bar.advance(task)
            if as_json:
                render.print_json(_event_json(event))
    elapsed = time.perf_counter() - started
    states = Counter(e.state.value for e in ends.values())
    if len(ids) == 1 and not as_json:
        event = ends[ids[0]]
        if event.state is COMPLETED:
            sys.stdout.buffer.write(b"".join(event.result or []))
            sys.stdout.flush()
        else:
            click.echo(f"jobq: job {event.id} {event.state.value}: {event.error or ''}", err=True)
    elif not as_json:
        summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        click.echo(
            f"{len(ids)} jobs in {elapsed:.2f}s ({len(ids) / elapsed:.0f} jobs/s): {summary}", err=True
        )
    return 0 if states.get("completed", 0) == len(ids) else EXIT_JOB_FAILED


def _event_json(event: JobEvent) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(msgspec.structs.replace(event, result=None))
    if event.result is not None:
        raw = b"".join(event.result)
        data["result"] = raw.decode(errors="replace")
    return data


@click.command(context_settings=CONTEXT)
@hub_option
@timeout_option
@token_option
@click.argument("job_id", type=int)
@json_option
@run_async
async def status(hub: str, connect_timeout: float, token: str | None, job_id: int, as_json: bool) -> int:
    """Show a job: state, attempts, worker, timings."""
    async with _client(hub, connect_timeout, token) as client:
        job = await client.status(job_id)
    if job is None:
        click.echo(f"jobq: no job {job_id}", err=True)
        return 4
    if as_json:
        render.print_json(render.job_json(job))
    else:
        render.show_job(job)
    return 0


@click.command(context_settings=CONTEXT)
@hub_option
@timeout_option
@token_option
@click.argument("job_id", type=int)
@option("--timeout", type=float, default=None, help="Give up after this many seconds.")
@json_option
@run_async
async def wait(
    hub: str, connect_timeout: float, token: str | None, job_id: int, timeout: float | None, as_json: bool
) -> int:
    """Wait for a job to end; exits 0 only if it completed."""
    async with _client(hub, connect_timeout, token) as client:
        job = await client.wait(job_id, timeout)
    if as_json:
        render.print_json(render.job_json(job, result=False))
    else:
        click.echo(
            f"job {job.id} {job.state.value}"
            + (f": {job.error}" if job.error and job.state != COMPLETED else "")
        )
    return 0 if job.state is COMPLETED else EXIT_JOB_FAILED


@click.command(context_settings=CONTEXT)
@hub_option
@timeout_option
@token_option
@click.argument("job_id", type=int)
@option(
    "--wait",
    "wait_seconds",
    type=float,
    default=None,
    help="Wait up to this many seconds for the job to end.",
)
@run_async
async def result(
    hub: str, connect_timeout: float, token: str | None, job_id: int, wait_seconds: float | None
) -> int:
    """Write a completed job's result bytes to stdout (non-zero exit otherwise)."""
    async with _client(hub, connect_timeout, token) as client:
        job = await (client.wait(job_id, wait_seconds) if wait_seconds is not None else client.status(job_id))
    if job is None:
        click.echo(f"jobq: no job {job_id}", err=True)
        return 4
    if job.state is not COMPLETED:
        detail = f": {job.error}" if job.error else ""
        click.echo(f"jobq: job {job_id} is {job.state.value}{detail}", err=True)
        return EXIT_JOB_FAILED
    sys.stdout.buffer.write(job.result_bytes)
    sys.stdout.flush()
    return 0


@click.command(context_settings=CONTEXT)
@hub_option
@timeout_option
@token_option
@click.argument("job_ids", type=int, nargs=-1, required=True)
@json_option
@run_async
async def cancel(
    hub: str, connect_timeout: float, token: str | None, job_ids: tuple[int, ...], as_json: bool
) -> int:
    """Cancel jobs (a running job's worker is told to stop)."""
    async with _client(hub, connect_timeout, token) as client:
        for job_id in job_ids:
            job = await client.cancel(job_id)
            if as_json:
                render.print_json({"id": job.id, "state": job.state.value})
            else:
                click.echo(f"job {job.id} {job.state.value}")
    return 0


@click.command(context_settings=CONTEXT)
@hub_option
@timeout_option
@token_option
@click.argument("job_ids", type=int, nargs=-1, required=True)
@run_async
async def retry(hub: str, connect_timeout: float, token: str | None, job_ids: tuple[int, ...]) -> int:
    """Queue failed or cancelled jobs again with a fresh attempt budget."""
    async with _client(hub, connect_timeout, token) as client:
        for job_id in job_ids:
            job = await client.retry(job_id)
            click.echo(f"job {job.id} {job.state.value}")
    return 0


@click.command(context_settings=CONTEXT)
@hub_option
@timeout_option
@token_option
@option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in JobState]),
    help="Only jobs in this state (repeatable).",
)
@option("--service", default=None)
@option("--customer", default=None)
@option("--worker", "worker_id", default=None)
@option("--blocked", is_flag=True, default=False, help="Only queued jobs no connected worker could run.")
@option("--limit", type=int, default=50, show_default=True)
@option("--offset", type=int, default=0, show_default=True)
@json_option
@run_async
async def jobs(
    hub: str,
    connect_timeout: float,
    token: str | None,
    states: tuple[str, ...],
    service: str | None,
    customer: str | None,
    worker_id: str | None,
    blocked: bool,
    limit: int,
    offset: int,
    as_json: bool,
) -> int:
    """List jobs, newest first."""
    async with _client(hub, connect_timeout, token) as client:
        found = await client.jobs(
            state=list(states),
            service=service,
            customer_id=customer,
            worker=worker_id,
            limit=limit,
            offset=offset,
            blocked=blocked,
        )
    if as_json:
        for job in found:
            render.print_json(render.job_json(job, result=False))
    else:
        render.show_jobs(found)
    return 0


@click.command(context_settings=CONTEXT)
@hub_option
@timeout_option
@token_option
@click.argument("job_id", type=int)
@json_option
@run_async
async def explain(hub: str, connect_timeout: float, token: str | None, job_id: int, as_json: bool) -> int:
    """Why a job is (not) running: eligible workers, position, what others miss."""
    async with _client(hub, connect_timeout, token) as client:
        info = await client.explain(job_id)
    if as_json:
        render.print_json(msgspec.to_builtins(info))
    else:
        render.show_explain(info)
    return 0


@click.command(context_settings=CONTEXT)
@hub_option
@timeout_option
@token_option
@json_option
@run_async
async def workers(hub: str, connect_timeout: float, token: str | None, as_json: bool) -> int:
    """Connected workers."""
    async with _client(hub, connect_timeout, token) as client:
        found = await client.workers()
    if as_json:
        for w in found:
            # Each service's health: ``ok``, or why its backend (a connector's service) is down.
            health = {name: w.unhealthy.get(name, "ok") for name in w.services}
            render.print_json({**msgspec.to_builtins(w), "health": health})
    else:
        render.show_workers(found)
    return 0


@click.command(context_settings=CONTEXT)
@hub_option
@timeout_option
@token_option
@option("--describe", default=None, help="Show one service with its payload schema.")
@json_option
@run_async
async def services(
    hub: str, connect_timeout: float, token: str | None, describe: str | None, as_json: bool
) -> int:
    """Services: workers, slots, queued and running jobs."""
    async with _client(hub, connect_timeout, token) as client:
        found = await client.services()
    if describe is not None:
        match = [s for s in found if s.name == describe]
        if not match:
            click.echo(f"jobq: no service {describe}", err=True)
            return 4
        render.print_json(msgspec.to_builtins(match[0]))
        return 0
    if as_json:
        for s in found:
            render.print_json(msgspec.to_builtins(s))
    else:
        render.show_services(found)
    return 0


@click.command(context_settings=CONTEXT)
@hub_option
@timeout_option
@token_option
@json_option
@run_async
async def stats(hub: str, connect_timeout: float, token: str | None, as_json: bool) -> int:
    """Jobs by state and service, hub counters."""
    async with _client(hub, connect_timeout, token) as client:
        value = await client.stats()
    if as_json:
        render.print_json(value)
        return 0
    by_state = value["jobs"]["by_state"]
    click.echo("jobs: " + (", ".join(f"{n} {s}" for s, n in sorted(by_state.items())) or "none"))
    click.echo(f"workers connected: {value['workers']}")
    click.echo("hub counters: " + ", ".join(f"{k} {v}" for k, v in value["counters"].items()))
    for service, states in sorted(value["jobs"]["by_service"].items()):
        click.echo(f"  {service}: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    return 0


def install(group: click.Group) -> None:
    for command in (submit, status, wait, result, cancel, retry, jobs, explain, workers, services, stats):
        group.add_command(command)
