"""``jobq group ID``, and ``jobq submit ... --expand`` (docs/workflows.md, "Groups").

``jobq submit SERVICE PAYLOAD --expand KEY=ITEMS [--expand ...] [--finalize SERVICE]
[--policy all_ended] [--json] [--wait]`` submits one group: it prints the group's id first,
then its members' ids, one per line (``--json``: one object with ``group``, the id, and
``members``); with ``--wait`` it waits for the group and its finalize job, then prints the
group's result (the finalize job's) like ``jobq submit --wait`` prints a job's.

``jobq group ID [--json] [--wait] [--cancel]`` shows a group: ``id``, ``state``, ``total``,
``counts`` per state, ``progress`` (percent of members ended) and ``finalize`` (its job's id,
once submitted). Exit codes as every client command; ``--wait`` exits 1 unless the group
completed.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import msgspec

from jobq.cli import render
from jobq.cli.calls import connect
from jobq.cli.options import CONTEXT, EXIT_JOB_FAILED, client_options, option, run_async
from jobq.client.client import Client
from jobq.client.specs import make_spec
from jobq.core.expand import parse_cli_expand
from jobq.core.workflow import GroupView
from jobq.errors import InvalidRequest


def view_json(view: GroupView) -> dict[str, Any]:
    """A group as ``--json`` prints it (its result, if any, as text)."""
    data: dict[str, Any] = msgspec.to_builtins(msgspec.structs.replace(view, result=None))
    data.setdefault("finalize", None)
    if view.result is not None:
        data["result"] = b"".join(view.result).decode(errors="replace")
    return data


def show(view: GroupView) -> None:
    counts = ", ".join(f"{n} {state}" for state, n in sorted(view.counts.items()))
    click.echo(f"group {view.id}: {view.state} ({view.ended} of {view.total} ended: {counts})")
    if view.finalize is not None:
        click.echo(f"finalize job {view.finalize}")
    if view.reason:
        click.echo(f"reason: {view.reason}")


def finished(view: GroupView, as_json: bool) -> int:
    """Print a group that has ended; the exit code (0 only if it completed)."""
    if as_json:
        render.print_json(view_json(view))
    elif view.state == "completed" and view.result is not None:
        data = b"".join(view.result)
        sys.stdout.buffer.write(data if data.endswith(b"\n") else data + b"\n")
        sys.stdout.flush()
        click.echo(f"group {view.id} completed ({view.total} members)", err=True)
    else:
        show(view)
    return 0 if view.state == "completed" else EXIT_JOB_FAILED


async def submit_group(
    client: Client,
    service: str,
    payload: bytes,
    options: dict[str, Any],
    *,
    expand: tuple[str, ...],
    finalize: str | None,
    finalize_args: str | None,
    policy: str,
    wait: bool,
    as_json: bool,
    wait_timeout: float | None,
) -> int:
    """``jobq submit ... --expand``: one group, expanded by the hub."""
    args = None
    if finalize_args is not None:
        if finalize is None:
            raise InvalidRequest("--finalize-args goes with --finalize")
        try:
            args = json.loads(finalize_args)
        except ValueError as exc:
            raise InvalidRequest(f"--finalize-args is not JSON: {exc}") from None
    final = make_spec(finalize, json.dumps(args).encode() if args is not None else None) if finalize else None
    options = {**options, "content_type": options.get("content_type") or "application/json"}
    done = await client.submit_group(
        service, payload, expand=parse_cli_expand(expand), finalize=final, policy=policy, **options
    )
    group = done.group
    if as_json:
        render.print_json({"group": group.id, "members": done.members, "total": group.total,
                           "state": group.state.value, "created": done.created})  # fmt: skip
    else:
        click.echo(group.id)
        if not wait:
            sys.stdout.write("".join(f"{job_id}\n" for job_id in done.members))
    if not wait:
        return 0
    if not as_json:
        click.echo(f"group {group.id}: {group.total} members; waiting for it to end", err=True)
    return finished(await client.wait_group(group.id, wait_timeout), as_json)


@click.command(context_settings=CONTEXT)
@client_options
@click.argument("group_id", type=int)
@option("--json", "as_json", is_flag=True, default=False, help="Print JSON.")
@option("--wait", is_flag=True, default=False, help="Wait for the group (and its finalize job) to end.")
@option("--wait-timeout", type=float, default=None, help="With --wait: give up after this many seconds.")
@option("--cancel", is_flag=True, default=False, help="Cancel the group (its members not yet ended).")
@run_async
async def group(
    hub: str,
    connect_timeout: float,
    token: str | None,
    group_id: int,
    as_json: bool,
    wait: bool,
    wait_timeout: float | None,
    cancel: bool,
) -> int:
    """Show a group: state, members per state, progress, finalize job."""
    async with connect(hub, connect_timeout, token) as client:
        if cancel:
            view = await client.cancel_group(group_id)
        elif wait:
            return finished(await client.wait_group(group_id, wait_timeout), as_json)
        else:
            view = await client.group(group_id)
        if as_json:
            render.print_json(view_json(view))
        else:
            show(view)
    return 0


def install(cli: click.Group) -> None:
    cli.add_command(group)
