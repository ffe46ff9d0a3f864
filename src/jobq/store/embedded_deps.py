"""Dependencies (``after``) in the embedded stores (memory, SQLite): the rules of
``core/dependencies.py`` applied in the same step as the change that triggers them.

A base class of :class:`~jobq.store.embedded.EmbeddedStore`, which calls three hooks:
``_new_job`` (a submitted spec's job, its ``ref`` names resolved to the ids of this batch),
``_place`` (a new job into the queue, the schedule, or ``waiting``; a job whose prerequisite
already ended otherwise is created ``cancelled``) and ``_ended`` (a job ended: its dependents run,
wait on, or end ``cancelled``, in the same call, cascading). ``_requeue`` is an operator's retry,
``_cancel_live`` a cancel (of a job, or of its group: ``embedded_groups.py``).

Who waits for whom (prerequisite → dependents) is kept in memory only: every waiting job is
live, live jobs are read back when a store opens, and the map is rebuilt from them on first
use, so a submit writes nothing beyond its job rows. Whatever the store changes on its own
(a dependent released or cancelled) is told to the hub through its listener (``on_ready``,
``on_event``), as a shared store tells of other hubs' changes.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import TYPE_CHECKING

from jobq.core.dependencies import AfterDecision, Runnable, Wait, after_decision
from jobq.core.index import ReadyIndex
from jobq.core.matching import Shape
from jobq.core.model import Job, JobEvent, JobSpec, Submitted, new_job
from jobq.core.states import CANCELLED, QUEUED, RUNNING, SCHEDULED, WAITING, JobState
from jobq.errors import NotFound
from jobq.store.reports import StoreListener


class EmbeddedDependencies:
    """The dependency half of the embedded stores (see the module docstring)."""

    # What it uses of the store (EmbeddedStore sets and defines them).
    _live: dict[int, Job]
    _running: set[int]
    _shapes: dict[int, Shape]
    _scheduled: list[tuple[float, int]]
    index: ReadyIndex

    if TYPE_CHECKING:

        def _move(self, job: Job, state: JobState) -> None: ...

        def _finish(self, job: Job, state: JobState, now: float, ttl: float) -> None: ...

        def _enqueue(self, job: Job, now: float) -> None: ...

        def _save(self, job: Job, *, new: bool = False, urgent: bool = True) -> None: ...

        def _load(self, job_id: int) -> Job | None: ...

        def _ttl(self, job: Job) -> float: ...

        # A member of a group ended, was claimed (store/embedded_groups.py defines them).
        def _group_end(self, job: Job, state: JobState, now: float) -> None: ...

        def _group_claimed(self, job: Job, worker_id: str) -> None: ...

    #: Prerequisite → its waiting dependents; None until first used (then rebuilt from the live
    #: waiting jobs).
    _dependents_of: dict[int, set[int]] | None = None
    _listener: StoreListener | None = None
    #: The batch whose refs ``_refs`` resolves (its outcome list), and how far it has read it.
    _batch: tuple[list[Submitted], dict[str, int], int] | None = None
    #: Jobs whose dependents are still to be decided (while ``_ended`` loops), else None.
    _cascade: list[Job] | None = None

    def listen(self, listener: StoreListener) -> None:
        """One hub only: nobody else to hear from; the listener hears of the dependents this
        store released or cancelled on its own."""
        self._listener = listener

    # ------------------------------------------------------------------ submit

    def _new_job(self, specs: Sequence[JobSpec], out: list[Submitted], job_id: int, now: float) -> Job:
        """The job of ``specs[len(out)]`` (``out``: the outcomes of the earlier specs of the
        call). The first job made by a call checks that every prerequisite the rest of the call
        names exists (``NotFound`` before anything is created)."""
        made = len(out)
        spec = specs[made]
        if self._batch is None or self._batch[0] is not out:  # the first job this call makes
            rest = specs[made:]
            for later in rest:
                if later.after:
                    self._check_known(rest)
                    break
            self._batch = (out, {}, 0)
        if not spec.after:
            return new_job(spec, job_id, now)
        batch, refs, seen = self._batch
        for i in range(seen, len(out)):
            ref = specs[i].ref
            if ref is not None:
                refs[ref] = out[i].job.id
        self._batch = (batch, refs, len(out))
        after = [refs[item] if isinstance(item, str) else item for item in spec.after]
        return new_job(spec, job_id, now, after)

    def _check_known(self, specs: Sequence[JobSpec]) -> None:
        for spec in specs:
            for item in spec.after or ():
                if isinstance(item, int) and item not in self._live and self._load(item) is None:
                    raise NotFound(f"after: no job {item}")

    def _state_of(self, job_id: int) -> JobState | None:
        job = self._live.get(job_id) or self._load(job_id)
        return None if job is None else job.state

    def _place(self, job: Job, now: float) -> None:
        """A new job: into its queue, the schedule, or (with prerequisites) waiting for them,
        or ended ``cancelled`` at once when one of them already ended otherwise."""
        if job.state is not WAITING:
            self._put(job, now)
            return
        decision = after_decision([(a, self._state_of(a)) for a in job.after], job.after_policy)
        self._apply(job, decision, now, tell=False)

    def _put(self, job: Job, now: float) -> None:
        if job.state is SCHEDULED:
            heapq.heappush(self._scheduled, (job.run_at or now, job.id))
        elif job.state is QUEUED:
            self.index.add(job.id, self._shapes[job.id], job.priority, job.seq, now)

    def _apply(self, job: Job, decision: AfterDecision, now: float, *, tell: bool) -> None:
        if isinstance(decision, Wait):
            waiters = self._waiting()
            for prerequisite, _ in decision.pending:
                waiters.setdefault(prerequisite, set()).add(job.id)
        elif isinstance(decision, Runnable):
            later = job.run_at is not None and job.run_at > now
            self._move(job, SCHEDULED if later else QUEUED)
            self._put(job, now)
            if tell:
                self._save(job)
                if self._listener is not None and not later:
                    self._listener.on_ready()
        else:
            job.error = decision.reason
            self._finish(job, CANCELLED, now, self._ttl(job))
            if tell and self._listener is not None:
                self._listener.on_event(
                    JobEvent(
                        id=job.id,
                        kind="cancelled",
                        state=CANCELLED,
                        at=now,
                        service=job.service,
                        error=job.error,
                        customer_id=job.customer_id,
                        owner=job.owner,
                    )
                )

    def _waiting(self) -> dict[int, set[int]]:
        waiters = self._dependents_of
        if waiters is None:
            waiters = self._dependents_of = {}
            for job in self._live.values():
                if job.state is WAITING:
                    for prerequisite in job.after:
                        waiters.setdefault(prerequisite, set()).add(job.id)
        return waiters

    # ------------------------------------------------------------------ ends

    def _ended(self, job: Job, now: float) -> None:
        """``job`` ended (``_finish``): each of its waiting dependents runs, waits on for its
        other prerequisites, or ends ``cancelled`` (whose own dependents follow, in turn: a
        loop, not a recursion, however long the chain)."""
        waiters = self._dependents_of
        if waiters is not None and job.id not in waiters:
            return  # nobody waits for it: the common case costs one check
        if self._cascade is not None:
            self._cascade.append(job)  # a dependent cancelled by the loop below
            return
        self._cascade = [job]
        try:
            while self._cascade:
                self._release_dependents(self._cascade.pop(0), now)
        finally:
            self._cascade = None

    def _release_dependents(self, job: Job, now: float) -> None:
        dependents = self._waiting().pop(job.id, None)
        for dependent_id in sorted(dependents or ()):
            dependent = self._live.get(dependent_id)
            if dependent is None or dependent.state is not WAITING:
                continue  # cancelled meanwhile, or already decided
            # The one that ended, and those still live: the others completed earlier (or the
            # policy is ``always``), else the dependent would have been cancelled then.
            states: list[tuple[int, JobState | None]] = [(job.id, job.state)]
            states += [(a, self._live[a].state) for a in dependent.after if a in self._live]
            self._apply(dependent, after_decision(states, dependent.after_policy), now, tell=True)

    def _stop_running(self, job: Job) -> None:
        """An attempt ends (the store's, and a cancel's)."""
        self._running.discard(job.id)
        self.index.finish(job.id)
        job.lease_expires = None

    def _cancel_live(self, job: Job, why: str, now: float) -> str | None:
        """Cancel a live job (a job's cancel, a group's): out of the queue, or its attempt
        stopped; ended ``cancelled`` (its dependents follow). The worker that ran it, if any."""
        worker = job.worker if job.state is RUNNING else None
        if job.state is QUEUED:
            self.index.discard(job.id)
        elif job.state is RUNNING:
            self._stop_running(job)
        job.error = why
        self._finish(job, CANCELLED, now, self._ttl(job))
        return worker

    def _requeue(self, job: Job, now: float) -> None:
        """An operator's retry: a dependent whose prerequisites have not all ended waits for
        them again; anything else is queued."""
        live = [(a, self._live[a].state) for a in job.after if a in self._live]
        if job.state is CANCELLED and live:
            self._move(job, WAITING)
            self._apply(job, Wait(tuple(live)), now, tell=False)
        else:
            self._enqueue(job, now)
