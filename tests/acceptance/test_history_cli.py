"""``jobq history`` (issue 15) against a real hub process and real workers: after a workload,
``--json`` sums to exactly the jobs it ran (in all and per service), the table has one row per
bucket with the counts, percentiles and depth, bad input is a usage error, and with ``--auth``
only admin and monitor tokens may read it (exit 7 for a client), over the native protocol."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from jobq import JobState, SyncClient
from jobq.core.history import MAX_MINUTES
from tests.helpers import REPO, Proc, jobq_command, start_hub, start_worker
from tests.integration.zmqauth import standard_tokens

ECHO, BOOM = 12, 5
#: The ``boom`` worker fails every job on purpose: it must not be drained for it.
KEEP = ["--auto-drain", "0"]


def jobq(*args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("JOBQ_TOKEN", None)
    if token is not None:
        env["JOBQ_TOKEN"] = token
    return subprocess.run(jobq_command(*args), capture_output=True, timeout=60, text=True, env=env)


def sums(body: dict[str, Any]) -> tuple[int, int, int]:
    points = body["points"]
    return (
        sum(p["submitted"] for p in points),
        sum(p["completed"] for p in points),
        sum(p["failed"] for p in points),
    )


def test_jobq_history_shows_what_a_workload_did(tmp_path: Path, procs: list[Proc]) -> None:
    hub, endpoint = start_hub(tmp_path, extra=KEEP)
    procs.append(hub)
    procs.append(start_worker(tmp_path, endpoint, service="echo", handler="echo"))
    procs.append(start_worker(tmp_path, endpoint, service="boom", handler="fail"))
    with SyncClient(endpoint) as client:
        ids = [client.submit("echo", b"hi") for _ in range(ECHO)]
        failing = [client.submit("boom", b"no", max_attempts=1) for _ in range(BOOM)]
        assert all(client.wait(i, 30).state is JobState.COMPLETED for i in ids)
        assert all(client.wait(i, 30).state is JobState.FAILED for i in failing)

    expected = {None: (ECHO + BOOM, ECHO, BOOM), "echo": (ECHO, ECHO, 0), "boom": (BOOM, 0, BOOM)}
    for service, counts in expected.items():
        args = ["history", "--minutes", "5", "--json", "--hub", endpoint]
        shown = jobq(*args, *(["--service", service] if service else []))
        assert shown.returncode == 0, shown.stderr
        body = json.loads(shown.stdout)
        assert body["bucket"] == 10 and body["service"] == service and len(body["points"]) == 30
        assert sums(body) == counts, (service, sums(body))
        assert set(body["services"]) >= {"echo", "boom"}

    table = jobq("history", "--minutes", "5", "--hub", endpoint)
    assert table.returncode == 0, table.stderr
    text = table.stdout
    assert "last 5 min, 10 s buckets, every service" in text
    for column in ("time", "submitted", "completed", "failed", "depth", "wait p50", "wait p95", "run p95"):
        assert column in text
    assert " ms" in text  # wait and run percentiles of the buckets where jobs ran
    rows = [line for line in text.splitlines() if line.startswith("│") and ":" in line.split("│")[1]]
    cells = [[cell.strip() for cell in row.strip("│").split("│")] for row in rows]
    assert sum(int(c[1]) for c in cells) == ECHO + BOOM
    assert sum(int(c[2]) for c in cells) == ECHO and sum(int(c[3]) for c in cells) == BOOM
    assert "buckets had nothing and are not shown" in text

    week = jobq("history", "--minutes", str(MAX_MINUTES), "--json", "--hub", endpoint)
    assert week.returncode == 0 and json.loads(week.stdout)["bucket"] == 60
    assert sums(json.loads(week.stdout)) == expected[None]

    for bad in ("0", str(MAX_MINUTES + 1), "ten"):
        refused = jobq("history", "--minutes", bad, "--hub", endpoint)
        assert refused.returncode == 2 and "--minutes" in refused.stderr and "Traceback" not in refused.stderr
    empty = jobq("history", "--service", "", "--hub", endpoint)
    assert empty.returncode == 2 and "service" in empty.stderr and "Traceback" not in empty.stderr


def test_jobq_history_is_for_admins_and_monitors(tmp_path: Path, procs: list[Proc]) -> None:
    tokens = standard_tokens(tmp_path)
    hub, endpoint = start_hub(tmp_path, extra=["--auth", str(tokens.path)])
    procs.append(hub)
    for name in ("admin", "monitor"):
        allowed = jobq("history", "--minutes", "1", "--json", "--hub", endpoint, token=tokens[name])
        assert allowed.returncode == 0, allowed.stderr
        assert json.loads(allowed.stdout)["bucket"] == 10
    refused = jobq("history", "--hub", endpoint, token=tokens["client-a"])
    assert refused.returncode == 7 and "history" in refused.stderr, refused.stderr
    nobody = jobq("history", "--hub", endpoint)
    assert nobody.returncode == 7, nobody.stderr
