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
from jobq.cli.calls import connect, name_command, pass_down
from jobq.cli.options import CONTEXT, client_options, json_option, option, run_async
from jobq.client.client import Client
from jobq.core.views import WorkerNotice


@click.group(context_settings=CONTEXT, invoke_without_command=True)
@client_options
@json_option
@click.pass_context
def workers(ctx: click.Context, hub: str, connect_timeout: float, token: str | None, as_json: bool) -> None:
    """Connected workers (drained ones say why); or drain, resume or evict one."""
    if ctx.invoked_subcommand is None:
        _list(hub, connect_timeout, token, as_json)
    pass_down(ctx)  # `jobq workers --hub X drain NAME` is `jobq workers drain --hub X NAME`


@run_async
async def _list(hub: str, connect_timeout: float, token: str | None, as_json: bool) -> int:
    async with connect(hub, connect_timeout, token) as client:
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


workers.add_command(
    name_command(
        "drain",
        "No new jobs for worker NAME (its id, or a name only it has); it finishes what it runs.",
        Client.drain_worker,
        _show,
        option(
            "--reason",
            default=None,
            envvar=None,
            help="Why, as listings show it [default: drained by TOKEN].",
        ),
    )
)
for verb, call, doc in (
    (
        "resume",
        Client.resume_worker,
        "Worker NAME takes jobs again (after a drain, automatic or not, or an evict).",
    ),
    (
        "evict",
        Client.evict_worker,
        "Drain worker NAME and detach it now: its running jobs go back to the queue.",
    ),
):
    workers.add_command(name_command(verb, doc, call, _show))


def install(group: click.Group) -> None:
    group.add_command(workers)


__all__ = ["install", "workers"]
