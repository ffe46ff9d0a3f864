"""Shared pieces of the ``jobq`` commands that call the hub.

- ``connect``: a client from a command's ``client_options`` (cli/options.py).
- ``pass_down``: a command group's flags become the defaults of its commands, so that
  ``jobq workers --hub X drain NAME`` means what ``jobq workers drain --hub X NAME`` does.
- ``name_command``: ``VERB NAME [--json]``, one call on the thing named and its answer printed
  (``jobq services pause``, ``jobq workers drain``, ``jobq schedule show`` ...).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from jobq.cli.options import CONTEXT, client_options, given_options, json_option, run_async
from jobq.client.client import Client

T = TypeVar("T")

#: A click decorator that adds an option to a command.
OptionDecorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def connect(hub: str, connect_timeout: float, token: str | None) -> Client:
    """A client of the hub from ``--hub``, ``--connect-timeout`` and ``--token``."""
    return Client(hub, timeout=connect_timeout, token=token)


def pass_down(ctx: click.Context) -> None:
    """The flags given to the group of CTX (not left at their default) become the defaults of
    those of its commands that take them."""
    assert isinstance(ctx.command, click.Group)
    given = {name: ctx.params[name] for name in given_options(ctx)}
    ctx.default_map = {
        verb: {name: value for name, value in given.items() if name in {p.name for p in command.params}}
        for verb, command in ctx.command.commands.items()
    }


def name_command(
    verb: str,
    doc: str,
    act: Callable[..., Awaitable[T]],
    show: Callable[[T, bool], None],
    *options: OptionDecorator,
) -> click.Command:
    """The command ``VERB [OPTIONS] NAME [--json]`` with the client options: it prints what
    ``act(client, NAME, **OPTIONS' values)`` answers with ``show(answer, as_json)``; DOC is its
    help. Exit codes as every client command (run_async)."""

    @json_option
    @run_async
    async def command(
        hub: str, connect_timeout: float, token: str | None, name: str, as_json: bool, **values: Any
    ) -> int:
        async with connect(hub, connect_timeout, token) as client:
            show(await act(client, name, **values), as_json)
        return 0

    decorated: Callable[..., Any] = click.argument("name")(command)
    for add_option in reversed(options):  # in --help in the order given, before NAME
        decorated = add_option(decorated)
    return click.command(name=verb, context_settings=CONTEXT, help=doc)(client_options(decorated))


__all__ = ["connect", "name_command", "pass_down"]
