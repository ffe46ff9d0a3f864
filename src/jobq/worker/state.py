"""What the worker runtime keeps per running attempt, and the figures it counts."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from jobq.core.model import Assignment
from jobq.worker.context import JobContext


@dataclass(slots=True)
class Running:
    assignment: Assignment
    ctx: JobContext
    task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class WorkerStats:
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    reconnects: int = 0
    started_at: float = field(default_factory=time.time)


__all__ = ["Running", "WorkerStats"]
