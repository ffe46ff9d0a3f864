"""One queue behind every door, with real processes: a JOB line run by a jobq SDK worker, a
``jobq submit`` run by a FETCH worker, jobs a line worker cannot carry (and ``jobq explain``
saying so), a line worker SIGKILLed mid-job."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from jobq.client.client import Client
from jobq.core.states import JobState
from tests.helpers import Proc, eventually, free_port, jobq_command, start_hub, start_worker
from tests.integration.linepeer import Peer, once


def line_hub_process(tmp: Path, procs: list[Proc], *extra: str) -> tuple[str, tuple[str, int]]:
    port = free_port()
    hub, endpoint = start_hub(tmp, extra=["--line", f"127.0.0.1:{port}", *extra])
    procs.append(hub)
    return endpoint, ("127.0.0.1", port)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "300"}
    return subprocess.run(jobq_command(*args), capture_output=True, text=True, timeout=60, env=env)


async def test_a_job_line_is_run_by_a_jobq_sdk_worker(tmp_path: Path, procs: list[Proc]) -> None:
    endpoint, line = line_hub_process(tmp_path, procs)
    procs.append(start_worker(tmp_path, endpoint, service="default", handler="tests.handlers:upper"))
    reply = await once(line, "JOB shout this")
    assert reply.startswith("ID ")
    job_id = int(reply.split()[1])

    async def completed() -> bool:
        return await once(line, f"STATUS {job_id}") == "completed"

    await eventually(completed, timeout=30)
    async with Client(endpoint) as client:
        job = await client.wait(job_id, 10)
    assert job.result == [b"SHOUT THIS"]
    assert job.content_type == "text/plain"


async def test_a_jobq_submit_is_run_by_a_fetch_worker(tmp_path: Path, procs: list[Proc]) -> None:
    endpoint, line = line_hub_process(tmp_path, procs)
    submitted = cli("submit", "--hub", endpoint, "default", "hello from the cli")
    assert submitted.returncode == 0, submitted.stderr
    job_id = int(submitted.stdout.strip())
    worker = await Peer.open(line)
    try:
        assert await worker.ask("FETCH") == f"JOB {job_id} hello from the cli"
        assert await worker.ask(f"DONE {job_id}") == "OK"
    finally:
        await worker.close()
    waited = cli("wait", "--hub", endpoint, str(job_id), "--timeout", "10")
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert f"job {job_id} completed" in waited.stdout


async def test_line_workers_only_get_one_line_of_text_and_explain_says_why(
    tmp_path: Path, procs: list[Proc]
) -> None:
    endpoint, line = line_hub_process(tmp_path, procs)
    async with Client(endpoint) as client:
        binary = await client.submit("default", b"\x00\xff\xfe binary")
        two_lines = await client.submit("default", "first line\nsecond line")
        frames = await client.submit("default", [b"frame one", b"frame two"])
        text = await client.submit("default", "just text")
        worker = await Peer.open(line)
        try:
            assert await worker.ask("FETCH") == f"JOB {text} just text", "the text job jumps the others"
            assert await worker.ask(f"DONE {text}") == "OK"
            assert await worker.ask("FETCH") == "NOJOB"
            assert await worker.ask("REQUEST") == "EMPTY"

            explained = cli("explain", "--hub", endpoint, str(binary), "--json")
            assert explained.returncode == 0, explained.stderr
            info = json.loads(explained.stdout)
            (reason,) = info["ineligible"].values()
            assert reason == "payload is not one line of text, which a line-protocol worker cannot carry"
            shown = cli("explain", "--hub", endpoint, str(two_lines))
            assert "payload is not one line of text" in shown.stdout

            # An SDK worker runs them; nothing was lost or mangled on the way.
            procs.append(start_worker(tmp_path, endpoint, service="default", handler="echo"))
            ends = [await client.wait(i, 30) for i in (binary, two_lines, frames)]
            assert [e.state for e in ends] == [JobState.COMPLETED] * 3
            assert [e.result for e in ends] == [
                [b"\x00\xff\xfe binary"],
                [b"first line\nsecond line"],
                [b"frame one", b"frame two"],
            ]
        finally:
            await worker.close()


async def test_a_sigkilled_line_worker_loses_no_job(tmp_path: Path, procs: list[Proc]) -> None:
    endpoint, line = line_hub_process(tmp_path, procs)
    for text in ("first", "second"):
        assert (await once(line, f"JOB {text}")).startswith("ID ")
    script = (
        "import socket, sys, time\n"
        f"s = socket.create_connection(('127.0.0.1', {line[1]}))\n"
        "s.sendall(b'FETCH\\n')\n"
        "print(s.recv(1000).decode().strip(), flush=True)\n"
        "time.sleep(120)\n"
    )
    victim = await asyncio.create_subprocess_exec(sys.executable, "-c", script, stdout=subprocess.PIPE)
    try:
        assert victim.stdout is not None
        assert await asyncio.wait_for(victim.stdout.readline(), 20) == b"JOB 1 first\n"
    finally:
        victim.kill()  # SIGKILL: the socket is closed by the kernel, no goodbye
        await victim.wait()

    async def back_at_the_front() -> bool:
        return await once(line, "STATUS 1") == "waiting"

    await eventually(back_at_the_front)
    survivor = await Peer.open(line)
    try:
        assert await survivor.ask("FETCH") == "JOB 1 first"
        assert await survivor.ask("DONE 1") == "OK"
    finally:
        await survivor.close()
    async with Client(endpoint) as client:
        job = await client.wait(1, 10)
    assert job.state is JobState.COMPLETED and job.attempts == 2


def test_bad_listener_is_a_usage_error(tmp_path: Path) -> None:
    done = cli("hub", "--store", "memory://", "--zmq", f"tcp://127.0.0.1:{free_port()}", "--line", "nowhere")
    assert done.returncode == 2
    assert "not HOST:PORT" in done.stderr
