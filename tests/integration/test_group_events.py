"""Group events and FINISHED end to end: real hub processes, real workers and clients.

The SDK's ``watch_group`` (native ``group_watch``) on one hub and on two hubs sharing Redis
(events cross on the bus), FINISHED to each worker that ran a member exactly once whichever hub
it is attached to, a WebSocket worker told ``group_finished``, the REST job view naming its
group, the monitor stream carrying group messages, and the blocking ``SyncClient``'s group and
schedule calls.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from jobq.client.client import Client
from jobq.client.sync import SyncClient
from jobq.core.model import JobEvent
from jobq.core.workflow import GroupState
from jobq.worker.context import JobContext
from tests.helpers import Proc, start_hub
from tests.http_helpers import Peer, start_http_hub
from tests.integration.test_groups import sdk_worker
from tests.redis_helpers import hubs_on_redis


async def echo(payload: bytes, ctx: JobContext) -> bytes:
    await asyncio.sleep(0.05)
    return payload


async def watched(client: Client, group_id: int) -> list[JobEvent]:
    return [event async for event in client.watch_group(group_id)]


async def test_two_hubs_on_redis_each_tell_their_own_workers_once(tmp_path: Path, procs: list[Proc]) -> None:
    """A worker on each hub runs members; the group's end is seen by one hub, and each worker
    is told FINISHED exactly once (the other hub through the bus note). A client watching on
    the other hub hears the progress (from both hubs) and the end once."""
    with hubs_on_redis(tmp_path, procs, "hub-a", "hub-b") as [(_, endpoint_a), (_, endpoint_b)]:
        async with (
            sdk_worker(endpoint_a, "on-a", {"work": echo}, concurrency=2) as (_, told_a, ran_a),
            sdk_worker(endpoint_b, "on-b", {"work": echo}, concurrency=2) as (_, told_b, ran_b),
            sdk_worker(endpoint_b, "idle-b", {"other": echo}) as (_, told_idle, _),
            Client(endpoint_a) as submitter,
            Client(endpoint_b) as watcher,
        ):
            done = await submitter.submit_group("work", {}, expand={"n": "1..12"}, policy="all_ended")
            gid = done.group.id
            events = await asyncio.wait_for(watched(watcher, gid), 60)
            view = await watcher.wait_group(gid, 30)
            assert view.state is GroupState.COMPLETED and view.counts == {"completed": 12}
            kinds = [e.kind for e in events]
            assert kinds[-1] == "group_ended" and kinds.count("group_ended") == 1
            assert set(kinds[:-1]) <= {"group_progress"} and "group_progress" in kinds
            assert all(e.id == gid and e.group == gid for e in events)
            assert events[-1].counts == {"completed": 12} and events[-1].total == 12
            await asyncio.sleep(1.0)  # FINISHED notes cross the bus
            assert ran_a and ran_b, "a worker on each hub ran members"
            assert told_a == [gid] and told_b == [gid] and told_idle == []


async def test_watch_group_on_one_hub_and_a_watch_after_the_end(tmp_path: Path, procs: list[Proc]) -> None:
    hub, endpoint = start_hub(tmp_path)
    procs.append(hub)
    async with (
        sdk_worker(endpoint, "m", {"work": echo}, concurrency=4) as (_, told, _),
        sdk_worker(endpoint, "fin", {"concat": echo}) as (_, told_fin, _),
        Client(endpoint) as client,
    ):
        done = await client.submit_group("work", {}, expand={"n": "1..8"}, finalize="concat")
        events = await asyncio.wait_for(watched(client, done.group.id), 60)
        kinds = [e.kind for e in events]
        assert kinds[-2:] == ["group_finalizing", "group_ended"] and kinds.count("group_finalizing") == 1
        assert set(kinds[:-2]) == {"group_progress"}
        assert events[-1].state.value == "completed"
        late = await asyncio.wait_for(watched(client, done.group.id), 10)  # ended: at once
        assert [e.kind for e in late] == ["group_ended"]
        await asyncio.sleep(0.3)
        assert told == [done.group.id] and told_fin == []


async def test_a_websocket_worker_is_told_and_rest_names_the_group(tmp_path: Path) -> None:
    hub = start_http_hub(tmp_path)
    try:
        worker = await Peer.open(hub.ws + "/ws/worker")
        await worker.request(
            {"type": "register_worker", "worker_id": "ws-w", "services": ["paint"]}, "worker_registered"
        )
        monitor = await Peer.open(hub.ws + "/ws/monitor")
        async with Client(hub.endpoint) as client:
            done = await client.submit_group("paint", {}, expand={"n": [1, 2]})
            for _ in range(2):
                job = await worker.expect("job_assigned")
                await worker.send({"type": "complete_job", "job_id": job["job_id"], "result": "ok"})
            told = await worker.expect("group_finished", timeout=20)
            assert told["group_id"] == done.group.id
            ended = await monitor.expect("group_ended", timeout=20, group_id=done.group.id)
            assert ended["state"] == "completed" and "job_id" not in ended
            async with httpx.AsyncClient(base_url=hub.url) as api:
                view = (await api.get(f"/api/jobs/{done.members[0]}")).json()
                assert view["group"] == done.group.id
                plain = (await api.post("/api/jobs", json={"type": "paint", "payload": 1})).json()
                assert "group" not in (await api.get(f"/api/jobs/{plain['job_id']}")).json()
    finally:
        await Peer.close_all()
        hub.proc.close()


def test_sync_client_groups_and_schedules(tmp_path: Path, procs: list[Proc]) -> None:
    hub, endpoint = start_hub(tmp_path)
    procs.append(hub)
    with SyncClient(endpoint) as client:
        done = client.submit_group("nobody-serves-this", {"a": 1}, expand={"n": "1..3"})
        assert client.group(done.group.id).total == 3
        assert client.cancel_group(done.group.id).state is GroupState.CANCELLED
        assert client.wait_group(done.group.id, 5).counts == {"cancelled": 3}
        info = client.add_schedule("nightly", "0 3 * * *", "report", {"x": 1}, tz="Europe/Amsterdam")
        assert info.name == "nightly" and info.timezone == "Europe/Amsterdam"
        assert [s.name for s in client.list_schedules()] == ["nightly"]
        assert client.pause_schedule("nightly").paused
        assert not client.resume_schedule("nightly").paused
        assert client.schedule("nightly").cron == "0 3 * * *"
        client.remove_schedule("nightly")
        assert client.list_schedules() == []
