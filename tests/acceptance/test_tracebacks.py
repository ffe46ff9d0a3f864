"""A Python handler that raises: its traceback reaches the job (per attempt), `jobq status`,
REST and the worker's log, never with the payload."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import REPO, jobq_command, start_worker
from tests.http_helpers import start_http_hub

HANDLERS = REPO / "tests" / "handlers.py"
SECRET = "secret-payload-4711"


def jobq(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(jobq_command(*args), capture_output=True, timeout=60, text=True, env=env)


def raising_line() -> int:
    lines = HANDLERS.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if "the line a failure's traceback names" in line)


@pytest.mark.parametrize("door", ["zmq", "ws"])
def test_a_handler_traceback_reaches_status_rest_and_the_worker_log(tmp_path: Path, door: str) -> None:
    """Over the native protocol's ``fail`` and the WebSocket door's ``fail_job`` alike."""
    server = start_http_hub(tmp_path)
    worker = start_worker(
        tmp_path,
        server.endpoint if door == "zmq" else server.ws,
        service="missing",
        handler="tests.handlers:missing_key",
        name="tb-w",
    )
    try:
        hub = server.endpoint
        submitted = jobq("submit", "missing", SECRET, "--max-attempts", "2", "--backoff", "0", "--hub", hub)
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.strip()
        assert jobq("wait", job_id, "--hub", hub, "--timeout", "30").returncode == 1  # failed

        data = json.loads(jobq("status", job_id, "--json", "--hub", hub).stdout)
        where = f'File "{HANDLERS}", line {raising_line()}, in missing_key'
        assert data["state"] == "failed" and data["error"] == "KeyError: 'missing'"
        assert data["traceback"].startswith("Traceback (most recent call last):")
        assert where in data["traceback"] and data["traceback"].rstrip().endswith("KeyError: 'missing'")
        assert "jobq/worker" not in data["traceback"]  # the SDK's own frames are left out
        attempts = data["attempt_errors"]
        assert [(a["attempt"], a["worker"] is not None, a["error"]) for a in attempts] == [
            (1, True, "KeyError: 'missing'"),
            (2, True, "KeyError: 'missing'"),
        ]
        assert all(where in a["traceback"] for a in attempts) and attempts[0]["token"] < attempts[1]["token"]

        text = jobq("status", job_id, "--hub", hub).stdout
        error_at = text.index("KeyError: 'missing'")
        assert text.index("    Traceback (most recent call last):") > error_at  # indented, under it
        assert f"line {raising_line()}, in missing_key" in text

        with httpx.Client(base_url=server.url, timeout=20) as api:
            view = api.get(f"/api/jobs/{job_id}").json()
            assert view["traceback"] == data["traceback"] and len(view["attempt_errors"]) == 2
            listed = api.get("/api/jobs").json()["jobs"]
            assert [j for j in listed if "traceback" in j] == []  # the single-job view only

        deadline = time.monotonic() + 10
        while "attempt 2 of 2" not in worker.output() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = worker.output()
        first = next(line for line in log.splitlines() if "failed on attempt 1 of 2" in line)
        last = next(line for line in log.splitlines() if "failed on attempt 2 of 2" in line)
        assert "level=warning" in first and "(retryable)" in first
        assert "level=error" in last and "(retryable)" not in last
        assert log.count(where) == 2 and "Traceback (most recent call last):" in log
        assert SECRET not in log
    finally:
        worker.close()
        server.proc.close()
