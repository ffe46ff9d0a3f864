"""``jobq history``: what the hub kept over time (``core/history.py``), as ``GET /api/history``.

One row per bucket of the last ``--minutes`` (10-second buckets up to a day, 1-minute buckets
beyond, up to 7 days), oldest first: jobs submitted, completed and failed, the queue depth the hub
last sampled, and the wait and run time percentiles (milliseconds). Buckets where nothing was
counted or sampled are left out of the table (``--json`` has every one). Admin and monitor tokens
only, when the hub runs with ``--auth`` (exit 7 otherwise).
"""

from __future__ import annotations

import datetime

import click
import msgspec
from rich.table import Table
from rich.text import Text

from jobq.cli import render
from jobq.cli.options import CONTEXT, hub_option, option, run_async, timeout_option, token_option
from jobq.client.client import Client
from jobq.core.history import MAX_MINUTES, History, HistoryPoint, Percentiles

#: ``--minutes`` when not given (as ``GET /api/history``).
DEFAULT_MINUTES = 60
COLUMNS = ("time", "submitted", "completed", "failed", "depth", "wait p50", "wait p95", "run p50", "run p95")


def _ms(value: Percentiles | None, which: str) -> str:
    if value is None:
        return "-"
    ms: float = getattr(value, which)
    return f"{ms:.1f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def _empty(point: HistoryPoint) -> bool:
    counted = point.submitted or point.completed or point.failed
    return not counted and point.depth is None and point.wait_ms is None and point.run_ms is None


def rows(found: History) -> list[list[str]]:
    """The table's rows: one per bucket with anything in it, oldest first."""
    shape = "%H:%M:%S" if found.bucket < 60 else "%m-%d %H:%M"
    out = []
    for point in found.points:
        if _empty(point):
            continue
        out.append(
            [
                datetime.datetime.fromtimestamp(point.t).strftime(shape),
                str(point.submitted),
                str(point.completed),
                str(point.failed),
                "-" if point.depth is None else str(point.depth),
                _ms(point.wait_ms, "p50"),
                _ms(point.wait_ms, "p95"),
                _ms(point.run_ms, "p50"),
                _ms(point.run_ms, "p95"),
            ]
        )
    return out


def show_history(found: History, minutes: int) -> None:
    table = Table()
    for column in COLUMNS:
        table.add_column(column, justify="left" if column == "time" else "right")
    shown = rows(found)
    for row in shown:
        table.add_row(*map(Text, row))
    of = f"service {found.service}" if found.service else "every service"
    services = ", ".join(found.services) or "none"
    head = f"last {minutes} min, {found.bucket} s buckets, {of} (services with history: {services})"
    render.console.print(Text(head))
    if shown:
        render.console.print(table)
    left_out = len(found.points) - len(shown)
    if left_out:
        render.console.print(Text(f"{left_out} of {len(found.points)} buckets had nothing and are not shown"))


@click.command(context_settings=CONTEXT)
@hub_option
@timeout_option
@token_option
@option(
    "--minutes",
    type=click.IntRange(1, MAX_MINUTES),
    default=DEFAULT_MINUTES,
    show_default=True,
    envvar=None,
    help=f"How far back: 10-second buckets up to 1440 (a day), 1-minute buckets up to {MAX_MINUTES}.",
)
@click.option("--service", default=None, help="One service only (default: every service summed).")
@option("--json", "as_json", is_flag=True, default=False, help="Print the history as one JSON object.")
@run_async
async def history(
    hub: str, connect_timeout: float, token: str | None, minutes: int, service: str | None, as_json: bool
) -> int:
    """The hub's history: jobs submitted, completed and failed, queue depth, wait and run time."""
    async with Client(hub, timeout=connect_timeout, token=token) as client:
        found = await client.history(minutes, service)
    if as_json:
        render.print_json(msgspec.to_builtins(found))
    else:
        show_history(found, minutes)
    return 0


def install(group: click.Group) -> None:
    group.add_command(history)


__all__ = ["DEFAULT_MINUTES", "history", "install", "rows", "show_history"]
