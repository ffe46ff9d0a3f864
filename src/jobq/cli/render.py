"""How the ``jobq`` command shows things: rich tables for people, JSON lines for machines."""

from __future__ import annotations

import base64
import datetime
import json
import sys
from collections.abc import Iterable
from typing import Any

import msgspec
from rich.console import Console
from rich.table import Table

from jobq.core.model import Job, WorkerInfo
from jobq.protocol.native import ExplainInfo, ServiceInfo

console = Console()
errors = Console(stderr=True)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%H:%M:%S.%f")[:-3]


def _ms(start: float | None, end: float | None) -> str:
    if start is None or end is None:
        return "-"
    return f"{(end - start) * 1000:.1f} ms"


def preview(frames: list[bytes] | None, limit: int = 60) -> str:
    if not frames:
        return ""
    data = b"".join(frames)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return f"<{len(data)} bytes>"
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def job_json(job: Job, *, result: bool = True) -> dict[str, Any]:
    """A job as one JSON object: every field, payload and result as text when they are UTF-8."""
    # Every field, defaults included (the wire format leaves defaults out).
    data: dict[str, Any] = msgspec.to_builtins(msgspec.structs.asdict(job))
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


def show_job(job: Job) -> None:
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
    if job.progress is not None or job.progress_message:
        rows.append(
            ("progress", f"{job.progress if job.progress is not None else ''} {job.progress_message or ''}")
        )
    if job.error:
        rows.append(("error", job.error))
    if job.result is not None:
        rows.append(("result", preview(job.result)))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def show_jobs(jobs: Iterable[Job]) -> None:
    table = Table()
    for column in ("id", "service", "state", "prio", "attempts", "worker", "submitted", "payload"):
        table.add_column(column)
    for job in jobs:
        table.add_row(
            str(job.id),
            job.service,
            job.state.value,
            str(job.priority),
            str(job.attempts),
            job.worker or "-",
            _when(job.submitted_at),
            preview(job.payload, 30),
        )
    console.print(table)


def show_workers(workers: Iterable[WorkerInfo]) -> None:
    table = Table()
    for column in ("id", "services", "door", "slots", "running", "cpu %", "mem %", "last seen"):
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
        )
    console.print(table)


def show_services(services: Iterable[ServiceInfo]) -> None:
    table = Table()
    for column in ("service", "workers", "slots", "queued", "running"):
        table.add_column(column)
    for s in services:
        table.add_row(s.name, str(s.workers), str(s.slots), str(s.queued), str(s.running))
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
