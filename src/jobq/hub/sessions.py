"""Connected workers, whatever door they came through.

A door gives the hub a :class:`WorkerLink` for each worker connection: how to push
jobs to it and how to tell it to stop one. Pull-style doors (line ``FETCH``, WebSocket
``claim_job``) set ``pushes = False`` and ask the hub for work themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from jobq.core.auth import LOCAL_CALLER, Caller
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
    #: The attempts this connection holds: job id → fencing token. Only this session may
    #: finish them; a busy worker is judged by the busy liveness limit.
    held: dict[int, int] = field(default_factory=dict)
    #: Who attached it: another connection may take the worker's id over only as the same
    #: principal.
    caller: Caller = LOCAL_CALLER

    @property
    def worker_id(self) -> str:
        return self.info.id

    def expired(self, now: float) -> bool:
        limit = self.liveness.busy if self.held else self.liveness.idle
        return limit is not None and now - self.last_seen > limit


Conn = TypeVar("Conn", bound=Hashable)


class WorkerDirectory(Generic[Conn]):
    """Which worker each connection of a door speaks for: the one table every door with
    workers keeps. A message from a connection that never said hello (or was forgotten: the
    hub expired it, or it restarted) is answered by ``on_unknown``, which tells the peer to
    say hello again in the door's own words."""

    def __init__(self, on_unknown: Callable[[Conn], None]) -> None:
        self._by_conn: dict[Conn, str] = {}
        self._on_unknown = on_unknown

    def bind(self, conn: Conn, worker_id: str) -> None:
        self._by_conn[conn] = worker_id

    def worker_of(self, conn: Conn) -> str | None:
        """The worker behind ``conn``; None (after telling the peer) when it is unknown."""
        worker_id = self._by_conn.get(conn)
        if worker_id is None:
            self._on_unknown(conn)
        return worker_id

    def peek(self, conn: Conn) -> str | None:
        """The worker behind ``conn``, without telling an unknown peer anything."""
        return self._by_conn.get(conn)

    def forget(self, conn: Conn) -> str | None:
        return self._by_conn.pop(conn, None)

    def __len__(self) -> int:
        return len(self._by_conn)

    def __contains__(self, conn: object) -> bool:
        return conn in self._by_conn
