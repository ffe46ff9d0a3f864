"""Every job's timeline, as a user sees it with no dashboard open: a real hub and worker, the job
failing its first attempt and completing its second, and a cancelled job, over REST
(``/api/jobs/{id}/events``), ``jobq status`` (``--json`` and text), on every store."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import REPO, jobq_command, start_worker
from tests.http_helpers import start_http_hub
from tests.redis_helpers import Namespace, require_redis


def jobq(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(jobq_command(*args), capture_output=True, timeout=60, text=True, env=env)


def brief(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(event, status, attempt, worker name) of each event (a worker id is its name, pid, ...)."""
    return [
        (e["event"], e["status"], e.get("attempt", 0), (e.get("worker_id") or "").split("-")[0])
        for e in events
    ]


@pytest.mark.parametrize("store", ["memory", "sqlite", "redis"])
def test_a_retried_job_and_a_cancelled_one_tell_their_whole_life(tmp_path: Path, store: str) -> None:
    namespace = None
    url = {"memory": "memory://", "sqlite": f"sqlite:///{tmp_path / 'jobq.db'}"}.get(store)
    if store == "redis":
        require_redis()
        namespace = Namespace()
        url = namespace.url
    assert url is not None
    server = start_http_hub(tmp_path, extra=["--store", url])
    worker = start_worker(
        tmp_path, server.endpoint, service="flaky", handler="tests.handlers:flaky", name="tlw"
    )
    try:
        hub = server.endpoint
        submitted = jobq("submit", "flaky", "hello", "--max-attempts", "3", "--backoff", "0", "--hub", hub)
        assert submitted.returncode == 0, submitted.stderr
        job_id = submitted.stdout.strip()
        waited = jobq("wait", job_id, "--hub", hub, "--timeout", "30")
        assert waited.returncode == 0, waited.stdout + waited.stderr + worker.output()
        nobody = jobq("submit", "nobody-serves-this", "x", "--hub", hub)
        other_id = nobody.stdout.strip()
        assert jobq("cancel", other_id, "--hub", hub).returncode == 0

        with httpx.Client(base_url=server.url, timeout=20) as api:
            history = api.get(f"/api/jobs/{job_id}/events").json()
            cancelled = api.get(f"/api/jobs/{other_id}/events").json()
            missing = api.get("/api/jobs/999999/events")
        assert history["recorded"] is True and history["job_id"] == int(job_id)
        events = history["events"]
        assert brief(events) == [
            ("submitted", "queued", 0, ""),
            ("started", "running", 1, "tlw"),
            ("retrying", "scheduled", 1, "tlw"),
            ("started", "running", 2, "tlw"),
            ("completed", "completed", 2, "tlw"),
        ]
        retrying = events[2]
        assert "first attempt fails" in retrying["error"] and retrying["run_at"] >= retrying["at"]
        assert [e["at"] for e in events] == sorted(e["at"] for e in events)
        assert brief(cancelled["events"]) == [
            ("submitted", "queued", 0, ""),
            ("cancelled", "cancelled", 0, ""),
        ]
        assert missing.status_code == 404

        data = json.loads(jobq("status", job_id, "--json", "--hub", hub).stdout)
        kinds = [(m["kind"], m["attempt"], (m["worker"] or "").split("-")[0]) for m in data["timeline"]]
        assert kinds == [(e[0], e[2], e[3]) for e in brief(events)]
        assert data["timeline"][2]["detail"] == retrying["error"]
        text = jobq("status", job_id, "--hub", hub).stdout
        assert "retrying #1 on tlw-" in text and "completed #2 on tlw-" in text
    finally:
        worker.close()
        server.proc.close()
        if namespace is not None:
            namespace.cleanup()
