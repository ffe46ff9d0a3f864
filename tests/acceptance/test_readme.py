"""The README's Python example, run exactly as written, and the SDK behaviour it relies on: the
``Worker`` advertises the machine's hardware, and a wait for a job nobody can run says why."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobq import Client, Worker
from jobq.doors.zmq.router import ZmqRouter
from jobq.errors import Timeout
from jobq.worker.capabilities import Exactly
from tests.helpers import REPO, running_hub, start_hub


def readme_python_example() -> str:
    """The first ```python block after the README's "From Python" heading, as written."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("### From Python") :]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "the README has no Python example under 'From Python'"
    return found.group(1)


def test_the_readme_python_example_runs_as_written(tmp_path: Path) -> None:
    hub, endpoint = start_hub(tmp_path)
    try:
        script = tmp_path / "example.py"
        script.write_text(readme_python_example())
        started = time.monotonic()
        out = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            timeout=60,
            cwd=tmp_path,
            env={**os.environ, "JOBQ_HUB": endpoint},
        )
        assert out.returncode == 0, out.stderr.decode()
        assert out.stdout == b"b'cba'\n"
        assert time.monotonic() - started < 20
    finally:
        hub.close()


async def test_the_sdk_worker_advertises_the_detected_hardware_unless_told_exactly() -> None:
    async with running_hub(heartbeat=0.2) as server:
        endpoint = server.door(ZmqRouter).endpoints[0]
        detected = Worker(endpoint, name="detected", capabilities={"location.region": "eu"})
        exact = Worker(endpoint, name="exact", capabilities=Exactly({"os": "linux"}))
        tasks = []
        for w in (detected, exact):
            w.register("echo", lambda payload: payload)
            tasks.append(asyncio.create_task(w.run()))
            await w.wait_connected()
        try:
            async with Client(endpoint) as client:
                caps = {w.name: w.capabilities for w in await client.workers()}
        finally:
            for w in (detected, exact):
                w.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert caps["detected"]["hardware.cpu_cores"] == os.cpu_count()
    assert caps["detected"]["hardware.ram_gb"] > 0
    assert caps["detected"]["location.region"] == "eu"
    assert caps["exact"] == {"os": "linux"}


async def test_a_wait_for_a_job_nobody_can_run_says_why_within_a_second_and_goes_on() -> None:
    async with running_hub() as server:
        endpoint = server.door(ZmqRouter).endpoints[0]
        said: list[tuple[float, int, str]] = []
        async with Client(endpoint) as client:
            client.on_blocked = lambda job_id, reason: said.append((time.monotonic(), job_id, reason))
            job_id = await client.submit("nobody", b"x")
            started = time.monotonic()
            with pytest.raises(Timeout):
                await client.wait(job_id, timeout=2.0)  # it kept waiting after being told
            assert time.monotonic() - started >= 1.9
    assert [(i, reason) for _, i, reason in said] == [(job_id, "no connected worker serves nobody")]
    assert said[0][0] - started < 1.6


async def test_by_default_a_blocked_wait_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    async with running_hub() as server:
        endpoint = server.door(ZmqRouter).endpoints[0]
        async with Client(endpoint) as client:
            job_id = await client.submit("gpu", b"x", requires={"hardware.gpu_memory_gb": 80})
            with caplog.at_level(logging.WARNING, "jobq.client"), pytest.raises(Timeout):
                await client.result(job_id, timeout=1.5)
    assert f"job {job_id} cannot run yet: no connected worker serves gpu" in caplog.text
