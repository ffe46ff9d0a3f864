"""``comfyui``: ComfyUI through its own server API, as ComfyUI's ``server.py`` and
``execution.py`` define it.

A job's payload is a workflow in API format (``{"3": {"class_type": "KSampler", "inputs": ...}}``)
or ``{"prompt": <workflow>, "extra_data": {...}}``. The connector keeps one WebSocket on
``/ws?clientId=<id>`` (ComfyUI sends the messages of the prompts queued with that ``client_id``
to it), queues the prompt with ``POST /prompt`` and follows its messages: ``execution_start``,
``execution_cached`` (cached nodes count as done), ``executing`` (a node starts; ``node: null``
is the end in older versions), ``progress`` (``value``/``max`` within a node), ``executed``,
then ``execution_success``, ``execution_error`` or ``execution_interrupted``. Job progress is
the share of the workflow's nodes done, with the running node's own progress. The outputs come
from ``GET /history/{prompt_id}``, each file's bytes from ``GET /view``: the result is a JSON
header (prompt id, outputs, one entry per file) followed by one frame per file.

Cancel: ``POST /interrupt`` (with the prompt id, which newer versions use to interrupt only that
prompt) once it runs, ``POST /queue {"delete": [id]}`` while it waits. Health:
``GET /system_stats``, whose first device gives ``hardware.gpu_model`` and
``hardware.gpu_memory_gb``; ``GET /object_info/CheckpointLoaderSimple`` lists the checkpoints
advertised as ``models.<service>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from jobq.worker.connectors import service_http
from jobq.worker.connectors.base import (
    Connector,
    Health,
    Option,
    ServiceUnavailable,
    frames_with_header,
    http_failure,
    payload_json,
)
from jobq.worker.connectors.http11 import Target
from jobq.worker.connectors.service_http import request, unreachable
from jobq.worker.context import HandlerError, JobCancelled, JobContext

#: Messages a prompt's follower waits for; the others only update what the connector knows.
#: The first four bytes of ComfyUI's binary WebSocket frame carrying a preview image.
PREVIEW_IMAGE = (1).to_bytes(4, "big")

FOLLOWED = {
    "execution_start",
    "execution_cached",
    "executing",
    "progress",
    "executed",
    "execution_success",
    "execution_error",
    "execution_interrupted",
}


@dataclass(slots=True)
class _Prompt:
    ctx: JobContext
    workflow: dict[str, Any]
    events: asyncio.Queue[tuple[str, dict[str, Any]]] = field(default_factory=asyncio.Queue)
    started: bool = False
    cached: int = 0
    entered: int = 0
    node: str | None = None


def gpu_name(device: str) -> str:
    """``cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync`` (ComfyUI's device name) → the GPU's."""
    name = device.split(" : ")[0].strip()
    head, _, rest = name.partition(" ")
    return rest if ":" in head and rest else name


class ComfyUIConnector(Connector):
    kind = "comfyui"
    options = {
        "url": Option(str, "http://127.0.0.1:8188", "ComfyUI's address"),
        "timeout": Option(float, 3600.0, "seconds a prompt may take", minimum=0.001),
        "connect_timeout": Option(float, 5.0, "seconds to connect", minimum=0.001),
        "request_timeout": Option(float, 60.0, "seconds one HTTP request may take", minimum=0.001),
        "fetch_outputs": Option(bool, True, "fetch output files with /view as result frames"),
        "max_output_bytes": Option(int, 512 * 2**20, "output bytes per job at most", minimum=0),
        "client_id": Option(str, "", "the WebSocket client id (default: a fresh one)"),
        "headers": Option(dict, {}, "extra headers on every request (e.g. authorization)"),
        "models_node": Option(str, "CheckpointLoaderSimple", "node whose input lists the models"),
        "models_input": Option(str, "ckpt_name", "that node's input holding the model names"),
    }

    def __init__(self, service: str, options: dict[str, Any]) -> None:
        super().__init__(service, options)
        base = self.config["url"].rstrip("/")
        self.target = Target.parse(base)
        parts = urlsplit(base)
        self.client_id = self.config["client_id"] or f"jobq-{uuid.uuid4().hex}"
        scheme = "wss" if parts.scheme == "https" else "ws"
        self.ws_url = f"{scheme}://{parts.netloc}{parts.path}/ws?clientId={self.client_id}"
        self.http: httpx.AsyncClient | None = None
        self.ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ws_lock = asyncio.Lock()
        self.prompts: dict[str, _Prompt] = {}  # prompt id → what follows it
        self.prompt_of: dict[int, str] = {}  # job id → prompt id
        self._early: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        self._executing: str | None = None  # the prompt ComfyUI runs now, for old progress messages
        self._models_at = -math.inf  # never asked: time.monotonic() starts near 0 at boot
        self._models_cache: list[str] = []

    async def start(self) -> None:
        self.http = service_http.client(self.config, self.config["request_timeout"])

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self.http is not None:
            await self.http.aclose()

    # ------------------------------------------------------------------ HTTP

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        assert self.http is not None, "start() first"
        return await request(self.http, method, path, service=self.service, target=self.target, **kwargs)

    async def health(self) -> Health:
        response = await self._call("GET", "/system_stats")
        if response.status_code != 200:
            return Health.down(f"HTTP {response.status_code} from /system_stats")
        stats = response.json()
        caps: dict[str, Any] = {}
        devices = stats.get("devices") or []
        if devices and devices[0].get("type") != "cpu":
            caps["hardware.gpu_model"] = gpu_name(str(devices[0].get("name", "")))
            caps["hardware.gpu_memory_gb"] = round(float(devices[0].get("vram_total", 0)) / 2**30, 1)
        caps.update(await self._models())
        return Health.up(caps)

    async def _models(self) -> dict[str, Any]:
        """``models.<service>``: the checkpoints ComfyUI offers (asked at most every 5 minutes)."""
        key = f"models.{self.service}"
        if time.monotonic() - self._models_at < 300:
            return {key: self._models_cache}
        node, name = self.config["models_node"], self.config["models_input"]
        response = await self._call("GET", f"/object_info/{node}")
        models: list[str] = []
        if response.status_code == 200:
            spec = (response.json().get(node) or {}).get("input", {})
            for section in ("required", "optional"):
                choices = (spec.get(section) or {}).get(name)
                if choices and isinstance(choices[0], list):
                    models = [str(m) for m in choices[0]]
        self._models_cache, self._models_at = models, time.monotonic()
        return {key: models}

    # ------------------------------------------------------------------ the WebSocket

    async def _ensure_ws(self) -> None:
        async with self._ws_lock:
            if self.ws is not None and self._reader is not None and not self._reader.done():
                return
            try:
                self.ws = await connect(
                    self.ws_url,
                    additional_headers=self.config["headers"],
                    open_timeout=self.config["connect_timeout"],
                    max_size=64 * 2**20,
                    proxy=None,
                    compression=None,
                )
            except (OSError, InvalidHandshake, TimeoutError) as exc:
                raise ServiceUnavailable(f"WebSocket: {unreachable(exc, self.target)}") from None
            self._reader = asyncio.ensure_future(self._read(self.ws))

    async def _read(self, ws: ClientConnection) -> None:
        reason = "the WebSocket closed"
        try:
            async for raw in ws:
                if isinstance(raw, str):
                    with contextlib.suppress(ValueError, AttributeError, TypeError):
                        message = json.loads(raw)
                        self._dispatch(str(message.get("type")), message.get("data") or {})
                elif raw[:4] == PREVIEW_IMAGE and self._executing in self.prompts:
                    # ComfyUI's binary frame: event (4 bytes, 1 = preview image), image type
                    # (4 bytes: 1 JPEG, 2 PNG), the image; it belongs to the running prompt.
                    self.prompts[self._executing].events.put_nowait(("preview", {"image": raw[8:]}))
        except ConnectionClosed as exc:
            reason = f"the WebSocket was lost ({exc})"
        finally:
            if self.ws is ws:
                self.ws = None
            for prompt in self.prompts.values():
                prompt.events.put_nowait(("lost", {"reason": reason}))

    def _dispatch(self, kind: str, data: dict[str, Any]) -> None:
        if kind not in FOLLOWED:
            return
        prompt_id = data.get("prompt_id")
        if kind == "execution_start":
            self._executing = prompt_id
        elif prompt_id is None:
            prompt_id = self._executing  # progress from versions that do not name the prompt
        if prompt_id is None:
            return
        prompt = self.prompts.get(prompt_id)
        if prompt is not None:
            prompt.events.put_nowait((kind, data))
        elif len(self._early) < 1000:  # before POST /prompt has answered: kept for its follower
            self._early.setdefault(prompt_id, []).append((kind, data))

    # ------------------------------------------------------------------ jobs

    async def run(self, ctx: JobContext) -> Any:
        body = payload_json(ctx, "the comfyui connector")
        if not isinstance(body, dict) or not body:
            raise HandlerError(
                "the comfyui connector needs a workflow (API format) as payload", retryable=False
            )
        workflow = body["prompt"] if isinstance(body.get("prompt"), dict) else body
        request = {"prompt": workflow, "client_id": self.client_id}
        if isinstance(body.get("extra_data"), dict):
            request["extra_data"] = body["extra_data"]
        await self._ensure_ws()
        response = await self._call("POST", "/prompt", json=request)
        if response.status_code == 400:
            raise HandlerError(f"ComfyUI refused the workflow: {_refusal(response)}", retryable=False)
        if response.status_code != 200:
            raise http_failure(response.status_code, response.content, "ComfyUI /prompt")
        prompt_id = str(response.json()["prompt_id"])
        prompt = self.prompts[prompt_id] = _Prompt(ctx, workflow)
        self.prompt_of[ctx.id] = prompt_id
        for event in self._early.pop(prompt_id, []):
            prompt.events.put_nowait(event)
        try:
            if ctx.cancelled:
                await self.cancel(ctx)
                raise JobCancelled(f"job {ctx.id} was cancelled")
            await asyncio.wait_for(self._follow(prompt_id, prompt), self.config["timeout"])
            return await self._outputs(prompt_id)
        except TimeoutError:
            await self.cancel(ctx)
            raise HandlerError(f"ComfyUI did not finish within {self.config['timeout']:g}s") from None
        finally:
            self.prompts.pop(prompt_id, None)
            self.prompt_of.pop(ctx.id, None)

    async def _follow(self, prompt_id: str, prompt: _Prompt) -> None:
        ctx = prompt.ctx
        total = max(1, len(prompt.workflow))
        while True:
            kind, data = await prompt.events.get()
            if kind == "lost":
                raise ServiceUnavailable(str(data.get("reason")))
            if kind == "execution_start":
                prompt.started = True
                ctx.progress(0.0, "started")
            elif kind == "execution_cached":
                prompt.cached = len(data.get("nodes") or [])
            elif kind == "executing":
                node = data.get("node")
                if node is None:
                    return  # the end, as versions without execution_success say it
                prompt.entered += 1
                prompt.node = str(node)
                done = float(prompt.cached + prompt.entered - 1)
                ctx.progress(min(99.0, 100.0 * done / total), f"running {self._label(prompt, node)}")
            elif kind == "progress":
                value, most = float(data.get("value") or 0), float(data.get("max") or 1)
                done = prompt.cached + max(0, prompt.entered - 1) + min(1.0, value / most)
                label = self._label(prompt, data.get("node") or prompt.node)
                ctx.progress(min(99.0, 100.0 * done / total), f"{label} {value:g}/{most:g}")
            elif kind == "preview":
                ctx.progress(None, None, preview=data["image"])
            elif kind == "execution_success":
                return
            elif kind == "execution_interrupted":
                if ctx.cancelled:
                    raise JobCancelled(f"job {ctx.id} was cancelled")
                raise HandlerError(f"ComfyUI interrupted the prompt at node {data.get('node_id')}")
            elif kind == "execution_error":
                raise _execution_error(data)

    @staticmethod
    def _label(prompt: _Prompt, node: Any) -> str:
        spec = prompt.workflow.get(str(node)) if node is not None else None
        kind = spec.get("class_type") if isinstance(spec, dict) else None
        return f"{kind} (node {node})" if kind else f"node {node}"

    async def _outputs(self, prompt_id: str) -> list[bytes]:
        response = await self._call("GET", f"/history/{prompt_id}")
        if response.status_code != 200:
            raise http_failure(response.status_code, response.content, "ComfyUI /history")
        entry = response.json().get(prompt_id) or {}
        status = entry.get("status") or {}
        if status.get("status_str") == "error":
            raise HandlerError(f"ComfyUI reports the prompt failed: {status.get('messages', [])[-1:]}")
        outputs = entry.get("outputs") or {}
        files: list[dict[str, Any]] = []
        blobs: list[bytes] = []
        budget = self.config["max_output_bytes"]
        for node, produced in outputs.items():
            for items in produced.values() if isinstance(produced, dict) else []:
                for item in items if isinstance(items, list) else []:
                    if not (isinstance(item, dict) and item.get("filename")):
                        continue
                    described = {
                        "node": node,
                        **{k: item.get(k, "") for k in ("filename", "subfolder", "type")},
                    }
                    if self.config["fetch_outputs"]:
                        data, content_type = await self._view(described)
                        budget -= len(data)
                        if budget < 0:
                            raise HandlerError("ComfyUI's outputs exceed max_output_bytes", retryable=False)
                        described.update(frame=len(blobs) + 1, bytes=len(data), content_type=content_type)
                        blobs.append(data)
                    files.append(described)
        return frames_with_header({"prompt_id": prompt_id, "outputs": outputs, "files": files}, blobs)

    async def _view(self, item: dict[str, Any]) -> tuple[bytes, str]:
        params = {k: item[k] for k in ("filename", "subfolder", "type")}
        response = await self._call("GET", "/view", params=params)
        if response.status_code != 200:
            raise http_failure(response.status_code, response.content, f"ComfyUI /view {item['filename']}")
        return response.content, response.headers.get("content-type", "application/octet-stream")

    async def cancel(self, ctx: JobContext) -> None:
        prompt_id = self.prompt_of.get(ctx.id)
        prompt = self.prompts.get(prompt_id) if prompt_id else None
        if prompt_id is None or prompt is None:
            return  # not queued yet: run() cancels it once POST /prompt answers
        if prompt.started or self._executing == prompt_id:
            await self._call("POST", "/interrupt", json={"prompt_id": prompt_id})
        else:
            await self._call("POST", "/queue", json={"delete": [prompt_id]})


def _refusal(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    error = body.get("error")
    message = error.get("message", error) if isinstance(error, dict) else error
    nodes = body.get("node_errors") or {}
    return f"{message}" + (f"; node errors: {json.dumps(nodes)[:500]}" if nodes else "")


def _execution_error(data: dict[str, Any]) -> HandlerError:
    kind = str(data.get("exception_type", ""))
    message = str(data.get("exception_message", "")).strip()
    where = f"{data.get('node_type', '?')} (node {data.get('node_id', '?')})"
    transient = "OutOfMemory" in kind or "out of memory" in message.lower()
    return HandlerError(f"ComfyUI failed in {where}: {kind}: {message}"[:4000], retryable=transient)
