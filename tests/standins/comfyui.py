"""A ComfyUI stand-in: the subset of ComfyUI's server API the ``comfyui`` connector uses, with the
requests, replies and WebSocket messages ComfyUI itself sends.

Read from ComfyUI's public repository (github.com/comfyanonymous/ComfyUI):

- ``server.py`` (``PromptServer``): ``GET /ws?clientId=`` (sends ``status`` with
  ``{"status": {"exec_info": {"queue_remaining": n}}, "sid": id}`` on connect),
  ``POST /prompt`` (``{"prompt", "client_id", "extra_data"}`` → ``{"prompt_id", "number",
  "node_errors"}``, or 400 ``{"error", "node_errors"}``), ``GET /history/{prompt_id}``,
  ``GET /view?filename=&subfolder=&type=``, ``POST /interrupt``, ``GET``/``POST /queue``
  (``{"delete": [ids]}``, ``{"clear": true}``), ``GET /system_stats`` (``system`` and
  ``devices`` with ``name``, ``type``, ``vram_total``, ``vram_free``...), ``GET /object_info``
  and ``/object_info/{node_class}`` (``input.required.ckpt_name`` lists the checkpoints);
  JSON messages are ``{"type": ..., "data": ...}``.
- ``execution.py`` (``PromptExecutor.execute``): ``execution_start`` and ``execution_cached``
  (``{"nodes", "prompt_id"}``), ``executing`` per node (``{"node", "prompt_id"}``), ``executed``
  (``{"node", "output", "prompt_id"}``), then ``execution_success``, or ``execution_error``
  (``node_id``, ``node_type``, ``exception_message``, ``exception_type``, ``traceback``...), or
  ``execution_interrupted`` (``node_id``, ``node_type``, ``executed``); the history entry's
  ``outputs`` and ``status`` (``status_str``, ``completed``, ``messages``).
- ``main.py`` (``prompt_worker``, ``hijack_progress``): one prompt at a time; ``progress``
  ``{"value", "max", "prompt_id", "node"}`` per sampler step; ``executing`` with ``node: null``
  once the prompt is done.

Stand-in rules: a ``KSampler`` node takes ``inputs.steps`` steps of ``--step-delay`` seconds
(checking for an interrupt between steps), a ``SaveImage`` node outputs one PNG, a node of class
``StandinFail`` raises. Anything else completes at once.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from tests.standins.common import App, Request, Response, WebSocket, json_response, main, png

CHECKPOINTS = ["sd_xl_base_1.0.safetensors", "v1-5-pruned-emaonly.safetensors"]


class ComfyUI:
    def __init__(self, step_delay: float) -> None:
        self.step_delay = step_delay
        self.sockets: dict[str, WebSocket] = {}
        self.pending: list[tuple[float, str, dict[str, Any], dict[str, Any]]] = []
        self.history: dict[str, Any] = {}
        self.files: dict[str, bytes] = {}
        self.running: str | None = None
        self.interrupted = False
        self.number = 0
        self.wake = asyncio.Event()

    async def send_preview(self, image: bytes, sid: str | None) -> None:
        """A preview image as ComfyUI sends it (``server.py`` ``send_image``): a binary frame of
        the event (1, PREVIEW_IMAGE), the image type (2, PNG) and the image, big-endian."""
        ws = self.sockets.get(sid) if sid else None
        if ws is not None:
            try:
                await ws.send_bytes((1).to_bytes(4, "big") + (2).to_bytes(4, "big") + image)
            except Exception:
                pass

    async def send(self, kind: str, data: dict[str, Any], sid: str | None) -> None:
        sockets = [self.sockets[sid]] if sid in self.sockets else ([] if sid else list(self.sockets.values()))
        for ws in sockets:
            try:
                await ws.send_json({"type": kind, "data": data})
            except Exception:
                pass

    def queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": len(self.pending) + (1 if self.running else 0)}}

    async def worker(self) -> None:
        while True:
            while not self.pending:
                self.wake.clear()
                await self.wake.wait()
            number, prompt_id, prompt, extra = self.pending.pop(0)
            self.running, self.interrupted = prompt_id, False
            try:
                await self.execute(number, prompt_id, prompt, extra)
            finally:
                self.running = None

    async def execute(
        self, number: float, prompt_id: str, prompt: dict[str, Any], extra: dict[str, Any]
    ) -> None:
        sid = extra.get("client_id")
        messages: list[Any] = []

        async def message(kind: str, data: dict[str, Any]) -> None:
            messages.append([kind, data])
            await self.send(kind, data, sid)

        await message("execution_start", {"prompt_id": prompt_id, "timestamp": int(time.time() * 1000)})
        await message(
            "execution_cached", {"nodes": [], "prompt_id": prompt_id, "timestamp": int(time.time() * 1000)}
        )
        outputs: dict[str, Any] = {}
        executed: list[str] = []
        status = "success"
        for node_id, node in prompt.items():
            kind = node.get("class_type")
            await self.send(
                "executing", {"node": node_id, "display_node": node_id, "prompt_id": prompt_id}, sid
            )
            if kind == "KSampler":
                steps = int(node.get("inputs", {}).get("steps", 20))
                for step in range(1, steps + 1):
                    await asyncio.sleep(self.step_delay)
                    if self.interrupted:
                        await message(
                            "execution_interrupted",
                            {
                                "prompt_id": prompt_id,
                                "node_id": node_id,
                                "node_type": kind,
                                "executed": executed,
                            },
                        )
                        status = "error"
                        break
                    await self.send(
                        "progress",
                        {"value": step, "max": steps, "prompt_id": prompt_id, "node": node_id},
                        sid,
                    )
                    await self.send_preview(b"\x89PNG preview %d" % step, sid)
            elif kind == "StandinFail":
                await message(
                    "execution_error",
                    {
                        "prompt_id": prompt_id,
                        "node_id": node_id,
                        "node_type": kind,
                        "executed": executed,
                        "exception_message": "the stand-in fails this node on purpose",
                        "exception_type": "RuntimeError",
                        "traceback": ["stand-in"],
                        "current_inputs": {},
                        "current_outputs": {},
                    },
                )
                status = "error"
            elif kind == "SaveImage":
                filename = f"ComfyUI_{len(self.files) + 1:05d}_.png"
                self.files[filename] = png(seed=len(self.files) + 1)
                output = {"images": [{"filename": filename, "subfolder": "", "type": "output"}]}
                outputs[node_id] = output
                await self.send(
                    "executed",
                    {"node": node_id, "display_node": node_id, "output": output, "prompt_id": prompt_id},
                    sid,
                )
            if status != "success":
                break
            executed.append(node_id)
        if status == "success":
            await message("execution_success", {"prompt_id": prompt_id, "timestamp": int(time.time() * 1000)})
        self.history[prompt_id] = {
            "prompt": [number, prompt_id, prompt, extra, list(outputs)],
            "outputs": outputs,
            "status": {"status_str": status, "completed": status == "success", "messages": messages},
            "meta": {},
        }
        await self.send("executing", {"node": None, "prompt_id": prompt_id}, sid)
        await self.send("status", {"status": self.queue_info()}, None)


def build(args: argparse.Namespace, app: App) -> None:
    comfy = ComfyUI(args.step_delay)
    started: list[asyncio.Task[None]] = []

    @app.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        if not started:
            started.append(asyncio.ensure_future(comfy.worker()))
        await socket.accept()
        sid = socket.query.get("clientId") or uuid.uuid4().hex
        comfy.sockets.pop(sid, None)
        comfy.sockets[sid] = socket
        await socket.send_json({"type": "status", "data": {"status": comfy.queue_info(), "sid": sid}})
        try:
            while await socket.receive() is not None:
                pass
        finally:
            if comfy.sockets.get(sid) is socket:
                del comfy.sockets[sid]

    @app.route("POST", "/prompt")
    async def post_prompt(request: Request) -> Response:
        if not started:
            started.append(asyncio.ensure_future(comfy.worker()))
        body = request.json()
        prompt = body.get("prompt") if isinstance(body, dict) else None
        if not isinstance(prompt, dict):
            return json_response({"error": "no prompt", "node_errors": []}, 400)
        bad = [k for k, v in prompt.items() if not isinstance(v, dict) or "class_type" not in v]
        if bad or not prompt:
            error = {
                "type": "invalid_prompt",
                "message": "Cannot execute because a node is missing the class_type property.",
                "details": f"Node ID '#{bad[0] if bad else ''}'",
                "extra_info": {},
            }
            return json_response({"error": error, "node_errors": {}}, 400)
        extra = dict(body.get("extra_data") or {})
        if "client_id" in body:
            extra["client_id"] = body["client_id"]
        prompt_id = str(uuid.uuid4())
        number = comfy.number
        comfy.number += 1
        comfy.pending.append((number, prompt_id, prompt, extra))
        comfy.wake.set()
        return json_response({"prompt_id": prompt_id, "number": number, "node_errors": {}})

    @app.route("GET", "/prompt")
    async def get_prompt(request: Request) -> Response:
        return json_response(comfy.queue_info())

    @app.route("GET", "/history/*")
    async def history(request: Request) -> Response:
        prompt_id = request.path.rsplit("/", 1)[1]
        return json_response({prompt_id: comfy.history[prompt_id]} if prompt_id in comfy.history else {})

    @app.route("GET", "/view")
    async def view(request: Request) -> Response:
        data = comfy.files.get(request.query.get("filename", ""))
        if data is None or request.query.get("type", "output") != "output":
            return Response(404)
        return Response(200, data, "image/png")

    @app.route("POST", "/interrupt")
    async def interrupt(request: Request) -> Response:
        body = request.json() if request.body else None
        wanted = body.get("prompt_id") if isinstance(body, dict) else None
        if comfy.running is not None and wanted in (None, comfy.running):
            comfy.interrupted = True
        return Response(200)

    @app.route("GET", "/queue")
    async def get_queue(request: Request) -> Response:
        pending = [[n, pid, p, e, []] for n, pid, p, e in comfy.pending]
        return json_response(
            {
                "queue_running": [[0, comfy.running, {}, {}, []]] if comfy.running else [],
                "queue_pending": pending,
            }
        )

    @app.route("POST", "/queue")
    async def post_queue(request: Request) -> Response:
        body = request.json() or {}
        if body.get("clear"):
            comfy.pending.clear()
        for prompt_id in body.get("delete", []):
            comfy.pending = [item for item in comfy.pending if item[1] != prompt_id]
        return Response(200)

    @app.route("GET", "/system_stats")
    async def system_stats(request: Request) -> Response:
        return json_response(
            {
                "system": {
                    "os": "posix",
                    "ram_total": 68719476736,
                    "ram_free": 34359738368,
                    "comfyui_version": "stand-in",
                    "python_version": "3.11",
                    "pytorch_version": "stand-in",
                    "embedded_python": False,
                    "argv": ["main.py"],
                },
                "devices": [
                    {
                        "name": "cuda:0 NVIDIA GeForce RTX 4090 : cudaMallocAsync",
                        "type": "cuda",
                        "index": 0,
                        "vram_total": 25757220864,
                        "vram_free": 24000000000,
                        "torch_vram_total": 0,
                        "torch_vram_free": 0,
                    }
                ],
            }
        )

    def object_info() -> dict[str, Any]:
        return {
            "CheckpointLoaderSimple": {
                "input": {
                    "required": {
                        "ckpt_name": [CHECKPOINTS, {"tooltip": "The name of the checkpoint (model) to load."}]
                    }
                },
                "input_order": {"required": ["ckpt_name"]},
                "output": ["MODEL", "CLIP", "VAE"],
                "output_is_list": [False, False, False],
                "output_name": ["MODEL", "CLIP", "VAE"],
                "name": "CheckpointLoaderSimple",
                "display_name": "Load Checkpoint",
                "description": "",
                "python_module": "nodes",
                "category": "loaders",
                "output_node": False,
            }
        }

    @app.route("GET", "/object_info")
    async def all_object_info(request: Request) -> Response:
        return json_response(object_info())

    @app.route("GET", "/object_info/*")
    async def one_object_info(request: Request) -> Response:
        node = request.path.rsplit("/", 1)[1]
        return json_response({k: v for k, v in object_info().items() if k == node})


def flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--step-delay", type=float, default=0.02)


if __name__ == "__main__":
    main(build, flags)
