"""Cron schedules through real hub processes: the CLI, REST and the SDK; a SQLite hub that fires
what it missed while it was down (within the catch-up window, once); and two hubs on one Redis,
one SIGKILLed while both fire, every firing made exactly once.

Cron's finest unit is the minute, so firing is exercised through catch-up: a schedule is written
to the store with its cursor in the past (as a hub that was down would find it), and the hub
fires what is due as soon as it starts.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import subprocess
import time
from collections import Counter
from itertools import islice
from pathlib import Path

import httpx

from jobq.client.client import Client
from jobq.core.model import JobFilter, JobSpec
from jobq.core.schedule import FIRING_MARK, firing_key, iter_firings, new_schedule
from jobq.store.base import Store, open_store
from tests.helpers import Proc, jobq_command, start_hub
from tests.http_helpers import start_http_hub
from tests.redis_helpers import Namespace, require_redis

SPEC = JobSpec(service="report", payload=[b'{"n": 1}'])


def jobq(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        jobq_command(*args, "--hub", endpoint), capture_output=True, text=True, timeout=60, check=False
    )


async def firings(store: Store) -> Counter[str]:
    """Jobs per firing key (without the mark)."""
    jobs = await store.list_jobs(JobFilter(limit=100_000))
    return Counter(
        (job.idempotency_key or "").removeprefix(FIRING_MARK)
        for job in jobs
        if (job.idempotency_key or "").startswith(FIRING_MARK)
    )


def test_cli_rest_and_sdk(tmp_path: Path) -> None:
    hub = start_http_hub(tmp_path)
    try:
        added = jobq(hub.endpoint, "schedule", "add", "nightly", "30 2 * * *", "report", '{"a": 1}',
                     "--tz", "Europe/Amsterdam", "--priority", "4", "--customer", "acme", "--json")  # fmt: skip
        assert added.returncode == 0, added.stderr
        info = json.loads(added.stdout)
        assert (info["name"], info["cron"], info["timezone"], info["service"]) == (
            "nightly", "30 2 * * *", "Europe/Amsterdam", "report",
        )  # fmt: skip
        assert info["paused"] is False and info["next"] > time.time() and info["priority"] == 4

        listed = httpx.get(hub.url + "/api/schedules", timeout=10)
        assert listed.status_code == 200
        [item] = listed.json()
        for field in ("name", "cron", "timezone", "service", "paused", "next"):
            assert item[field] == info[field]

        body = {"name": "often", "cron": "*/5 * * * *", "job": {"type": "report", "payload": {"b": 2}}}
        made = httpx.post(hub.url + "/api/schedules", json=body, timeout=10)
        assert made.status_code == 201, made.text
        assert made.json()["next"] % 300 == 0
        text = jobq(hub.endpoint, "schedule", "list")
        assert text.returncode == 0 and "nightly" in text.stdout
        assert "CEST" in text.stdout or "CET" in text.stdout  # its next firing in its own zone

        paused = jobq(hub.endpoint, "schedule", "pause", "often", "--json")
        assert paused.returncode == 0 and json.loads(paused.stdout)["paused"] is True
        got = httpx.get(hub.url + "/api/schedules/often", timeout=10).json()
        assert got["paused"] is True and got["next"] is None
        resumed = httpx.post(hub.url + "/api/schedules/often/resume", timeout=10)
        assert resumed.status_code == 200 and resumed.json()["paused"] is False

        async def sdk() -> None:
            async with Client(hub.endpoint) as client:
                await client.add_schedule("sdk", "@hourly", "report", {"c": 3}, catch_up=120, coalesce=False)
                names = [s.name for s in await client.list_schedules()]
                assert names == ["nightly", "often", "sdk"]
                assert (await client.pause_schedule("sdk")).paused
                await client.remove_schedule("sdk")

        asyncio.run(sdk())

        # Bad input: a clear reason and the documented exit code / status, never a traceback.
        bad = jobq(hub.endpoint, "schedule", "add", "x", "61 * * * *", "report")
        assert bad.returncode == 2 and "cron minute: 61 is outside 0-59" in bad.stderr
        assert "Traceback" not in bad.stderr
        zone = jobq(hub.endpoint, "schedule", "add", "x", "@daily", "report", "--tz", "Mars/Base")
        assert zone.returncode == 2 and "unknown time zone" in zone.stderr
        missing = jobq(hub.endpoint, "schedule", "pause", "nope")
        assert missing.returncode == 4 and "no schedule 'nope'" in missing.stderr
        refused = httpx.post(hub.url + "/api/schedules", json={**body, "cron": "0 0 30 2 *"}, timeout=10)
        assert refused.status_code == 400 and "never fires" in refused.json()["message"]
        unknown = httpx.post(hub.url + "/api/schedules", json={**body, "when": 1}, timeout=10)
        assert unknown.status_code == 400 and "when" in unknown.json()["message"]
        assert httpx.get(hub.url + "/api/schedules/nope", timeout=10).status_code == 404

        removed = httpx.delete(hub.url + "/api/schedules/often", timeout=10)
        assert removed.status_code == 200 and removed.json() == {"name": "often", "removed": True}
        gone = jobq(hub.endpoint, "schedule", "remove", "nightly")
        assert gone.returncode == 0 and "removed" in gone.stdout
        assert jobq(hub.endpoint, "schedule", "list", "--json").stdout == ""
    finally:
        hub.proc.close()


async def seed(url: str, *schedules: tuple[str, str, float, bool]) -> None:
    """Write schedules (name, cron, cursor, coalesce) with a one-day catch-up window to a store
    as a hub would have left them."""
    store = open_store(url)
    await store.open(time.time())
    try:
        for name, cron, cursor, coalesce in schedules:
            await store.put_schedule(
                new_schedule(name, cron, SPEC, cursor, catch_up=86400, coalesce=coalesce)
            )
    finally:
        await store.close()


async def read(url: str) -> tuple[Counter[str], dict[str, float]]:
    store = open_store(url)
    await store.open(time.time())
    try:
        return await firings(store), {s.name: s.cursor for s, _ in await store.list_schedules()}
    finally:
        await store.close()


def test_a_sqlite_hub_fires_what_it_missed_once_across_restarts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobq.db'}"
    since = time.time() - 3600 * 3
    # Every minute, each missed firing run; every 10 minutes, coalesced into the latest.
    asyncio.run(seed(url, ("minutes", "* * * * *", since, False), ("tens", "*/10 * * * *", since, True)))
    proc, endpoint = start_hub(tmp_path, store=url)
    try:

        async def fired() -> int:
            async with Client(endpoint) as client:
                return sum(1 for job in await client.jobs(limit=10_000) if job.service == "report")

        deadline = time.monotonic() + 60
        while asyncio.run(fired()) < 180 + 1:
            assert time.monotonic() < deadline, proc.output()
            time.sleep(0.2)
        assert proc.terminate() == 0
        proc.close()
        proc, endpoint = start_hub(tmp_path, store=url)  # nothing is fired twice after a restart
        time.sleep(1.0)
        assert proc.terminate() == 0
    finally:
        proc.close()
    counts, cursors = asyncio.run(read(url))
    assert set(counts.values()) == {1}
    minutes = sorted(key for key in counts if key.startswith("schedule:minutes@"))
    expected = [
        firing_key("minutes", t) for t in islice(iter_firings("* * * * *", "UTC", since), len(minutes))
    ]
    assert minutes == expected and len(minutes) >= 180  # every minute since, none missed
    tens = [key for key in counts if key.startswith("schedule:tens@")]
    assert len(tens) in (1, 2)  # the latest at start (and maybe one more since, on time)
    assert cursors["minutes"] >= since + 180 * 60 - 60


def test_two_hubs_on_redis_fire_each_firing_once_when_one_is_killed(tmp_path: Path) -> None:
    require_redis()
    ns = Namespace()
    since = time.time() - 86000  # 1,000+ missed minutes each: more than MAX_DUE (1,000) runs
    names = [f"s{i}" for i in range(3)]
    hubs: list[Proc] = []
    try:
        for i in range(2):
            proc, _ = start_hub(tmp_path, store=ns.url, name=f"hub{i}")
            hubs.append(proc)
        # Both hubs run: the next tick of each finds the same firings due, and both fire them.
        asyncio.run(seed(ns.url, *((name, "* * * * *", since, False) for name in names)))

        async def made() -> int:
            return sum((await read(ns.url))[0].values())

        deadline = time.monotonic() + 60
        while asyncio.run(made()) < 300:  # both hubs are firing: kill one mid-way
            assert time.monotonic() < deadline
            time.sleep(0.05)
        hubs[0].kill()
        deadline = time.monotonic() + 120
        while True:
            counts, cursors = asyncio.run(read(ns.url))
            if all(cursors[name] >= time.time() - 120 for name in names):
                break
            assert time.monotonic() < deadline, hubs[1].output()
            time.sleep(0.2)
        assert hubs[1].terminate() == 0
        assert "fired" in hubs[0].output() and "fired" in hubs[1].output()  # both took part
        counts, cursors = asyncio.run(read(ns.url))
        assert set(counts.values()) == {1}, [key for key, n in counts.items() if n > 1][:5]
        for name in names:
            keys = sorted(key for key in counts if key.startswith(f"schedule:{name}@"))
            # The latest 1,000 missed ones (MAX_DUE; the two hubs' windows may differ by a
            # minute), then any that fell due meanwhile, on time.
            assert len(keys) >= 999, (name, len(keys))
            # No gap: every minute from the first fired to the last, each once.
            first = calendar.timegm(time.strptime(keys[0].split("@", 1)[1], "%Y-%m-%dT%H:%M:%SZ"))
            expected = [
                firing_key(name, t) for t in islice(iter_firings("* * * * *", "UTC", first - 1), len(keys))
            ]
            assert keys == expected
    finally:
        for proc in hubs:
            proc.close()
        ns.cleanup()
