"""Dependencies end to end: a real hub (SQLite, and Redis when it is there), real workers, the
``jobq`` command (``--after``, ``--after-policy``, ``status``) and the SDK (batches with refs,
``chain``), as a user sees them (docs/workflows.md, "Dependencies")."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobq.client.client import Client, make_spec
from jobq.errors import InvalidRequest
from tests.helpers import Proc, jobq_command, start_hub, start_worker
from tests.redis_helpers import Namespace, require_redis


@pytest.fixture(params=["sqlite", "redis"])
def hub(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    namespace = None
    store = None
    if request.param == "redis":
        require_redis()
        namespace = Namespace()
        store = namespace.url
    proc, endpoint = start_hub(tmp_path, store=store)
    try:
        yield endpoint
    finally:
        proc.close()
        if namespace is not None:
            namespace.cleanup()


def jobq(*args: str, hub: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        jobq_command(*args), capture_output=True, timeout=60, env={**os.environ, "JOBQ_HUB": hub}
    )


def submit(hub: str, *args: str) -> int:
    out = jobq("submit", *args, hub=hub)
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


def status(hub: str, job_id: int) -> dict[str, object]:
    out = jobq("status", str(job_id), "--json", hub=hub)
    assert out.returncode == 0, out.stderr
    data: dict[str, object] = json.loads(out.stdout)
    return data


def test_dependents_wait_run_or_end_cancelled_from_the_cli(hub: str, tmp_path: Path) -> None:
    first = submit(hub, "echo", "one")
    second = submit(hub, "echo", "two", "--after", str(first))
    # No worker yet: the dependent waits, and says for what.
    shown = status(hub, second)
    assert shown["state"] == "waiting" and shown["after"] == [first]
    assert shown["waiting_for"] == f"waits for job {first} (queued)"
    text = jobq("status", str(second), hub=hub).stdout.decode()
    assert "waiting" in text and f"waits for job {first} (queued)" in text
    stats = json.loads(jobq("stats", "--json", hub=hub).stdout)
    assert stats["jobs"]["by_state"]["waiting"] == 1
    # A prerequisite nobody will run, cancelled: its dependent ends cancelled with the reason.
    orphan = submit(hub, "nobody", "x")
    left = submit(hub, "echo", "never", "--after", f"{orphan},{first}")
    assert jobq("cancel", str(orphan), hub=hub).returncode == 0
    assert status(hub, left)["state"] == "cancelled"
    assert status(hub, left)["error"] == f"prerequisite {orphan} ended cancelled"
    # Bad input: an unknown id (exit 4), something that is not an id (exit 2).
    unknown = jobq("submit", "echo", "x", "--after", "99999", hub=hub)
    assert unknown.returncode == 4 and b"no job 99999" in unknown.stderr
    bad = jobq("submit", "echo", "x", "--after", "12,abc", hub=hub)
    assert bad.returncode == 2 and b"--after takes job ids" in bad.stderr
    echo: Proc = start_worker(tmp_path, hub)
    boom: Proc = start_worker(tmp_path, hub, service="boom", handler="tests.handlers:missing_key")
    try:
        done = jobq("wait", str(second), "--timeout", "30", hub=hub)
        assert done.returncode == 0, done.stderr
        one, two = status(hub, first), status(hub, second)
        assert two["state"] == "completed" and two["result"] == "two"
        assert isinstance(one["finished_at"], float) and isinstance(two["started_at"], float)
        assert two["started_at"] >= one["finished_at"]  # not before its prerequisite ended
        # A failed prerequisite: the dependent is cancelled; with --after-policy always it runs.
        failing = submit(hub, "boom", "x", "--max-attempts", "1")
        cancelled = submit(hub, "echo", "no", "--after", str(failing))
        anyway = submit(hub, "echo", "yes", "--after", str(failing), "--after-policy", "always")
        assert jobq("wait", str(anyway), "--timeout", "30", hub=hub).returncode == 0
        assert status(hub, anyway)["result"] == "yes"
        gone = status(hub, cancelled)
        assert gone["state"] == "cancelled" and gone["error"] == f"prerequisite {failing} ended failed"
    finally:
        echo.close()
        boom.close()


async def test_batches_with_refs_chains_and_cycles_from_the_sdk(hub: str, tmp_path: Path) -> None:
    async with Client(hub) as client:
        # Whoever waits for a dependent hears of its end when a prerequisite's end cancels it.
        prerequisite = await client.submit("nobody", b"x")
        dependent = await client.submit("echo", b"y", after=[prerequisite])
        waiting = asyncio.ensure_future(client.wait(dependent, timeout=20))
        await asyncio.sleep(0.3)
        await client.cancel(prerequisite)
        ended = await waiting
        assert ended.state == "cancelled" and ended.error == f"prerequisite {prerequisite} ended cancelled"
        with pytest.raises(InvalidRequest, match="dependency cycle: 'a' → 'b' → 'a'"):
            await client.submit_many(
                [make_spec("echo", b"a", ref="a", after=["b"]), make_spec("echo", b"b", ref="b", after=["a"])]
            )
        with pytest.raises(InvalidRequest, match="no spec in this batch has ref 'zz'"):
            await client.submit_many([make_spec("echo", b"x", after=["zz"])])
        assert len(await client.jobs()) == 2  # nothing of those batches was created
        # Refs name specs of the same batch, in any order: the hub creates them in dependency order.
        (report, _, _), (fetch, _, _) = await client.submit_many(
            [make_spec("echo", b"report", after=["fetch"]), make_spec("echo", b"fetch", ref="fetch")]
        )
        assert fetch < report
        report_job = await client.status(report)
        assert report_job is not None and report_job.after == [fetch]
        chained = await client.chain([make_spec("echo", f"step {i}".encode()) for i in range(3)])
        ids = [job_id for job_id, _, _ in chained]
        assert [state for _, state, _ in chained] == ["queued", "waiting", "waiting"]
        worker = start_worker(tmp_path, hub)
        try:
            last = await client.wait(ids[-1], timeout=30)
            assert last.state == "completed" and last.after == [ids[1]]
            steps = [await client.status(job_id) for job_id in ids]
            assert all(job is not None and job.state == "completed" for job in steps)
            starts = [job.started_at or 0.0 for job in steps if job is not None]
            assert starts == sorted(starts)  # each after the one before
            assert (await client.wait(report, timeout=30)).state == "completed"
        finally:
            worker.close()
