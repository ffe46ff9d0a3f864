"""The connector manager: the connectors of one worker, their health, and the hooks the worker
runtime listens to.

Health is checked every ``interval`` seconds (each check at most ``timeout``). A service counts as
down after ``failures`` failed checks in a row, at once when a job finds it unreachable
(:meth:`mark_down`), and from the first check at start; it is up again after one good check.
``health`` maps each service to ``"ok"`` or the reason it is not; every change is passed to the
callbacks registered with :meth:`on_change` (the runtime's steering is the first of them).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

from jobq.worker.connectors.base import Connector, Health, ServiceUnavailable
from jobq.worker.connectors.registry import ConfigError
from jobq.worker.context import JobContext
from jobq.worker.handlers import Handler

log = logging.getLogger("jobq.worker.connectors")

HealthCallback = Callable[[str, str], None]

#: The health of a service before its first check.
STARTING = "starting"


@dataclass(slots=True)
class _Entry:
    connector: Connector
    concurrency: int
    capabilities: dict[str, Any]
    learned: dict[str, Any] = field(default_factory=dict)
    failures: int = 0
    checked: bool = False


class ConnectorManager:
    def __init__(self, *, interval: float = 5.0, timeout: float = 5.0, failures: int = 2) -> None:
        self.interval = interval
        self.timeout = timeout
        self.failures = max(1, failures)
        self.entries: dict[str, _Entry] = {}
        #: service → "ok", or why it is not.
        self.health: dict[str, str] = {}
        self._callbacks: list[HealthCallback] = []
        self._capability_callbacks: list[Callable[[], object]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ setup

    def add(
        self,
        service: str,
        connector: Connector,
        *,
        concurrency: int = 1,
        capabilities: Mapping[str, Any] | None = None,
    ) -> Handler:
        """Register ``connector`` for ``service``; returns the handler the runtime runs jobs with."""
        if concurrency < 1:
            raise ValueError("a service's concurrency must be at least 1")
        self.entries[service] = _Entry(connector, concurrency, dict(capabilities or {}))
        self.health[service] = STARTING

        def run(payload: bytes, ctx: JobContext) -> Coroutine[Any, Any, Any]:
            return connector.run(ctx)  # the runtime awaits it: no coroutine of our own per job

        return Handler(run, True, True, f"{connector.kind or type(connector).__name__} connector")

    def on_change(self, callback: HealthCallback) -> None:
        """``callback(service, status)`` on every change of a service's health (on the loop)."""
        self._callbacks.append(callback)

    def on_capabilities(self, callback: Callable[[], object]) -> None:
        self._capability_callbacks.append(callback)

    def limits(self) -> dict[str, int]:
        return {service: e.concurrency for service, e in self.entries.items()}

    def healthy(self, service: str) -> bool:
        return self.health.get(service, "ok") == "ok"

    def capabilities(self) -> dict[str, Any]:
        """What the connectors add to the worker's capabilities: each service's configured ones
        and what its health checks learned (GPU, models)."""
        out: dict[str, Any] = {}
        for entry in self.entries.values():
            out.update(entry.learned)
            out.update(entry.capabilities)
        return out

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Start every connector, then check each once (no job is taken before that)."""
        for service, entry in self.entries.items():
            try:
                await entry.connector.start()
            except Exception as exc:
                kind = entry.connector.kind
                raise ConfigError(f"the {kind} connector of {service} did not start: {exc}") from exc
        await self.check_all()

    async def watch(self) -> None:
        """Check health every ``interval`` seconds, forever (the runtime cancels it)."""
        while True:
            await asyncio.sleep(self.interval)
            await self.check_all()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for service, entry in self.entries.items():
            try:
                await asyncio.wait_for(entry.connector.stop(), self.timeout)
            except Exception as exc:
                log.warning("the connector of %s did not stop cleanly: %s", service, exc)

    # ------------------------------------------------------------------ health

    async def check_all(self) -> None:
        await asyncio.gather(*(self._check(service, entry) for service, entry in self.entries.items()))

    async def _check(self, service: str, entry: _Entry) -> None:
        try:
            health = await asyncio.wait_for(entry.connector.health(), self.timeout)
        except TimeoutError:
            health = Health.down(f"health check timed out after {self.timeout:g}s")
        except ServiceUnavailable as exc:
            health = Health.down(exc.reason)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            health = Health.down(f"health check failed: {type(exc).__name__}: {exc}")
        first = not entry.checked
        entry.checked = True
        if health.ok:
            entry.failures = 0
            if health.capabilities and dict(health.capabilities) != entry.learned:
                entry.learned = dict(health.capabilities)
                for callback in self._capability_callbacks:
                    callback()
            self._set(service, "ok")
            return
        entry.failures += 1
        if first or entry.failures >= self.failures or self.health.get(service) != "ok":
            self._set(service, health.reason)

    def mark_down(self, service: str, reason: str) -> None:
        """A job found the service unreachable: down now, without waiting for the next check."""
        if service in self.entries:
            self.entries[service].failures = self.failures
            self._set(service, reason)

    def _set(self, service: str, status: str) -> None:
        before = self.health.get(service)
        if before == status:
            return
        self.health[service] = status
        if status == "ok":
            log.info("service %s is healthy%s", service, "" if before == STARTING else " again")
        else:
            log.warning("service %s unhealthy: %s", service, status)
        for callback in list(self._callbacks):
            try:
                callback(service, status)
            except Exception:
                log.exception("a health callback failed")

    # ------------------------------------------------------------------ cancellation

    def cancel(self, ctx: JobContext) -> None:
        """Tell the service behind ``ctx``'s job to stop it (in the background)."""
        entry = self.entries.get(ctx.service)
        if entry is None:
            return
        task = asyncio.ensure_future(self._cancel(entry.connector, ctx))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _cancel(self, connector: Connector, ctx: JobContext) -> None:
        try:
            await asyncio.wait_for(connector.cancel(ctx), self.timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("cancelling job %d on %s: %s", ctx.id, ctx.service, exc)
