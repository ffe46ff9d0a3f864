"""The HTTP door's WebSocket streams against a real hub process: clients, workers, monitors,
and flows across doors (ZeroMQ submit watched over /ws/client, the worker SDK over /ws/worker)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from jobq.client.client import Client
from tests.helpers import Proc, start_worker
from tests.http_helpers import HttpHub, Peer, start_http_hub


@pytest.fixture(autouse=True)
async def close_peers() -> AsyncIterator[None]:
    yield
    await Peer.close_all()


@pytest.fixture
def hub(tmp_path: Path, procs: list[Proc]) -> HttpHub:
    started = start_http_hub(tmp_path, ["--http-monitor-queue", "20", "--http-max-body", "65536"])
    procs.append(started.proc)
    return started


async def test_client_submits_and_follows_a_job_run_by_a_websocket_worker(hub: HttpHub) -> None:
    worker = await Peer.open(hub.ws + "/ws/worker")
    client = await Peer.open(hub.ws + "/ws/client")
    registered = await worker.request(
        {
            "type": "register_worker",
            "id": 1,
            "worker_id": "ws-w1",
            "capabilities": {"services": ["paint"], "hardware": {"gpu_memory_gb": 24}},
            "slots": 1,
        },
        "worker_registered",
    )
    assert registered["request_id"] == 1 and registered["heartbeat"] == 0.2
    submitted = await client.request(
        {
            "type": "submit_job",
            "id": "r1",
            "job_type": "paint",
            "payload": {"colour": "blue"},
            "requirements": {"hardware": {"gpu_memory_gb": 16}},
            "timestamp": 1700000000000,
        },
        "job_submitted",
    )
    assert submitted["request_id"] == "r1" and submitted["status"] == "queued"
    job_id = submitted["job_id"]
    assigned = await worker.expect("job_assigned")
    assert assigned["job_id"] == job_id and assigned["payload"] == {"colour": "blue"}
    assert assigned["token"] == 1 and assigned["service"] == "paint"
    await worker.send({"type": "update_job_progress", "job_id": job_id, "progress": 50, "message": "half"})
    await worker.send({"type": "complete_job", "job_id": job_id, "result": {"url": "blue.png"}})
    assert (await worker.expect("job_completed_ack"))["job_id"] == job_id
    progress = await client.expect("update_job_progress", job_id=job_id)
    assert progress["progress"] == 50 and progress["message"] == "half"
    done = await client.expect("complete_job", job_id=job_id)
    assert done["result"] == {"url": "blue.png"} and done["status"] == "completed"
    status = await client.request({"type": "get_job_status", "job_id": str(job_id)}, "job_status")
    assert status["status"] == "completed" and status["result"] == {"url": "blue.png"}
    await worker.close()
    await client.close()


async def test_zeromq_submit_watched_over_websocket_client(
    tmp_path: Path, hub: HttpHub, procs: list[Proc]
) -> None:
    async with Client(hub.endpoint) as zmq_client:
        job_id = await zmq_client.submit("echo", b"from zeromq")
    client = await Peer.open(hub.ws + "/ws/client")
    confirmed = await client.request(
        {"type": "subscribe_progress", "job_id": job_id}, "subscription_confirmed"
    )
    assert confirmed["status"] == "queued"
    procs.append(start_worker(tmp_path, hub.endpoint, service="echo", handler="tests.handlers:upper"))
    started = await client.expect("job_assigned", timeout=20, job_id=job_id)
    assert started["worker_id"]
    done = await client.expect("complete_job", timeout=20, job_id=job_id)
    assert done["result"] == "FROM ZEROMQ" and done["result_encoding"] == "text"
    # Subscribing to a job that has ended answers its end at once.
    await client.send({"type": "subscribe_progress", "job_id": job_id})
    assert (await client.expect("complete_job", job_id=job_id))["result"] == "FROM ZEROMQ"
    await client.close()


async def test_cancel_reaches_the_websocket_worker_and_pull_workers_claim(hub: HttpHub) -> None:
    worker = await Peer.open(hub.ws + "/ws/worker")
    client = await Peer.open(hub.ws + "/ws/client")
    await worker.request(
        {"type": "register_worker", "worker_id": "puller", "services": ["slow"], "pull": True, "slots": 2},
        "worker_registered",
    )
    assert (await worker.request({"type": "claim_job"}, "no_job_available"))["type"] == "no_job_available"
    first = (await client.request({"type": "submit_job", "job_type": "slow", "payload": 1}, "job_submitted"))[
        "job_id"
    ]
    second = (
        await client.request({"type": "submit_job", "job_type": "slow", "payload": 2}, "job_submitted")
    )["job_id"]
    await worker.send({"type": "claim_job", "count": 2})
    claimed = {(await worker.expect("job_assigned"))["job_id"] for _ in range(2)}
    assert claimed == {first, second}
    cancelled = await client.request({"type": "cancel_job", "job_id": first}, "job_cancelled")
    assert cancelled["status"] == "cancelled"
    stop = await worker.expect("cancel_job")
    assert stop["job_id"] == first
    failed = await worker.request(
        {"type": "fail_job", "job_id": second, "error": "out of paint", "retry": False}, "job_failed_ack"
    )
    assert failed["status"] == "failed"
    end = await client.expect("job_failed", job_id=second)
    assert end["error"] == "out of paint"
    # A result for the cancelled attempt is refused: its lease is gone.
    refused = await worker.request(
        {"type": "complete_job", "job_id": first, "token": 1, "result": 1}, "error"
    )
    assert refused["error"] == "lease_lost"
    await worker.close()
    await client.close()


async def test_worker_that_disconnects_gives_its_jobs_back(hub: HttpHub) -> None:
    worker = await Peer.open(hub.ws + "/ws/worker")
    await worker.request(
        {"type": "register_worker", "worker_id": "quitter", "services": ["q"]}, "worker_registered"
    )
    async with httpx.AsyncClient(base_url=hub.url) as api:
        job_id = (await api.post("/api/jobs", json={"type": "q", "payload": 1})).json()["job_id"]
        await worker.expect("job_assigned", job_id=job_id)
        await worker.close()
        for _ in range(200):
            job = (await api.get(f"/api/jobs/{job_id}")).json()
            if job["status"] == "queued":
                break
            await asyncio.sleep(0.02)
    assert job["status"] == "queued" and job["attempts"] == 1


BAD_MESSAGES = [
    ("not json", "hello", "invalid", []),
    ("not an object", "[1]", "invalid", ["type"]),
    ("no type", "{}", "invalid", ["type"]),
    ("unknown type", '{"type": "make_coffee"}', "invalid", ["type"]),
    ("job id of the wrong type", '{"type": "get_job_status", "job_id": [1]}', "invalid", ["job_id"]),
    ("unknown job", '{"type": "get_job_status", "job_id": "nope"}', "not_found", []),
    ("huge job id", '{"type": "cancel_job", "job_id": 99999999999999999999999}', "invalid", ["job_id"]),
    ("submit without a service", '{"type": "submit_job", "payload": 1}', "invalid", ["job_type"]),
    (
        "submit with a wrong field",
        '{"type": "submit_job", "job_type": "x", "payload": 1, "priority": "high"}',
        "invalid",
        ["priority"],
    ),
    (
        "submit with an unknown field",
        '{"type": "submit_job", "job": {"type": "x", "payload": 1, "size": 3}}',
        "invalid",
        ["size"],
    ),
]


async def test_bad_client_messages_get_an_error_and_the_stream_stays_open(hub: HttpHub) -> None:
    client = await Peer.open(hub.ws + "/ws/client")
    for name, text, code, fields in BAD_MESSAGES:
        await client.send(text)
        error = await client.expect("error")
        assert error["error"] == code and error["message"], name
        if fields:
            assert error["fields"] == fields, name
        assert (await client.request({"type": "ping", "id": name}, "pong"))["request_id"] == name


async def test_bad_worker_messages_and_oversized_messages(hub: HttpHub) -> None:
    worker = await Peer.open(hub.ws + "/ws/worker")
    needs = await worker.request({"type": "worker_heartbeat"}, "register_required")
    assert "register_worker" in needs["reason"]
    error = await worker.request({"type": "register_worker", "services": ["x"]}, "error")
    assert error["fields"] == ["worker_id"]
    error = await worker.request({"type": "register_worker", "worker_id": "w", "slots": -1}, "error")
    assert error["fields"] == ["slots"]
    error = await worker.request({"type": "register_worker", "worker_id": "w"}, "error")
    assert "at least one service" in error["message"]
    await worker.send("x" * 70000)  # over --http-max-body: the door closes the stream (1009)
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await worker.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
    async with httpx.AsyncClient(base_url=hub.url) as api:
        assert (await api.get("/health")).status_code == 200


async def test_monitor_gets_a_snapshot_then_live_events_and_figures(hub: HttpHub) -> None:
    monitor = await Peer.open(hub.ws + "/ws/monitor")
    worker = await Peer.open(hub.ws + "/ws/worker")
    await worker.request(
        {"type": "register_worker", "worker_id": "mw", "services": ["m"], "slots": 3}, "worker_registered"
    )
    snapshot = await monitor.request({"type": "request_full_state", "jobs_limit": 10}, "full_state_snapshot")
    assert [w["worker_id"] for w in snapshot["workers"]] == ["mw"]
    assert snapshot["stats"]["slots"] == 3 and "by_state" in snapshot["stats"]["jobs"]
    async with httpx.AsyncClient(base_url=hub.url) as api:
        job_id = (await api.post("/api/jobs", json={"type": "m", "payload": 1, "priority": 4})).json()[
            "job_id"
        ]
    submitted = await monitor.expect("job_submitted", job_id=job_id)
    assert submitted["service"] == "m"
    assigned = await monitor.expect("job_assigned", job_id=job_id)
    assert assigned["worker_id"] == "mw"
    # Then, every second: the figures, and the worker's news (connected, or changed if the
    # first figures came before it registered) showing the job it runs.
    seen: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 10
    while not ("system_stats" in seen and "worker" in seen) and time.monotonic() < deadline:
        news = await monitor.recv()
        if news["type"] == "system_stats" and news["slots_free"] == 2:
            seen["system_stats"] = news
        elif news["type"] in ("worker_connected", "worker_status_changed") and news["worker"]["running"] == 1:
            seen["worker"] = news
    stats = seen["system_stats"]
    assert stats["workers"] == 1 and stats["slots"] == 3
    assert set(stats["latency"]) == {"queue_wait", "run_time"}
    assert stats["counters"]["submitted"] == 1
    await worker.close()
    gone = await monitor.expect("worker_disconnected", timeout=5)
    assert gone["worker_id"] == "mw"
    await monitor.close()


async def test_a_monitor_that_falls_behind_is_resynced_and_slows_nobody(hub: HttpHub) -> None:
    """--http-monitor-queue is 20: fifty events in one turn overflow a per-event monitor, which is
    told so and sent a fresh snapshot; a monitor that reads nothing at all never holds the hub up."""
    reader = await Peer.open(hub.ws + "/ws/monitor")
    stuck = await websockets.connect(hub.ws + "/ws/monitor", max_queue=1, close_timeout=0.1)  # never reads
    try:
        await flood(hub, reader)
    finally:
        await stuck.close()


async def flood(hub: HttpHub, reader: Peer) -> None:
    async with httpx.AsyncClient(base_url=hub.url, timeout=20) as api:
        jobs = [{"type": "flood", "payload": i} for i in range(50)]
        answer = await api.post("/api/jobs/batch", json={"jobs": jobs})
        assert answer.status_code == 201
        notice = await reader.expect("resync_required")
        assert notice["dropped"] >= 50 and "fell behind" in notice["reason"]
        snapshot = await reader.expect("full_state_snapshot")
        assert snapshot["stats"]["jobs"]["by_service"]["flood"]["queued"] == 50
        for _ in range(5):  # 5000 events for the monitor that does not read
            assert (
                await api.post("/api/jobs/batch", json={"jobs": [{"type": "more", "payload": 1}] * 1000})
            ).status_code == 201
        assert (await api.get("/health")).status_code == 200
        metrics = (await api.get("/metrics")).text
    resyncs = [line for line in metrics.splitlines() if line.startswith("jobq_http_monitor_resyncs_total")]
    assert resyncs and float(resyncs[0].split()[-1]) >= 2


async def test_worker_sdk_runs_jobs_over_the_websocket_door(
    tmp_path: Path, hub: HttpHub, procs: list[Proc]
) -> None:
    """`jobq worker --hub tcp://(nothing),ws://hub` falls back to the WebSocket door; bytes survive."""
    from tests.helpers import free_port

    dead = f"tcp://127.0.0.1:{free_port()}"
    procs.append(start_worker(tmp_path, f"{dead},{hub.ws}", service="sdk", handler="tests.handlers:upper"))
    async with httpx.AsyncClient(base_url=hub.url, timeout=30) as api:
        job_id = (
            await api.post(
                "/api/jobs", json={"type": "sdk", "payload": "YWIA/w==", "payload_encoding": "base64"}
            )
        ).json()["job_id"]
        answer = await api.get(f"/api/jobs/{job_id}/result", params={"wait": 25, "raw": True})
        assert answer.status_code == 200 and answer.content == b"AB\x00\xff"
        workers = (await api.get("/api/workers")).json()
    assert [w["door"] for w in workers] == ["http"]
    assert json.loads(json.dumps(workers))[0]["services"] == ["sdk"]
