"""HTTPS and WSS on the HTTP door (``--tls-cert``/``--tls-key``), checked with a test CA
(trustme): REST and the WebSocket streams over TLS with a token, plain HTTP and an unknown CA
refused, and the worker SDK over ``https://`` trusting the CA through ``JOBQ_CA_FILE``."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme
import websockets

from jobq import authfile
from jobq.config import HubConfig
from jobq.doors.http.app import tls_files
from jobq.errors import InvalidRequest
from tests.helpers import Proc, start_worker
from tests.http_helpers import HttpHub, Peer, start_http_hub


@dataclass
class TlsHub:
    hub: HttpHub
    ca_file: Path
    trust: ssl.SSLContext
    client: str
    worker: str


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsHub]:
    tmp = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = tmp / "hub.pem", tmp / "hub.key", tmp / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    trust = ssl.create_default_context()
    ca.configure_trust(trust)
    auth = tmp / "auth.json"
    client, _ = authfile.create_token(auth, "client", customers=["acme"], name="tls-client")
    worker, _ = authfile.create_token(auth, "worker", services=["tls"], name="tls-worker")
    extra = ["--auth", str(auth), "--tls-cert", str(cert_file), "--tls-key", str(key_file)]
    hub = start_http_hub(tmp, extra, verify=trust)
    yield TlsHub(hub, ca_file, trust, client, worker)
    hub.proc.close()


@pytest.fixture(autouse=True)
async def close_peers() -> AsyncIterator[None]:
    yield
    await Peer.close_all()


def test_https_needs_the_ca_and_a_token(tls: TlsHub) -> None:
    url = tls.hub.url
    assert url.startswith("https://")
    with httpx.Client(base_url=url, verify=tls.trust, timeout=20) as api:
        assert api.get("/health").status_code == 200
        assert api.get("/api/stats").status_code == 401
        token = {"Authorization": f"Bearer {tls.client}"}
        created = api.post("/api/jobs", json={"type": "nobody", "payload": 1}, headers=token)
        assert created.status_code == 201
        page = api.get("/")
        assert "default-src 'none'" in page.headers["content-security-policy"]
    with pytest.raises(httpx.ConnectError):  # the system's CAs do not know the test CA
        httpx.get(url + "/health", timeout=5)
    with pytest.raises(httpx.TransportError):  # no plain HTTP on a TLS listener
        httpx.get(url.replace("https://", "http://") + "/health", timeout=5)


async def test_wss_streams_with_a_token(tls: TlsHub) -> None:
    assert tls.hub.ws.startswith("wss://")
    client = await Peer.open(tls.hub.ws + "/ws/client", token=tls.client, ssl=tls.trust)
    submitted = await client.request(
        {"type": "submit_job", "job_type": "nobody", "payload": {"over": "wss"}}, "job_submitted"
    )
    status = await client.request({"type": "get_job_status", "job_id": submitted["job_id"]}, "job_status")
    assert status["status"] == "queued" and status["customer_id"] == "acme"
    monitor = await Peer.open(tls.hub.ws + "/ws/monitor", auth=tls.client, ssl=tls.trust)
    snapshot = await monitor.request({"type": "request_full_state"}, "full_state_snapshot")
    assert submitted["job_id"] in [j["job_id"] for j in snapshot["jobs"]]
    with pytest.raises(ssl.SSLCertVerificationError):
        await websockets.connect(tls.hub.ws + "/ws/client")


async def test_the_worker_sdk_over_https_with_jobq_ca_file(
    tmp_path: Path, tls: TlsHub, procs: list[Proc]
) -> None:
    env = {"JOBQ_TOKEN": tls.worker, "JOBQ_CA_FILE": str(tls.ca_file)}
    procs.append(start_worker(tmp_path, tls.hub.url, service="tls", handler="tests.handlers:upper", env=env))
    async with httpx.AsyncClient(base_url=tls.hub.url, verify=tls.trust, timeout=30) as api:
        token = {"Authorization": f"Bearer {tls.client}"}
        body = {"type": "tls", "payload": "over tls", "payload_encoding": "text"}
        job_id = (await api.post("/api/jobs", json=body, headers=token)).json()["job_id"]
        answer = await api.get(f"/api/jobs/{job_id}/result", params={"wait": 25}, headers=token)
        assert answer.status_code == 200 and answer.json()["result"] == "OVER TLS", answer.text
        workers = await api.get("/api/workers", headers=token)
    assert [(w["door"], w["services"]) for w in workers.json()] == [("http", ["tls"])]
    log = procs[-1].output()
    assert tls.worker not in log and "refused" not in log


def test_a_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    cert = tmp_path / "hub.pem"
    cert.write_text("not used")
    assert tls_files(HubConfig()) is None
    with pytest.raises(InvalidRequest, match="go together"):
        tls_files(HubConfig(tls_cert=str(cert)))
    with pytest.raises(InvalidRequest, match="does not exist"):
        tls_files(HubConfig(tls_cert=str(cert), tls_key=str(tmp_path / "missing.key")))
