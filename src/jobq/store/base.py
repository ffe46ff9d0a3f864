"""The store contract: a small surface of atomic operations on plain records.

Every store (memory, SQLite, Redis) passes one contract suite (``tests/contract``). The store
is the truth of the queue: jobs, the ready index, leases and the registry of attached workers
(so several hubs on one Redis see one cluster). The hub owns connections and timers.

The records the contract speaks of come from the core (jobs, workers, :class:`Explanation`)
and from ``store/reports.py`` (:class:`TickResult`, :class:`StoreListener`); the backends import
those, never this module, which imports the backends (:func:`open_store`).

Durability: a mutating call returns once its change is as durable as the store promises
(``memory``: not at all; ``sqlite``: survives a crash of the hub process, or power loss with
``?durability=full``). Calls made in the same event-loop turn share one commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from jobq.core.explain import Explanation
from jobq.core.history import HistoryRow
from jobq.core.lease import DEFAULT_LEASE_TTL
from jobq.core.model import (
    Completion,
    Job,
    JobEvent,
    JobFilter,
    JobSpec,
    StoreStats,
    Submitted,
    WorkerInfo,
)
from jobq.core.retention import DEFAULT_FAILED_TTL, DEFAULT_RESULT_TTL
from jobq.core.schedule import Schedule
from jobq.core.workflow import Group
from jobq.errors import InvalidRequest
from jobq.store.reports import StoreListener, TickResult

__all__ = ["Explanation", "Store", "StoreListener", "TickResult", "open_store"]


class Store(Protocol):
    """What the hub needs from a store. All methods are coroutines except the three
    notification hooks at the end; see the module docstring."""

    url: str
    #: True when several hubs share the store (events and stops cross between hubs).
    shared: bool

    async def open(self, now: float, lease_ttl: float = DEFAULT_LEASE_TTL) -> None:
        """Open the store; jobs found running get ``lease_ttl`` seconds for their worker to
        come back and claim them."""

    async def close(self) -> None: ...

    # ---- jobs
    async def submit(self, specs: Sequence[JobSpec], now: float) -> list[Submitted]:
        """Create jobs (or return the existing job for a known idempotency key). The caller has
        checked each spec with ``core.validate``; a bad requirement refuses the whole batch."""

    async def get(self, job_id: int) -> Job | None: ...

    async def list_jobs(self, query: JobFilter) -> list[Job]: ...

    async def cancel(self, job_id: int, now: float) -> tuple[Job, str | None]:
        """Cancel a job that has not ended. Returns the job and the worker that was running it
        (to be told), if any. Raises NotFound / InvalidTransition."""

    async def retry(self, job_id: int, now: float) -> Job:
        """Queue a failed or cancelled job again with a fresh attempt budget."""

    async def stats(self) -> StoreStats: ...

    def has_queued(self) -> bool:
        """A hint for the dispatcher: False only when no job can be queued right now."""

    def claim_scope(self, worker_id: str) -> str | None:
        """For the dispatcher, from a store whose claims cost a round trip: which queues a claim
        for this worker looks at (workers of one scope are offered the same jobs); None when
        the store does not say."""

    def claimed_empty(self, worker_id: str) -> bool:
        """Whether the last claim, if it was this worker's, found every queue of its scope empty
        (then a claim for another worker of that scope in the same dispatch round is spared)."""

    async def set_customer_weight(self, customer: str, weight: float) -> None:
        """Fair-share weight of a customer between jobs of equal priority (default 1)."""

    # ---- workers
    async def attach_worker(self, info: WorkerInfo, now: float) -> None:
        """Register (or update) a worker; it may claim jobs it is eligible for."""

    async def detach_worker(
        self, worker_id: str, now: float, unreached_after: float | None = None
    ) -> list[Job]:
        """Unregister a worker; the jobs it was running go back to the queue (front), each a
        lost attempt (the ``max_losses`` budget; the last one quarantines the job), except those
        handed out after ``unreached_after`` (the worker had been silent since before then):
        taken as never received, they cost nothing (``core/lease.reached``)."""

    async def touch_worker(
        self, worker_id: str, now: float, lease_ttl: float, metrics: dict[str, float] | None = None
    ) -> None:
        """A heartbeat: renew the leases of every job the worker runs."""

    async def list_workers(self) -> list[WorkerInfo]: ...

    # ---- running jobs
    async def claim(self, worker_id: str, limit: int, now: float, lease_ttl: float) -> list[Job]:
        """Hand up to ``limit`` queued jobs (bounded by the worker's free slots) to the worker,
        best first, each as a new attempt under a lease with a new fencing token, greater than
        any the job had before (``core/lease.py``)."""

    async def adopt(
        self, worker_id: str, held: Sequence[tuple[int, int]], now: float, lease_ttl: float
    ) -> list[int]:
        """A reconnecting worker still runs these (job, token) attempts: keep those whose lease
        holds. Returns the ids it may keep."""

    async def progress(
        self, job_id: int, token: int, value: float | None, message: str | None, now: float
    ) -> Job:
        """Record progress of a running attempt (raises LeaseLost for a stale token)."""

    async def complete(self, results: Sequence[Completion], now: float) -> list[Job | Exception]:
        """Finish attempts with their results; a stale token gets LeaseLost in its place."""

    async def fail(
        self,
        job_id: int,
        token: int,
        error: str,
        now: float,
        *,
        retryable: bool = True,
        rand: float = 0.5,
        traceback: str | None = None,
    ) -> Job:
        """A failed attempt (it counts toward ``max_attempts``): retry later (``scheduled``) or
        end ``failed``. ``error`` becomes ``Job.error``; both, with ``traceback`` (cut to
        ``TRACEBACK_LIMIT``), go into ``Job.attempt_errors`` (``Job.note_failure``)."""

    async def release(self, job_id: int, token: int, now: float) -> Job:
        """Give a running attempt its worker never started back to the front of the queue (a
        draining worker's prefetched jobs): it costs no budget and is not counted as run."""

    # ---- time
    async def tick(self, now: float) -> TickResult:
        """Apply what time has made due: scheduled jobs to the queue, overrun timeouts to the
        retry rules (``max_attempts``), expired leases back to the queue as lost attempts
        (``max_losses``; they avoid the worker that lost them), retention expired jobs forgotten."""

    async def next_due(self) -> float | None:
        """The next time ``tick`` has something to do, if known."""

    # ---- explaining
    async def explain(self, job_id: int, now: float) -> Explanation | None: ...

    async def blocked(self) -> list[tuple[int, str]]:
        """Queued jobs no attached worker could ever run, with the reason."""

    # ---- cron schedules (docs/workflows.md; store/embedded_schedules.py, redis_schedules.py)
    async def put_schedule(self, schedule: Schedule) -> Schedule:
        """Add a schedule, or replace the one of that name (Conflict past ``MAX_SCHEDULES``)."""

    async def get_schedule(self, name: str) -> Schedule | None: ...

    async def list_schedules(self) -> list[tuple[Schedule, float | None]]:
        """Every schedule by name, each with its next firing (None: paused, or never)."""

    async def pause_schedule(self, name: str, now: float) -> Schedule | None: ...

    async def resume_schedule(self, name: str, now: float) -> Schedule | None:
        """Fire again from ``now`` (``core/schedule.resume``); None: no such schedule."""

    async def remove_schedule(self, name: str) -> bool: ...

    async def due_schedules(self, now: float, limit: int = 1000) -> list[Schedule]:
        """Schedules not paused whose next firing is at or before ``now``."""

    async def fire(self, schedule: Schedule, at: float, now: float) -> Submitted | None:
        """One firing, atomically: if the stored schedule exists, is not paused and its cursor
        is before ``at``, set the cursor to ``at`` and create the firing's job
        (``core/schedule.firing_spec``); else None (another hub, or an earlier tick, did)."""

    async def advance_schedule(self, name: str, cursor: float) -> bool:
        """The same compare-and-set without a job (firings coalesced or skipped)."""

    # ---- history (core/history.py: per-service buckets the hub flushes every few seconds)
    async def record_history(self, rows: Sequence[HistoryRow], now: float) -> None:
        """Add these rows to the stored ones of the same bucket and service (counts and bins
        add up, across hubs on a shared store; a row's ``depth`` replaces the stored one), and
        forget buckets older than ``core.history.KEPT``."""

    async def read_history(
        self, since: int, until: int, resolution: int, service: str | None = None
    ) -> list[HistoryRow]:
        """The stored rows of ``resolution`` with ``since <= t < until`` (of ``service``, or
        of every service), one per bucket and service."""

    # ---- paused services (core/operations.py; store/paused.py, RedisStore.set_paused)
    async def set_paused(self, service: str, paused: bool) -> bool:
        """Pause (or resume) a service's queue, durably, for every hub sharing the store (they
        hear of it: ``StoreListener.on_paused``). True when that changed anything."""

    async def paused_services(self) -> list[str]:
        """The paused services, by name."""

    # ---- groups (core/workflow.py; store/embedded_groups.py, redis_groups.py)
    async def submit_group(
        self, group: Group, members: Sequence[JobSpec], now: float, key: str | None = None
    ) -> tuple[Group, list[Job], bool]:
        """Create a group and its members together: ``len(members) + 1`` consecutive ids, the
        group's then its members' in order. A known ``key`` returns that group (no jobs, False).
        Each member's end is recorded on its group in the same atomic step (``record_end``),
        which creates the finalize job exactly once (``finalize_input``)."""

    async def get_group(self, group_id: int) -> tuple[Group, dict[str, int]] | None:
        """The group and its live members counted per state."""

    async def cancel_group(self, group_id: int, now: float) -> tuple[Group, list[tuple[Job, str | None]]]:
        """Cancel a group that has not ended (Conflict otherwise): its live members and finalize
        job end ``cancelled``; returns them, each with the worker to tell to stop."""

    async def finished_groups(self, group_ids: Sequence[int]) -> list[tuple[int, list[str]]]:
        """Of these groups, those that have ended and whose workers were not told (FINISHED):
        each with the workers that ran one of its members. Marks them told, atomically."""

    async def group_records(self, group_ids: Sequence[int]) -> list[Group]:
        """These groups as kept (ended counts, state, finalize job), without counting their
        live members (cheap: the hub's group events); unknown ids are left out."""

    # ---- several hubs (no-ops for a store only one hub uses)
    def listen(self, listener: StoreListener) -> None:
        """Deliver notifications from other hubs to ``listener``."""

    def broadcast(self, event: JobEvent) -> None:
        """Pass an event of this hub on to the other hubs."""

    def notify_stop(self, worker_id: str, job_ids: list[int]) -> None:
        """Ask the hub that has ``worker_id`` to tell it to stop these attempts."""

    def notify_finished(self, group_id: int, workers: list[str]) -> None:
        """Ask every other hub to tell those of ``workers`` attached to it that the group has
        ended (``StoreListener.on_group_finished``)."""


def open_store(
    url: str, *, result_ttl: float = DEFAULT_RESULT_TTL, failed_ttl: float = DEFAULT_FAILED_TTL
) -> Store:
    """A store for ``url``: ``memory://``, ``sqlite:///path`` (``?durability=full``) or
    ``redis://host:port/db`` (``rediss://`` for TLS; ``?prefix=`` and more: store/redis.py).
    ``result_ttl`` and ``failed_ttl`` are how long finished jobs are kept (core/retention.py).
    Backends are imported only when asked for."""
    retention = {"result_ttl": result_ttl, "failed_ttl": failed_ttl}
    parts = urlsplit(url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "memory":
        from jobq.store.memory import MemoryStore

        return MemoryStore(**retention)
    if parts.scheme == "sqlite":
        from jobq.store.sqlite import SqliteStore

        # As SQLAlchemy: sqlite:///relative/file.db, sqlite:////absolute/file.db
        path = url.split("://", 1)[1].split("?", 1)[0]
        path = path[1:] if path.startswith("/") else path
        if not path:
            raise InvalidRequest("sqlite:/// needs a file path, e.g. sqlite:///jobq-data/jobq.db")
        return SqliteStore(path, durability=options.get("durability", "normal"), **retention)
    if parts.scheme in ("redis", "rediss"):
        try:
            from jobq.store.redis import RedisStore
        except ImportError as exc:
            raise InvalidRequest(
                f"the redis store needs the 'redis' extra: pip install 'jobq[redis]' ({exc})"
            ) from None
        return RedisStore.from_url(url, result_ttl=result_ttl, failed_ttl=failed_ttl)
    raise InvalidRequest(
        f"unknown store {url!r}: use memory://, sqlite:///PATH or redis://HOST:PORT/DB?prefix=NAME"
    )
