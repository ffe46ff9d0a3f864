"""``simulation``: a service that is not there, for demos, load tests and dashboards without a GPU.

Each job takes ``duration`` seconds in ``steps`` progress steps, fails with probability
``failure_rate`` (retryably), hangs until cancelled with probability ``hang_rate``, and returns
``result_size`` bytes. A JSON object payload may override ``duration``, ``steps``,
``result_size`` and force ``fail`` or ``hang`` for that job. Health is ``ok`` unless
``down_file`` names a file that exists (its first line is the reason): create it to watch the
worker stop taking the service's jobs, remove it to watch them come back.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

from jobq.worker.connectors.base import Connector, Health, Option
from jobq.worker.context import HandlerError, JobContext


def _read_reason(path: Path) -> str | None:
    try:
        lines = path.read_text().strip().splitlines()
    except FileNotFoundError:
        return None
    return lines[0] if lines else ""


class SimulationConnector(Connector):
    kind = "simulation"
    options = {
        "duration": Option(float, 1.0, "seconds a job takes", minimum=0),
        "steps": Option(int, 10, "progress reports per job", minimum=1),
        "failure_rate": Option(float, 0.0, "probability a job fails (retryably)", minimum=0),
        "hang_rate": Option(float, 0.0, "probability a job hangs until cancelled", minimum=0),
        "result_size": Option(int, 64, "bytes of each result", minimum=0),
        "seed": Option(int, -1, "random seed (-1: not seeded)"),
        "down_file": Option(str, "", "while this file exists the service counts as down"),
    }

    def __init__(self, service: str, options: dict[str, Any]) -> None:
        super().__init__(service, options)
        seed = self.config["seed"]
        self._random = random.Random(None if seed < 0 else seed)

    async def health(self) -> Health:
        down = self.config["down_file"]
        if down:
            reason = await asyncio.to_thread(_read_reason, Path(down))
            if reason is not None:
                return Health.down(reason or "down (simulated)")
        return Health.up({f"simulation.{self.service}": True})

    def _plan(self, ctx: JobContext) -> dict[str, Any]:
        plan: dict[str, Any] = {
            "duration": self.config["duration"],
            "steps": self.config["steps"],
            "result_size": self.config["result_size"],
            "fail": self._random.random() < self.config["failure_rate"],
            "hang": self._random.random() < self.config["hang_rate"],
        }
        try:
            override = json.loads(ctx.payload) if ctx.payload[:1] == b"{" else {}
        except ValueError:
            override = {}
        if isinstance(override, dict):
            plan.update({k: v for k, v in override.items() if k in plan})
        return plan

    async def run(self, ctx: JobContext) -> bytes:
        plan = self._plan(ctx)
        steps = max(1, int(plan["steps"]))
        pause = float(plan["duration"]) / steps
        for step in range(1, steps + 1):
            await ctx.sleep(pause)
            if plan["fail"] and step > steps // 2:
                raise HandlerError(f"simulated failure at step {step} of {steps}")
            ctx.progress(100.0 * step / steps, f"step {step}/{steps}")
        while plan["hang"]:
            await ctx.sleep(3600)
        size = int(plan["result_size"])
        stamp = f"job {ctx.id} attempt {ctx.attempt} ".encode()
        return (stamp * (size // len(stamp) + 1))[:size]

    async def cancel(self, ctx: JobContext) -> None:
        await asyncio.sleep(0)  # nothing to tell: ctx.sleep sees the cancellation
