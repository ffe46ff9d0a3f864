"""How the ``jobq`` command shows things: rich tables for people, JSON lines for machines.

On a terminal tables fit its width; piped or redirected, nothing is cut (no 80-column limit).
Text that comes from jobs (payloads, errors, progress messages) is shown as is, never read as
rich markup, and payload previews are bounded and printable."""

from __future__ import annotations

import base64
import datetime
import json
import sys
import textwrap
from collections.abc import Iterable
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table
from rich.text import Text

from jobq.core.model import Job, Mark, WorkerInfo
from jobq.core.states import COMPLETED
from jobq.protocol.native import ExplainInfo, ServiceInfo

#: Columns of a line when the output is not a terminal: wide enough that nothing is cut.
PIPE_WIDTH = 100_000


def _console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=PIPE_WIDTH)


console = _console()
errors = _console(stderr=True)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3]


def _ms(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return "-"
    return f"{(end - start) * 1000:.1f} ms"


def preview(frames: list[bytes] | None, limit: int = 60) -> str:
    """At most ``limit`` printable characters of a payload or result: UTF-8 text with control
    characters escaped (``\\n``), ``<N bytes>`` for binary data, ``…`` when cut."""
    if not frames:
        return ""
    data = b"".join(frames[:64])[: limit * 4]  # enough bytes for ``limit`` characters
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        if exc.start < len(data) - 3:  # not just a character cut at the end
            return f"<{sum(map(len, frames))} bytes>"
        text = data[: exc.start].decode()
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
    cut = len(text) > limit or sum(map(len, frames)) > len(data)
    return text[: limit - 1] + "…" if cut else text


def _progress(job: Job) -> str | None:
    """A job's progress: ``50% halfway`` while it runs; ``100%`` once completed (a message from
    the middle of the run would mislead); where it stopped for a failed or cancelled job."""
    if job.progress is None and not job.progress_message:
        return None
    value = f"{job.progress:g}%" if job.progress is not None else ""
    if job.state is COMPLETED:
        return "100%"
    text = " ".join(part for part in (value, job.progress_message or "") if part)
    return f"stopped at {text}" if job.state.terminal else text


def _mark_line(mark: Mark) -> str:
    """One mark of a job's timeline: ``12:00:01.250 retrying #1 on w1 (until 12:00:03.000): boom``."""
    text = f"{_when(mark.at)} {mark.kind}"
    text += f" #{mark.attempt}" if mark.attempt else ""
    text += f" on {mark.worker}" if mark.worker else ""
    if mark.value is not None:
        text += f" {mark.value:g}%" if mark.kind == "progress" else f" (until {_when(mark.value)})"
    return text + (f": {_one_line(mark.detail)}" if mark.detail else "")


def _one_line(text: str | None, limit: int = 80) -> str:
    if not text:
        return ""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def footer(
    shown: int, offset: int, total: int | None, next_before: int | None = None, paged: bool = False
) -> None:
    """Under a listing cut by ``--limit``: how many of how many, and how to see the rest
    (``next_before``: the next page's ``--before``; ``paged``: this page was asked with one)."""
    first, last = offset + 1, offset + shown
    of = f" of {total}" if total is not None else ""
    more = f"next: --before {next_before}" if next_before is not None else f"more: --offset {last}"
    shown_text = f"{shown}{of}" if paged else f"{first}-{last}{of}"
    console.print(Text(f"{shown_text} shown, newest first ({more}, or a larger --limit)"))


def job_json(job: Job, *, result: bool = True, timeline: bool = True) -> dict[str, Any]:
    """A job as one JSON object: every field, payload and result as text when they are UTF-8
    (``timeline=False``: without its timeline, as listings show jobs)."""
    # Every field, defaults included (the wire format leaves defaults out).
    data: dict[str, Any] = msgspec.to_builtins(msgspec.structs.asdict(job))
    data["traceback"] = job.traceback  # the last failed attempt's; each one's in attempt_errors
    data["timeline"] = [msgspec.structs.asdict(mark) for mark in job.timeline]  # the long names
    if not timeline:
        del data["timeline"]
    for name in ("payload", "result"):
        frames = getattr(job, name)
        if name == "result" and not result:
            data.pop(name, None)
            continue
        if frames is None:
            continue
        raw = b"".join(frames)
        try:
            data[name] = raw.decode()
        except UnicodeDecodeError:
            data[name] = {"base64": base64.b64encode(raw).decode()}
        if len(frames) > 1:
            data[name + "_frames"] = len(frames)
    return data


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str) + "\n")


def show_job(job: Job, waits: str | None = None) -> None:
    """``waits``: what a waiting job waits for (``explain``'s summary)."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("id", str(job.id)),
        ("service", job.service),
        ("state", job.state.value),
        ("attempts", f"{job.attempts} of {job.max_attempts}"),
        ("priority", str(job.priority)),
        ("worker", job.worker or "-"),
        ("submitted", _when(job.submitted_at)),
        ("started", _when(job.started_at)),
        ("finished", _when(job.finished_at)),
        ("queue wait", _ms(job.submitted_at, job.started_at)),
        ("run time", _ms(job.started_at, job.finished_at)),
    ]
    if job.run_at:
        rows.append(("run at", _when(job.run_at)))
    if job.customer_id:
        rows.append(("customer", f"{job.customer_id} ({job.isolation})"))
    if job.requires:
        rows.append(("requires", json.dumps(job.requires)))
    if job.after:  # its prerequisites (docs/workflows.md, "Dependencies")
        always = " (after_policy always)" if job.after_policy == "always" else ""
        rows.append(("after", ", ".join(map(str, job.after)) + always))
    if waits:
        rows.append(("waiting", waits))
    progress = _progress(job)
    if progress is not None:
        rows.append(("progress", progress))
    if job.payload:
        rows.append(("payload", preview(job.payload)))
    if job.error:
        rows.append(("error", job.error))
    if job.traceback:  # the last failed attempt's, indented under the error
        rows.append(("", textwrap.indent(job.traceback.rstrip("\n"), "  ")))
    if job.result is not None:
        rows.append(("result", preview(job.result)))
    if job.timeline:
        rows.append(("timeline", "\n".join(_mark_line(mark) for mark in job.timeline)))
    for key, value in rows:
        table.add_row(key, Text(value))
    console.print(table)


def show_jobs(jobs: Iterable[Job]) -> None:
    """A table of jobs; an ``error`` column when one of them failed or was cancelled."""
    jobs = list(jobs)
    failed = any(job.error and job.state.terminal and job.state is not COMPLETED for job in jobs)
    table = Table()
    columns = ["id", "service", "state", "prio", "attempts", "worker", "submitted", "payload"]
    for column in columns + (["error"] if failed else []):
        table.add_column(column, overflow="fold" if column == "error" else "ellipsis")
    for job in jobs:
        row = [
            str(job.id),
            job.service,
            job.state.value,
            str(job.priority),
            str(job.attempts),
            job.worker or "-",
            _when(job.submitted_at),
            preview(job.payload, 30),
        ]
        if failed:
            row.append(_one_line(job.error) if job.state.terminal and job.state is not COMPLETED else "")
        table.add_row(*map(Text, row))
    console.print(table)


def show_workers(workers: Iterable[WorkerInfo]) -> None:
    table = Table()
    for column in ("id", "services", "door", "slots", "running", "cpu %", "mem %", "last seen", "drained"):
        table.add_column(column)
    for w in workers:
        table.add_row(
            w.id,
            ",".join(f"{s} (unhealthy: {w.unhealthy[s]})" if s in w.unhealthy else s for s in w.services),
            w.door,
            str(w.slots),
            str(len(w.running)),
            f"{w.metrics.get('cpu_percent', 0):.0f}",
            f"{w.metrics.get('memory_percent', 0):.0f}",
            _when(w.last_seen),
            w.drained or "",
        )
    console.print(table)


def show_services(services: Iterable[ServiceInfo]) -> None:
    table = Table()
    for column in ("service", "workers", "slots", "queued", "running", "paused"):
        table.add_column(column)
    for s in services:
        paused = "paused" if s.paused else ""  # jobq services pause (hub/queue_control.py)
        table.add_row(s.name, str(s.workers), str(s.slots), str(s.queued), str(s.running), paused)
    console.print(table)


def show_explain(info: ExplainInfo) -> None:
    console.print(f"job {info.id} is [bold]{info.state}[/bold]: {info.summary}")
    if info.position is not None:
        console.print(f"position among competing jobs: {info.position}")
    if info.estimated_start is not None:
        console.print(f"estimated start: {_when(info.estimated_start)}")
    if info.eligible:
        console.print("eligible workers: " + ", ".join(info.eligible))
    for worker, reason in info.ineligible.items():
        console.print(f"  {worker}: {reason}")
