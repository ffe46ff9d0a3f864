"""The security contract of the `jobq` command, as an acceptance script uses it: tokens made and
revoked with `jobq token`, a hub with `--auth`, exit code 7 for a refused call, and a hub that
will not listen beyond loopback without authentication."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq.auth

from tests.helpers import DOORS_OFF, Proc, free_port, jobq_command, start_hub, start_worker, wait_for_hub


def jobq(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    clean = {k: v for k, v in os.environ.items() if k != "JOBQ_TOKEN"}
    return subprocess.run(
        jobq_command(*args), capture_output=True, timeout=timeout, env={**clean, **(env or {})}
    )


def create(auth: Path, *args: str) -> str:
    out = jobq("token", "create", "--auth", str(auth), *args)
    assert out.returncode == 0, out.stderr
    (secret,) = out.stdout.decode().split()
    return secret


def one_line(stderr: bytes) -> str:
    text = stderr.decode()
    assert text.endswith("\n") and text.count("\n") == 1, f"not one line: {text!r}"
    return text.strip()


def test_token_create_list_revoke(tmp_path: Path) -> None:
    auth = tmp_path / "conf" / "auth.json"
    out = jobq(
        "token", "create", "--auth", str(auth), "--role", "client", "--customer", "acme", "--name", "ci"
    )
    assert out.returncode == 0, out.stderr
    secret = out.stdout.decode().strip()
    assert out.stdout == (secret + "\n").encode() and secret.startswith("jq_") and len(secret) > 40
    assert secret.encode() not in out.stderr, "the secret is shown once, on stdout only"
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    stored = auth.read_text()
    assert secret not in stored and secret[3:] not in stored
    (entry,) = json.loads(stored)["tokens"]
    assert entry["hash"].startswith("sha256:") and (entry["name"], entry["role"]) == ("ci", "client")
    assert entry["customers"] == ["acme"]

    worker_secret = create(auth, "--role", "worker", "--service", "render")
    assert worker_secret != secret
    listed = jobq("token", "list", "--auth", str(auth))
    assert listed.returncode == 0
    text = listed.stdout.decode()
    assert "ci" in text and "client" in text and "customer=acme" in text
    assert "worker-1" in text and "service=render" in text
    assert secret not in text and worker_secret not in text and "sha256" not in text
    rows = [
        json.loads(line) for line in jobq("token", "list", "--auth", str(auth), "--json").stdout.splitlines()
    ]
    assert [r["name"] for r in rows] == ["ci", "worker-1"] and all("hash" not in r for r in rows)

    again = jobq("token", "create", "--auth", str(auth), "--role", "client", "--name", "ci")
    assert again.returncode == 2 and b"exists already" in again.stderr and not again.stdout
    bad_role = jobq("token", "create", "--auth", str(auth), "--role", "root")
    assert bad_role.returncode == 2 and not bad_role.stdout

    assert jobq("token", "revoke", "--auth", str(auth), "ci").returncode == 0
    assert "ci " not in jobq("token", "list", "--auth", str(auth)).stdout.decode()
    missing = jobq("token", "revoke", "--auth", str(auth), "ci")
    assert missing.returncode == 4 and b"no token named 'ci'" in missing.stderr
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600


def test_curve_keygen_and_allow_key(tmp_path: Path) -> None:
    auth = tmp_path / "auth.json"
    pair = jobq("curve", "keygen", "--json")
    keys = json.loads(pair.stdout)
    assert pair.returncode == 0 and len(keys["public"]) == 40 and len(keys["secret"]) == 40
    derived = jobq("curve", "public", keys["secret"])
    assert derived.stdout.decode().strip() == keys["public"]
    secret_file = tmp_path / "hub.key"
    written = jobq("curve", "keygen", "--secret-file", str(secret_file))
    assert written.returncode == 0 and stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert b"secret" not in written.stdout and written.stdout.startswith(b"public: ")
    public = written.stdout.decode().split()[1]
    assert jobq("curve", "public", str(secret_file)).stdout.decode().strip() == public
    assert jobq("curve", "keygen", "--secret-file", str(secret_file)).returncode == 2, "never overwrites"
    # A ZeroMQ certificate file (zmq.auth) works as --curve-secret's file too.
    _, zpl_secret = zmq.auth.create_certificates(str(tmp_path), "zpl")
    zpl_public, _ = zmq.auth.load_certificate(zpl_secret)
    assert jobq("curve", "public", zpl_secret).stdout.decode().strip() == zpl_public.decode()
    assert jobq("curve", "public", str(tmp_path / "nothing")).returncode == 2

    allow = ["token", "allow-key", "--auth", str(auth), "--role", "worker", "--service", "render"]
    assert jobq(*allow, "--name", "gpu-7", "--", keys["public"]).returncode == 0
    (entry,) = json.loads(auth.read_text())["curve"]
    assert (entry["name"], entry["role"], entry["public_key"], entry["services"]) == (
        "gpu-7",
        "worker",
        keys["public"],
        ["render"],
    )
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    bad = jobq(*allow, "--name", "gpu-8", "not-a-key")
    assert bad.returncode == 2 and b"40 Z85 characters" in bad.stderr
    twice = jobq(*allow, "--name", "gpu-9", "--", keys["public"])
    assert twice.returncode == 2 and b"already" in twice.stderr
    assert "gpu-7" in jobq("token", "list", "--auth", str(auth)).stdout.decode()
    assert jobq("token", "revoke", "--auth", str(auth), "gpu-7").returncode == 0
    assert json.loads(auth.read_text())["curve"] == []


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    auth = tmp_path / "auth.json"
    create(auth, "--role", "admin", "--name", "root")
    proc, endpoint = start_hub(tmp_path, extra=["--auth", str(auth)])
    yield endpoint, auth
    proc.close()


def test_a_hub_with_auth_refuses_a_call_without_a_token_and_serves_one_with(
    secured: tuple[str, Path], tmp_path: Path
) -> None:
    hub, auth = secured
    refused = jobq("submit", "echo", "x", "--hub", hub)
    assert refused.returncode == 7, refused.stderr
    assert one_line(refused.stderr).startswith("jobq: not authorized")
    assert not refused.stdout
    wrong = jobq("jobs", "--hub", hub, "--token", "jq_not-a-real-token")
    assert wrong.returncode == 7 and one_line(wrong.stderr).startswith("jobq: not authorized")

    acme = create(auth, "--role", "client", "--customer", "acme", "--name", "acme")
    beta = create(auth, "--role", "client", "--customer", "beta", "--name", "beta")
    out = jobq("submit", "echo", "mine", "--hub", hub, "--token", acme)
    assert out.returncode == 0, out.stderr
    job_id = out.stdout.decode().strip()
    status = jobq("status", job_id, "--json", "--hub", hub, env={"JOBQ_TOKEN": acme})
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["customer_id"] == "acme"

    other = jobq("status", job_id, "--hub", hub, "--token", beta)
    assert other.returncode == 7 and one_line(other.stderr).startswith("jobq: not allowed")
    cancel = jobq("cancel", job_id, "--hub", hub, "--token", beta)
    assert cancel.returncode == 7 and one_line(cancel.stderr)
    still = jobq("status", job_id, "--json", "--hub", hub, "--token", acme)
    assert json.loads(still.stdout)["state"] == "queued", "a refused call has no effect"
    listed = jobq("jobs", "--json", "--hub", hub, "--token", beta)
    assert listed.returncode == 0 and listed.stdout == b"", "beta sees none of acme's jobs"

    worker_token = create(auth, "--role", "worker", "--service", "echo", "--name", "echo-worker")
    worker = start_worker(tmp_path, hub, env={"JOBQ_TOKEN": worker_token})
    try:
        done = jobq("wait", job_id, "--hub", hub, "--token", acme, "--timeout", "30")
        assert done.returncode == 0, done.stderr
        assert jobq("result", job_id, "--hub", hub, "--token", acme).stdout == b"mine"
        assert jobq("result", job_id, "--hub", hub, "--token", beta).returncode == 7
    finally:
        worker.close()


def test_a_revoked_token_stops_working_within_a_second(secured: tuple[str, Path]) -> None:
    hub, auth = secured
    token = create(auth, "--role", "client", "--name", "short-lived")
    assert jobq("jobs", "--hub", hub, "--token", token).returncode == 0
    assert jobq("token", "revoke", "--auth", str(auth), "short-lived").returncode == 0
    revoked_at = time.monotonic()
    time.sleep(max(0.0, revoked_at + 1.0 - time.monotonic()))
    after = jobq("jobs", "--hub", hub, "--token", token)
    assert after.returncode == 7, after.stderr
    assert one_line(after.stderr) == "jobq: not authorized: unknown or revoked token"


def test_no_listening_beyond_loopback_without_auth(tmp_path: Path) -> None:
    port = free_port()
    refused = jobq("hub", "--store", "memory://", "--zmq", f"tcp://0.0.0.0:{port}", *DOORS_OFF, timeout=20)
    assert refused.returncode == 2
    line = one_line(refused.stderr)
    assert line.startswith(f"jobq hub: refusing to listen on tcp://0.0.0.0:{port} without --auth")
    trusted = jobq(
        "hub", "--store", "memory://", "--zmq", f"tcp://127.0.0.1:{port}", "--http", "off",
        "--line", "0.0.0.0:0?trusted=client", "--auth", str(tmp_path / "auth.json"),
        timeout=20,
    )  # fmt: skip
    assert trusted.returncode == 2 and "refusing to trust" in one_line(trusted.stderr)
    proc = Proc(
        jobq_command(
            "hub", "--store", "memory://", "--zmq", f"tcp://0.0.0.0:{port}", *DOORS_OFF, "--insecure"
        ),
        tmp_path / "insecure.log",
    )
    try:
        wait_for_hub(f"tcp://127.0.0.1:{port}", proc)
    finally:
        proc.close()
