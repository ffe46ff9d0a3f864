"""The history of ``redis://`` (``core/history.py``): one hash per bucket, shared by every hub.

Keys (inside the namespace's hash tag, ``docs/redis.md``):

- ``hist:<resolution>:<t>`` (hash): ``s|<service>``, ``c|<service>``, ``f|<service>``
  (submitted, completed, failed), ``w<bin>|<service>`` and ``r<bin>|<service>`` (wait and run
  latency bins) added with ``HINCRBY``, so several hubs' flushes add up in any order;
  ``d|<service>`` (queue depth, ``HSET``: the cluster's queue, the same whichever hub samples
  it). Each expires when its resolution's retention ends (``t + KEPT``, by the hubs' clock).
- ``hist:<resolution>`` (sorted set): the buckets that exist, by start (so a read fetches
  those, not every bucket of a week); older members are removed at each write.

Bound: per resolution, 8,640 (10 s) or 10,080 (1 min) bucket hashes, each with at most
``5 + 2 * bins used`` fields per service.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from jobq.core.history import KEPT, RESOLUTIONS, HistoryRow, cutoff
from jobq.store.redis_client import RedisClient

#: Bucket hashes fetched per round trip when reading.
READ_CHUNK = 500
_COUNTS = {"s": "submitted", "c": "completed", "f": "failed"}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisHistory:
    def __init__(self, client: RedisClient) -> None:
        self.client = client

    def _bucket(self, resolution: int, t: int) -> str:
        return self.client.key("hist", resolution, t)

    async def record(self, rows: Sequence[HistoryRow], now: float) -> None:
        commands: list[list[Any]] = []
        buckets: set[tuple[int, int]] = set()
        for row in rows:
            key = self._bucket(row.resolution, row.t)
            buckets.add((row.resolution, row.t))
            service = row.service
            for short, name in _COUNTS.items():
                value = getattr(row, name)
                if value:
                    commands.append(["HINCRBY", key, f"{short}|{service}", value])
            for short, bins in (("w", row.wait), ("r", row.run)):
                for index, count in bins.items():
                    commands.append(["HINCRBY", key, f"{short}{index}|{service}", count])
            if row.depth is not None:
                commands.append(["HSET", key, f"d|{service}", row.depth])
            else:  # the bucket exists even when only zeros were counted
                commands.append(["HINCRBY", key, f"s|{service}", 0])
        for resolution, t in sorted(buckets):
            # relative to the hubs' clock (the one bucket starts are in), not Redis's
            ttl = max(1, math.ceil(t + KEPT[resolution] + resolution - now))
            commands.append(["EXPIRE", self._bucket(resolution, t), ttl])
            commands.append(["ZADD", self.client.key("hist", resolution), t, t])
        for resolution in RESOLUTIONS:
            listed = self.client.key("hist", resolution)
            commands.append(["ZREMRANGEBYSCORE", listed, "-inf", f"({cutoff(now, resolution)}"])
            commands.append(["EXPIRE", listed, KEPT[resolution] + resolution])
        await self.client.pipeline(commands)

    async def read(
        self, since: int, until: int, resolution: int, service: str | None = None
    ) -> list[HistoryRow]:
        index = self.client.key("hist", resolution)
        starts = [int(_text(t)) for t in await self.client.cmd("ZRANGEBYSCORE", index, since, f"({until}")]
        rows: list[HistoryRow] = []
        for first in range(0, len(starts), READ_CHUNK):
            chunk = starts[first : first + READ_CHUNK]
            replies = await self.client.pipeline([["HGETALL", self._bucket(resolution, t)] for t in chunk])
            for t, fields in zip(chunk, replies, strict=True):
                rows.extend(_rows_of(resolution, t, fields, service))
        return rows


def _rows_of(resolution: int, t: int, fields: Any, service: str | None) -> list[HistoryRow]:
    """The rows of one bucket hash (``HGETALL``: a dict, or a flat list of field, value)."""
    if isinstance(fields, dict):
        items = list(fields.items())
    else:
        items = list(zip(fields[::2], fields[1::2], strict=True))
    rows: dict[str, HistoryRow] = {}
    for raw_field, raw_value in items:
        kind, _, name = _text(raw_field).partition("|")
        if service is not None and name != service:
            continue
        row = rows.get(name)
        if row is None:
            row = rows[name] = HistoryRow(resolution=resolution, t=t, service=name)
        value = int(_text(raw_value))
        if kind in _COUNTS:
            setattr(row, _COUNTS[kind], value)
        elif kind == "d":
            row.depth = value
        elif kind[:1] in ("w", "r") and kind[1:].isdigit():
            (row.wait if kind[0] == "w" else row.run)[int(kind[1:])] = value
    return list(rows.values())


__all__ = ["RedisHistory"]
