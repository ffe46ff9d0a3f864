"""The HTTP door: REST submits per second, and WebSocket event fan-out to many monitors.

A real hub process (memory store, so the store is not what is measured) on loopback; this
driver is its own process and shares the machine's cores with the hub.

- ``rest_single``: ``POST /api/jobs``, one job per request, ``--concurrency`` keep-alive
  connections each with one request in flight (a bare HTTP/1.1 client, so the driver is not
  the bottleneck);
- ``rest_batch``: ``POST /api/jobs/batch`` with ``--batch`` jobs per request;
- ``fanout``: ``--monitors`` monitors on ``/ws/monitor`` (one message per event, as EmProps
  monitors expect, and ``?batch=1``, as the dashboard reads them); ``--events`` jobs are
  submitted in batches and the time until every monitor has seen every ``job_submitted`` is
  taken. Delivered = monitors * events / that time. Monitors that fell behind are resynced
  (counted), never waited for.

Prints one JSON document. ``python -m bench.http --help`` for the knobs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets
from tests.http_helpers import start_http_hub


async def _raw_connection(host: str, port: int, request: bytes, count: int) -> None:
    """One keep-alive connection sending ``request`` ``count`` times, one at a time (a bare
    HTTP/1.1 client: httpx would be the bottleneck, not the hub)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for _ in range(count):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            if status != 201:
                raise RuntimeError(f"submit answered {status}")
    finally:
        writer.close()


async def rest_single(url: str, jobs: int, concurrency: int) -> dict[str, float]:
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"type": "bench", "payload": {"n": 1, "text": "x" * 64}}).encode()
    request = (
        f"POST /api/jobs HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    per = jobs // concurrency
    started = time.perf_counter()
    await asyncio.gather(*(_raw_connection(host, int(port), request, per) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    done = per * concurrency
    return {
        "jobs": done,
        "concurrency": concurrency,
        "seconds": round(elapsed, 3),
        "per_s": round(done / elapsed),
    }


async def rest_batch(url: str, jobs: int, batch: int) -> dict[str, float]:
    body = {"jobs": [{"type": "bench-batch", "payload": {"n": i}} for i in range(batch)]}
    async with httpx.AsyncClient(base_url=url, timeout=60) as api:
        started = time.perf_counter()
        for _ in range(max(1, jobs // batch)):
            answer = await api.post("/api/jobs/batch", json=body)
            assert answer.status_code == 201, answer.text
        elapsed = time.perf_counter() - started
    done = max(1, jobs // batch) * batch
    return {"jobs": done, "batch": batch, "seconds": round(elapsed, 3), "per_s": round(done / elapsed)}


async def fanout(url: str, monitors: int, events: int, batch_mode: bool) -> dict[str, Any]:
    ws_url = url.replace("http://", "ws://") + "/ws/monitor" + ("?batch=1" if batch_mode else "")
    service = f"fan-{'batch' if batch_mode else 'single'}"
    sockets = [await websockets.connect(ws_url, max_size=2**26, max_queue=None) for _ in range(monitors)]
    seen = [0] * monitors
    resyncs = [0] * monitors
    done = asyncio.Event()
    finished = 0

    async def read(i: int, ws: Any) -> None:
        nonlocal finished
        async for text in ws:
            message = json.loads(text)
            kind = message["type"]
            if kind == "event_batch":
                seen[i] += sum(
                    1 for e in message["events"] if e["type"] == "job_submitted" and e["service"] == service
                )
            elif kind == "job_submitted" and message["service"] == service:
                seen[i] += 1
            elif kind == "resync_required":
                resyncs[i] += 1
            elif kind == "full_state_snapshot" and resyncs[i]:
                # A resynced monitor counts what the snapshot says is there.
                seen[i] = max(
                    seen[i], message["stats"]["jobs"]["by_service"].get(service, {}).get("queued", 0)
                )
            if seen[i] >= events:
                finished += 1
                if finished == monitors:
                    done.set()
                return

    readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(sockets)]
    await asyncio.sleep(0.5)  # every monitor subscribed
    chunk = 200
    async with httpx.AsyncClient(base_url=url, timeout=60) as api:
        started = time.perf_counter()
        for first in range(0, events, chunk):
            body = {
                "jobs": [{"type": service, "payload": i} for i in range(first, min(events, first + chunk))]
            }
            answer = await api.post("/api/jobs/batch", json=body)
            assert answer.status_code == 201, answer.text
        submitted = time.perf_counter() - started
        try:
            await asyncio.wait_for(done.wait(), 120)
        finally:
            elapsed = time.perf_counter() - started
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            for ws in sockets:
                await ws.close()
    return {
        "monitors": monitors,
        "events": events,
        "mode": "event_batch" if batch_mode else "one message per event",
        "submit_seconds": round(submitted, 3),
        "all_delivered_seconds": round(elapsed, 3),
        "delivered_per_s": round(monitors * events / elapsed),
        "monitors_resynced": sum(1 for r in resyncs if r),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        extra = ["--http-monitor-queue", str(args.monitor_queue), "--http-max-connections", "4096"]
        extra += ["--http-max-per-peer", "0"]  # every monitor comes from this one address
        hub = start_http_hub(Path(tmp), extra, name="bench-hub")
        try:
            out: dict[str, Any] = {
                "bench": "http",
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": sys.version.split()[0],
                    "platform": platform.platform(),
                },
                "hub": "memory store, one process, uvloop; driver in its own process",
            }
            out["rest_single"] = await rest_single(hub.url, args.jobs, args.concurrency)
            out["rest_batch"] = await rest_batch(hub.url, args.jobs * 2, args.batch)
            out["fanout"] = await fanout(hub.url, args.monitors, args.events, batch_mode=False)
            out["fanout_batched"] = await fanout(hub.url, args.monitors, args.events, batch_mode=True)
        finally:
            hub.proc.close()
    return out


def cli() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=3000, help="REST submits (single; twice as many batched)")
    parser.add_argument("--concurrency", type=int, default=32, help="REST requests in flight")
    parser.add_argument("--batch", type=int, default=500, help="jobs per batch request")
    parser.add_argument("--monitors", type=int, default=100, help="WebSocket monitors")
    parser.add_argument("--events", type=int, default=2000, help="events each monitor must see")
    parser.add_argument("--monitor-queue", type=int, default=1000, help="the hub's --http-monitor-queue")
    args = parser.parse_args()
    print(json.dumps(asyncio.run(main(args)), indent=2))


if __name__ == "__main__":
    cli()
