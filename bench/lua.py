"""Issue 16: what each of the Redis store's hot scripts costs the Redis server.

On a Redis server nothing else uses (``--redis``; ``INFO commandstats`` is server-wide), this
opens the Redis store in this process (no hub, no network but Redis's) and runs ``--jobs``
plain jobs through it, each step on its own so that each is counted apart: every submit (one
job a call, as a one-at-a-time producer makes them), then every claim (one job a call), then
every complete. For each script it reports the Redis server's time per call (``FCALL``'s or
``EVALSHA``'s ``usec_per_call``, which includes the commands the script runs), the commands the script ran
per call and their own time: what is left is the Lua interpreter's and the bridge between Lua
and Redis's commands. Redis runs scripts one at a time on one thread: its time per job bounds
what any number of hubs can do on one Redis. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

import redis

from jobq.core.model import Completion, JobSpec, WorkerInfo
from jobq.store.base import open_store
from jobq.store.redis import RedisStore

PAYLOAD = b"x" * 100


def _stats(server: redis.Redis, calls: int) -> dict[str, Any]:
    """The script's figures since the last reset, per call; then a reset."""
    stats: dict[str, dict[str, Any]] = server.info("commandstats")
    server.config_resetstat()
    # FCALL on Redis 7 and later (the store's library), EVALSHA before
    script = stats.pop("cmdstat_fcall", None) or stats.pop("cmdstat_evalsha", {"calls": 0, "usec": 0})
    stats.pop("cmdstat_evalsha", None)
    inner = {k: v for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config|resetstat")}
    inner_calls = sum(int(v["calls"]) for v in inner.values())
    inner_usec = sum(int(v["usec"]) for v in inner.values())
    return {
        "calls": int(script["calls"]),
        "redis_us_per_call": round(int(script["usec"]) / max(1, int(script["calls"])), 1),
        "commands_per_call": round(inner_calls / calls, 1),
        "commands_us_per_call": round(inner_usec / calls, 1),
        "lua_us_per_call": round((int(script["usec"]) - inner_usec) / max(1, int(script["calls"])), 1),
    }


async def measure(url: str, jobs: int) -> dict[str, Any]:
    prefix = f"jobq-bench-lua-{uuid.uuid4().hex[:8]}"
    store = open_store(f"{url}?prefix={prefix}")
    assert isinstance(store, RedisStore)
    now = time.time()
    await store.open(now)
    server = redis.Redis.from_url(url)
    try:
        await store.attach_worker(WorkerInfo(id="w1", services=["bench"], slots=jobs + 1), now)
        spec = JobSpec(service="bench", payload=[PAYLOAD])
        server.config_resetstat()
        out: dict[str, Any] = {}
        for _ in range(jobs):
            await store.submit([spec], now)
        out["submit"] = _stats(server, jobs)
        claimed = []
        for _ in range(jobs):
            claimed += await store.claim("w1", 1, now, now + 60)
        out["claim"] = _stats(server, jobs)
        for job in claimed:
            await store.complete([Completion(job_id=job.id, token=job.token, result=[b"ok"])], now)
        out["complete"] = _stats(server, jobs)
        out["redis_us_per_job"] = round(sum(s["redis_us_per_call"] for s in out.values()), 1)
        return out
    finally:
        await store.close()
        keys = list(server.scan_iter(match="{" + prefix + "}:*", count=1000))
        for start in range(0, len(keys), 1000):
            server.delete(*keys[start : start + 1000])
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--redis", required=True, help="a Redis server nothing else uses, e.g. redis://127.0.0.1:16399/0"
    )
    parser.add_argument("--jobs", type=int, default=3000)
    args = parser.parse_args()
    result = asyncio.run(measure(args.redis, args.jobs))
    print(json.dumps({"benchmark": "lua", "jobs": args.jobs, "scripts": result}, indent=2))


if __name__ == "__main__":
    main()
