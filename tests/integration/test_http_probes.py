"""``/health`` and ``/ready`` against a real hub process (issue 12, finding 10): they follow the
store (Redis made unreachable through a proxy we cut, never the shared server; SQLite) and the
hub's shutdown."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.helpers import Proc
from tests.http_helpers import Peer, start_http_hub
from tests.redis_helpers import REDIS_URL, Namespace, Proxy, require_redis


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    require_redis()
    p = Proxy().start()
    yield p
    p.close()


@pytest.fixture
def namespace() -> Iterator[Namespace]:
    ns = Namespace(timeout="1")
    yield ns
    ns.cleanup()


def wait_for(url: str, status: int, timeout: float = 10.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.get(url, timeout=5)
        if answer.status_code == status:
            return answer
        assert time.monotonic() < deadline, (url, answer.status_code, answer.text)
        time.sleep(0.1)


@pytest.mark.parametrize("how", ["refuse", "blackhole"])
def test_health_and_ready_follow_redis(
    tmp_path: Path, namespace: Namespace, proxy: Proxy, procs: list[Proc], how: str
) -> None:
    # (namespace first: fixtures end in reverse, so the hub dies before its keys are removed)
    hub = start_http_hub(tmp_path, ["--store", namespace.url.replace(REDIS_URL, proxy.url)])
    procs.append(hub.proc)
    healthy = httpx.get(hub.url + "/health").json()
    assert healthy["status"] == "ok" and healthy["store"] == "ok" and healthy["ready"] is True
    assert httpx.get(hub.url + "/ready").status_code == 200

    proxy.refuse() if how == "refuse" else proxy.blackhole()
    started = time.monotonic()
    down = wait_for(hub.url + "/health", 503)
    assert time.monotonic() - started < 5
    body = down.json()
    assert body["status"] == "store_down" and body["store"] == "down" and body["ready"] is False
    assert "redis at 127.0.0.1" in body["reason"]
    assert down.headers["retry-after"] == "1"
    ready = httpx.get(hub.url + "/ready")
    assert ready.status_code == 503 and ready.json()["status"] == "store_down"
    # a flood of probes is answered from one store call a second, quickly
    flood = time.monotonic()
    with httpx.Client(base_url=hub.url) as client:
        for _ in range(50):
            assert client.get("/health").status_code == 503
    assert time.monotonic() - flood < 5

    proxy.restore()
    back = wait_for(hub.url + "/health", 200)
    assert back.json()["status"] == "ok" and back.json()["reason"] is None
    assert httpx.get(hub.url + "/ready").status_code == 200


async def test_health_and_ready_on_sqlite_and_while_the_hub_shuts_down(
    tmp_path: Path, procs: list[Proc]
) -> None:
    hub = start_http_hub(tmp_path, ["--store", f"sqlite:///{tmp_path / 'jobq.db'}", "--grace", "20"])
    procs.append(hub.proc)
    async with httpx.AsyncClient(base_url=hub.url, timeout=5) as api:
        for probe in ("/health", "/ready"):
            answer = await api.get(probe)
            assert answer.status_code == 200, answer.text
            assert answer.json()["store"] == "ok" and answer.json()["status"] == "ok"
        # a job held by a worker keeps the hub in its grace period once told to stop
        worker = await Peer.open(hub.ws + "/ws/worker")
        try:
            await worker.request(
                {"type": "register_worker", "worker_id": "slow", "services": ["slow"], "slots": 1},
                "worker_registered",
            )
            assert (await api.post("/api/jobs", json={"type": "slow", "payload": 1})).status_code == 201
            await worker.expect("job_assigned")
            hub.proc.popen.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 10
            while (health := await api.get("/health")).status_code != 503:
                assert time.monotonic() < deadline, health.text
                await asyncio.sleep(0.05)
            assert health.json()["status"] == "draining" and health.json()["ready"] is False
            ready = await api.get("/ready")
            assert ready.status_code == 503 and ready.json()["reason"] == "the hub is shutting down"
        finally:
            await Peer.close_all()
