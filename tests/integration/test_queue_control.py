"""An operator's control of the queue with real hub and worker processes on loopback (issue 15):
pausing a service (CLI, SDK, REST; kept across a hub restart on SQLite, shared by two hubs on
one Redis), cursor paging of job listings, and bulk cancel and retry of a filtered selection."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx

from jobq import Client, JobState, SyncClient
from tests.helpers import Proc, free_port, hub_cli, start_hub, start_worker, wait_until
from tests.http_helpers import start_http_hub
from tests.integration.zmqauth import standard_tokens
from tests.redis_helpers import Namespace, require_redis

FAST = ["--heartbeat", "0.2", "--liveness", "5"]
JSON = {"Content-Type": "application/json"}


def services_json(endpoint: str) -> dict[str, dict[str, Any]]:
    listed = hub_cli(endpoint, "services", "--json")
    assert listed.returncode == 0, listed.stderr
    return {row["name"]: row for row in map(json.loads, listed.stdout.splitlines())}


def completed(client: SyncClient, job_id: int) -> bool:
    job = client.status(job_id)
    return job is not None and job.state is JobState.COMPLETED


def test_a_paused_service_waits_across_a_hub_restart_until_resumed(tmp_path: Path, procs: list[Proc]) -> None:
    port = free_port()
    hub, endpoint = start_hub(tmp_path, port=port, extra=FAST)  # SQLite
    procs.append(hub)
    worker = start_worker(tmp_path, endpoint, service="render", extra=["--service", "text"], name="pw")
    procs.append(worker)
    with SyncClient(endpoint) as client:
        wait_until(lambda: any(w.name == "pw" for w in client.workers()))
        paused = hub_cli(endpoint, "services", "pause", "render")
        assert paused.returncode == 0, paused.stderr
        assert "service render paused" in paused.stdout
        again = hub_cli(endpoint, "services", "pause", "render", "--json")
        assert json.loads(again.stdout) == {"service": "render", "paused": True, "changed": False}
        image, text = client.submit("render", b"img"), client.submit("text", b"txt")
        wait_until(lambda: completed(client, text))  # its other service still flows
        time.sleep(0.3)
        assert client.status(image).state is JobState.QUEUED  # type: ignore[union-attr]
        assert services_json(endpoint)["render"]["paused"] is True
        assert services_json(endpoint)["text"]["paused"] is False
        assert "paused" in hub_cli(endpoint, "services").stdout
        explained = hub_cli(endpoint, "explain", str(image))
        assert "service render is paused" in explained.stdout, explained.stdout

    assert hub.terminate() == 0
    hub, endpoint = start_hub(tmp_path, port=port, extra=FAST)  # the same database
    procs.append(hub)
    with SyncClient(endpoint) as client:
        wait_until(lambda: any(w.name == "pw" for w in client.workers()))  # it reconnected
        assert services_json(endpoint)["render"]["paused"] is True
        later = client.submit("text", b"after restart")
        wait_until(lambda: completed(client, later))
        time.sleep(0.3)
        assert client.status(image).state is JobState.QUEUED  # type: ignore[union-attr]

        resumed = hub_cli(endpoint, "services", "resume", "render")
        assert resumed.returncode == 0 and "service render resumed" in resumed.stdout, resumed.stderr
        wait_until(lambda: completed(client, image))
        assert services_json(endpoint)["render"]["paused"] is False
    bad = hub_cli(endpoint, "services", "pause", "bad\tname")
    assert bad.returncode == 2 and "service name" in bad.stderr


async def test_two_hubs_on_one_redis_share_a_pause(tmp_path: Path, procs: list[Proc]) -> None:
    require_redis()
    namespace = Namespace()
    try:
        a, endpoint_a = start_hub(tmp_path, store=namespace.url, extra=FAST, name="hub-a")
        procs.append(a)
        b, endpoint_b = start_hub(tmp_path, store=namespace.url, extra=FAST, name="hub-b")
        procs.append(b)
        worker = start_worker(tmp_path, endpoint_b, service="render", extra=["--service", "text"], name="rw")
        procs.append(worker)
        async with Client(endpoint_a) as client_a, Client(endpoint_b) as client_b:
            deadline = time.monotonic() + 20
            while not [w for w in await client_a.workers() if w.name == "rw"]:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            done = await client_a.pause_service("render")
            assert done.paused and done.changed
            assert [s.paused for s in await client_b.services() if s.name == "render"] == [True]
            image = await client_a.submit("render", b"img")
            text = await client_a.submit("text", b"txt")
            assert (await client_a.wait(text, 20)).state is JobState.COMPLETED  # worker at hub B
            await asyncio.sleep(0.3)
            assert (await client_a.status(image)).state is JobState.QUEUED  # type: ignore[union-attr]
            why = await client_b.explain(image)
            assert why.summary.startswith("service render is paused"), why

            resumed = await client_b.resume_service("render")  # resumed at the other hub
            assert not resumed.paused and resumed.changed
            assert (await client_a.wait(image, 20)).state is JobState.COMPLETED
            assert not any(s.paused for s in await client_a.services())
    finally:
        namespace.cleanup()


def test_rest_pause_paging_and_bulk(tmp_path: Path, procs: list[Proc]) -> None:
    tokens = standard_tokens(tmp_path)
    audit = tmp_path / "audit.log"
    web = start_http_hub(tmp_path, extra=["--auth", str(tokens.path), "--audit", str(audit)])
    procs.append(web.proc)
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    client_a = {"Authorization": f"Bearer {tokens['client-a']}"}
    with httpx.Client(base_url=web.url, timeout=20) as api:
        # Pause and resume: admin only, JSON only.
        refused = api.post("/api/services/render/pause", headers={**client_a, **JSON})
        assert refused.status_code == 403, refused.text
        assert (
            api.post(
                "/api/services/render/pause", headers={**admin, "Content-Type": "text/plain"}
            ).status_code
            == 415
        )
        paused = api.post("/api/services/render/pause", headers={**admin, **JSON})
        assert paused.status_code == 200 and paused.json() == {
            "service": "render",
            "paused": True,
            "changed": True,
        }
        body = {"type": "render", "payload": {"n": 1}, "customer_id": "A"}
        job = api.post("/api/jobs", json=body, headers=client_a).json()["job_id"]
        [listed] = [s for s in api.get("/api/services", headers=admin).json() if s["name"] == "render"]
        assert listed["paused"] is True and listed["queued"] == 1
        explained = api.get(f"/api/jobs/{job}/explain", headers=admin).json()
        assert explained["summary"].startswith("service render is paused")
        resumed = api.post("/api/services/render/resume", headers={**admin, **JSON}, content=b"{}")
        assert resumed.json()["paused"] is False
        assert (
            api.post("/api/services/render/resume", headers={**admin, **JSON}, content=b"[1]").status_code
            == 400
        )

        # Paging: 250 jobs in pages of 100, each exactly once.
        batch = {"jobs": [{"type": "page", "payload": {"i": i}, "customer_id": "A"} for i in range(250)]}
        created = api.post("/api/jobs/batch", json=batch, headers=client_a)
        assert created.status_code == 201, created.text
        ids = [j["job_id"] for j in created.json()["jobs"]]
        seen: list[int] = []
        params: dict[str, Any] = {"service": "page", "limit": 100}
        pages = 0
        while True:
            page = api.get("/api/jobs", params=params, headers=admin).json()
            pages += 1
            seen.extend(j["job_id"] for j in page["jobs"])
            if page["next"] is None:
                break
            assert page["next"] == page["jobs"][-1]["job_id"]
            params["before"] = page["next"]
        assert pages == 3 and seen == sorted(ids, reverse=True)
        found = api.get("/api/jobs", params={"q": f"#{ids[7]}"}, headers=admin).json()
        assert [j["job_id"] for j in found["jobs"]] == [ids[7]] and found["next"] is None
        assert api.get("/api/jobs", params={"q": "render"}, headers=admin).json()["jobs"] == []
        assert api.get("/api/jobs", params={"before": 0}, headers=admin).status_code == 400

        # Bulk: a client cancels its own queued jobs of a service; JSON bodies only.
        other = api.post("/api/jobs", json={"type": "page", "payload": 1, "customer_id": "B"}, headers=admin)
        their_job = other.json()["job_id"]
        api.delete(f"/api/jobs/{ids[0]}", headers=client_a)
        cancel = {"action": "cancel", "service": "page", "limit": 10_000}
        done = api.post("/api/jobs/bulk", json=cancel, headers=client_a)
        assert done.status_code == 200, done.text
        result = done.json()
        assert (result["matched"], result["done"]) == (250, 249)
        assert result["skipped"] == [{"id": ids[0], "reason": "already ended cancelled"}]
        theirs = api.get(f"/api/jobs/{their_job}", headers=admin).json()
        assert theirs["status"] == "queued"  # customer B's job: not client A's to cancel
        retry = {"action": "retry", "status": "cancelled,failed", "ids": ids[:3]}
        retried = api.post("/api/jobs/bulk", json=retry, headers=client_a).json()
        assert (retried["matched"], retried["done"], retried["skipped"]) == (3, 3, [])
        monitor = {"Authorization": f"Bearer {tokens['monitor']}"}
        assert api.post("/api/jobs/bulk", json=cancel, headers=monitor).status_code == 403
        for bad in (
            {"action": "cancel"},
            {"action": "delete", "service": "x"},
            {"action": "cancel", "limit": 0},
            {"action": "cancel", "service": "x", "extra": 1},
            {"action": "cancel", "status": "lost"},
        ):
            answer = api.post("/api/jobs/bulk", json=bad, headers=admin)
            assert answer.status_code == 400, (bad, answer.text)
            assert answer.json()["error"]
        assert api.post("/api/jobs/bulk", content=b"", headers={**admin, **JSON}).status_code == 400
        plain = api.post(
            "/api/jobs/bulk", content=b"action=cancel", headers={**admin, "Content-Type": "text/plain"}
        )
        assert plain.status_code == 415
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    actions = {(r["principal"], r["action"], r.get("target")) for r in records if r["event"] == "action"}
    assert ("admin", "pause", "service render") in actions and (
        "admin",
        "resume",
        "service render",
    ) in actions
    assert any(r["action"] == "bulk cancel" and r["principal"] == "client-a" for r in records)
    assert tokens["admin"] not in audit.read_text()


def test_cli_paging_and_bulk(tmp_path: Path, procs: list[Proc]) -> None:
    hub, endpoint = start_hub(tmp_path, store="memory://", extra=FAST)
    procs.append(hub)
    with SyncClient(endpoint) as client:
        ids = [client.submit("idle", str(i).encode()) for i in range(7)]
        first = hub_cli(endpoint, "jobs", "--limit", "3")
        assert first.returncode == 0, first.stderr
        assert f"1-3 of 7 shown, newest first (next: --before {ids[4]}" in first.stdout
        second = hub_cli(endpoint, "jobs", "--limit", "3", "--before", str(ids[4]))
        assert f"3 of 7 shown, newest first (next: --before {ids[1]}" in second.stdout
        last = hub_cli(endpoint, "jobs", "--limit", "3", "--before", str(ids[1]), "--json")
        assert [json.loads(line)["id"] for line in last.stdout.splitlines()] == [ids[0]]

        client.cancel(ids[0])
        cancelled = hub_cli(
            endpoint, "cancel", "--all", "--service", "idle", "--state", "queued", "--state", "cancelled"
        )
        assert cancelled.returncode == 0, cancelled.stderr
        assert "cancelled 6 of 7 job(s) matched; 1 skipped" in cancelled.stdout
        assert f"job {ids[0]}: already ended cancelled" in cancelled.stdout
        retried = hub_cli(endpoint, "retry", "--all", "--state", "cancelled", "--limit", "2", "--json")
        result = json.loads(retried.stdout)
        assert (result["action"], result["matched"], result["done"]) == ("retry", 2, 2)
        assert [client.status(i).state for i in ids[-2:]] == [JobState.QUEUED] * 2  # type: ignore[union-attr]
        single = hub_cli(endpoint, "retry", str(ids[0]), "--json")
        assert json.loads(single.stdout) == {"id": ids[0], "state": "queued"}

        for args, message in (
            (("cancel", "--all"), "needs a filter"),
            (("cancel",), "give job ids, or --all"),
            (("cancel", "--state", "queued"), "need --all"),
            (("cancel", "--all", "--service", "idle", str(ids[0])), "not both"),
        ):
            wrong = hub_cli(endpoint, *args)
            assert wrong.returncode == 2 and message in wrong.stderr, (args, wrong.stderr)
        nothing = hub_cli(endpoint, "cancel", "--all", "--service", "nobody")
        assert nothing.returncode == 0 and "no job matched" in nothing.stdout
