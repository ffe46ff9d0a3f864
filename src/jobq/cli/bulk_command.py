"""``jobq cancel --all`` and ``jobq retry --all``: the jobs a filter selects, at once.

:func:`bulk_options` adds ``--all`` and the filters of ``jobq jobs`` (``--state``,
``--service``, ``--customer``, ``--worker``, ``--blocked``) and ``--limit`` to a command that
takes job ids; with ``--all`` the hub acts on the selection (``Client.bulk``,
hub/queue_control.py), each job checked as a single cancel or retry would be, and the command
prints what was done and each job skipped with the reason. Without ``--all`` the command is
what it was (job ids, one by one). At least one filter is needed: ``--all`` alone acts on
nothing (exit code 2).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click
import msgspec

from jobq.cli import render
from jobq.cli.options import run_async
from jobq.client.client import Client
from jobq.client.listing import worker_ids
from jobq.core.operations import DEFAULT_BULK_LIMIT, MAX_BULK_LIMIT, BulkResult
from jobq.core.states import JobState

#: Skipped jobs a human-readable answer lists one by one (``--json`` gives them all).
SHOWN_SKIPS = 20

_FILTERS = ("bulk_states", "bulk_service", "bulk_customer", "bulk_worker", "bulk_blocked")


def bulk_options(action: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a click command callback taking ``job_ids`` (and the hub options)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def command(**kw: Any) -> Any:
            select_all = kw.pop("select_all")
            selection = {name: kw.pop(name) for name in (*_FILTERS, "bulk_limit")}
            filtered = any(selection[name] for name in _FILTERS)
            if select_all:
                if kw["job_ids"]:
                    raise click.UsageError("give job ids, or --all with filters: not both")
                return _bulk(
                    kw["hub"],
                    kw["connect_timeout"],
                    kw["token"],
                    action,
                    kw.get("as_json", False),
                    **selection,
                )
            if filtered:
                raise click.UsageError("--state, --service, --customer, --worker and --blocked need --all")
            if not kw["job_ids"]:
                raise click.UsageError(
                    f"give job ids, or --all with filters (jobq {action} --all --state ...)"
                )
            return fn(**kw)

        options = [
            click.option(
                "--all",
                "select_all",
                is_flag=True,
                default=False,
                help=f"{action.capitalize()} every job the filters select (at least one filter).",
            ),
            click.option(
                "--state",
                "bulk_states",
                multiple=True,
                type=click.Choice([s.value for s in JobState]),
                help="With --all: jobs in this state (repeatable).",
            ),
            click.option("--service", "bulk_service", default=None, help="With --all: jobs of this service."),
            click.option(
                "--customer", "bulk_customer", default=None, help="With --all: jobs of this customer."
            ),
            click.option(
                "--worker",
                "bulk_worker",
                default=None,
                help="With --all: jobs run by this worker (id or name).",
            ),
            click.option(
                "--blocked", "bulk_blocked", is_flag=True, default=False, help="With --all: blocked jobs."
            ),
            click.option(
                "--limit",
                "bulk_limit",
                type=click.IntRange(1, MAX_BULK_LIMIT),
                default=DEFAULT_BULK_LIMIT,
                show_default=True,
                help="With --all: act on at most this many (newest first).",
            ),
        ]
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


@run_async
async def _bulk(
    hub: str,
    connect_timeout: float,
    token: str | None,
    action: str,
    as_json: bool,
    *,
    bulk_states: tuple[str, ...],
    bulk_service: str | None,
    bulk_customer: str | None,
    bulk_worker: str | None,
    bulk_blocked: bool,
    bulk_limit: int,
) -> int:
    async with Client(hub, timeout=connect_timeout, token=token) as client:
        worker = bulk_worker
        if worker is not None:
            found = await worker_ids(worker, client.workers)
            if len(found) > 1:
                raise click.UsageError(
                    f"{len(found)} workers match {worker!r}: give an id ({', '.join(map(str, found[:5]))})"
                )
            worker = found[0]
        result = await client.bulk(
            action,
            state=list(bulk_states),
            service=bulk_service,
            customer_id=bulk_customer,
            worker=worker,
            blocked=bulk_blocked,
            limit=bulk_limit,
        )
    show(result, as_json)
    return 0


def show(result: BulkResult, as_json: bool) -> None:
    if as_json:
        render.print_json(msgspec.to_builtins(result))
        return
    verb = {"cancel": "cancelled", "retry": "retried"}.get(result.action, result.action)
    if not result.matched and not result.skipped:
        click.echo("no job matched")
        return
    skipped = f"; {len(result.skipped)} skipped" if result.skipped else ""
    click.echo(f"{verb} {result.done} of {result.matched} job(s) matched{skipped}")
    for skip in result.skipped[:SHOWN_SKIPS]:
        click.echo(f"  job {skip.id}: {skip.reason}")
    if len(result.skipped) > SHOWN_SKIPS:
        click.echo(f"  ... and {len(result.skipped) - SHOWN_SKIPS} more (--json lists them all)")


__all__ = ["SHOWN_SKIPS", "bulk_options", "show"]
