"""The `jobq` command's rough edges, each as a new user met it (issue 15): bad input, no hub,
payloads in listings, environment twins, waiting for a job nobody can run, handlers from the
current folder, workers by name, Ctrl-C, tables, --backoff/--run-at, config files, log format."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Proc, free_port, jobq_command, start_hub, start_worker, wait_for_hub

#: The installed console script: unlike ``python -m``, it does not put the current folder on sys.path.
JOBQ_SCRIPT = Path(sys.executable).parent / "jobq"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[str]:
    proc, endpoint = start_hub(tmp_path)
    yield endpoint
    proc.close()


def jobq(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        jobq_command(*args), capture_output=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


def submit_json(hub: str, *args: str) -> dict[str, object]:
    out = jobq("submit", *args, "--json", "--hub", hub)
    assert out.returncode == 0, out.stderr
    value: dict[str, object] = json.loads(out.stdout)
    return value


def status(hub: str, job_id: object) -> dict[str, object]:
    value: dict[str, object] = json.loads(jobq("status", str(job_id), "--json", "--hub", hub).stdout)
    return value


def test_an_unreadable_payload_file_is_bad_input_said_in_one_line(hub: str) -> None:
    out = jobq("submit", "echo", "@nope.json", "--hub", hub)
    assert out.returncode == 2
    assert b"Traceback" not in out.stderr
    assert out.stderr.strip() == b"jobq: cannot read the payload file 'nope.json': No such file or directory"


def test_no_hub_fails_at_once_and_says_what_to_do() -> None:
    port = free_port()
    started = time.monotonic()
    out = jobq("stats", "--hub", f"127.0.0.1:{port}")  # no tcp://: taken as tcp://127.0.0.1:PORT
    assert out.returncode == 3
    assert time.monotonic() - started < 5  # not the 10 s connect timeout
    err = out.stderr.decode()
    assert f"nothing listens at tcp://127.0.0.1:{port}" in err
    assert "jobq hub" in err and "make run" in err and "JOBQ_HUB" in err and "--hub" in err
    bad = jobq("stats", "--hub", "localhost")
    assert bad.returncode == 2 and b"use tcp://HOST:PORT" in bad.stderr


def test_a_hub_address_without_the_scheme_works(hub: str) -> None:
    out = jobq("stats", "--json", "--hub", hub.removeprefix("tcp://"))
    assert out.returncode == 0, out.stderr
    assert "jobs" in json.loads(out.stdout)


def test_listings_show_payloads_and_status_json_has_the_payload(hub: str) -> None:
    job = submit_json(hub, "nobody", "hello payload")
    assert status(hub, job["id"])["payload"] == "hello payload"
    table = jobq("jobs", "--hub", hub)
    assert b"hello payload" in table.stdout
    listed = [json.loads(line) for line in jobq("jobs", "--json", "--hub", hub).stdout.splitlines()]
    assert [row["payload"] for row in listed] == ["hello payload"]


def test_the_environment_never_narrows_a_listing_and_each_timeout_has_its_own_variable(hub: str) -> None:
    job = submit_json(hub, "nobody", "x")
    listed = jobq("jobs", "--json", "--hub", hub, env={"JOBQ_SERVICE": "echo", "JOBQ_STATE": "failed"})
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [job["id"]]
    assert "JOBQ_JOB_TIMEOUT" in jobq("submit", "--help").stdout.decode()
    assert "JOBQ_WAIT_TIMEOUT" in jobq("wait", "--help").stdout.decode()
    # The run-time limit of a job is not how long `jobq wait` waits, and the other way round.
    started = time.monotonic()
    waited = jobq(
        "wait", str(job["id"]), "--hub", hub, env={"JOBQ_WAIT_TIMEOUT": "0.5", "JOBQ_TIMEOUT": "99"}
    )
    assert waited.returncode == 5 and time.monotonic() - started < 8
    timed = jobq("submit", "nobody", "z", "--json", "--hub", hub, env={"JOBQ_JOB_TIMEOUT": "7"})
    assert status(hub, json.loads(timed.stdout)["id"])["timeout"] == 7


def test_submit_wait_for_a_job_nobody_can_run_prints_the_id_then_why(hub: str) -> None:
    with subprocess.Popen(
        jobq_command("submit", "nobody", "hi", "--wait", "--wait-timeout", "6", "--hub", hub),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        try:
            assert proc.stderr is not None
            first = proc.stderr.readline().decode()
            assert first.startswith("job ") and " queued" in first
            job_id = first.split()[1]
            seen = time.monotonic()
            second = proc.stderr.readline().decode()
            assert time.monotonic() - seen < 2.5  # within about a second of the submit
            assert second.strip() == (
                f"job {job_id} cannot run yet: no connected worker serves nobody (still waiting)"
            )
            assert proc.wait(15) == 5  # it kept waiting, until --wait-timeout
        finally:
            proc.kill()


def test_submit_wait_for_one_job_prints_its_result_with_a_newline(hub: str, tmp_path: Path) -> None:
    worker = start_worker(tmp_path, hub)
    try:
        out = jobq("submit", "echo", "hello", "--wait", "--hub", hub)
        assert out.returncode == 0, out.stderr
        assert out.stdout == b"hello\n"
        lines = out.stderr.decode().splitlines()
        assert lines[0].startswith("job ") and lines[-1].endswith("completed in " + lines[-1].split()[-1])
        job_id = lines[0].split()[1]
        assert jobq("result", job_id, "--hub", hub).stdout == b"hello"  # the exact bytes
    finally:
        worker.close()


def test_a_handler_module_in_the_current_folder_and_jobs_by_worker_name(hub: str, tmp_path: Path) -> None:
    (tmp_path / "tasks.py").write_text("def shout(payload):\n    return payload.upper()\n")
    assert JOBQ_SCRIPT.exists()
    worker = Proc(
        [
            str(JOBQ_SCRIPT),
            "worker",
            "--hub",
            hub,
            "--service",
            "shout",
            "--handler",
            "tasks:shout",
            "--name",
            "worker-a",
        ],
        tmp_path / "worker-a.log",
    )
    try:
        out = jobq("submit", "shout", "hi", "--wait", "--wait-timeout", "20", "--hub", hub)
        assert out.returncode == 0, worker.output()
        assert out.stdout == b"HI\n"
        mine = [
            json.loads(line)
            for line in jobq("jobs", "--worker", "worker-a", "--json", "--hub", hub).stdout.splitlines()
        ]
        assert len(mine) == 1 and mine[0]["worker"].startswith("worker-a-")
        assert b"worker-a-" in jobq("jobs", "--worker", "worker-a", "--hub", hub).stdout
        assert jobq("jobs", "--worker", "worker-b", "--json", "--hub", hub).stdout == b""
    finally:
        worker.close()


def test_a_second_ctrl_c_stops_a_worker_at_once(hub: str, tmp_path: Path) -> None:
    worker = start_worker(
        tmp_path, hub, service="slow", handler="sleep", concurrency=1, extra=["--grace", "60"]
    )
    try:
        job = submit_json(hub, "slow", "60")
        deadline = time.monotonic() + 20
        while status(hub, job["id"])["state"] != "running":
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.1)
        worker.popen.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert worker.alive()  # the first drains: the running job may finish within --grace
        worker.popen.send_signal(signal.SIGINT)
        assert worker.popen.wait(5) == 128 + signal.SIGINT
        assert "again to stop now" in worker.output()
        deadline = time.monotonic() + 20
        while status(hub, job["id"])["state"] == "running":  # given up: back to the queue
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        worker.close()


def test_tables_are_whole_when_piped_with_errors_and_a_footer(hub: str, tmp_path: Path) -> None:
    service = "a-service-name-long-enough-to-push-the-table-past-eighty-columns"
    for i in range(3):
        submit_json(hub, service, f"payload {i}")
    listed = jobq("jobs", "--limit", "2", "--hub", hub).stdout.decode()
    assert service in listed and "payload 2" in listed and "payload 0" not in listed
    assert max(len(line) for line in listed.splitlines()) > 80
    assert "1-2 of 3 shown" in listed
    worker = start_worker(tmp_path, hub, service="boom", handler="fail")
    try:
        out = jobq(
            "submit",
            "boom",
            "it broke",
            "--max-attempts",
            "1",
            "--wait",
            "--wait-timeout",
            "20",
            "--hub",
            hub,
        )
        assert out.returncode == 1
        failed = jobq("jobs", "--state", "failed", "--hub", hub).stdout.decode()
        assert "error" in failed.splitlines()[1] and "fail handler: it broke" in failed
    finally:
        worker.close()


def test_backoff_and_run_at(hub: str) -> None:
    when = datetime.datetime.now() + datetime.timedelta(hours=1)
    job = submit_json(hub, "nobody", "x", "--backoff", "2.5", "--run-at", when.isoformat(timespec="seconds"))
    data = status(hub, job["id"])
    assert data["backoff"] == 2.5 and data["state"] == "scheduled"
    assert abs(float(str(data["run_at"])) - when.timestamp()) < 1.5
    bad = jobq("submit", "nobody", "x", "--run-at", "tomorrow", "--hub", hub)
    assert bad.returncode == 2 and b"ISO 8601" in bad.stderr


def test_hub_and_worker_from_config_files_with_json_logs(tmp_path: Path, procs: list[Proc]) -> None:
    port = free_port()
    (tmp_path / "hub.toml").write_text(
        f'[hub]\nstore = "memory://"\nzmq = ["tcp://127.0.0.1:{port}"]\nline = "off"\nhttp = "off"\n'
        'name = "from-file"\nlog-format = "json"\n'
    )
    (tmp_path / "worker.toml").write_text(
        f'[worker]\nhub = "127.0.0.1:{port}"\nservice = ["echo", "copy"]\nhandler = "echo"\n'
        'name = "configured"\nconcurrency = 2\n[worker.capabilities]\n"location.region" = "eu"\n'
    )
    procs.append(Proc(jobq_command("hub", "--config", "hub.toml"), tmp_path / "hub.log"))
    procs.append(Proc(jobq_command("worker", "--config", "worker.toml"), tmp_path / "worker.log"))
    endpoint = f"tcp://127.0.0.1:{port}"
    wait_for_hub(endpoint, procs[0])
    out = jobq("submit", "copy", "via files", "--wait", "--wait-timeout", "30", "--hub", endpoint)
    assert out.returncode == 0, procs[0].output() + procs[1].output()
    assert out.stdout == b"via files\n"
    (info,) = [json.loads(line) for line in jobq("workers", "--json", "--hub", endpoint).stdout.splitlines()]
    assert (
        info["name"] == "configured"
        and info["slots"] == 2
        and info["capabilities"]["location.region"] == "eu"
    )
    first = json.loads(procs[0].output().splitlines()[0])
    assert set(first) >= {"time", "level", "logger", "msg"}
    assert "from-file" in procs[0].output()
