"""What every contract case uses: the backends, and small helpers to drive a store.

The fixtures (``backend``, ``store``) are in ``conftest.py``; each case runs on every backend.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from jobq.core.model import Job, JobSpec, WorkerInfo
from jobq.store.base import Store, open_store

T0 = 1_000_000.0
TTL = 30.0

Factory = Callable[[], Awaitable[Store]]


class Backend:
    """Opens a store of one kind; ``durable`` ones can be reopened on the same data."""

    def __init__(self, name: str, tmp: Path, redis_url: str | None = None) -> None:
        self.name = name
        self.tmp = tmp
        self.opened: list[Store] = []
        self.redis_url = redis_url

    @property
    def durable(self) -> bool:
        return self.name != "memory"

    def url(self) -> str:
        if self.name == "memory":
            return "memory://"
        if self.name == "sqlite":
            return f"sqlite:///{self.tmp / 'contract.db'}"
        if self.name == "sqlite-full":
            return f"sqlite:///{self.tmp / 'contract.db'}?durability=full"
        assert self.redis_url is not None
        return self.redis_url

    async def open(self, now: float = T0, **retention: float) -> Store:
        """``retention``: ``result_ttl``, ``failed_ttl`` as the hub passes them (else defaults)."""
        store = open_store(self.url(), **retention)
        await store.open(now)
        self.opened.append(store)
        return store

    async def reopen(self, store: Store, now: float) -> Store:
        await store.close()
        self.opened.remove(store)
        return await self.open(now)

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()


BACKENDS = ["memory", "sqlite", "sqlite-full", "redis"]


def spec(service: str = "echo", payload: bytes | list[bytes] = b"x", **kw: Any) -> JobSpec:
    frames = payload if isinstance(payload, list) else [payload]
    return JobSpec(service=service, payload=frames, **kw)


async def attach(
    store: Store,
    worker: str = "w1",
    services: tuple[str, ...] = ("echo",),
    slots: int = 10,
    caps: dict[str, Any] | None = None,
) -> None:
    info = WorkerInfo(id=worker, services=list(services), slots=slots, capabilities=caps or {})
    await store.attach_worker(info, T0)


async def submit_one(store: Store, s: JobSpec | None = None, now: float = T0) -> Job:
    (done,) = await store.submit([s or spec()], now)
    return done.job
