"""What a store reports to its hub besides jobs: what a tick did (:class:`TickResult`) and, for a
store several hubs share, what the other hubs did (:class:`StoreListener`, which the hub
implements).

Part of the store contract (``store/base.py`` re-exports both); a module of its own so the
backends can name them without importing the contract module, which imports the backends.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from jobq.core.model import Job, JobEvent


class StoreListener(Protocol):
    """What a store shared by several hubs tells each hub (the hub implements it)."""

    def on_ready(self) -> None:
        """Jobs may have become runnable (submitted or released through another hub)."""

    def on_event(self, event: JobEvent) -> None:
        """A job event that happened at another hub."""

    def on_stop(self, worker_id: str, job_ids: list[int]) -> None:
        """Another hub wants a worker connected here to stop these attempts."""

    def on_paused(self) -> None:
        """Another hub paused or resumed a service (read ``paused_services`` again)."""

    def on_group_finished(self, group_id: int, workers: list[str]) -> int:
        """A group ended through another hub: tell those of ``workers`` attached here (FINISHED);
        returns how many were."""


class TickResult(msgspec.Struct, kw_only=True):
    #: Jobs that became runnable (the hub dispatches).
    promoted: int = 0
    #: Attempts that lost their lease or overran their timeout: (job after the decision,
    #: worker that held it) so the hub can tell the worker to stop.
    expired: list[tuple[Job, str | None]] = msgspec.field(default_factory=list)
    purged: int = 0
