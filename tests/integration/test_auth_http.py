"""Identity on the HTTP door (issue 11): every HTTP and WebSocket attack of the issue, refused
with ``--auth`` and still working for a token that has the right, against a real hub process.

Attacks: read, cancel and retry any job; ``/metrics``, workers and the dashboard's data open;
a ``text/plain`` POST from ``Origin: evil.example`` (CSRF); any ``Host`` (DNS rebinding); a
foreign ``Origin`` opening the WebSockets; registering as a WebSocket worker or sending
``complete_job`` without a worker token. Also: scopes (a client sees its customers' jobs only,
a monitor never sees payloads), revocation closing open connections, and the audit log.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from jobq import authfile
from tests.http_helpers import HttpHub, Peer, start_http_hub

ALLOWED_ORIGIN = "https://dash.example.com"
EVIL = "http://evil.example"

#: name → (role, customers, services)
TOKENS: dict[str, tuple[str, list[str], list[str]]] = {
    "admin": ("admin", [], []),
    "acme": ("client", ["acme"], []),
    "globex": ("client", ["globex"], []),
    "own": ("client", [], []),
    "monitor": ("monitor", [], []),
    "worker": ("worker", [], ["echo", "mon", "steal"]),
    "worker2": ("worker", [], ["echo", "mon", "steal"]),
    "worker-b": ("worker", ["B"], ["iso"]),
}


@dataclass
class Secured:
    hub: HttpHub
    auth: Path
    audit: Path
    tokens: dict[str, str]

    def bearer(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[name]}"}


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    tmp = tmp_path_factory.mktemp("auth-http")
    auth, audit = tmp / "auth.json", tmp / "audit.jsonl"
    tokens = {}
    for name, (role, customers, services) in TOKENS.items():
        tokens[name], _ = authfile.create_token(auth, role, customers=customers, services=services, name=name)
    hub = start_http_hub(
        tmp, ["--auth", str(auth), "--audit", str(audit), "--http-allow-origin", ALLOWED_ORIGIN]
    )
    yield Secured(hub, auth, audit, tokens)
    hub.proc.close()


@pytest.fixture(autouse=True)
async def close_peers() -> AsyncIterator[None]:
    yield
    await Peer.close_all()


@pytest.fixture
async def api(secured: Secured) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=secured.hub.url, timeout=20) as client:
        yield client


async def submit(api: httpx.AsyncClient, secured: Secured, who: str, body: dict[str, Any]) -> int:
    answer = await api.post("/api/jobs", json=body, headers=secured.bearer(who))
    assert answer.status_code == 201, answer.text
    job_id: int = answer.json()["job_id"]
    return job_id


async def state_of(api: httpx.AsyncClient, secured: Secured, job_id: int) -> str:
    answer = await api.get(f"/api/jobs/{job_id}", headers=secured.bearer("admin"))
    status: str = answer.json()["status"]
    return status


async def closed_with(peer_ws: Any, timeout: float = 10.0) -> tuple[int, str]:
    """The close code and reason of a connection the hub closes."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            await asyncio.wait_for(peer_ws.recv(), max(0.01, deadline - time.monotonic()))
    except ConnectionClosed as closed:
        rcvd = closed.rcvd
    assert rcvd is not None, "closed without a close frame"
    return rcvd.code, rcvd.reason


def assert_refused(answer: httpx.Response, status: int, code: str) -> None:
    assert answer.status_code == status, (answer.request.method, answer.request.url, answer.text)
    body = answer.json()
    assert body["error"] == code and body["message"], body
    if status == 401:
        assert answer.headers["www-authenticate"].startswith("Bearer")


PROTECTED = [
    ("GET", "/api/jobs"),
    ("POST", "/api/jobs"),
    ("POST", "/api/jobs/batch"),
    ("GET", "/api/jobs/1"),
    ("DELETE", "/api/jobs/1"),
    ("POST", "/api/jobs/1/retry"),
    ("GET", "/api/jobs/1/result"),
    ("GET", "/api/jobs/1/events"),
    ("GET", "/api/jobs/1/explain"),
    ("GET", "/api/workers"),
    ("GET", "/api/services"),
    ("GET", "/api/stats"),
    ("GET", "/metrics"),
    ("GET", "/api/nothing"),
]


async def test_no_token_no_data_and_the_pages_stay_open(secured: Secured, api: httpx.AsyncClient) -> None:
    job_id = await submit(api, secured, "acme", {"type": "nobody", "payload": {"secret": 1}})
    for method, path in PROTECTED:
        body = {"type": "x", "payload": 1} if method == "POST" else None
        assert_refused(await api.request(method, path, json=body), 401, "unauthorized")
    for header in ("Bearer jq_not-a-real-token", "Basic YWRtaW46YWRtaW4=", "Bearer", "jq_bare"):
        answer = await api.get("/api/jobs/1", headers={"Authorization": header})
        assert_refused(answer, 401, "unauthorized")
    # Nothing happened: the job is still queued, no job was created.
    assert await state_of(api, secured, job_id) == "queued"
    listed = await api.get("/api/jobs", params={"service": "x"}, headers=secured.bearer("admin"))
    assert listed.json()["jobs"] == []
    # Liveness, the pages and the API description carry no data and stay open.
    health = await api.get("/health")
    probe_fields = {"status", "hub", "uptime", "store", "ready", "reason"}  # no data in them
    assert health.status_code == 200 and set(health.json()) <= probe_fields
    ready = await api.get("/ready")
    assert ready.status_code == 200 and set(ready.json()) <= probe_fields
    for page in ("/", "/docs", "/dashboard/app.js", "/dashboard/api.js", "/dashboard/style.css"):
        answer = await api.get(page)
        assert answer.status_code == 200, page
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "http" not in csp
    document = (await api.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert document["paths"]["/health"]["get"]["security"] == []
    assert document["paths"]["/ready"]["get"]["security"] == []


async def test_clients_read_cancel_and_retry_only_their_customers_jobs(
    secured: Secured, api: httpx.AsyncClient
) -> None:
    job_id = await submit(api, secured, "acme", {"type": "nobody", "payload": {"prompt": "acme's secret"}})
    mine = await api.get(f"/api/jobs/{job_id}", headers=secured.bearer("acme"))
    assert mine.status_code == 200 and mine.json()["payload"] == {"prompt": "acme's secret"}
    assert mine.json()["customer_id"] == "acme"  # the token's customer, filled in by the hub
    globex = secured.bearer("globex")
    for method, path in [
        ("GET", f"/api/jobs/{job_id}"),
        ("DELETE", f"/api/jobs/{job_id}"),
        ("POST", f"/api/jobs/{job_id}/retry"),
        ("GET", f"/api/jobs/{job_id}/result"),
        ("GET", f"/api/jobs/{job_id}/events"),
        ("GET", f"/api/jobs/{job_id}/explain"),
        ("GET", "/api/jobs?customer_id=acme"),
    ]:
        assert_refused(await api.request(method, path, headers=globex), 403, "forbidden")
    listed = (await api.get("/api/jobs", headers=globex)).json()["jobs"]
    assert job_id not in [j["job_id"] for j in listed]
    refused = await api.post(
        "/api/jobs", json={"type": "x", "payload": 1, "customer_id": "acme"}, headers=globex
    )
    assert_refused(refused, 403, "forbidden")
    # A client token without customers sees only the jobs it submitted itself.
    own_job = await submit(api, secured, "own", {"type": "nobody", "payload": 2})
    assert_refused(await api.get(f"/api/jobs/{job_id}", headers=secured.bearer("own")), 403, "forbidden")
    assert_refused(await api.get(f"/api/jobs/{own_job}", headers=secured.bearer("acme")), 403, "forbidden")
    assert [
        j["job_id"] for j in (await api.get("/api/jobs", headers=secured.bearer("own"))).json()["jobs"]
    ] == [own_job]
    # Nothing the refused calls asked for happened ...
    assert await state_of(api, secured, job_id) == "queued"
    # ... and the owner's token does it.
    cancelled = await api.delete(f"/api/jobs/{job_id}", headers=secured.bearer("acme"))
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    retried = await api.post(f"/api/jobs/{job_id}/retry", headers=secured.bearer("acme"))
    assert retried.status_code == 200 and retried.json()["status"] == "queued"
    assert (await api.get(f"/api/jobs/{job_id}/explain", headers=secured.bearer("acme"))).status_code == 200
    assert (await api.get(f"/api/jobs/{job_id}/events", headers=secured.bearer("acme"))).status_code == 200
    # An admin may touch anyone's job.
    admin = await api.delete(f"/api/jobs/{job_id}", headers=secured.bearer("admin"))
    assert admin.status_code == 200 and admin.json()["status"] == "cancelled"


async def test_monitors_view_without_payloads_and_workers_see_nothing(
    secured: Secured, api: httpx.AsyncClient
) -> None:
    job_id = await submit(api, secured, "acme", {"type": "nobody", "payload": {"prompt": "private"}})
    monitor = secured.bearer("monitor")
    for path in ("/api/workers", "/api/services", "/api/stats", "/metrics", "/api/jobs"):
        assert (await api.get(path, headers=monitor)).status_code == 200, path
    assert "jobq_jobs_submitted_total" in (await api.get("/metrics", headers=monitor)).text
    seen = (await api.get(f"/api/jobs/{job_id}", headers=monitor)).json()
    assert seen["job_id"] == job_id and "private" not in json.dumps(seen)
    assert_refused(await api.delete(f"/api/jobs/{job_id}", headers=monitor), 403, "forbidden")
    assert_refused(await api.post(f"/api/jobs/{job_id}/retry", headers=monitor), 403, "forbidden")
    assert_refused(
        await api.post("/api/jobs", json={"type": "x", "payload": 1}, headers=monitor), 403, "forbidden"
    )
    worker = secured.bearer("worker")
    for path in ("/api/jobs", f"/api/jobs/{job_id}", "/api/stats", "/api/workers", "/metrics"):
        assert_refused(await api.get(path, headers=worker), 403, "forbidden")
    assert await state_of(api, secured, job_id) == "queued"


async def test_cross_site_requests_are_refused(secured: Secured, api: httpx.AsyncClient) -> None:
    admin = secured.bearer("admin")
    job_id = await submit(api, secured, "admin", {"type": "nobody", "payload": 1})
    body = json.dumps({"type": "csrf", "payload": 1})
    plain = {**admin, "Content-Type": "text/plain"}
    assert_refused(
        await api.post("/api/jobs", content=body, headers={**plain, "Origin": "http://evil.example"}),
        403,
        "forbidden",
    )
    assert_refused(await api.post("/api/jobs", content=body, headers=plain), 415, "unsupported_media_type")
    for kind in ("application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        answer = await api.post("/api/jobs", content=body, headers={**admin, "Content-Type": kind})
        assert_refused(answer, 415, "unsupported_media_type")
    for origin in (EVIL, "null", f"http://127.0.0.1:{secured.hub.port + 1}"):
        evil = {**admin, "Origin": origin}
        assert_refused(await api.delete(f"/api/jobs/{job_id}", headers=evil), 403, "forbidden")
        assert_refused(await api.post(f"/api/jobs/{job_id}/retry", headers=evil), 403, "forbidden")
    assert await state_of(api, secured, job_id) == "queued"
    listed = await api.get("/api/jobs", params={"service": "csrf"}, headers=admin)
    assert listed.json()["jobs"] == []
    # The hub's own origin and the allowed one, with JSON, work.
    json_type = {**admin, "Content-Type": "application/json"}
    for origin in (secured.hub.url, ALLOWED_ORIGIN):
        answer = await api.post("/api/jobs", content=body, headers={**json_type, "Origin": origin})
        assert answer.status_code == 201, answer.text
    reads = await api.get("/api/jobs", params={"service": "csrf"}, headers={**admin, "Origin": EVIL})
    assert len(reads.json()["jobs"]) == 2  # reads are not state-changing (no CORS: the page cannot read them)


def raw_request(port: int, head: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode())
        return sock.recv(4096).decode(errors="replace")


async def test_only_loopback_host_names_are_answered(secured: Secured, api: httpx.AsyncClient) -> None:
    port = secured.hub.port
    admin = secured.bearer("admin")
    for host in (
        f"evil.example:{port}",
        f"127.0.0.1:{port + 1}",
        "evil.example",
        f"10.0.0.1:{port}",
        "x:y:z",
    ):
        answer = await api.get("/api/stats", headers={**admin, "Host": host})
        assert answer.status_code == 421, (host, answer.text)
        assert answer.json()["error"] == "misdirected"
    assert (await api.get("/health", headers={"Host": f"evil.example:{port}"})).status_code == 421
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", f"LOCALHOST:{port}"):
        assert (await api.get("/api/stats", headers={**admin, "Host": host})).status_code == 200, host
    assert raw_request(port, "GET /health HTTP/1.0\r\n\r\n").startswith("HTTP/1.1 400")
    upgrade = (
        "GET /ws/monitor HTTP/1.1\r\nHost: evil.example:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {secured.tokens['admin']}\r\n\r\n"
    ).replace("{port}", str(port))
    assert raw_request(port, upgrade).startswith("HTTP/1.1 421")


@pytest.mark.parametrize("path", ["/ws/client", "/ws/worker", "/ws/monitor"])
async def test_websockets_refuse_foreign_origins_and_missing_tokens(secured: Secured, path: str) -> None:
    url = secured.hub.ws + path
    admin = secured.tokens["admin"]
    for origin in (EVIL, "null"):
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(
                url, origin=Origin(origin), additional_headers={"Authorization": f"Bearer {admin}"}
            )
        assert refused.value.response.status_code == 403
        assert b"origin" in refused.value.response.body
    with pytest.raises(InvalidStatus) as bad:
        await websockets.connect(url, additional_headers={"Authorization": "Bearer jq_wrong"})
    assert bad.value.response.status_code == 401
    # Without a header, the first message must be the token.
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "ping"}))
        code, reason = await closed_with(ws)
    assert code == 4401 and '"auth"' in reason
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "auth", "token": "jq_wrong-again"}))
        code, reason = await closed_with(ws)
    assert code == 4401 and "unknown or revoked token" in reason
    # The hub's own origin and the allowed one, with a token either way, are admitted.
    own = secured.hub.url
    who = "monitor" if path == "/ws/monitor" else ("worker" if path == "/ws/worker" else "acme")
    token = secured.tokens[who]
    first = await Peer.open(url, auth=token, origin=own)
    second = await Peer.open(url, token=token, origin=ALLOWED_ORIGIN)
    for peer in (first, second):
        answer = await peer.request({"type": "auth", "token": token, "id": 1}, "authenticated")
        assert answer["principal"] == who and answer["request_id"] == 1


async def test_websocket_clients_reach_only_their_jobs(secured: Secured, api: httpx.AsyncClient) -> None:
    job_id = await submit(api, secured, "acme", {"type": "nobody", "payload": {"p": "acme only"}})
    url = secured.hub.ws + "/ws/client"
    globex = await Peer.open(url, auth=secured.tokens["globex"])
    for message in (
        {"type": "get_job_status", "job_id": job_id},
        {"type": "subscribe_progress", "job_id": job_id},
        {"type": "cancel_job", "job_id": job_id},
        {"type": "submit_job", "job_type": "x", "payload": 1, "customer_id": "acme"},
    ):
        answer = await globex.request(message, "error")
        assert answer["error"] == "forbidden", answer
    monitor = await Peer.open(url, token=secured.tokens["monitor"])
    assert (await monitor.request({"type": "cancel_job", "job_id": job_id}, "error"))["error"] == "forbidden"
    assert await state_of(api, secured, job_id) == "queued"
    acme = await Peer.open(url, token=secured.tokens["acme"])
    status = await acme.request({"type": "get_job_status", "job_id": job_id}, "job_status")
    assert status["status"] == "queued"
    assert (await acme.request({"type": "cancel_job", "job_id": job_id}, "job_cancelled"))[
        "status"
    ] == "cancelled"


async def register(peer: Peer, worker_id: str, service: str, **extra: Any) -> dict[str, Any]:
    """The answer to register_worker: worker_registered or error."""
    await peer.send({"type": "register_worker", "worker_id": worker_id, "services": [service], **extra})
    while True:
        message = await peer.recv()
        if message["type"] in ("worker_registered", "error"):
            return message


async def test_websocket_workers_need_a_worker_token_and_cannot_forge_results(
    secured: Secured, api: httpx.AsyncClient
) -> None:
    url = secured.hub.ws + "/ws/worker"
    # No token: not even admitted.
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"type": "register_worker", "worker_id": "anon", "services": ["steal"]}))
        assert (await closed_with(ws))[0] == 4401
    # A client token is admitted but may not register, nor finish anything.
    client = await Peer.open(url, token=secured.tokens["acme"])
    assert (await register(client, "fake", "steal"))["error"] == "forbidden"
    real = await Peer.open(url, token=secured.tokens["worker"])
    assert (await register(real, "w-real", "steal"))["type"] == "worker_registered"
    job_id = await submit(
        api, secured, "acme", {"type": "steal", "payload": "the real payload", "payload_encoding": "text"}
    )
    assigned = await real.expect("job_assigned", job_id=job_id)
    # Forged results: from the client token, from another worker token under its own id, and
    # under the real worker's id (refused: another principal attached it).
    forged = {"type": "complete_job", "job_id": job_id, "token": assigned["token"], "result": "forged"}
    assert (await client.request(forged, "error"))["error"] == "lease_lost"
    thief = await Peer.open(url, token=secured.tokens["worker2"])
    assert (await register(thief, "w-real", "steal"))["error"] == "forbidden"
    assert (await register(thief, "w-thief", "steal"))["type"] == "worker_registered"
    assert (await thief.request(forged, "error"))["error"] == "lease_lost"
    failed = {"type": "fail_job", "job_id": job_id, "token": assigned["token"], "retry": False}
    assert (await thief.request(failed, "error"))["error"] == "lease_lost"
    assert await state_of(api, secured, job_id) == "running"
    # A worker token naming services may serve only those.
    assert (await register(thief, "w-gpu", "gpu"))["error"] == "forbidden"
    # The holder finishes it.
    done = {"type": "complete_job", "job_id": job_id, "token": assigned["token"], "result": "real"}
    assert (await real.request(done, "job_completed_ack"))["job_id"] == job_id
    result = await api.get(f"/api/jobs/{job_id}/result", headers=secured.bearer("acme"))
    assert result.json()["result"] == "real"


async def test_a_worker_token_for_b_never_gets_a_strict_job_of_a(
    secured: Secured, api: httpx.AsyncClient
) -> None:
    url = secured.hub.ws + "/ws/worker"
    declaring = await Peer.open(url, token=secured.tokens["worker-b"])
    answer = await register(
        declaring,
        "b-declares-a",
        "iso",
        capabilities={"customer_access": {"allowed_customers": ["A"], "isolation": "strict"}},
    )
    assert answer["error"] == "forbidden" and "'A'" in answer["message"]
    worker = await Peer.open(url, token=secured.tokens["worker-b"])
    strict = {"customer_access": {"isolation": "strict"}}  # dedicated to its token's customer
    assert (await register(worker, "b-worker", "iso", capabilities=strict))["type"] == "worker_registered"
    admin = secured.bearer("admin")
    strict_a = (
        await api.post(
            "/api/jobs",
            json={"type": "iso", "payload": "A's secret", "customer_id": "A", "isolation": "strict"},
            headers=admin,
        )
    ).json()["job_id"]
    strict_b = (
        await api.post(
            "/api/jobs",
            json={"type": "iso", "payload": "B's", "customer_id": "B", "isolation": "strict"},
            headers=admin,
        )
    ).json()["job_id"]
    assigned = await worker.expect("job_assigned")
    assert assigned["job_id"] == strict_b and assigned["customer_id"] == "B"
    with pytest.raises(TimeoutError):
        await worker.expect("job_assigned", timeout=0.6)  # (a worker silent for 1 s is gone)
    assert await state_of(api, secured, strict_a) == "queued"


async def test_monitor_streams_see_what_their_token_may_see(secured: Secured, api: httpx.AsyncClient) -> None:
    url = secured.hub.ws + "/ws/monitor"
    async with websockets.connect(url) as ws:  # a worker token is known, and refused by the stream
        await ws.send(json.dumps({"type": "auth", "token": secured.tokens["worker"]}))
        code, reason = await closed_with(ws)
    assert code == 4403 and "worker" in reason
    admin = await Peer.open(url, token=secured.tokens["admin"])
    monitor = await Peer.open(url, auth=secured.tokens["monitor"])
    acme = await Peer.open(url, auth=secured.tokens["acme"])
    worker = await Peer.open(secured.hub.ws + "/ws/worker", token=secured.tokens["worker"])
    assert (await register(worker, "w-mon", "mon"))["type"] == "worker_registered"

    async def run(customer: str) -> int:
        body = {"type": "mon", "payload": f"{customer}'s", "payload_encoding": "text"}
        job_id = await submit(api, secured, customer, body)
        assigned = await worker.expect("job_assigned", job_id=job_id)
        done = {"type": "complete_job", "job_id": job_id, "token": assigned["token"], "result": "R!"}
        await worker.request(done, "job_completed_ack")
        return job_id

    globex_job = await run("globex")
    acme_job = await run("acme")
    seen_admin = await admin.expect("complete_job", job_id=acme_job)
    assert seen_admin["result"] == "R!"
    seen_monitor = await monitor.expect("complete_job", job_id=acme_job)
    assert "result" not in seen_monitor
    heard: list[dict[str, Any]] = []
    while not heard or heard[-1].get("type") != "complete_job" or heard[-1].get("job_id") != acme_job:
        heard.append(await acme.recv())
    assert heard[-1]["result"] == "R!"
    assert globex_job not in [m.get("job_id") for m in heard]  # other customers' events never arrive
    # The snapshot goes through the hub with the caller: acme's lists only acme's jobs.
    snapshot = await acme.request({"type": "request_full_state"}, "full_state_snapshot")
    listed = {j["job_id"] for j in snapshot["jobs"]}
    assert acme_job in listed and globex_job not in listed
    assert all(j["customer_id"] == "acme" for j in snapshot["jobs"])
    assert snapshot["stats"]["counters"] == {}
    full = await monitor.request({"type": "request_full_state"}, "full_state_snapshot")
    assert {acme_job, globex_job} <= {j["job_id"] for j in full["jobs"]}
    assert "R!" not in json.dumps(full) and full["stats"]["counters"]["completed"] >= 2
    stats = await acme.expect("system_stats")  # figures keep coming, as acme may see them
    assert stats["counters"] == {} and stats["jobs"]["by_service"]["mon"] == {"completed": 1}


async def test_a_revoked_token_closes_its_connections_and_stops_working(
    secured: Secured, api: httpx.AsyncClient
) -> None:
    token, _ = authfile.create_token(secured.auth, "client", customers=["acme"], name="short-lived")
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 10
    await asyncio.sleep(0.6)  # the hub rereads the file (every half second at most)
    while (await api.get("/api/stats", headers=headers)).status_code != 200:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.3)
    client = await Peer.open(secured.hub.ws + "/ws/client", token=token)
    monitor = await Peer.open(secured.hub.ws + "/ws/monitor", auth=token)
    authfile.revoke(secured.auth, "short-lived")
    for peer in (client, monitor):
        code, reason = await closed_with(peer.ws, timeout=5)
        assert code == 4401 and "revoked" in reason
    assert_refused(await api.get("/api/stats", headers=headers), 401, "unauthorized")


async def test_the_audit_log_names_refusals_and_no_secret_is_logged(secured: Secured) -> None:
    records = [json.loads(line) for line in secured.audit.read_text().splitlines()]
    refused = [r for r in records if r["event"] == "refused"]
    assert {r["door"] for r in refused} >= {"http", "ws"}
    assert any(r["principal"] == "globex" and r.get("target", "").startswith("job ") for r in refused)
    assert any(r["principal"] == "anonymous" and r["peer"].startswith("127.0.0.1:") for r in refused)
    assert any(r["event"] == "action" and r["action"] == "cancel" for r in records)
    # The door's own refusals (a foreign origin, a rebound Host, a first message that is no token).
    assert any(r["door"] == "http" and "evil.example" in r.get("reason", "") for r in refused)
    assert any(r["action"].startswith("WEBSOCKET /ws/") and '"auth"' in r["reason"] for r in refused)
    logged = secured.audit.read_text() + secured.hub.proc.output()
    for token in secured.tokens.values():
        assert token not in logged
    assert "acme's secret" not in logged and "Traceback" not in logged


# ---------------------------------------------------------------- without --auth


@pytest.fixture(scope="module")
def open_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpHub]:
    hub = start_http_hub(tmp_path_factory.mktemp("auth-http-off"))
    yield hub
    hub.proc.close()


async def test_without_auth_browsers_are_still_kept_out(open_hub: HttpHub) -> None:
    """No --auth: every caller is the local admin, so the browser checks are what keeps a
    foreign page (CSRF) or a rebound DNS name out."""
    async with httpx.AsyncClient(base_url=open_hub.url, timeout=20) as api:
        body = json.dumps({"type": "csrf", "payload": 1})
        evil = await api.post(
            "/api/jobs", content=body, headers={"Content-Type": "text/plain", "Origin": EVIL}
        )
        assert_refused(evil, 403, "forbidden")
        assert_refused(
            await api.post("/api/jobs", content=body, headers={"Content-Type": "text/plain"}),
            415,
            "unsupported_media_type",
        )
        rebound = await api.get("/api/jobs", headers={"Host": f"evil.example:{open_hub.port}"})
        assert_refused(rebound, 421, "misdirected")
        assert (await api.get("/api/jobs", params={"service": "csrf"})).json()["jobs"] == []
        # Any token, or none, is the local admin here.
        assert (await api.get("/api/stats", headers={"Authorization": "Basic eA=="})).status_code == 200
        assert (
            await api.post("/api/jobs", content=body, headers={"Origin": open_hub.url})
        ).status_code == 201
    for path in ("/ws/client", "/ws/worker", "/ws/monitor"):
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(open_hub.ws + path, origin=Origin(EVIL))
        assert refused.value.response.status_code == 403
        peer = await Peer.open(open_hub.ws + path, origin=open_hub.url)
        assert (await peer.request({"type": "auth", "token": "anything"}, "authenticated"))["role"] == "admin"
