"""Pushing work to workers with free slots (credit-based, like Majordomo's READY).

Any change that may let a worker take a job calls :meth:`Dispatcher.kick` (a no-op when the
store says nothing is queued); at the end of the turn the dispatcher asks the store to claim
for the pushing workers round-robin, :data:`DISPATCH_CHUNK` jobs at a time (bounded by each
worker's free slots), and hands each worker its jobs in one message. Pull-style doors
(``FETCH``, ``claim_job``) are not served here: they call ``Hub.claim``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from jobq.core.model import Job
from jobq.hub.sessions import WorkerSession
from jobq.store.base import Store

#: Jobs a worker is offered per round of a dispatch (rounds go on while workers take them all).
DISPATCH_CHUNK = 16


class Dispatcher:
    def __init__(
        self,
        store: Store,
        sessions: dict[str, WorkerSession],
        claim: Callable[[WorkerSession, int], Awaitable[list[Job]]],
        spawn: Callable[[Coroutine[Any, Any, object]], None],
        rand: Callable[[], float],
        stopped: Callable[[], bool],
    ) -> None:
        self._store = store
        self._sessions = sessions
        self._claim = claim
        self._spawn = spawn
        self._rand = rand
        self._stopped = stopped
        self._dispatching = False
        self._kicked = False

    def kick(self) -> None:
        """Dispatch at the end of the turn: everything that arrived in the turn goes out
        together, one message per worker."""
        if not self._store.has_queued():
            return  # nothing could be handed out: spare the dispatcher (hot path)
        self._kicked = True
        if not self._dispatching:
            self._dispatching = True
            self._spawn(self._dispatch())

    async def _dispatch(self) -> None:
        try:
            while self._kicked and not self._stopped():
                self._kicked = False
                sessions = [s for s in self._sessions.values() if s.link.pushes and s.info.slots > 0]
                if len(sessions) > 1:
                    # Rotate so that the same worker is not always offered work first.
                    shift = int(self._rand() * len(sessions))
                    sessions = sessions[shift:] + sessions[:shift]
                handed: dict[str, list[Job]] = {}
                # Scopes whose queues a claim of this round found empty (a store whose claims
                # cost a round trip says so): anything queued since kicks another round.
                emptied: set[str] = set()
                more = True
                while more:
                    # Round-robin in chunks, so a burst is shared between the workers.
                    more = False
                    for session in sessions:
                        if self._sessions.get(session.worker_id) is not session:
                            continue
                        if not self._store.has_queued():
                            break
                        scope = self._store.claim_scope(session.worker_id)
                        if scope is not None and scope in emptied:
                            continue  # a claim of this round found that scope's queues empty
                        jobs = await self._claim(session, DISPATCH_CHUNK)
                        if scope is not None and self._store.claimed_empty(session.worker_id):
                            emptied.add(scope)
                        if jobs:
                            handed.setdefault(session.worker_id, []).extend(jobs)
                            more = more or len(jobs) == DISPATCH_CHUNK
                for worker_id, jobs in handed.items():
                    taker = self._sessions.get(worker_id)
                    if taker is not None:
                        taker.link.deliver(jobs)
        finally:
            self._dispatching = False
