"""A generic service for the ``http`` and ``websocket`` connectors: no real product behind it,
so the API is the one ``docs/connectors.md`` documents for those connectors (and this stand-in
follows it).

- ``POST /run``: a synchronous job; the body comes back upper-cased, after ``s`` seconds if
  the payload is ``{"delay": s, ...}``. ``GET /run`` is 405 (a health
  check with the default ``health_method = "GET"`` on the job URL still counts the service up).
- ``POST /cancel/{job}``: recorded (the ``cancel_url`` the tests configure).
- ``POST /jobs``: an asynchronous job: 202 with ``{"id", "url": "/jobs/{id}"}``; ``GET
  /jobs/{id}`` answers ``{"status": "running", "progress": 0..1, "message"}`` for ``steps`` polls
  (payload ``{"steps": n, "text": ...}``), then ``{"status": "done", "result": {"text": TEXT}}``.
- ``POST /deferred``: ``{"callback_url": URL, "text": ...}`` is answered 202 at once; then the
  service POSTs ``{"progress": 50, "message": "half way"}`` to ``URL/progress`` and the
  upper-cased text to ``URL`` (the ``callback`` mode of the ``http`` connector).
- ``WS /ws``: the first message is ``{"steps": n, "text": ...}``; the service sends
  ``{"progress": i/n, "message": "step i/n"}`` every ``--step-delay`` seconds, then a binary
  frame ``b"BIN"`` and ``{"status": "done", "result": {"text": TEXT}}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid
from typing import Any

from tests.standins.common import App, Request, Response, WebSocket, json_response, main


def build(args: argparse.Namespace, app: App) -> None:
    jobs: dict[str, dict[str, Any]] = {}

    @app.route("POST", "/run")
    async def run(request: Request) -> Response:
        try:
            spec = json.loads(request.body)
        except ValueError:
            spec = None
        if isinstance(spec, dict) and spec.get("delay"):
            await asyncio.sleep(float(spec["delay"]))
        return Response(200, request.body.upper(), "application/octet-stream")

    @app.route("POST", "/cancel/*")
    async def cancel(request: Request) -> Response:
        return json_response({"cancelled": request.path.rsplit("/", 1)[1]})

    @app.route("POST", "/jobs")
    async def submit(request: Request) -> Response:
        spec = request.json()
        job_id = uuid.uuid4().hex[:8]
        jobs[job_id] = {"steps": int(spec.get("steps", 3)), "polls": 0, "text": str(spec.get("text", ""))}
        return json_response({"id": job_id, "url": f"/jobs/{job_id}"}, 202)

    @app.route("GET", "/jobs/*")
    async def poll(request: Request) -> Response:
        job = jobs.get(request.path.rsplit("/", 1)[1])
        if job is None:
            return json_response({"error": "no such job"}, 404)
        job["polls"] += 1
        if job["polls"] <= job["steps"]:
            share = job["polls"] / (job["steps"] + 1)
            return json_response({"status": "running", "progress": share, "message": f"poll {job['polls']}"})
        return json_response({"status": "done", "result": {"text": job["text"].upper()}})

    later: set[asyncio.Task[None]] = set()

    async def call_back(url: str, text: str) -> None:
        import httpx

        async with httpx.AsyncClient() as client:
            await asyncio.sleep(args.step_delay)
            await client.post(f"{url}/progress", json={"progress": 50, "message": "half way"})
            await asyncio.sleep(args.step_delay)
            await client.post(url, content=text.upper().encode())

    @app.route("POST", "/deferred")
    async def deferred(request: Request) -> Response:
        spec = request.json()
        task = asyncio.ensure_future(call_back(spec["callback_url"], str(spec.get("text", ""))))
        later.add(task)
        task.add_done_callback(later.discard)
        return json_response({"accepted": True}, 202)

    @app.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        first = await socket.receive()
        if first is None:
            return
        spec = json.loads(first)
        steps = int(spec.get("steps", 3))
        for step in range(1, steps + 1):
            await asyncio.sleep(args.step_delay)
            await socket.send_json({"progress": step / steps, "message": f"step {step}/{steps}"})
        await socket.send_bytes(b"BIN")
        await socket.send_json({"status": "done", "result": {"text": str(spec.get("text", "")).upper()}})
        await socket.receive()  # until the client closes


def flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--step-delay", type=float, default=0.02)


if __name__ == "__main__":
    main(build, flags)
