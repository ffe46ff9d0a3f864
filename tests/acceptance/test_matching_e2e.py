"""Issue 3 end to end: real worker processes with different capabilities and customers."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

from jobq.client.client import Client
from jobq.core.states import JobState
from tests.helpers import Proc, jobq_command, start_hub, start_worker


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(jobq_command(*args), capture_output=True, text=True, timeout=30)


def worker(tmp: Path, endpoint: str, procs: list[Proc], name: str, *caps: str) -> None:
    extra: list[str] = []
    for cap in caps:
        extra += ["--capability", cap]
    procs.append(
        start_worker(tmp, endpoint, service="render", handler="echo", concurrency=2, name=name, extra=extra)
    )


async def connected(client: Client, n: int) -> None:
    for _ in range(400):
        if len(await client.workers()) >= n:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("workers did not connect")


def submit(endpoint: str, *args: str) -> int:
    out = cli("submit", "--hub", endpoint, "render", "payload", "--json", *args)
    assert out.returncode == 0, out.stderr
    return int(json.loads(out.stdout)["id"])


async def test_jobs_reach_exactly_the_workers_that_can_and_may_run_them(
    tmp_path: Path, procs: list[Proc]
) -> None:
    hub, endpoint = start_hub(tmp_path)
    procs.append(hub)
    worker(
        tmp_path,
        endpoint,
        procs,
        "gpu",
        "hardware.gpu_memory_gb=24",
        "location.region=eu",
        "customer_access.denied_customers=acme",
    )
    worker(tmp_path, endpoint, procs, "small", "hardware.gpu_memory_gb=8", "location.region=us")
    worker(
        tmp_path,
        endpoint,
        procs,
        "acme",
        "customer_access.isolation=strict",
        "customer_access.allowed_customers=acme",
        "hardware.gpu_memory_gb=24",
        "location.region=eu",
    )
    async with Client(endpoint) as client:
        await connected(client, 3)
        big = [
            submit(endpoint, "--requires", "hardware.gpu_memory_gb=16", "--requires", "region=eu")
            for _ in range(4)
        ]
        us = [submit(endpoint, "--requires", "location.region=us") for _ in range(4)]
        strict = [submit(endpoint, "--customer", "acme", "--isolation", "strict") for _ in range(4)]
        loose = [submit(endpoint, "--customer", "acme", "--isolation", "loose") for _ in range(6)]
        other = [submit(endpoint, "--customer", "globex") for _ in range(6)]
        huge = submit(endpoint, "--requires", "hardware.gpu_memory_gb=80")

        done = {i: await client.wait(i, 30) for i in big + us + strict + loose + other}
        assert all(j.state is JobState.COMPLETED for j in done.values())
        name = {i: (done[i].worker or "").split("-")[0] for i in done}
        # the acme worker has the GPU and the region too, but is dedicated to acme
        assert {name[i] for i in big} == {"gpu"}
        assert {name[i] for i in us} == {"small"}
        assert {name[i] for i in strict} == {"acme"}
        assert "gpu" not in {name[i] for i in loose}, "the gpu worker denies acme"
        assert "acme" not in {name[i] for i in other}, "a dedicated worker runs only its customer's jobs"

        # the 80 GB job is blocked, says why, and runs when a capable worker arrives
        explained = cli("explain", "--hub", endpoint, str(huge), "--json")
        info = json.loads(explained.stdout)
        assert info["state"] == "queued" and info["blocked"]
        assert (
            "gpu_memory_gb >= 80"
            in info["ineligible"][next(w for w in info["ineligible"] if w.startswith("gpu"))]
        )
        blocked = cli("jobs", "--hub", endpoint, "--blocked", "--json")
        assert [json.loads(line)["id"] for line in blocked.stdout.splitlines()] == [huge]
        worker(tmp_path, endpoint, procs, "monster", "hardware.gpu_memory_gb=96")
        finished = await client.wait(huge, 30)
        assert finished.state is JobState.COMPLETED and (finished.worker or "").startswith("monster")
        assert cli("jobs", "--hub", endpoint, "--blocked", "--json").stdout.strip() == ""
