"""``jobq submit``: submit jobs, and with ``--wait`` follow them to their end.

With ``--wait`` and one job, the id goes to stderr at once, then (if no connected worker can run
the job) why, within about a second (``explain``'s reason), while the wait goes on; at the end
the result on stdout with a newline (``jobq result ID`` gives the exact bytes). With several
jobs: a progress bar on stderr, then a summary.
"""

from __future__ import annotations

import datetime
import sys
import time
from collections import Counter
from typing import Any

import click
import msgspec
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from jobq.cli import render
from jobq.cli.calls import connect
from jobq.cli.group_commands import submit_group
from jobq.cli.options import CONTEXT, EXIT_JOB_FAILED, client_options, option, parse_pairs, run_async
from jobq.client.client import Client, make_spec
from jobq.core.model import JobEvent
from jobq.core.states import COMPLETED
from jobq.errors import InvalidRequest


def payload_bytes(text: str | None) -> bytes:
    """PAYLOAD as given: text, ``@FILE`` or ``-`` for stdin; a file that cannot be read is bad
    input (exit code 2), said in one line."""
    if text is None:
        return b""
    if text == "-":
        return sys.stdin.buffer.read()
    if text.startswith("@"):
        try:
            with open(text[1:], "rb") as f:
                return f.read()
        except OSError as exc:
            raise InvalidRequest(
                f"cannot read the payload file {text[1:]!r}: {exc.strerror or exc}"
            ) from None
    return text.encode()


def spec_options(
    *, requires: tuple[str, ...], must_not: tuple[str, ...], customer: str | None, **flags: Any
) -> dict[str, Any]:
    """make_spec's options from the job flags (of ``jobq submit`` and ``jobq schedule add``):
    the KEY=VALUE pairs of ``--requires`` and ``--must-not`` parsed, ``--customer`` as
    ``customer_id``, the other flags (``priority=``, ``timeout=`` ...) as they are."""
    return {
        "requires": parse_pairs(requires, "--requires"),
        "must_not": parse_pairs(must_not, "--must-not"),
        "customer_id": customer,
        **flags,
    }


def run_at_time(text: str | None) -> float | None:
    """``--run-at``: POSIX seconds, or an ISO 8601 date and time (local time unless it names a
    zone: ``2030-01-02T03:04:05``, ``2030-01-02 03:04+02:00``, ``...Z``)."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is neither POSIX seconds nor an ISO 8601 time (2030-01-02T03:04:05)",
            param_hint="--run-at",
        ) from None
    return when.timestamp()  # a naive time is taken as local time


def after_ids(values: tuple[str, ...]) -> list[int]:
    """``--after 12,15 --after 17`` → [12, 15, 17]; anything but job ids is bad input."""
    ids = []
    for value in values:
        for item in value.split(","):
            if not item.strip().isdigit():
                raise InvalidRequest(f"--after takes job ids (12 or 12,15), not {item.strip()[:40]!r}")
            ids.append(int(item))
    return ids


def say_blocked(job_id: int, reason: str) -> None:
    render.errors.print(
        f"job {job_id} cannot run yet: {reason} (still waiting)", markup=False, highlight=False
    )


@click.command(context_settings=CONTEXT)
@client_options
@click.argument("service")
@click.argument("payload", required=False)
@option("--count", type=int, default=1, show_default=True, help="Submit N jobs; {i} in PAYLOAD is the index.")
@option("--priority", type=int, default=0, show_default=True, help="Higher runs first.")
@option("--wait", is_flag=True, default=False, help="Wait for the jobs to end.")
@option("--json", "as_json", is_flag=True, default=False, help="Print JSON (one object per line).")
@option(
    "--requires", multiple=True, help="KEY=VALUE requirement (repeatable), e.g. hardware.gpu_memory_gb=16."
)
@option("--must-not", multiple=True, help="KEY=VALUE that excludes workers having it (repeatable).")
@option("--customer", default=None, help="Customer id.")
@option("--isolation", type=click.Choice(["strict", "loose", "none"]), default="none", show_default=True)
@option("--max-attempts", type=int, default=3, show_default=True)
@option(
    "--backoff",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds before the first retry; doubles each attempt, with jitter [default: the hub's].",
)
@option(
    "--timeout",
    type=float,
    default=None,
    envvar="JOBQ_JOB_TIMEOUT",
    help="Seconds one attempt may run (not how long to wait: that is --wait-timeout).",
)
@option("--delay", type=float, default=None, help="Seconds before the job may run.")
@option(
    "--run-at",
    default=None,
    help="Run no earlier than this time: POSIX seconds or ISO 8601 (2030-01-02T03:04:05, local time "
    "unless it names a zone).",
)
@option("--idempotency-key", default=None, help="A second submit with this key returns the first job.")
@option("--content-type", default=None, help="Content type of the payload (e.g. application/json).")
@option("--result-ttl", type=float, default=None, help="Seconds the result is kept.")
@option("--wait-timeout", type=float, default=None, help="With --wait: give up after this many seconds.")
@option(
    "--expand",
    multiple=True,
    help="KEY=ITEMS (repeatable): submit one group, a member per combination (1..9, A01..H12, a,b).",
)
@option("--finalize", default=None, help="With --expand: the service of the group's finalize job.")
@option("--finalize-args", default=None, help="With --finalize: its JSON args (its payload).")
@option(
    "--policy", type=click.Choice(["all_completed", "all_ended"]), default="all_completed", show_default=True
)
@option("--after", multiple=True, help="ID[,ID...]: wait for these jobs to complete (repeatable).")
@option(
    "--after-policy",
    type=click.Choice(["completed", "always"]),
    default="completed",
    show_default=True,
    help="always: run once they ended, whatever the outcome.",
)
@run_async
async def submit(
    hub: str,
    connect_timeout: float,
    token: str | None,
    service: str,
    payload: str | None,
    count: int,
    priority: int,
    wait: bool,
    as_json: bool,
    requires: tuple[str, ...],
    must_not: tuple[str, ...],
    customer: str | None,
    isolation: str,
    max_attempts: int,
    backoff: float | None,
    timeout: float | None,
    delay: float | None,
    run_at: str | None,
    idempotency_key: str | None,
    content_type: str | None,
    result_ttl: float | None,
    wait_timeout: float | None,
    expand: tuple[str, ...],
    finalize: str | None,
    finalize_args: str | None,
    policy: str,
    after: tuple[str, ...],
    after_policy: str,
) -> int:
    """Submit jobs for SERVICE; PAYLOAD is text, @FILE or - for stdin. Prints each job's id
    (with --expand: the group's id first, then its members')."""
    if count < 1:
        raise InvalidRequest("--count must be at least 1")
    raw = payload_bytes(payload)
    options = spec_options(
        requires=requires,
        must_not=must_not,
        customer=customer,
        priority=priority,
        isolation=isolation,
        max_attempts=max_attempts,
        backoff=backoff,
        timeout=timeout,
        delay=delay,
        run_at=run_at_time(run_at),
        idempotency_key=idempotency_key,
        content_type=content_type,
        result_ttl=result_ttl,
    )
    if after or after_policy != "completed":  # dependencies (docs/workflows.md)
        options.update(after=after_ids(after), after_policy=after_policy)
    if expand or finalize:  # one group: cli/group_commands.py
        if not expand or count > 1:
            raise InvalidRequest("--finalize goes with --expand, and --expand not with --count")
        async with connect(hub, connect_timeout, token) as client:
            return await submit_group(
                client, service, raw, options, expand=expand, finalize=finalize,
                finalize_args=finalize_args, policy=policy, wait=wait, as_json=as_json,
                wait_timeout=wait_timeout,
            )  # fmt: skip
    specs = []
    for i in range(count):
        body = raw.replace(b"{i}", str(i).encode()) if count > 1 or b"{i}" in raw else raw
        key = options["idempotency_key"]
        specs.append(
            make_spec(
                service, body, **{**options, "idempotency_key": f"{key}-{i}" if key and count > 1 else key}
            )
        )
    async with connect(hub, connect_timeout, token) as client:
        client.on_blocked = say_blocked
        accepted = await client.submit_many(specs, watch=wait)
        if not wait:
            for job_id, state, created in accepted:
                if as_json:
                    render.print_json({"id": job_id, "state": state, "created": created})
                else:
                    click.echo(job_id)
            return 0
        if len(accepted) == 1 and not as_json:
            job_id, state, _ = accepted[0]
            click.echo(f"job {job_id} {state}; waiting for it to end", err=True)
        return await _follow(client, [a[0] for a in accepted], as_json, wait_timeout)


async def _follow(client: Client, ids: list[int], as_json: bool, wait_timeout: float | None) -> int:
    started = time.perf_counter()
    ends: dict[int, JobEvent] = {}
    deadline = None if wait_timeout is None else time.monotonic() + wait_timeout
    show_bar = len(ids) > 1 and not as_json
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=render.errors,
        disable=not show_bar,
    ) as bar:
        task = bar.add_task("jobs", total=len(ids))
        for job_id in ids:
            remaining = None if deadline is None else max(0.001, deadline - time.monotonic())
            event = await client.finished(job_id, remaining)
            ends[job_id] = event
            bar.advance(task)
            if as_json:
                render.print_json(_event_json(event))
    elapsed = time.perf_counter() - started
    states = Counter(e.state.value for e in ends.values())
    if len(ids) == 1 and not as_json:
        event = ends[ids[0]]
        if event.state is COMPLETED:
            data = b"".join(event.result or [])
            sys.stdout.buffer.write(data if data.endswith(b"\n") else data + b"\n")
            sys.stdout.flush()
            click.echo(f"job {event.id} completed in {elapsed:.2f}s", err=True)
        else:
            click.echo(f"jobq: job {event.id} {event.state.value}: {event.error or ''}", err=True)
    elif not as_json:
        summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        click.echo(
            f"{len(ids)} jobs in {elapsed:.2f}s ({len(ids) / elapsed:.0f} jobs/s): {summary}", err=True
        )
    return 0 if states.get("completed", 0) == len(ids) else EXIT_JOB_FAILED


def _event_json(event: JobEvent) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(msgspec.structs.replace(event, result=None))
    if event.result is not None:
        raw = b"".join(event.result)
        data["result"] = raw.decode(errors="replace")
    return data
