"""The `jobq` command as a user and an acceptance script use it."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Proc, free_port, jobq_command, start_hub, start_worker


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[str]:
    proc, endpoint = start_hub(tmp_path)
    yield endpoint
    proc.close()


def jobq(
    *args: str, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        jobq_command(*args), capture_output=True, timeout=60, input=stdin, env={**os.environ, **(env or {})}
    )


def test_submit_status_result_without_a_worker_then_with_one(hub: str, tmp_path: Path) -> None:
    out = jobq("submit", "echo", "hello", env={"JOBQ_HUB": hub})
    assert out.returncode == 0, out.stderr
    job_id = int(out.stdout)
    status = jobq("status", str(job_id), "--json", "--hub", hub)
    data = json.loads(status.stdout)
    assert data["id"] == job_id and data["state"] == "queued" and data["attempts"] == 0
    pending = jobq("result", str(job_id), "--hub", hub)
    assert pending.returncode != 0 and b"queued" in pending.stderr
    worker: Proc = start_worker(tmp_path, hub)
    try:
        assert jobq("wait", str(job_id), "--hub", hub, "--timeout", "30").returncode == 0
        result = jobq("result", str(job_id), "--hub", hub)
        assert result.returncode == 0 and result.stdout == b"hello"
        many = jobq("submit", "echo", "job {i}", "--count", "5", "--json", "--wait", "--hub", hub)
        lines = [json.loads(line) for line in many.stdout.splitlines()]
        assert many.returncode == 0
        assert sorted(line["result"] for line in lines) == [f"job {i}" for i in range(5)]
        assert all(line["state"] == "completed" and "id" in line for line in lines)
        summary = jobq("submit", "echo", "x", "--count", "20", "--wait", "--hub", hub)
        assert (
            summary.returncode == 0 and b"20 jobs in" in summary.stderr and b"20 completed" in summary.stderr
        )
        stats = json.loads(jobq("stats", "--json", "--hub", hub).stdout)
        assert stats["jobs"]["by_state"]["completed"] == 26
        workers = jobq("workers", "--json", "--hub", hub).stdout.splitlines()
        assert len(workers) == 1 and json.loads(workers[0])["services"] == ["echo"]
        services = jobq("services", "--json", "--hub", hub).stdout.splitlines()
        assert json.loads(services[0])["name"] == "echo"
    finally:
        worker.close()


def test_json_submit_count_substitutes_the_index(hub: str) -> None:
    out = jobq("submit", "nobody", "item-{i}", "--count", "3", "--json", "--priority", "4", "--hub", hub)
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["state"] for r in rows] == ["queued"] * 3
    payloads = [json.loads(jobq("status", str(r["id"]), "--json", "--hub", hub).stdout) for r in rows]
    assert [p["priority"] for p in payloads] == [4, 4, 4]
    listed = jobq("jobs", "--state", "queued", "--json", "--hub", hub).stdout.splitlines()
    assert sorted(json.loads(line)["id"] for line in listed) == sorted(r["id"] for r in rows)


def test_cancel_and_its_exit_codes(hub: str) -> None:
    job_id = jobq("submit", "nobody", "x", "--hub", hub).stdout.strip().decode()
    assert jobq("cancel", job_id, "--hub", hub).returncode == 0
    again = jobq("cancel", job_id, "--hub", hub)
    assert again.returncode == 6 and b"already ended cancelled" in again.stderr
    missing = jobq("status", "99999", "--hub", hub)
    assert missing.returncode == 4 and b"no job 99999" in missing.stderr
    assert jobq("wait", job_id, "--hub", hub).returncode == 1


def test_bad_input_is_explained(hub: str) -> None:
    bad = jobq("submit", "echo", "x", "--requires", "novalue", "--hub", hub)
    assert bad.returncode == 2 and b"KEY=VALUE" in bad.stderr
    strict = jobq("submit", "echo", "x", "--isolation", "strict", "--hub", hub)
    assert strict.returncode == 2 and b"needs a customer_id" in strict.stderr


def test_unreachable_hub_fails_fast_with_a_message() -> None:
    out = jobq("status", "1", "--hub", f"tcp://127.0.0.1:{free_port()}", "--connect-timeout", "0.5")
    assert out.returncode == 3 and b"nothing listens at" in out.stderr and b"JOBQ_HUB" in out.stderr


def test_a_hub_that_does_not_answer_times_out_with_a_hint() -> None:
    import socket

    with socket.socket() as silent:  # accepts connections, never speaks ZeroMQ
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        out = jobq("status", "1", "--hub", f"tcp://127.0.0.1:{port}", "--connect-timeout", "0.5")
    assert out.returncode == 3 and b"no answer from the hub" in out.stderr and b"jobq hub" in out.stderr


def test_every_flag_shows_its_environment_twin() -> None:
    for command in ("hub", "worker", "submit"):
        text = jobq(command, "--help").stdout.decode()
        assert "JOBQ_HUB" in text or command == "hub"
        assert "env var:" in text


def test_payload_from_stdin(hub: str) -> None:
    out = jobq("submit", "nobody", "-", "--json", "--hub", hub, stdin=b"\x00binary\xff")
    job_id = json.loads(out.stdout)["id"]
    status = json.loads(jobq("status", str(job_id), "--json", "--hub", hub).stdout)
    assert status["state"] == "queued"


def test_every_client_command_and_the_worker_take_a_token() -> None:
    commands = ("submit", "status", "wait", "result", "cancel", "retry", "jobs", "explain")
    for command in (*commands, "workers", "services", "stats", "worker", "autocall"):
        text = jobq(command, "--help").stdout.decode()
        assert "--token" in text and "JOBQ_TOKEN" in text, command
