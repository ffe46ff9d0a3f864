"""``jobq services``: list the services (the default), or ``pause`` or ``resume`` one's queue.

A paused service (hub/queue_control.py) still takes jobs, and hands out none until it is
resumed; running jobs finish. The pause is kept by the store (it survives a restart of a hub
on SQLite, and holds for every hub on one Redis). ``pause`` and ``resume`` need an admin
token when the hub runs with ``--auth``; exit codes as every client command (7: not allowed,
2: a bad name).
"""

from __future__ import annotations

import click
import msgspec

from jobq.cli import render
from jobq.cli.calls import connect, name_command, pass_down
from jobq.cli.options import CONTEXT, EXIT_NOT_FOUND, client_options, json_option, option, run_async
from jobq.client.client import Client
from jobq.core.operations import ServicePause


@click.group(context_settings=CONTEXT, invoke_without_command=True)
@client_options
@option("--describe", default=None, help="Show one service with its payload schema.")
@json_option
@click.pass_context
def services(
    ctx: click.Context,
    hub: str,
    connect_timeout: float,
    token: str | None,
    describe: str | None,
    as_json: bool,
) -> None:
    """Services: workers, slots, queued and running jobs, paused or not; or pause or resume one."""
    if ctx.invoked_subcommand is None:
        _list(hub, connect_timeout, token, describe, as_json)
    pass_down(ctx)  # `jobq services --hub X pause NAME` is `jobq services pause --hub X NAME`


@run_async
async def _list(
    hub: str, connect_timeout: float, token: str | None, describe: str | None, as_json: bool
) -> int:
    async with connect(hub, connect_timeout, token) as client:
        found = await client.services()
    if describe is not None:
        match = [s for s in found if s.name == describe]
        if not match:
            click.echo(f"jobq: no service {describe}", err=True)
            return EXIT_NOT_FOUND
        render.print_json(msgspec.to_builtins(match[0]))
        return 0
    if as_json:
        for s in found:
            render.print_json(msgspec.to_builtins(s))
    else:
        render.show_services(found)
    return 0


def _show(done: ServicePause, as_json: bool) -> None:
    if as_json:
        render.print_json(msgspec.to_builtins(done))
        return
    was = "" if done.changed else " (it already was)"
    if done.paused:
        click.echo(f"service {done.service} paused{was}: its jobs wait until `jobq services resume`")
    else:
        click.echo(f"service {done.service} resumed{was}: its jobs are handed out")


for verb, call, doc in (
    (
        "pause",
        Client.pause_service,
        "Pause service NAME: its jobs are taken, none is handed out; running jobs finish.",
    ),
    ("resume", Client.resume_service, "Resume service NAME: its jobs are handed out again."),
):
    services.add_command(name_command(verb, doc, call, _show))


def install(group: click.Group) -> None:
    group.add_command(services)


__all__ = ["install", "services"]
