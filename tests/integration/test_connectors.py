"""Issue 14: workers driving services through connectors, against stand-in servers that speak the
real APIs (tests/standins/, each citing the source it follows). A real hub process, real worker
processes, real clients on loopback; every wait is on a condition."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jobq.client.client import Client
from jobq.core.model import Assignment, JobEvent
from jobq.core.states import JobState
from jobq.worker.connectors import config as worker_config
from jobq.worker.connectors.registry import ConfigError
from jobq.worker.connectors.steering import triage
from tests.helpers import PYTHON, REPO, Proc, eventually, free_port, jobq_command, start_hub

FAST = ["--heartbeat", "0.2", "--liveness", "5", "--lease-ttl", "5"]
ENV = {"PYTHONPATH": str(REPO)}
WORKFLOW = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
    "3": {"class_type": "KSampler", "inputs": {"steps": 8, "model": ["4", 0]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["3", 0]}},
}


# ---------------------------------------------------------------- helpers


def wait_port(port: int, proc: Proc, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.alive(), proc.output()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert time.monotonic() < deadline, f"nothing listens on {port}"
        time.sleep(0.02)


def standin(tmp: Path, procs: list[Proc], kind: str, port: int = 0, *extra: str) -> tuple[Proc, int, Path]:
    """Start ``tests.standins.KIND`` on a free port; returns it, its port and its request record."""
    port = port or free_port()
    record = tmp / f"{kind}-{port}.jsonl"
    args = [PYTHON, "-m", f"tests.standins.{kind}", "--port", str(port), "--record", str(record), *extra]
    proc = Proc(args, tmp / f"{kind}-{port}.log", env=ENV)
    procs.append(proc)
    wait_port(port, proc)
    return proc, port, record


def connector_worker(
    tmp: Path, endpoint: str, procs: list[Proc], service: str, connector: str, *options: str, name: str
) -> Proc:
    args = jobq_command(
        "worker",
        "--hub",
        endpoint,
        "--service",
        service,
        "--connector",
        connector,
        *[arg for option in options for arg in ("--connector-option", option)],
        "--name",
        name,
        "--health-interval",
        "0.2",
    )
    proc = Proc(args, tmp / f"worker-{name}.log", env=ENV)
    procs.append(proc)
    return proc


def recorded(record: Path) -> list[dict[str, Any]]:
    if not record.exists():
        return []
    return [json.loads(line) for line in record.read_text().splitlines() if line.strip()]


async def worker_named(client: Client, name: str) -> Any:
    return next((w for w in await client.workers() if w.name == name), None)


async def serving(client: Client, name: str, service: str) -> bool:
    """The worker is connected and takes jobs of ``service`` (its backend is healthy)."""
    info = await worker_named(client, name)
    return info is not None and service in info.serving() and info.slots > 0


async def follow(client: Client, job_id: int, timeout: float = 20.0) -> list[JobEvent]:
    events: list[JobEvent] = []

    async def collect() -> None:
        async for event in client.events([job_id]):
            events.append(event)
            if event.state.terminal:
                return

    await asyncio.wait_for(collect(), timeout)
    return events


def progress_of(events: list[JobEvent]) -> list[tuple[float | None, str | None]]:
    return [(e.progress, e.message) for e in events if e.kind == "progress"]


@pytest.fixture
def hub(tmp_path: Path, procs: list[Proc]) -> str:
    proc, endpoint = start_hub(tmp_path, extra=FAST)
    procs.append(proc)
    return endpoint


# ---------------------------------------------------------------- each connector end to end


async def test_comfyui_job_end_to_end_with_progress_outputs_and_capabilities(
    tmp_path: Path, procs: list[Proc], hub: str
) -> None:
    _, port, record = standin(tmp_path, procs, "comfyui", 0, "--step-delay", "0.03")
    connector_worker(tmp_path, hub, procs, "comfy", "comfyui", f"url=http://127.0.0.1:{port}", name="gpu1")
    async with Client(hub) as client:
        await eventually(lambda: serving(client, "gpu1", "comfy"), 20)
        job_id = await client.submit("comfy", WORKFLOW)
        events = await follow(client, job_id)
        job = await client.status(job_id)
        info = await worker_named(client, "gpu1")
    assert events[-1].kind == "completed", events[-1]
    steps = [m for _, m in progress_of(events) if m and m.startswith("KSampler (node 3) ")]
    assert steps, progress_of(events)  # the sampler's steps reached the client as job progress
    previews = [e.partial[0] for e in events if e.kind == "progress" and e.partial]
    assert previews and previews[0].startswith(b"\x89PNG preview")  # ComfyUI's previews too
    assert job is not None and job.result is not None
    header = json.loads(job.result[0])
    assert header["files"][0]["filename"] == "ComfyUI_00001_.png"
    assert job.result[1].startswith(b"\x89PNG")  # the image bytes as a frame, not base64
    assert info.capabilities["models.comfy"] == [
        "sd_xl_base_1.0.safetensors",
        "v1-5-pruned-emaonly.safetensors",
    ]
    assert info.capabilities["hardware.gpu_model"] == "NVIDIA GeForce RTX 4090"
    assert info.capabilities["hardware.gpu_memory_gb"] == 24.0
    posted = [r for r in recorded(record) if r["path"] == "/prompt" and r["method"] == "POST"]
    assert posted[0]["body"]["prompt"] == WORKFLOW and posted[0]["body"]["client_id"]
    ws = [r for r in recorded(record) if r["method"] == "WS"]
    assert ws[0]["query"]["clientId"] == posted[0]["body"]["client_id"]


async def test_a1111_job_end_to_end_with_progress_and_image_frames(
    tmp_path: Path, procs: list[Proc], hub: str
) -> None:
    _, port, record = standin(tmp_path, procs, "a1111", 0, "--step-delay", "0.05")
    connector_worker(
        tmp_path,
        hub,
        procs,
        "sd",
        "a1111",
        f"url=http://127.0.0.1:{port}",
        "progress_interval=0.05",
        name="sd1",
    )
    async with Client(hub) as client:
        await eventually(lambda: serving(client, "sd1", "sd"), 20)
        job_id = await client.submit("sd", {"prompt": "a lighthouse", "steps": 10, "batch_size": 2})
        events = await follow(client, job_id)
        job = await client.status(job_id)
        info = await worker_named(client, "sd1")
    assert events[-1].kind == "completed", events[-1]
    assert any(m and m.startswith("step ") for _, m in progress_of(events)), progress_of(events)
    assert job is not None and job.result is not None and len(job.result) == 3
    header = json.loads(job.result[0])
    assert header["info"]["prompt"] == "a lighthouse" and len(header["images"]) == 2
    assert all(frame.startswith(b"\x89PNG") for frame in job.result[1:])
    assert "v1-5-pruned-emaonly" in info.capabilities["models.sd"]
    assert any(r["path"] == "/sdapi/v1/txt2img" for r in recorded(record))


async def test_http_connector_sync_contract_poll_callback_and_pipelining(
    tmp_path: Path, procs: list[Proc], hub: str
) -> None:
    _, port, record = standin(tmp_path, procs, "service", 0, "--step-delay", "0.1")
    base = f"http://127.0.0.1:{port}"
    workers = {
        "upper": ("web1", [f"url={base}/run"]),
        "long": (
            "web2",
            [
                f"url={base}/jobs",
                "mode=poll",
                "poll_interval=0.05",
                "progress_scale=100",
                "result_field=result.text",
                "content_type=application/json",
            ],
        ),
        "later": (
            "web3",
            [
                f"url={base}/deferred",
                "mode=callback",
                'template={"callback_url": "{{callback_url}}", "text": {{payload_string}}}',
            ],
        ),
        "piped": ("web4", [f"url={base}/run", "pipeline=4", "concurrency=16"]),
    }
    for service, (name, options) in workers.items():
        connector_worker(tmp_path, hub, procs, service, "http", *options, name=name)
    async with Client(hub) as client:
        for service, (name, _) in workers.items():
            await eventually(lambda n=name, s=service: serving(client, n, s), 20)
        # the contract: url= is POSTed the payload, the reply's body is the result
        assert await client.result(await client.submit("upper", b"hello"), 10) == b"HELLO"
        polled = await client.submit("long", {"steps": 4, "text": "polled"})
        called = await client.submit("later", b"deferred")
        followers = asyncio.gather(follow(client, polled), follow(client, called))
        piped = [await client.submit("piped", f"job {i}") for i in range(40)]
        poll_events, callback_events = await followers
        assert await client.result(polled, 10) == b"POLLED"
        assert await client.result(called, 10) == b"DEFERRED"
        assert [await client.result(j, 10) for j in piped] == [f"JOB {i}".encode() for i in range(40)]
    polls = progress_of(poll_events)  # the first may come before the client listens
    assert len(polls) >= 2 and set(polls) <= {(20.0 * i, f"poll {i}") for i in range(1, 5)}
    assert progress_of(callback_events) == [(50.0, "half way")]
    # health checks: a GET on the POST URL by default (405 still means the service is up)
    assert any(r["method"] == "GET" and r["path"] == "/run" for r in recorded(record))


async def test_websocket_and_simulation_connectors_end_to_end(
    tmp_path: Path, procs: list[Proc], hub: str
) -> None:
    _, port, _ = standin(tmp_path, procs, "service", 0, "--step-delay", "0.05")
    connector_worker(
        tmp_path,
        hub,
        procs,
        "stream",
        "websocket",
        f"url=ws://127.0.0.1:{port}/ws",
        "progress_scale=100",
        name="ws1",
    )
    connector_worker(
        tmp_path, hub, procs, "demo", "simulation", "duration=0.3", "steps=3", "result_size=10", name="sim1"
    )
    async with Client(hub) as client:
        await eventually(lambda: serving(client, "ws1", "stream"), 20)
        await eventually(lambda: serving(client, "sim1", "demo"), 20)
        stream_id = await client.submit("stream", {"steps": 3, "text": "streamed"})
        demo_id = await client.submit("demo", b"")
        stream_events, demo_events = await asyncio.gather(follow(client, stream_id), follow(client, demo_id))
        stream_job, demo_job = await client.status(stream_id), await client.status(demo_id)
    first_value, first_message = progress_of(stream_events)[0]
    assert first_value == pytest.approx(100 / 3) and first_message == "step 1/3"
    assert stream_job is not None and stream_job.result == [b'{"text": "STREAMED"}', b"BIN"]
    assert [m for _, m in progress_of(demo_events)] == ["step 1/3", "step 2/3", "step 3/3"]
    assert demo_job is not None and demo_job.result is not None and len(demo_job.result[0]) == 10


# ---------------------------------------------------------------- cancel reaches the service


async def test_cancel_reaches_comfyui_a1111_and_http_services(
    tmp_path: Path, procs: list[Proc], hub: str
) -> None:
    _, comfy_port, comfy_record = standin(tmp_path, procs, "comfyui", 0, "--step-delay", "0.05")
    _, sd_port, sd_record = standin(tmp_path, procs, "a1111", 0, "--step-delay", "0.05")
    _, web_port, web_record = standin(tmp_path, procs, "service")
    comfy_url, sd_url, web_url = (f"http://127.0.0.1:{p}" for p in (comfy_port, sd_port, web_port))
    connector_worker(tmp_path, hub, procs, "comfy", "comfyui", f"url={comfy_url}", "concurrency=2", name="c1")
    connector_worker(tmp_path, hub, procs, "sd", "a1111", f"url={sd_url}", name="s1")
    connector_worker(
        tmp_path,
        hub,
        procs,
        "web",
        "http",
        f"url={web_url}/run",
        f"cancel_url={web_url}/cancel/{{{{job_id}}}}",
        name="h1",
    )
    long_flow = {**WORKFLOW, "3": {"class_type": "KSampler", "inputs": {"steps": 400}}}
    async with Client(hub) as client:
        for name, service in (("c1", "comfy"), ("s1", "sd"), ("h1", "web")):
            await eventually(lambda n=name, s=service: serving(client, n, s), 20)
        running = await client.submit("comfy", long_flow)
        queued = await client.submit("comfy", long_flow)  # ComfyUI runs one prompt at a time
        generating = await client.submit("sd", {"prompt": "slow", "steps": 400})
        sleeping = await client.submit("web", {"delay": 30})

        def started(record: Path, path: str) -> Callable[[], bool]:
            return lambda: (
                sum(1 for r in recorded(record) if r["path"] == path) >= (2 if path == "/prompt" else 1)
            )

        await eventually(started(comfy_record, "/prompt"), 10)
        await eventually(started(sd_record, "/sdapi/v1/txt2img"), 10)
        await eventually(started(web_record, "/run"), 10)
        await eventually(lambda: progress_seen(client, running), 10)
        for job_id in (queued, running, generating, sleeping):
            await client.cancel(job_id)

        def asked(record: Path, path: str) -> Callable[[], bool]:
            return lambda: any(r["method"] == "POST" and r["path"] == path for r in recorded(record))

        await eventually(asked(comfy_record, "/interrupt"), 10)
        await eventually(asked(comfy_record, "/queue"), 10)
        await eventually(asked(sd_record, "/sdapi/v1/interrupt"), 10)
        await eventually(asked(web_record, f"/cancel/{sleeping}"), 10)
        states = [(await client.status(j)).state for j in (running, queued, generating, sleeping)]  # type: ignore[union-attr]
    assert states == [JobState.CANCELLED] * 4
    posts = [r for r in recorded(comfy_record) if r["method"] == "POST"]
    deleted = next(r for r in posts if r["path"] == "/queue")["body"]["delete"]
    interrupted = next(r for r in posts if r["path"] == "/interrupt")["body"]["prompt_id"]
    assert len(deleted) == 1 and deleted[0] != interrupted  # the waiting prompt left the queue


async def progress_seen(client: Client, job_id: int) -> bool:
    job = await client.status(job_id)
    return job is not None and (job.progress or 0) > 0


# ---------------------------------------------------------------- health steers the worker


async def test_service_killed_mid_job_fails_over_and_the_worker_comes_back(
    tmp_path: Path, procs: list[Proc], hub: str
) -> None:
    service_a, port_a, _ = standin(tmp_path, procs, "comfyui", 0, "--step-delay", "0.05")
    _, port_b, _ = standin(tmp_path, procs, "comfyui", 0, "--step-delay", "0.01")
    connector_worker(tmp_path, hub, procs, "comfy", "comfyui", f"url=http://127.0.0.1:{port_a}", name="wa")
    async with Client(hub) as client:
        await eventually(lambda: serving(client, "wa", "comfy"), 20)
        job_id = await client.submit(
            "comfy", {**WORKFLOW, "3": {"class_type": "KSampler", "inputs": {"steps": 200}}}, backoff=0.05
        )
        await eventually(lambda: progress_seen(client, job_id), 10)
        worker_b = connector_worker(
            tmp_path, hub, procs, "comfy", "comfyui", f"url=http://127.0.0.1:{port_b}", name="wb"
        )
        await eventually(lambda: serving(client, "wb", "comfy"), 20)
        service_a.kill()  # ComfyUI dies under the running job

        # the hub learns that this worker's ComfyUI is down and gives it no more comfy jobs
        await eventually(lambda: not_serving(client, "wa", "comfy"), 10)
        job = await client.wait(job_id, 30)
        assert job.state is JobState.COMPLETED and job.attempts == 2
        b = await worker_named(client, "wb")
        assert job.worker == b.id  # retried on the other worker
        others = [await client.submit("comfy", WORKFLOW) for _ in range(4)]
        assert {(await client.wait(j, 30)).worker for j in others} == {b.id}

        # the service returns on the same address: the worker takes its jobs again by itself
        standin(tmp_path, procs, "comfyui", port_a, "--step-delay", "0.01")
        await eventually(lambda: serving(client, "wa", "comfy"), 20)
        worker_b.terminate()
        await eventually(lambda: worker_gone(client, "wb"), 20)
        back = await client.wait(await client.submit("comfy", WORKFLOW), 30)
        a = await worker_named(client, "wa")
    assert back.state is JobState.COMPLETED and back.worker == a.id


async def test_the_cli_shows_a_down_backend_in_workers_and_explain(
    tmp_path: Path, procs: list[Proc], hub: str
) -> None:
    down = f"http://127.0.0.1:{free_port()}/run"  # nothing listens there
    connector_worker(tmp_path, hub, procs, "web", "http", f"url={down}", name="wd")
    async with Client(hub) as client:
        await eventually(lambda: not_serving(client, "wd", "web"), 20)
        job_id = await client.submit("web", b"x")
    listed = await asyncio.to_thread(cli, "workers", "--hub", hub, "--json")
    [worker] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert worker["health"]["web"] != "ok" and "refused" in worker["health"]["web"]
    explained = await asyncio.to_thread(cli, "explain", str(job_id), "--hub", hub)
    assert f"web on worker {worker['id']} unhealthy: " in explained.stdout


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(jobq_command(*args), capture_output=True, text=True, timeout=60)


async def not_serving(client: Client, name: str, service: str) -> bool:
    """The hub knows the worker's backend for ``service`` is down (it says why)."""
    info = await worker_named(client, name)
    return info is not None and bool(info.unhealthy.get(service))


async def worker_gone(client: Client, name: str) -> bool:
    return await worker_named(client, name) is None


# ---------------------------------------------------------------- bad configuration


def test_bad_configuration_is_refused_at_start_naming_the_key(tmp_path: Path) -> None:
    typo = tmp_path / "typo.toml"
    typo.write_text('[services.comfy]\nconnector = "comfyui"\nurll = "http://127.0.0.1:8188"\n')
    cases = {
        "typo": ["--config", str(typo)],
        "no url": ["--service", "x", "--connector", "http"],
        "unknown": ["--service", "x", "--connector", "comfyu"],
        "bad value": ["--service", "x", "--connector", "simulation", "--connector-option", "steps=many"],
    }
    runs = {
        label: subprocess.Popen(
            jobq_command("worker", "--hub", f"tcp://127.0.0.1:{free_port()}", *args),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for label, args in cases.items()
    }
    out = {label: (p.communicate(timeout=30)[0], p.returncode)[::-1] for label, p in runs.items()}
    assert out["typo"][0] == 2
    assert (
        "services.comfy.urll: unknown key for the comfyui connector (did you mean 'url'?)" in out["typo"][1]
    )
    assert out["no url"][0] == 2 and "url: required for the http connector" in out["no url"][1]
    assert (
        out["unknown"][0] == 2 and "unknown connector 'comfyu' (did you mean 'comfyui'?)" in out["unknown"][1]
    )
    assert out["bad value"][0] == 2 and "steps: 'many' is not an integer" in out["bad value"][1]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[services]\n", "services: declare at least one [services.NAME]"),
        (
            "[worker]\nhealth_intervall = 1\n[services.a]\nconnector = 'simulation'\n",
            "worker.health_intervall: unknown key (did you mean 'health_interval'?)",
        ),
        ("[services.a]\nurl = 'http://x'\n", "services.a.connector: required"),
        (
            "[services.a]\nconnector = 'a1111'\nconcurrency = 2\n",
            "services.a.concurrency: the a1111 connector runs one job at a time",
        ),
        (
            "[services.a]\nconnector = 'http'\nurl = 'ftp://x'\n",
            "'ftp://x' is not an http:// or https:// URL",
        ),
        (
            "[services.a]\nconnector = 'tests.handlers:upper'\n",
            "is not a jobq.worker.connectors.Connector subclass",
        ),
        (
            "[services.a]\nconnector = 'http'\nurl = 'http://x'\nmode = 'pol'\n",
            "services.a.mode: 'pol' is not one of sync, poll, callback (did you mean 'poll'?)",
        ),
    ],
)
def test_configuration_errors_name_the_key(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "worker.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_and_build(path)
    assert message in str(caught.value)


def load_and_build(path: Path) -> None:
    for svc in worker_config.load_file(path).services:
        svc.build()


@pytest.mark.parametrize("example", sorted((REPO / "examples").glob("worker-*.toml")), ids=lambda p: p.name)
def test_the_examples_are_valid(example: Path) -> None:
    load_and_build(example)


# ---------------------------------------------------------------- the steering rules


def _job(job_id: int, service: str) -> Assignment:
    return Assignment(id=job_id, token=1, service=service, payload=[b""])


def test_triage_starts_within_each_limit_and_gives_back_jobs_of_services_that_are_down() -> None:
    waiting = deque([_job(1, "x"), _job(2, "y"), _job(3, "x"), _job(4, "down"), _job(5, "y")])
    busy = {"y": 1}
    start, back = triage(waiting, {}, busy, {"x": 1, "y": 2}, {"down"}, free=10)
    assert [a.id for a in start] == [1, 2]
    assert [a.id for a in back] == [4]
    assert [a.id for a in waiting] == [3, 5]  # over their service's limit: they wait, in order
    assert busy == {"x": 1, "y": 2}
