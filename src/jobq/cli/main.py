"""The ``jobq`` command: ``jobq hub``, ``jobq worker`` and the client commands.

Every option has a ``JOBQ_*`` environment twin, shown in ``--help``.
"""

from __future__ import annotations

import click

from jobq.cli import (
    client_commands,
    group_commands,
    history_command,
    hub_command,
    line_tools,
    schedule_commands,
    service_commands,
    token_commands,
    worker_commands,
    worker_process,
)
from jobq.cli.options import CONTEXT
from jobq.config import DEFAULT_HUB


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="jobq")
def cli() -> None:
    """jobq: a distributed job queue. One hub, many doors, one queue."""


cli.add_command(hub_command.hub)
cli.add_command(worker_process.worker)
client_commands.install(cli)
line_tools.install(cli)
token_commands.install(cli)
worker_commands.install(cli)
service_commands.install(cli)
schedule_commands.install(cli)
group_commands.install(cli)
history_command.install(cli)


def main() -> None:
    cli(prog_name="jobq")


__all__ = ["DEFAULT_HUB", "cli", "main"]


if __name__ == "__main__":
    main()
