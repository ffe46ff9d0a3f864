"""Client commands of ``jobq``: status, wait, result, cancel, retry, jobs, explain, stats
(``jobq submit`` is in submit_command.py, ``jobq workers`` in worker_commands.py, ``jobq
services`` in service_commands.py).

Listing filters (``jobq jobs --state/--service/--customer/--worker/--blocked``) have no
``JOBQ_*`` twin: an environment variable must not narrow a listing unseen."""

from __future__ import annotations

import sys

import click
import msgspec

from jobq.cli import render
from jobq.cli.bulk_command import bulk_options
from jobq.cli.calls import connect
from jobq.cli.options import CONTEXT, EXIT_JOB_FAILED, client_options, json_option, option, run_async
from jobq.cli.submit_command import say_blocked, submit
from jobq.client.client import Client
from jobq.core.states import COMPLETED, WAITING, JobState


def _client(hub: str, connect_timeout: float, token: str | None) -> Client:
    client = connect(hub, connect_timeout, token)
    client.on_blocked = say_blocked  # a wait for a job no worker can run says why
    return client


@click.command(context_settings=CONTEXT)
@client_options
@click.argument("job_id", type=int)
@json_option
@run_async
async def status(hub: str, connect_timeout: float, token: str | None, job_id: int, as_json: bool) -> int:
    """Show a job: state, attempts, worker, timings."""
    async with _client(hub, connect_timeout, token) as client:
        job = await client.status(job_id, payload=True)
        # A waiting job: what it waits for (its prerequisites' states, explain's summary).
        waits = (await client.explain(job_id)).summary if job and job.state is WAITING else None
    if job is None:
        click.echo(f"jobq: no job {job_id}", err=True)
        return 4
    if as_json:
        render.print_json({**render.job_json(job), **({"waiting_for": waits} if waits else {})})
    else:
        render.show_job(job, waits)
    return 0


@click.command(context_settings=CONTEXT)
@client_options
@click.argument("job_id", type=int)
@option(
    "--timeout",
    type=float,
    default=None,
    envvar="JOBQ_WAIT_TIMEOUT",
    help="Give up after this many seconds (exit code 5).",
)
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
@client_options
@click.argument("job_id", type=int)
@option(
    "--wait",
    "wait_seconds",
    type=float,
    default=None,
    envvar="JOBQ_WAIT_TIMEOUT",
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
@client_options
@click.argument("job_ids", type=int, nargs=-1)
@bulk_options("cancel")  # --all and its filters: bulk_command.py
@json_option
@run_async
async def cancel(
    hub: str, connect_timeout: float, token: str | None, job_ids: tuple[int, ...], as_json: bool
) -> int:
    """Cancel jobs (a running job's worker is told to stop); with --all, those the filters select."""
    async with _client(hub, connect_timeout, token) as client:
        for job_id in job_ids:
            job = await client.cancel(job_id)
            if as_json:
                render.print_json({"id": job.id, "state": job.state.value})
            else:
                click.echo(f"job {job.id} {job.state.value}")
    return 0


@click.command(context_settings=CONTEXT)
@client_options
@click.argument("job_ids", type=int, nargs=-1)
@bulk_options("retry")  # --all and its filters: bulk_command.py
@json_option
@run_async
async def retry(
    hub: str, connect_timeout: float, token: str | None, job_ids: tuple[int, ...], as_json: bool
) -> int:
    """Queue failed, quarantined or cancelled jobs again with fresh budgets; with --all, those the
    filters select."""
    async with _client(hub, connect_timeout, token) as client:
        for job_id in job_ids:
            job = await client.retry(job_id)
            if as_json:
                render.print_json({"id": job.id, "state": job.state.value})
            else:
                click.echo(f"job {job.id} {job.state.value}")
    return 0


@click.command(context_settings=CONTEXT)
@client_options
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in JobState]),
    help="Only jobs in this state (repeatable).",
)
@click.option("--service", default=None, help="Only jobs of this service.")
@click.option("--customer", default=None, help="Only jobs of this customer.")
@click.option(
    "--worker", "worker_id", default=None, help="Only jobs run by this worker: its id, name or id prefix."
)
@click.option(
    "--blocked", is_flag=True, default=False, help="Only queued jobs no connected worker could run."
)
@option("--limit", type=int, default=50, show_default=True, help="Show at most this many.")
@click.option("--offset", type=int, default=0, show_default=True, help="Skip this many (newest first).")
@click.option(
    "--before",
    type=click.IntRange(min=1),
    default=None,
    help="Only jobs with a smaller id: the next page after the one that ended at ID.",
)
@click.option("--group", type=int, default=None, help="Only the members (and finalize job) of this group.")
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
    before: int | None,
    group: int | None,
    as_json: bool,
) -> int:
    """List jobs, newest first, with a preview of each payload (--json: the payload)."""
    async with _client(hub, connect_timeout, token) as client:
        found = await client.jobs(
            state=list(states),
            service=service,
            customer_id=customer,
            worker=worker_id,
            limit=limit + 1 if limit < 10_000 else limit,  # one more: was the listing cut?
            offset=offset,
            blocked=blocked,
            payload=True,
            before=before,
            group=group,
        )
        more = len(found) > limit
        found = found[:limit]
        total = (
            await _total(client, states, service)
            if more and not (customer or worker_id or blocked or group)
            else None
        )
    if as_json:
        for job in found:
            render.print_json(render.job_json(job, result=False, timeline=False))
    else:
        render.show_jobs(found)
        if more:
            cursor = found[-1].id if found else None  # the next page: --before it
            render.footer(len(found), offset, total, cursor, paged=before is not None)
    return 0


async def _total(client: Client, states: tuple[str, ...], service: str | None) -> int | None:
    """How many jobs a listing by state and service matches, from the hub's stats (None when
    the caller may not see them)."""
    try:
        value = await client.stats()
        counts: dict[str, int] = (
            value["jobs"]["by_service"].get(service, {}) if service else value["jobs"]["by_state"]
        )
    except Exception:
        return None
    return sum(n for state, n in counts.items() if not states or state in states)


@click.command(context_settings=CONTEXT)
@client_options
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
@client_options
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
    # ``jobq services`` is a group of its own: service_commands.py
    for command in (submit, status, wait, result, cancel, retry, jobs, explain, stats):
        group.add_command(command)
