"""``jobq workers``: list the workers (the default), or ``drain``, ``resume`` or ``evict`` one.

An operator's control of a worker (hub/control.py): ``drain`` gives it no new jobs while it
finishes what it runs; ``resume`` gives it jobs again; ``evict`` drains it and detaches it now
(its running jobs go back to the queue). Each needs an admin token when the hub runs with
``--auth``; exit codes as every client command (7: not allowed, 4: no such worker).
"""

from __future__ import annotations

import click
import msgspec

from jobq.cli import render
from jobq.cli.options import (
    CONTEXT,
    given_options,
    hub_option,
    option,
    run_async,
    timeout_option,
    token_option,
)
from jobq.client.client import Client
from jobq.core.views import WorkerNotice

json_option = option(
    "--json", "as_json", is_flag=True, default=False, help="Print JSON (one object per line)."
)


def _client(hub: str, connect_timeout: float, token: str | None) -> Client:
    return Client(hub, timeout=connect_timeout, token=token)


@click.group(context_settings=CONTEXT, invoke_without_command=True)
@hub_option
@timeout_option
@token_option
@json_option
@click.pass_context
def workers(ctx: click.Context, hub: str, connect_timeout: float, token: str | None, as_json: bool) -> None:
    """Connected workers (drained ones say why); or drain, resume or evict one."""
    if ctx.invoked_subcommand is None:
        _list(hub, connect_timeout, token, as_json)
    # `jobq workers --hub X drain NAME` means what `jobq workers drain --hub X NAME` does.
    given = {name: ctx.params[name] for name in given_options(ctx)}
    ctx.default_map = dict.fromkeys(("drain", "resume", "evict"), given)


@run_async
async def _list(hub: str, connect_timeout: float, token: str | None, as_json: bool) -> int:
    async with _client(hub, connect_timeout, token) as client:
        found = await client.workers()
    if as_json:
        for w in found:
            # Each service's health: ``ok``, or why its backend (a connector's service) is down.
            health = {name: w.unhealthy.get(name, "ok") for name in w.services}
            render.print_json({**msgspec.to_builtins(w), "drained": w.drained, "health": health})
    else:
        render.show_workers(found)
    return 0


def _show(notice: WorkerNotice, as_json: bool) -> None:
    if as_json:
        render.print_json(msgspec.to_builtins(notice))
    elif notice.kind == "resumed":
        click.echo(f"worker {notice.worker} takes jobs again")
    elif notice.kind == "evicted":
        click.echo(f"worker {notice.worker} evicted: {notice.requeued} running job(s) back to the queue")
    else:
        click.echo(f"worker {notice.worker} drained ({notice.drained}): no new jobs")


@workers.command(context_settings=CONTEXT)
@hub_option
@timeout_option
@token_option
@option("--reason", default=None, envvar=None, help="Why, as listings show it [default: drained by TOKEN].")
@click.argument("name")
@json_option
@run_async
async def drain(
    hub: str, connect_timeout: float, token: str | None, reason: str | None, name: str, as_json: bool
) -> int:
    """No new jobs for worker NAME (its id, or a name only it has); it finishes what it runs."""
    async with _client(hub, connect_timeout, token) as client:
        _show(await client.drain_worker(name, reason), as_json)
    return 0


@workers.command(context_settings=CONTEXT)
@hub_option
@timeout_option
@token_option
@click.argument("name")
@json_option
@run_async
async def resume(hub: str, connect_timeout: float, token: str | None, name: str, as_json: bool) -> int:
    """Worker NAME takes jobs again (after a drain, automatic or not, or an evict)."""
    async with _client(hub, connect_timeout, token) as client:
        _show(await client.resume_worker(name), as_json)
    return 0


@workers.command(context_settings=CONTEXT)
@hub_option
@timeout_option
@token_option
@click.argument("name")
@json_option
@run_async
async def evict(hub: str, connect_timeout: float, token: str | None, name: str, as_json: bool) -> int:
    """Drain worker NAME and detach it now: its running jobs go back to the queue."""
    async with _client(hub, connect_timeout, token) as client:
        _show(await client.evict_worker(name), as_json)
    return 0


def install(group: click.Group) -> None:
    group.add_command(workers)


__all__ = ["install", "workers"]
