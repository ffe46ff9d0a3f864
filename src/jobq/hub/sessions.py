"""Connected workers, whatever door they came through.

A door gives the hub a :class:`WorkerLink` for each worker connection: how to push
jobs to it and how to tell it to stop one. Pull-style doors (line ``FETCH``, WebSocket
``claim_job``) set ``pushes = False`` and ask the hub for work themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from jobq.core.model import Job, WorkerInfo


class WorkerLink(Protocol):
    #: Whether the hub pushes jobs (credit-based) or the worker asks for them.
    pushes: bool

    def deliver(self, jobs: Sequence[Job]) -> None:
        """Send these newly claimed attempts to the worker."""

    def stop(self, job_ids: Sequence[int]) -> None:
        """Tell the worker to stop these attempts (cancelled, timed out or lease lost)."""

    def disconnect(self, reason: str) -> None:
        """The hub dropped the worker (expired, shutting down); tell it if the door can."""


@dataclass(slots=True)
class Liveness:
    """When a silent worker counts as gone.

    ``idle`` applies while it runs nothing; ``busy`` while it runs jobs. ``None`` means never
    by silence alone: for busy zguide MDP/0.1 workers that cannot heartbeat (the jobs' leases
    decide), or for connection-oriented doors where a closed connection is the signal.
    """

    idle: float | None = 5.0
    busy: float | None = 5.0


@dataclass(slots=True)
class WorkerSession:
    info: WorkerInfo
    link: WorkerLink
    liveness: Liveness = field(default_factory=Liveness)
    last_seen: float = 0.0
    #: Jobs pushed and not yet finished, as the hub last knew (for liveness only).
    busy: int = 0

    @property
    def worker_id(self) -> str:
        return self.info.id

    def expired(self, now: float) -> bool:
        limit = self.liveness.busy if self.busy else self.liveness.idle
        return limit is not None and now - self.last_seen > limit
