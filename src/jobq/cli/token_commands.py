"""``jobq token create|list|revoke``: the tokens a hub started with ``--auth FILE`` accepts.

The secret is printed once, on stdout, when it is created; the file keeps only its hash.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import click
import msgspec

from jobq import authfile
from jobq.cli.options import CONTEXT, EXIT_NOT_FOUND, EXIT_USAGE, option
from jobq.core.auth import ROLES
from jobq.errors import InvalidRequest, NotFound

_AUTH = option(
    "--auth",
    "auth_path",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The auth file (created with mode 0600 when missing).",
)


@click.group(context_settings=CONTEXT)
def token() -> None:
    """Create, list and revoke the tokens a hub accepts (jobq hub --auth FILE)."""


@token.command(context_settings=CONTEXT)
@_AUTH
@click.option("--role", type=click.Choice(ROLES), required=True, help="What the token may do.")
@click.option("--customer", "customers", multiple=True, help="A customer it acts for (repeatable).")
@click.option("--service", "services", multiple=True, help="A service a worker token may serve (repeatable).")
@click.option("--name", default=None, help="A label for listing and revoking (default: ROLE-N).")
def create(
    auth_path: Path, role: str, customers: tuple[str, ...], services: tuple[str, ...], name: str | None
) -> None:
    """Print a new secret token; the file keeps only its hash."""
    try:
        secret, entry = authfile.create_token(
            auth_path, role, customers=list(customers), services=list(services), name=name
        )
    except InvalidRequest as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(EXIT_USAGE)
    click.echo(secret)
    click.echo(f"token {entry.name!r} ({entry.role}) added to {auth_path}", err=True)


@token.command(name="list", context_settings=CONTEXT)
@_AUTH
@click.option("--json", "as_json", is_flag=True, help="One JSON object per token.")
def list_tokens(auth_path: Path, as_json: bool) -> None:
    """The tokens in the file (names, roles and scopes; never a secret)."""
    try:
        data = authfile.read(auth_path)
    except InvalidRequest as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(EXIT_USAGE)
    for entry in data.tokens:
        if as_json:
            fields = {k: v for k, v in msgspec.structs.asdict(entry).items() if k != "hash"}
            click.echo(json.dumps(fields))
            continue
        created = datetime.datetime.fromtimestamp(entry.created).isoformat(timespec="seconds")
        scope = " ".join(
            [*(f"customer={c}" for c in entry.customers), *(f"service={s}" for s in entry.services)]
        )
        click.echo(f"{entry.name:<20} {entry.role:<8} {created}  {scope}".rstrip())


@token.command(context_settings=CONTEXT)
@_AUTH
@click.argument("name")
def revoke(auth_path: Path, name: str) -> None:
    """Remove a token; hubs reading the file refuse it within a second."""
    try:
        authfile.revoke(auth_path, name)
    except NotFound as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(EXIT_NOT_FOUND)
    except InvalidRequest as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(EXIT_USAGE)
    click.echo(f"token {name!r} revoked", err=True)


def install(group: click.Group) -> None:
    group.add_command(token)


__all__ = ["install"]
