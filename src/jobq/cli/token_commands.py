"""``jobq token create|list|revoke|allow-key`` and ``jobq curve keygen|public``: the tokens and
CURVE client keys a hub started with ``--auth FILE`` accepts.

A token's secret is printed once, on stdout, when it is created; the file keeps only its hash.
The file is created with mode 0600 and never holds a secret (CURVE entries are public keys).
"""

from __future__ import annotations

import datetime
import json
import os
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
    """Create, list and revoke the tokens (and CURVE keys) a hub accepts (jobq hub --auth FILE)."""


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
    """The tokens and CURVE keys in the file (names, roles and scopes; never a secret)."""
    try:
        data = authfile.read(auth_path)
    except InvalidRequest as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(EXIT_USAGE)
    entries: list[authfile.TokenEntry | authfile.CurveEntry] = [*data.tokens, *data.curve]
    for entry in entries:
        kind = "token" if isinstance(entry, authfile.TokenEntry) else "curve"
        if as_json:
            fields = {k: v for k, v in msgspec.structs.asdict(entry).items() if k != "hash"}
            click.echo(json.dumps({"kind": kind, **fields}))
            continue
        created = datetime.datetime.fromtimestamp(entry.created).isoformat(timespec="seconds")
        scope = " ".join(
            [*(f"customer={c}" for c in entry.customers), *(f"service={s}" for s in entry.services)]
        )
        if isinstance(entry, authfile.CurveEntry):
            scope = f"key={entry.public_key} {scope}"
        click.echo(f"{entry.name:<20} {kind:<5} {entry.role:<8} {created}  {scope}".rstrip())


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


@token.command(name="allow-key", context_settings=CONTEXT)
@_AUTH
@click.argument("public_key")
@click.option("--role", type=click.Choice(ROLES), required=True, help="What its holder may do.")
@click.option("--customer", "customers", multiple=True, help="A customer it acts for (repeatable).")
@click.option("--service", "services", multiple=True, help="A service a worker key may serve (repeatable).")
@click.option("--name", required=True, help="A label for listing and revoking.")
def allow_key(
    auth_path: Path,
    public_key: str,
    role: str,
    customers: tuple[str, ...],
    services: tuple[str, ...],
    name: str,
) -> None:
    """Let a CURVE client with PUBLIC_KEY (Z85, from jobq curve keygen) in on ?curve listeners."""
    try:
        entry = authfile.allow_key(
            auth_path, public_key, role, name=name, customers=list(customers), services=list(services)
        )
    except InvalidRequest as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(EXIT_USAGE)
    click.echo(f"CURVE key {entry.name!r} ({entry.role}) added to {auth_path}", err=True)


@click.group(context_settings=CONTEXT)
def curve() -> None:
    """CURVE key pairs for ?curve ZeroMQ listeners (the hub's --curve-secret, clients' keys)."""


@curve.command(context_settings=CONTEXT)
@click.option(
    "--secret-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the secret key to this file (mode 0600) instead of printing it.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def keygen(secret_file: Path | None, as_json: bool) -> None:
    """Print a new CURVE key pair (Z85), as zmq.curve_keypair makes it."""
    import zmq

    public, secret = (key.decode("ascii") for key in zmq.curve_keypair())
    if secret_file is not None:
        try:
            fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            click.echo(f"error: {secret_file} exists already; keygen never overwrites a key", err=True)
            sys.exit(EXIT_USAGE)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secret + "\n")
    shown = {"public": public} if secret_file is not None else {"public": public, "secret": secret}
    if as_json:
        click.echo(json.dumps(shown))
    else:
        for kind, key in shown.items():
            click.echo(f"{kind}: {key}")
    if secret_file is not None:
        click.echo(f"secret key written to {secret_file}", err=True)


@curve.command(context_settings=CONTEXT)
@click.argument("secret")
def public(secret: str) -> None:
    """Print the public key of a CURVE SECRET key (Z85, or a file holding it)."""
    import zmq

    try:
        key = authfile.curve_key(secret)
    except InvalidRequest as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(EXIT_USAGE)
    click.echo(zmq.curve_public(key.encode("ascii")).decode("ascii"))


def install(group: click.Group) -> None:
    group.add_command(token)
    group.add_command(curve)


__all__ = ["install"]
