"""Issue 12, the quick version of ``bench/chaos.py``'s runs (a) and (b): real hub and worker
processes, SIGKILLed while they work. Every acknowledged job completes, no stale result is
accepted, fencing tokens only grow (``make chaos`` runs the full sizes and (c), (d))."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.chaos import Options, run_a, run_b

QUICK = Options(
    jobs=300,
    workers=4,
    concurrency=4,
    job_seconds=0.1,
    worker_kills=5,
    min_kill_gap=0.2,
    hub_kills=3,
    b_jobs=300,
    b_kill_gap=0.8,
    timeout=60,
)


@pytest.mark.parametrize("durability", ["normal", "full"])
async def test_worker_sigkills_lose_nothing(tmp_path: Path, durability: str) -> None:
    result = await run_a(QUICK, durability, tmp_path)
    assert result["failed_checks"] == [], json.dumps(result, indent=1)
    assert result["reruns"] > 0, "the kills should have hit running jobs"


async def test_hub_sigkills_lose_nothing(tmp_path: Path) -> None:
    result = await run_b(QUICK, tmp_path)
    assert result["failed_checks"] == [], json.dumps(result, indent=1)
    assert result["hub_tracebacks"] == 0
