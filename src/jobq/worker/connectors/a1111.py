"""``a1111``: AUTOMATIC1111's stable-diffusion-webui through its API (``modules/api/api.py`` and
``modules/api/models.py`` of that project).

A job's payload is the JSON body of ``POST /sdapi/v1/txt2img`` (or of ``/img2img`` when it has
``init_images``, or as ``endpoint`` says). While the request runs, ``GET /sdapi/v1/progress``
(``progress`` 0..1, ``eta_relative``, ``state.sampling_step``/``sampling_steps``) becomes job
progress every ``progress_interval`` seconds. The answer's base64 ``images`` become result frames
after a JSON header holding ``info`` (the generation info, parsed), ``parameters`` and one entry
per image. Cancel: ``POST /sdapi/v1/interrupt``. Health: ``GET`` of ``health_path`` (the progress
endpoint, which answers while a generation runs); models: ``GET /sdapi/v1/sd-models``, advertised
as ``models.<service>`` (each model's ``model_name`` and ``title``).

The webui runs one generation at a time and its progress is global, so a service served by this
connector takes one job at a time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import time
from typing import Any

import httpx

from jobq.worker.connectors import service_http
from jobq.worker.connectors.base import (
    Connector,
    Health,
    Option,
    frames_with_header,
    http_failure,
    payload_json,
)
from jobq.worker.connectors.http11 import Target
from jobq.worker.connectors.service_http import request
from jobq.worker.context import HandlerError, JobCancelled, JobContext


def content_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return "application/octet-stream"


class A1111Connector(Connector):
    kind = "a1111"
    parallel = False
    options = {
        "url": Option(str, "http://127.0.0.1:7860", "the webui's address"),
        "endpoint": Option(str, "auto", "txt2img, img2img, or auto", choices=("auto", "txt2img", "img2img")),
        "timeout": Option(float, 1800.0, "seconds a generation may take", minimum=0.001),
        "connect_timeout": Option(float, 5.0, "seconds to connect", minimum=0.001),
        "progress_interval": Option(float, 0.5, "seconds between progress polls", minimum=0.01),
        "health_path": Option(str, "/sdapi/v1/progress?skip_current_image=true", "what health checks GET"),
        "headers": Option(dict, {}, "extra headers (e.g. authorization for --api-auth)"),
    }

    def __init__(self, service: str, options: dict[str, Any]) -> None:
        super().__init__(service, options)
        self.target = Target.parse(self.config["url"].rstrip("/"))
        self.http: httpx.AsyncClient | None = None
        self._models: list[str] = []
        self._models_at = -math.inf  # never asked: time.monotonic() starts near 0 at boot

    async def start(self) -> None:
        self.http = service_http.client(self.config, self.config["timeout"])

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        assert self.http is not None, "start() first"
        return await request(self.http, method, path, service=self.service, target=self.target, **kwargs)

    async def health(self) -> Health:
        response = await self._call("GET", self.config["health_path"], timeout=self.config["connect_timeout"])
        if response.status_code != 200:
            return Health.down(f"HTTP {response.status_code} from {self.config['health_path']}")
        if time.monotonic() - self._models_at > 300:
            models = await self._call("GET", "/sdapi/v1/sd-models", timeout=self.config["connect_timeout"])
            if models.status_code == 200:
                names: list[str] = []
                for item in models.json():
                    for key in ("model_name", "title"):
                        if item.get(key) and item[key] not in names:
                            names.append(str(item[key]))
                self._models, self._models_at = names, time.monotonic()
        return Health.up({f"models.{self.service}": self._models})

    async def run(self, ctx: JobContext) -> Any:
        body = payload_json(ctx, "the a1111 connector")
        if not isinstance(body, dict):
            raise HandlerError(
                "the a1111 connector needs a JSON object (a txt2img/img2img request)", retryable=False
            )
        endpoint = body.pop("endpoint", None) or self.config["endpoint"]
        if endpoint == "auto":
            endpoint = "img2img" if body.get("init_images") else "txt2img"
        if endpoint not in ("txt2img", "img2img"):
            raise HandlerError(f"endpoint {endpoint!r}: use txt2img or img2img", retryable=False)
        request = asyncio.ensure_future(self._call("POST", f"/sdapi/v1/{endpoint}", json=body))
        try:
            while True:
                done, _ = await asyncio.wait({request}, timeout=self.config["progress_interval"])
                if done:
                    break
                await self._progress(ctx)
            response = request.result()
        finally:
            if not request.done():
                request.cancel()
        if ctx.cancelled:
            raise JobCancelled(f"job {ctx.id} was cancelled")
        if response.status_code != 200:
            raise http_failure(response.status_code, response.content, f"the webui's /sdapi/v1/{endpoint}")
        return _frames(response.json())

    async def _progress(self, ctx: JobContext) -> None:
        try:
            response = await self._call(
                "GET", "/sdapi/v1/progress", params={"skip_current_image": "true"}, timeout=5
            )
            report = response.json() if response.status_code == 200 else None
        except (HandlerError, ValueError):
            return  # a missed progress report is not worth failing the job (the POST tells)
        if not isinstance(report, dict):
            return
        state = report.get("state") or {}
        step, steps = state.get("sampling_step", 0), state.get("sampling_steps", 0)
        parts = [f"step {step}/{steps}"] if steps else []
        if (state.get("job_count") or 0) > 1:
            parts.append(f"image {int(state.get('job_no', 0)) + 1}/{state['job_count']}")
        eta = report.get("eta_relative")
        if isinstance(eta, int | float) and eta > 0:
            parts.append(f"eta {eta:.0f}s")
        progress = report.get("progress")
        ctx.progress(
            100.0 * float(progress) if isinstance(progress, int | float) else None,
            ", ".join(parts) or str(report.get("textinfo") or "") or None,
        )

    async def cancel(self, ctx: JobContext) -> None:
        await self._call("POST", "/sdapi/v1/interrupt", timeout=self.config["connect_timeout"])


def _frames(answer: dict[str, Any]) -> list[bytes]:
    info: Any = answer.get("info")
    if isinstance(info, str):
        try:
            info = json.loads(info)
        except ValueError:
            pass
    blobs: list[bytes] = []
    described: list[dict[str, Any]] = []
    for image in answer.get("images") or []:
        try:
            data = base64.b64decode(image.split(",", 1)[-1] if image.startswith("data:") else image)
        except (binascii.Error, AttributeError):
            raise HandlerError("the webui returned an image that is not base64", retryable=False) from None
        blobs.append(data)
        described.append({"frame": len(blobs), "bytes": len(data), "content_type": content_type(data)})
    header = {"info": info, "parameters": answer.get("parameters"), "images": described}
    return frames_with_header(header, blobs)
