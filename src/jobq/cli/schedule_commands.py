"""``jobq schedule``: durable cron schedules (docs/workflows.md, "Schedules").

``add NAME 'CRON' SERVICE [PAYLOAD]`` with submit options (``--priority``, ``--customer``,
``--requires`` ...) and ``--tz ZONE``, ``--catch-up SECONDS``, ``--no-coalesce``; ``list``
(each schedule with its next firing), ``pause NAME``, ``resume NAME``, ``remove NAME``. Every
command takes ``--json`` (one object per line). Exit codes as every client command: 2 a bad
expression, zone or name (with the reason), 4 no such schedule, 7 not allowed (a client token
manages only the schedules it added).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import click
import msgspec

from jobq.cli import render
from jobq.cli.calls import connect, name_command
from jobq.cli.options import CONTEXT, client_options, json_option, option, run_async
from jobq.cli.submit_command import payload_bytes, spec_options
from jobq.client.client import Client
from jobq.core.schedule import DEFAULT_CATCH_UP, zone
from jobq.core.schedule_info import ScheduleInfo


def _when(at: float | None, tz: str) -> str:
    """A firing in the schedule's own zone, e.g. ``2025-03-31 09:00 CEST``."""
    if at is None:
        return "-"
    return f"{datetime.fromtimestamp(at, zone(tz) if tz != 'UTC' else UTC):%Y-%m-%d %H:%M %Z}"


def _show(verb: str, info: ScheduleInfo, as_json: bool) -> None:
    if as_json:
        render.print_json(msgspec.to_builtins(info))
    elif info.paused:
        click.echo(f"schedule {info.name} {verb}: paused")
    else:
        click.echo(f"schedule {info.name} {verb}: next firing {_when(info.next, info.timezone)}")


@click.group(context_settings=CONTEXT)
def schedule() -> None:
    """Cron schedules: a job submitted at each firing, exactly once, durable."""


@schedule.command(context_settings=CONTEXT)
@client_options
@click.argument("name")
@click.argument("cron")
@click.argument("service")
@click.argument("payload", required=False)
@click.option("--tz", "--timezone", "tz", default="UTC", show_default=True, help="IANA time zone of CRON.")
@click.option(
    "--catch-up",
    type=float,
    default=DEFAULT_CATCH_UP,
    show_default=True,
    help="Seconds a missed firing may be late and still run (60 to 604800).",
)
@click.option(
    "--no-coalesce",
    is_flag=True,
    default=False,
    help="After downtime, run every missed firing, not the latest.",
)
@option("--priority", type=int, default=0, show_default=True, help="Higher runs first.")
@option("--requires", multiple=True, help="KEY=VALUE requirement (repeatable).")
@option("--must-not", multiple=True, help="KEY=VALUE that excludes workers having it (repeatable).")
@option("--customer", default=None, help="Customer id.")
@option("--isolation", type=click.Choice(["strict", "loose", "none"]), default="none", show_default=True)
@option("--max-attempts", type=int, default=3, show_default=True)
@option("--timeout", type=float, default=None, envvar="JOBQ_JOB_TIMEOUT", help="Seconds one attempt may run.")
@option("--delay", type=float, default=None, help="Seconds after each firing before its job may run.")
@option("--content-type", default=None, help="Content type of the payload (e.g. application/json).")
@option("--result-ttl", type=float, default=None, help="Seconds each result is kept.")
@json_option
@run_async
async def add(
    hub: str,
    connect_timeout: float,
    token: str | None,
    name: str,
    cron: str,
    service: str,
    payload: str | None,
    tz: str,
    catch_up: float,
    no_coalesce: bool,
    priority: int,
    requires: tuple[str, ...],
    must_not: tuple[str, ...],
    customer: str | None,
    isolation: str,
    max_attempts: int,
    timeout: float | None,
    delay: float | None,
    content_type: str | None,
    result_ttl: float | None,
    as_json: bool,
) -> int:
    """Add schedule NAME: submit PAYLOAD to SERVICE at each firing of CRON (five fields, e.g.
    '0 9 * * MON-FRI'). A schedule of that name is replaced."""
    options = spec_options(
        requires=requires,
        must_not=must_not,
        customer=customer,
        priority=priority,
        isolation=isolation,
        max_attempts=max_attempts,
        timeout=timeout,
        delay=delay,
        content_type=content_type,
        result_ttl=result_ttl,
    )
    async with connect(hub, connect_timeout, token) as client:
        info = await client.add_schedule(
            name,
            cron,
            service,
            payload_bytes(payload),
            tz=tz,
            catch_up=catch_up,
            coalesce=not no_coalesce,
            **options,
        )
    _show("added", info, as_json)
    return 0


@schedule.command(name="list", context_settings=CONTEXT)
@client_options
@json_option
@run_async
async def list_(hub: str, connect_timeout: float, token: str | None, as_json: bool) -> int:
    """Every schedule, with its next firing."""
    async with connect(hub, connect_timeout, token) as client:
        found = await client.list_schedules()
    if as_json:
        for info in found:
            render.print_json(msgspec.to_builtins(info))
        return 0
    if not found:
        click.echo("no schedules")
        return 0
    rows = [("NAME", "CRON", "ZONE", "SERVICE", "NEXT FIRING")]
    for info in found:
        following = "paused" if info.paused else _when(info.next, info.timezone)
        rows.append((info.name, info.cron, info.timezone, info.service, following))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


async def _remove(client: Client, name: str) -> str:
    await client.remove_schedule(name)
    return name


def _removed(name: str, as_json: bool) -> None:
    if as_json:
        render.print_json({"name": name, "removed": True})
    else:
        click.echo(f"schedule {name} removed")


for verb, call, show, doc in (
    (
        "pause",
        Client.pause_schedule,
        functools.partial(_show, "paused"),
        "Pause schedule NAME: nothing fires (nor is caught up after).",
    ),
    (
        "resume",
        Client.resume_schedule,
        functools.partial(_show, "resumed"),
        "Resume schedule NAME: it fires again from now on.",
    ),
    ("show", Client.schedule, functools.partial(_show, "is"), "Show schedule NAME with its next firing."),
):
    schedule.add_command(name_command(verb, doc, call, show))
schedule.add_command(
    name_command("remove", "Remove schedule NAME (the jobs it submitted stay).", _remove, _removed)
)


def install(group: click.Group) -> None:
    group.add_command(schedule)


__all__ = ["install", "schedule"]
