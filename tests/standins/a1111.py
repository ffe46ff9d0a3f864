"""An AUTOMATIC1111 stable-diffusion-webui stand-in: the API subset the ``a1111`` connector uses.

Read from the webui's public repository (github.com/AUTOMATIC1111/stable-diffusion-webui):

- ``modules/api/api.py`` (``Api.__init__`` routes and handlers): ``POST /sdapi/v1/txt2img`` and
  ``/img2img`` (block until the generation ends; ``img2img`` needs ``init_images``; one at a time
  under the queue lock), ``GET /sdapi/v1/progress`` (``progressapi``: ``progress`` is
  ``job_no / job_count`` plus the sampling step's share, 0 when idle; ``eta_relative``; ``state``;
  ``current_image`` unless ``skip_current_image``), ``POST /sdapi/v1/interrupt`` (``interruptapi``:
  ``shared.state.interrupt()``, answers ``{}``; the running generation stops and returns what it
  has), ``GET /sdapi/v1/sd-models`` (``title``, ``model_name``, ``hash``, ``sha256``,
  ``filename``, ``config``).
- ``modules/api/models.py``: ``TextToImageResponse``/``ImageToImageResponse`` (``images``: base64
  strings, ``parameters``: the request, ``info``: a JSON string), ``ProgressResponse``, and the
  request fields used here (``prompt``, ``steps``, ``batch_size``, ``n_iter``, ``init_images``).

Stand-in rules: each image takes ``steps`` steps of ``--step-delay`` seconds; a request whose
``steps`` is not an integer gets FastAPI's 422.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
from typing import Any

from tests.standins.common import App, Request, Response, json_response, main, png

MODELS = [
    {
        "title": "v1-5-pruned-emaonly.safetensors [6ce0161689]",
        "model_name": "v1-5-pruned-emaonly",
        "hash": "6ce0161689",
        "sha256": "6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa",
        "filename": "/webui/models/Stable-diffusion/v1-5-pruned-emaonly.safetensors",
        "config": None,
    }
]


class State:
    """``shared.state`` as the progress endpoint reads it."""

    def __init__(self) -> None:
        self.job_count = 0
        self.job_no = 0
        self.sampling_step = 0
        self.sampling_steps = 0
        self.interrupted = False
        self.time_start = 0.0
        self.lock = asyncio.Lock()

    def as_dict(self) -> dict[str, Any]:
        return {
            "skipped": False,
            "interrupted": self.interrupted,
            "stopping_generation": False,
            "job": f"job {self.job_no}" if self.job_count else "",
            "job_count": self.job_count,
            "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
            "job_no": self.job_no,
            "sampling_step": self.sampling_step,
            "sampling_steps": self.sampling_steps,
        }


def build(args: argparse.Namespace, app: App) -> None:
    state = State()

    async def generate(request: Request, kind: str) -> Response:
        body = request.json()
        steps = body.get("steps", 20)
        if not isinstance(steps, int):
            detail = [
                {
                    "loc": ["body", "steps"],
                    "msg": "value is not a valid integer",
                    "type": "type_error.integer",
                }
            ]
            return json_response({"detail": detail}, 422)
        if kind == "img2img" and not body.get("init_images"):
            return json_response(
                {"error": "HTTPException", "detail": "Init image not found", "body": "", "errors": ""}, 404
            )
        images = int(body.get("batch_size", 1)) * int(body.get("n_iter", 1))
        async with state.lock:
            state.job_count, state.job_no, state.interrupted = images, 0, False
            state.sampling_steps, state.time_start = steps, time.time()
            produced: list[str] = []
            try:
                for image in range(images):
                    state.job_no = image
                    for step in range(1, steps + 1):
                        if state.interrupted:
                            break
                        await asyncio.sleep(args.step_delay)
                        state.sampling_step = step
                    produced.append(base64.b64encode(png(seed=image + 1)).decode())
                    if state.interrupted:
                        break
            finally:
                state.job_count = state.sampling_step = state.sampling_steps = 0
        info = {
            "prompt": body.get("prompt", ""),
            "all_prompts": [body.get("prompt", "")] * len(produced),
            "seed": 1234,
            "all_seeds": list(range(1234, 1234 + len(produced))),
            "steps": steps,
            "infotexts": [f"{body.get('prompt', '')}\nSteps: {steps}, Seed: 1234"] * len(produced),
        }
        return json_response({"images": produced, "parameters": body, "info": json.dumps(info)})

    @app.route("POST", "/sdapi/v1/txt2img")
    async def txt2img(request: Request) -> Response:
        return await generate(request, "txt2img")

    @app.route("POST", "/sdapi/v1/img2img")
    async def img2img(request: Request) -> Response:
        return await generate(request, "img2img")

    @app.route("GET", "/sdapi/v1/progress")
    async def progress(request: Request) -> Response:
        if state.job_count == 0:
            return json_response(
                {
                    "progress": 0,
                    "eta_relative": 0,
                    "state": state.as_dict(),
                    "current_image": None,
                    "textinfo": None,
                }
            )
        value = 0.01 + state.job_no / state.job_count
        if state.sampling_steps > 0:
            value += 1 / state.job_count * state.sampling_step / state.sampling_steps
        elapsed = time.time() - state.time_start
        eta = elapsed / value - elapsed
        return json_response(
            {
                "progress": min(value, 1),
                "eta_relative": eta,
                "state": state.as_dict(),
                "current_image": None,
                "textinfo": None,
            }
        )

    @app.route("POST", "/sdapi/v1/interrupt")
    async def interrupt(request: Request) -> Response:
        state.interrupted = True
        return json_response({})

    @app.route("GET", "/sdapi/v1/sd-models")
    async def sd_models(request: Request) -> Response:
        return json_response(MODELS)


def flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--step-delay", type=float, default=0.02)


if __name__ == "__main__":
    main(build, flags)
