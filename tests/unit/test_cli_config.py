"""Config files of `jobq hub` and `jobq worker` (--config, --print-config): keys, precedence
(flag > JOBQ_* > file > default), errors; and the pieces of the command that need no hub:
endpoint forms, payload previews, progress, the log formats."""

from __future__ import annotations

import json
import logging
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from jobq.cli import logs, render
from jobq.cli.main import cli
from jobq.client.reach import WORKER_SCHEMES, hub_endpoints
from jobq.core.model import Job
from jobq.core.states import JobState
from jobq.errors import InvalidRequest
from tests.helpers import REPO


def effective(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    result = CliRunner().invoke(cli, [*args, "--print-config"], env=env or {}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return tomllib.loads(result.stdout)


def test_a_file_sets_every_flag_and_the_environment_and_flags_override_it(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text(
        "[hub]\n"
        'store = "memory://"\n'
        "heartbeat = 2.0\n"
        "lease_ttl = 12\n"  # underscores work too
        'zmq = "tcp://127.0.0.1:6000"\n'  # one value for a repeatable option
        "customer-weight = { acme = 3 }\n"
        "insecure = true\n"
    )
    from_file = effective(["hub", "--config", str(path)])["hub"]
    assert from_file["store"] == "memory://" and from_file["heartbeat"] == 2.0
    assert from_file["lease-ttl"] == 12.0 and from_file["zmq"] == ["tcp://127.0.0.1:6000"]
    assert from_file["customer-weight"] == ["acme=3"] and from_file["insecure"] is True
    assert from_file["liveness"] == 5  # not in the file: the default
    env = {"JOBQ_HEARTBEAT": "3", "JOBQ_HUB_CONFIG": str(path)}
    assert effective(["hub"], env)["hub"]["heartbeat"] == 3.0  # the file from JOBQ_HUB_CONFIG
    assert effective(["hub", "--heartbeat", "4"], env)["hub"]["heartbeat"] == 4.0
    # What was printed reads back as the same settings.
    printed = tmp_path / "printed.toml"
    result = CliRunner().invoke(cli, ["hub", "--config", str(path), "--print-config"], env={})
    printed.write_text(result.stdout)
    assert effective(["hub", "--config", str(printed)]) == effective(["hub", "--config", str(path)])


def test_print_config_says_where_each_value_came_from_and_hides_the_token(tmp_path: Path) -> None:
    path = tmp_path / "worker.toml"
    path.write_text('[worker]\nservice = ["echo"]\nconcurrency = 4\n')
    result = CliRunner().invoke(
        cli,
        ["worker", "--config", str(path), "--prefetch", "2", "--token", "s3cret", "--print-config"],
        env={"JOBQ_GRACE": "5"},
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"concurrency = 4  # {path}" in lines
    assert "prefetch = 2  # command line" in lines
    assert "grace = 5.0  # environment (JOBQ_GRACE)" in lines
    assert "s3cret" not in result.stdout and "# token = (set, not shown)  # command line" in lines


def test_unknown_keys_and_bad_values_are_refused_with_the_key(tmp_path: Path) -> None:
    path = tmp_path / "hub.toml"
    path.write_text("lease-tll = 3\n")
    result = CliRunner().invoke(cli, ["hub", "--config", str(path)], env={})
    assert result.exit_code == 2 and "unknown key 'lease-tll' (did you mean 'lease-ttl'?)" in result.output
    path.write_text('heartbeat = "often"\n')
    result = CliRunner().invoke(cli, ["hub", "--config", str(path)], env={})
    assert result.exit_code == 2 and "heartbeat" in result.output
    path.write_text("heartbeat = [\n")
    result = CliRunner().invoke(cli, ["hub", "--config", str(path)], env={})
    assert result.exit_code == 2 and "not valid TOML" in result.output


def test_a_worker_file_with_connector_services_prints_them_too() -> None:
    example = REPO / "examples" / "worker-http.toml"
    settings = effective(["worker", "--config", str(example)])
    assert settings["worker"]["hub"] == "tcp://127.0.0.1:5555"
    assert settings["worker"]["health-interval"] == 5.0
    assert settings["services"]["resize"]["connector"] == "http"


def test_hub_endpoints_take_host_port_and_refuse_what_no_client_can_use() -> None:
    assert hub_endpoints("127.0.0.1:5555") == ["tcp://127.0.0.1:5555"]
    assert hub_endpoints("a:1, tcp://b:2,ipc:///x") == ["tcp://a:1", "tcp://b:2", "ipc:///x"]
    assert hub_endpoints("ws://h:8080", WORKER_SCHEMES) == ["ws://h:8080"]
    for bad in ("localhost", "tcp://h", "ws://h:8080", "tcp://h:port", ""):
        with pytest.raises(InvalidRequest, match="tcp://HOST:PORT"):
            hub_endpoints(bad)


def job(**fields: Any) -> Job:
    return Job(
        **{"id": 1, "service": "s", "state": JobState.RUNNING, "seq": 1, "submitted_at": 0.0, **fields}
    )


def test_payload_previews_are_bounded_and_printable() -> None:
    assert render.preview([b"hello"]) == "hello"
    assert render.preview([b"a\nb\x1b[31m"]) == "a\\nb\\x1b[31m"
    assert render.preview([b"x" * 100], 10) == "x" * 9 + "…"
    assert render.preview([b"\xff\xfe\x00binary"]) == "<9 bytes>"
    assert render.preview([b"caf\xc3\xa9" * 50], 8) == "cafécaf…"  # cut inside a character


def test_progress_of_a_finished_job_is_not_the_last_message() -> None:
    running = job(progress=50.0, progress_message="halfway")
    assert render._progress(running) == "50% halfway"
    done = job(state=JobState.COMPLETED, progress=100.0, progress_message="halfway")
    assert render._progress(done) == "100%"
    failed = job(state=JobState.FAILED, progress=50.0, progress_message="halfway")
    assert render._progress(failed) == "stopped at 50% halfway"
    assert render._progress(job()) is None


def record(msg: str, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise KeyError("missing")
        except KeyError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("jobq.hub", logging.WARNING, __file__, 1, msg, (), exc_info)


def test_the_two_log_formats() -> None:
    line = logs.LogfmtFormatter().format(record('job 3 "x" = y'))
    assert line.split(" ", 1)[1] == 'level=warning logger=jobq.hub msg="job 3 \\"x\\" = y"'
    assert logs.LogfmtFormatter().format(record("ready")).endswith("msg=ready")
    with_traceback = logs.LogfmtFormatter().format(record("failed", exc=True))
    assert with_traceback.splitlines()[1] == "Traceback (most recent call last):"
    data = json.loads(logs.JsonFormatter().format(record("failed", exc=True)))
    assert data["level"] == "warning" and data["logger"] == "jobq.hub" and data["msg"] == "failed"
    assert "KeyError: 'missing'" in data["traceback"] and data["time"]


async def test_a_worker_is_found_by_name_id_or_id_prefix() -> None:
    from jobq.client.listing import merged, worker_ids
    from jobq.core.model import WorkerInfo
    from jobq.errors import Forbidden

    seen = [
        WorkerInfo(id="worker-a-1-aa", services=["x"], name="worker-a"),
        WorkerInfo(id="worker-a-2-bb", services=["x"], name="worker-a"),
        WorkerInfo(id="worker-b-3-cc", services=["x"], name="worker-b"),
    ]

    async def workers() -> list[WorkerInfo]:
        return seen

    async def refused() -> list[WorkerInfo]:
        raise Forbidden("not allowed")

    assert await worker_ids("worker-a", workers) == ["worker-a-1-aa", "worker-a-2-bb"]
    assert await worker_ids("worker-b-3-cc", workers) == ["worker-b-3-cc"]
    assert await worker_ids("worker-b-3", workers) == ["worker-b-3-cc"]
    assert await worker_ids("gone-9-dd", workers) == ["gone-9-dd"]
    assert await worker_ids("worker-a", refused) == ["worker-a"]
    assert await worker_ids(None, workers) == [None]
    pages = [[job(id=5), job(id=2)], [job(id=4), job(id=1)]]
    assert [j.id for j in merged(pages, limit=2, offset=1)] == [4, 2]
