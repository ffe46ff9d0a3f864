"""Groups end to end: a real hub process, real workers, the CLI and the SDK.

Expansion (products, ranges, the limit, bad specs refused with the reason), the finalize job
exactly once with its input in member order (failed members per policy), FINISHED reaching each
worker that ran a member and no other, group cancel, and a hub SIGKILLed (SQLite) while members
complete: the finalize job is still submitted exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jobq.client.client import Client
from jobq.core.model import JobSpec
from jobq.core.workflow import GroupState, read_finalize_input
from jobq.errors import Conflict, InvalidRequest
from jobq.worker.context import HandlerError, JobContext
from jobq.worker.runtime import Worker
from tests.helpers import Proc, free_port, jobq_command, start_hub, start_worker
from tests.redis_helpers import hubs_on_redis


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(jobq_command(*args), capture_output=True, text=True, timeout=timeout)


@contextlib.asynccontextmanager
async def sdk_worker(
    endpoint: str, name: str, services: dict[str, Any], concurrency: int = 1
) -> AsyncIterator[tuple[Worker, list[int], list[int]]]:
    """An SDK worker in this process; yields it, the groups it was told FINISHED of, and the
    jobs it ran."""
    worker = Worker(endpoint, name=name, worker_id=name, concurrency=concurrency)
    told: list[int] = []
    ran: list[int] = []
    for service, fn in services.items():

        async def run(payload: bytes, ctx: JobContext, fn: Any = fn) -> Any:
            ran.append(ctx.id)
            return await fn(payload, ctx)

        worker.register(service, run)
    worker.on_group_finished(told.append)
    task = asyncio.ensure_future(worker.run())
    try:
        await worker.wait_connected()
        yield worker, told, ran
    finally:
        worker.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)


async def slow_echo(payload: bytes, ctx: JobContext) -> bytes:
    await asyncio.sleep(0.05)
    return payload


def slow_member(payload: bytes) -> bytes:
    """A member that takes a while (the SIGKILL test's worker: --handler module:function)."""
    time.sleep(0.2)
    return payload


def test_cli_expansion_finalize_and_group_views(tmp_path: Path, procs: list[Proc]) -> None:
    hub, endpoint = start_hub(tmp_path)
    procs.append(hub)
    procs.append(start_worker(tmp_path, endpoint, "echo", "echo", concurrency=4))
    procs.append(start_worker(tmp_path, endpoint, "concat", "concat", concurrency=1))
    out = cli("submit", "echo", '{"x": 1}', "--hub", endpoint, "--expand", "n=1..3", "--expand", "c=a,b",
              "--finalize", "concat", "--finalize-args", '{"separator": "\\n"}', "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    submitted = json.loads(out.stdout)
    group, members = submitted["group"], submitted["members"]
    assert members == list(range(group + 1, group + 7))
    done = cli("group", str(group), "--hub", endpoint, "--wait", "--wait-timeout", "30", "--json")
    assert done.returncode == 0, done.stderr
    view = json.loads(done.stdout)
    assert view["state"] == "completed" and view["total"] == 6 and view["counts"] == {"completed": 6}
    lines = [json.loads(line) for line in view["result"].splitlines()]
    assert lines == [{"x": 1, "n": n, "c": c} for n in (1, 2, 3) for c in ("a", "b")]  # member order
    shown = json.loads(cli("group", str(group), "--hub", endpoint, "--json").stdout)
    assert {"id", "state", "total", "counts", "progress", "finalize"} <= set(shown)
    assert shown["progress"] == 100.0 and shown["finalize"] > members[-1]
    listed = cli("jobs", "--hub", endpoint, "--group", str(group), "--json")
    ids = sorted(json.loads(line)["id"] for line in listed.stdout.splitlines())
    assert ids == [*members, shown["finalize"]]
    # plain output: the group id first, then its members
    plain = cli("submit", "echo", "{}", "--hub", endpoint, "--expand", "well=A01..B02")
    assert plain.returncode == 0, plain.stderr
    first, *rest = [int(line) for line in plain.stdout.split()]
    assert rest == list(range(first + 1, first + 5))
    # --wait prints the group's result: its finalize job's
    waited = cli(
        "submit", "echo", "{}", "--hub", endpoint, "--expand", "i=1..3", "--finalize", "concat", "--wait"
    )
    assert waited.returncode == 0, waited.stderr
    assert waited.stdout.splitlines()[0].isdigit()
    assert waited.stdout.splitlines()[1] == '{"i":1}{"i":2}{"i":3}'


BAD_EXPANSIONS = [
    (["a=1..1000", "b=1..101"], "expand makes 101,000 members (a 1,000 x b 101); the limit is 100,000"),
    (["a=9..1"], "smaller bound first"),
    (["a=1..x"], "'1..x': not a range of integers"),
    (["a=1,1"], "appears twice"),
    (["a=1", "a=2"], "names 'a' twice"),
    (["a"], "expected KEY=VALUES"),
]


def test_cli_refuses_bad_expansions_with_the_reason(tmp_path: Path, procs: list[Proc]) -> None:
    hub, endpoint = start_hub(tmp_path)
    procs.append(hub)
    for expand, reason in BAD_EXPANSIONS:
        args = [arg for item in expand for arg in ("--expand", item)]
        out = cli("submit", "echo", "{}", "--hub", endpoint, *args)
        assert out.returncode == 2, (expand, out.stdout, out.stderr)
        assert reason in out.stderr and "Traceback" not in out.stderr, out.stderr
    notjson = cli("submit", "echo", "[1]", "--hub", endpoint, "--expand", "a=1..2")
    assert notjson.returncode == 2 and "it is an array" in notjson.stderr
    alone = cli("submit", "echo", "{}", "--hub", endpoint, "--finalize", "concat")
    assert alone.returncode == 2 and "--finalize goes with --expand" in alone.stderr


async def test_sdk_policies_finished_and_cancel(tmp_path: Path, procs: list[Proc]) -> None:
    hub, endpoint = start_hub(tmp_path)
    procs.append(hub)

    async def flaky(payload: bytes, ctx: JobContext) -> bytes:
        await asyncio.sleep(0.05)
        if json.loads(payload)["n"] == 2:
            raise HandlerError("two is bad", retryable=False)
        return payload

    async def finalize(payload: bytes, ctx: JobContext) -> bytes:
        members = read_finalize_input(ctx.frames).manifest.members
        return json.dumps([[m.id, m.state, m.error] for m in members]).encode()

    async with (
        sdk_worker(endpoint, "m1", {"work": flaky}) as (_, told1, ran1),
        sdk_worker(endpoint, "m2", {"work": flaky}) as (_, told2, ran2),
        sdk_worker(endpoint, "bystander", {"other": slow_echo}) as (_, told3, _),
        sdk_worker(endpoint, "fin", {"merge": finalize}) as (_, told4, ran4),
        Client(endpoint) as client,
    ):
        # all_ended: finalize runs with every member's outcome, in member order
        done = await client.submit_group(
            "work", {"k": 1}, expand={"n": "1..6"}, finalize="merge", policy="all_ended"
        )
        view = await client.wait_group(done.group.id, 30)
        assert view.state is GroupState.COMPLETED and view.counts == {"completed": 5, "failed": 1}
        outcomes = json.loads(b"".join(view.result or []))
        assert [o[0] for o in outcomes] == done.members
        assert [o[1] for o in outcomes] == ["completed", "failed", *["completed"] * 4]
        assert outcomes[1][2] == "two is bad"
        # FINISHED: once, to each worker that ran a member, and no other
        await asyncio.sleep(0.5)
        assert ran1 and ran2, "both member workers took part"
        assert told1 == [done.group.id] and told2 == [done.group.id]
        assert told3 == [] and told4 == []
        # all_completed: the failed member fails the group; no finalize job
        strict = await client.submit_group("work", {}, expand={"n": [1, 2, 3]}, finalize="merge")
        failed = await client.wait_group(strict.group.id, 30)
        assert failed.state is GroupState.FAILED and failed.finalize is None
        assert failed.reason == "1 of 3 members did not complete (1 failed)"
        assert len(ran4) == 1  # the first group's finalize only
        # explicit members, cancelled as a whole
        members = [JobSpec(service="nobody-serves-this", payload=[b"%d" % i]) for i in range(4)]
        group = await client.submit_group(members=members, finalize="merge")
        cancelled = await client.cancel_group(group.group.id)
        assert cancelled.state is GroupState.CANCELLED and cancelled.counts == {"cancelled": 4}
        assert (await client.status(group.members[0])).state.value == "cancelled"  # type: ignore[union-attr]
        with pytest.raises(Conflict):
            await client.cancel_group(group.group.id)
        with pytest.raises(InvalidRequest, match="limit is 100,000"):
            await client.submit_group("work", {}, expand={"a": "1..1000", "b": "1..1000"})
        # a plain submit of a spec with expand is refused with the reason
        with pytest.raises(InvalidRequest, match="make a group"):
            await client.submit_spec(JobSpec(service="work", payload=[b"{}"], expand={"a": "1..2"}))


def test_finalize_exactly_once_across_hub_sigkill(tmp_path: Path, procs: list[Proc]) -> None:
    """Members complete while the hub is SIGKILLed (twice) and restarted on the same SQLite
    file: the group still ends with exactly one finalize job, fed every member in order."""
    port = free_port()
    hub, endpoint = start_hub(tmp_path, port=port)
    procs.append(hub)
    handler = "tests.integration.test_groups:slow_member"
    procs.append(start_worker(tmp_path, endpoint, "slow", handler, concurrency=8))
    procs.append(start_worker(tmp_path, endpoint, "concat", "concat", concurrency=1))
    out = cli(
        "submit", "slow", "{}", "--hub", endpoint, "--expand", "n=1..60", "--finalize", "concat", "--json"
    )
    assert out.returncode == 0, out.stderr
    group = json.loads(out.stdout)["group"]
    for _ in range(2):
        time.sleep(1.0)
        hub.kill()
        hub, _ = start_hub(tmp_path, port=port)
        procs.append(hub)
    done = cli(
        "group", str(group), "--hub", endpoint, "--wait", "--wait-timeout", "90", "--json", timeout=120
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    view = json.loads(done.stdout)
    assert view["state"] == "completed" and view["counts"] == {"completed": 60}
    finals = cli("jobs", "--hub", endpoint, "--service", "concat", "--json", "--limit", "100")
    rows = [json.loads(line) for line in finals.stdout.splitlines()]
    assert [row["id"] for row in rows] == [view["finalize"]], "one finalize job, ever"


def test_redis_two_hubs_finalize_exactly_once(tmp_path: Path, procs: list[Proc]) -> None:
    """Two hubs on one Redis, a worker on each, members completing through both (and one hub
    SIGKILLed on the way): the group's finalize job is made once, fed every member in order."""
    with hubs_on_redis(tmp_path, procs, "hub-a", "hub-b") as [(a, endpoint_a), (_, endpoint_b)]:
        handler = "tests.integration.test_groups:slow_member"
        procs.append(start_worker(tmp_path, endpoint_a, "slow", handler, concurrency=4))
        procs.append(start_worker(tmp_path, endpoint_b, "slow", handler, concurrency=4))
        procs.append(start_worker(tmp_path, endpoint_b, "concat", "concat", concurrency=1))
        out = cli(
            "submit",
            "slow",
            "{}",
            "--hub",
            endpoint_a,
            "--expand",
            "n=1..40",
            "--finalize",
            "concat",
            "--json",
        )
        assert out.returncode == 0, out.stderr
        submitted = json.loads(out.stdout)
        time.sleep(0.6)
        a.kill()  # its worker's attempts are lost and run again through hub b
        procs.append(start_worker(tmp_path, endpoint_b, "slow", handler, concurrency=4))
        done = cli(
            "group",
            str(submitted["group"]),
            "--hub",
            endpoint_b,
            "--wait",
            "--wait-timeout",
            "90",
            "--json",
            timeout=120,
        )
        assert done.returncode == 0, (done.stdout, done.stderr)
        view = json.loads(done.stdout)
        assert view["state"] == "completed" and view["counts"] == {"completed": 40}
        lines = [json.loads(line) for line in view["result"].replace("}{", "}\n{").splitlines()]
        assert lines == [{"n": n} for n in range(1, 41)]  # member order
        finals = cli("jobs", "--hub", endpoint_b, "--service", "concat", "--json", "--limit", "100")
        assert [json.loads(line)["id"] for line in finals.stdout.splitlines()] == [view["finalize"]]
