"""What the worker runtime keeps per running attempt, what its hellos declared, the results
and failures the hub has not confirmed yet, and the figures it counts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, MutableSequence, Sequence
from dataclasses import dataclass, field

from jobq.core.model import Assignment, Frames
from jobq.protocol import native as jqp
from jobq.worker.context import JobContext

#: Results (and failures) kept unconfirmed at most: the oldest are forgotten.
UNCONFIRMED_LIMIT = 10_000


@dataclass(slots=True)
class Running:
    assignment: Assignment
    ctx: JobContext
    task: asyncio.Task[None] | None = None


@dataclass(slots=True)
class Unconfirmed:
    """Results and failures sent since the hub last confirmed (it answered a heartbeat): sent
    again if it said it could not store them (``Worker._resend``), and the results after a
    reconnect. Tokens make a duplicate harmless."""

    results: list[tuple[int, int, Frames]] = field(default_factory=list)
    failures: list[jqp.Fail] = field(default_factory=list)

    def sent(self, results: Sequence[tuple[int, int, Frames]] = (), fail: jqp.Fail | None = None) -> None:
        self.results.extend(results)
        del self.results[:-UNCONFIRMED_LIMIT]
        if fail is not None:
            self.failures.append(fail)
            del self.failures[:-UNCONFIRMED_LIMIT]

    def again(self) -> list[jqp.Inbound]:
        done: list[jqp.Inbound] = [jqp.Done(results=self.results)] if self.results else []
        return done + list(self.failures)

    def clear(self) -> None:
        self.results.clear()
        self.failures.clear()


@dataclass(slots=True)
class Hellos:
    """The attempts the last hello declared as held, and which Welcome answers it.

    The hub answers every hello with one Welcome, in order. A Reconnect may prompt a second
    hello while the first is on its way; the first one's Welcome must not cancel what the
    second declared and the hub then kept, so only the answer to the last hello counts.
    """

    declared: dict[int, int] = field(default_factory=dict)  # job id → token
    unanswered: int = 0
    sent_at: float = 0.0

    def sent(self, held: Iterable[tuple[int, int]], now: float) -> None:
        self.declared = dict(held)
        self.unanswered += 1
        self.sent_at = now

    def pending(self, now: float, patience: float) -> bool:
        """Whether a hello is on its way and not overdue: a Reconnect the hub sent before it
        saw that hello (for heartbeats that crossed it) needs no second one."""
        return self.unanswered > 0 and now - self.sent_at < patience

    def forget(self) -> None:
        """A new connection: no Welcome will come for hellos sent on the old one."""
        self.unanswered = 0

    def answered(self, kept: Sequence[int]) -> list[tuple[int, int]]:
        """A Welcome came: the declared attempts it gave away (none unless it answers the
        last hello)."""
        self.unanswered = max(0, self.unanswered - 1)
        if self.unanswered:
            return []
        keep = set(kept)
        return [(job_id, token) for job_id, token in self.declared.items() if job_id not in keep]


def admit(
    running: Mapping[int, Running], waiting: MutableSequence[Assignment], assignment: Assignment
) -> bool:
    """An attempt the hub assigned: True when it is new here (``waiting`` then holds it).

    One of the same job may be here already: the hub counted an older attempt lost (across a
    hub restart, or a hello it answered late) and assigned it again. That attempt runs once,
    under the newest token: a run under way finishes as the new attempt, a waiting one takes
    its token. Never dropped: the hub renews the lease of what it assigned while the worker
    heartbeats, so an attempt ignored here would be waited for forever.
    """
    current = running.get(assignment.id)
    if current is not None:
        if assignment.token > current.assignment.token:
            current.assignment = assignment
        return False
    for i, queued in enumerate(waiting):
        if queued.id == assignment.id:
            if assignment.token > queued.token:
                waiting[i] = assignment
            return False
    waiting.append(assignment)
    return True


def token_held(running: Mapping[int, Running], waiting: Iterable[Assignment], job_id: int) -> int | None:
    """The token of the attempt of ``job_id`` the worker runs or waits to run, if any."""
    current = running.get(job_id)
    if current is not None:
        return current.assignment.token
    return next((a.token for a in waiting if a.id == job_id), None)


@dataclass(slots=True)
class WorkerStats:
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    reconnects: int = 0
    started_at: float = field(default_factory=time.time)


__all__ = ["Hellos", "Running", "WorkerStats", "admit", "token_held"]
