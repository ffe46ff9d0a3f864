"""``jobq autocall`` through the line and native doors, the ``multicast`` handler and
``jobq listen``. Multicast runs on the loopback interface (group 239.0.0.1, TTL 0 or 1)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from pathlib import Path

import pytest

from jobq.cli.line_tools import WORDS
from jobq.client.client import Client
from jobq.core.model import Assignment, Job
from jobq.errors import InvalidRequest
from jobq.worker.context import HandlerError, JobCancelled, JobContext
from jobq.worker.handlers import resolve
from jobq.worker.multicast import MulticastOptions, open_receiver, parse_group
from tests.helpers import Proc, free_port, jobq_command, start_hub, start_worker

GROUP = "239.0.0.1"
LOOPBACK = "127.0.0.1"


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(jobq_command(*args), capture_output=True, text=True, timeout=timeout)


async def _jobs(endpoint: str) -> list[Job]:
    async with Client(endpoint) as client:
        listed = await client.jobs(limit=1000)
        found = [await client.status(j.id, payload=True) for j in listed]
    return [j for j in found if j is not None]


def _assert_word_jobs(jobs: list[Job], count: int) -> None:
    assert len(jobs) == count
    for job in jobs:
        words = job.payload_bytes.decode().split(" ")
        assert 1 <= len(words) <= 5 and set(words) <= set(WORDS), words
        assert job.service == "default" and job.content_type == "text/plain"


@pytest.mark.parametrize("scheme", ["line", "dsjq", "tcp"])
async def test_autocall_through_each_door(tmp_path: Path, procs: list[Proc], scheme: str) -> None:
    port = free_port()
    hub, endpoint = start_hub(tmp_path, extra=["--line", f"127.0.0.1:{port}"])
    procs.append(hub)
    door = endpoint if scheme == "tcp" else f"{scheme}://127.0.0.1:{port}"
    done = await asyncio.to_thread(
        cli, "autocall", "--hub", door, "--num-jobs", "12", "--delay", "0", "--json"
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["submitted"], summary["refused"], summary["first_id"], summary["last_id"]) == (
        12,
        0,
        1,
        12,
    )
    _assert_word_jobs(await _jobs(endpoint), 12)


def test_autocall_defaults_and_a_door_that_is_not_there() -> None:
    port = free_port()  # nobody listens there
    done = cli("autocall", "--hub", f"line://127.0.0.1:{port}", "--num-jobs", "3", "--delay", "0.01")
    assert done.returncode == 3
    assert "0 of 3 jobs submitted" in done.stdout
    assert "refused 3x: cannot connect" in done.stderr
    shown = cli("autocall", "--help")
    assert "[env var: JOBQ_NUM_JOBS; default: 50]" in " ".join(shown.stdout.split())
    assert "[env var: JOBQ_AUTOCALL_DELAY; default: 0.1]" in " ".join(shown.stdout.split())


def test_autocall_shows_progress_and_a_summary(tmp_path: Path) -> None:
    port = free_port()
    hub, _ = start_hub(tmp_path, extra=["--line", f"127.0.0.1:{port}"])
    try:
        done = cli("autocall", "--hub", f"line://127.0.0.1:{port}", "--num-jobs", "4", "--delay", "0.01")
    finally:
        hub.close()
    assert done.returncode == 0, done.stderr
    assert "autocall: 4 of 4 jobs submitted through line://" in done.stdout
    assert "ids 1..4" in done.stdout
    assert "4/4" in done.stderr, "the progress bar"


# ---------------------------------------------------------------------------- multicast


def _context(payload: bytes) -> JobContext:
    assignment = Assignment(id=1, token=1, service="default", payload=[payload])
    return JobContext(assignment, lambda value, message, preview: None)


def _receiver(port: int) -> socket.socket:
    sock = open_receiver(GROUP, port, LOOPBACK)
    sock.settimeout(5)
    return sock


async def test_multicast_handler_streams_each_word_in_order() -> None:
    port = free_port()
    options = MulticastOptions(GROUP, port, ttl=0, word_delay=0.01, interface=LOOPBACK)
    handler = resolve("multicast", multicast=options)
    with _receiver(port) as sock:
        result = await handler.fn(b"  alpha beta\tgamma\n", _context(b""))
        heard = [sock.recvfrom(100)[0] for _ in range(3)]
    assert heard == [b"alpha", b"beta", b"gamma"]
    assert result == f"3 words sent to {GROUP}:{port}".encode()


async def test_multicast_handler_stops_when_cancelled_and_refuses_binary() -> None:
    port = free_port()
    options = MulticastOptions(GROUP, port, ttl=0, word_delay=0.2, interface=LOOPBACK)
    stream = resolve("multicast", multicast=options).fn
    ctx = _context(b"")
    with _receiver(port) as sock:
        task = asyncio.ensure_future(stream(b"one two three four", ctx))
        assert (await asyncio.to_thread(sock.recvfrom, 100))[0] == b"one"
        ctx.cancel()
        with pytest.raises(JobCancelled):
            await task
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recvfrom(100)
    with pytest.raises(HandlerError) as refused:
        await stream(b"\xff\xfe", _context(b""))
    assert not refused.value.retryable


def test_multicast_options_are_checked() -> None:
    assert parse_group("239.0.0.1:5007") == ("239.0.0.1", 5007)
    assert parse_group("239.1.2.3") == ("239.1.2.3", 5007)
    for bad in ("10.0.0.1:5007", "239.0.0.1:0", "239.0.0.1:99999", "nowhere:1", "239.0.0.1:x"):
        with pytest.raises(InvalidRequest):
            parse_group(bad)
    with pytest.raises(InvalidRequest):
        parse_group("239.0.0.1", default_port=None)
    with pytest.raises(InvalidRequest):
        MulticastOptions(ttl=256)
    with pytest.raises(InvalidRequest):
        MulticastOptions(word_delay=-1)
    with pytest.raises(InvalidRequest):
        MulticastOptions(interface="eth0")


async def test_multicast_worker_and_listen_end_to_end(tmp_path: Path, procs: list[Proc]) -> None:
    """A line JOB run by a `jobq worker --handler multicast`, heard by `jobq listen`."""
    line_port, group_port = free_port(), free_port()
    hub, endpoint = start_hub(tmp_path, extra=["--line", f"127.0.0.1:{line_port}"])
    procs.append(hub)
    listener = await asyncio.create_subprocess_exec(
        *jobq_command(
            "listen",
            f"{GROUP}:{group_port}",
            "--interface",
            LOOPBACK,
            "--exit-after",
            "4",
            "--idle-timeout",
            "30",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert listener.stderr is not None
        joined = await asyncio.wait_for(listener.stderr.readline(), 30)
        assert b"jobq listen:" in joined, "joined the group"
        procs.append(
            start_worker(
                tmp_path,
                endpoint,
                service="default",
                handler="multicast",
                extra=[
                    "--multicast",
                    f"{GROUP}:{group_port}",
                    "--multicast-interface",
                    LOOPBACK,
                    "--multicast-ttl",
                    "1",
                    "--word-delay",
                    "0.01",
                ],
            )
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", line_port)
        writer.write(b"JOB kernel socket mutex latency\n")
        assert await asyncio.wait_for(reader.readline(), 10) == b"ID 1\n"
        writer.close()
        await writer.wait_closed()
        out, err = await asyncio.wait_for(listener.communicate(), 60)
    finally:
        if listener.returncode is None:
            listener.kill()
            await listener.communicate()
    assert listener.returncode == 0, err
    assert out.split() == [b"kernel", b"socket", b"mutex", b"latency"]
    async with Client(endpoint) as client:
        job = await client.wait(1, 20)
    assert job.result == [f"4 words sent to {GROUP}:{group_port}".encode()]
