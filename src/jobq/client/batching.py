"""Submits of one event-loop turn travel to the hub as one message; each call keeps its own outcome.

A producer that keeps many submits in flight pays for one round trip per batch, not per job.
The hub answers every spec of a batch on its own (``accepted`` lists the refused ones with
their errors), so one bad submit fails only its own call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from jobq.core.model import JobSpec
from jobq.errors import JobqError, Unavailable, error_from_code
from jobq.protocol import native
from jobq.protocol.connection import Connection

#: Most jobs in one submit message.
SUBMIT_BATCH = 5000

#: What the hub said of one submitted spec: (id, state, created), or why it was refused.
SubmitResult = tuple[int, str, bool]
Outcome = SubmitResult | JobqError


def outcomes_of(reply: native.Outbound | JobqError, count: int) -> list[Outcome]:
    """One outcome per spec of a ``submit`` of ``count`` specs, in order, from its reply: an
    error reply (the whole submit refused) is every spec's outcome."""
    if isinstance(reply, JobqError):
        return [reply] * count
    if isinstance(reply, native.Accepted):
        if not reply.errors and len(reply.jobs) == count:
            return list(reply.jobs)  # the common case: every spec accepted
        refused = {index: error_from_code(code, message) for index, code, message in reply.errors}
        if len(reply.jobs) + len(refused) == count and all(0 <= i < count for i in refused):
            jobs = iter(reply.jobs)
            return [refused[i] if i in refused else _result(next(jobs)) for i in range(count)]
    return [JobqError(f"unexpected reply {reply!r}")] * count


def _result(accepted: tuple[int, str, bool]) -> SubmitResult:
    job_id, state, created = accepted
    return job_id, state, created


class TurnBatcher:
    """Gathers the submits of one event-loop turn into one ``submit`` message.

    With failover (several hub endpoints) a batch the hub does not answer is sent again, with
    the same idempotency keys, to the next hub: ``epoch`` and ``move_on`` are the client's
    (see ``Client._move_on``).
    """

    def __init__(
        self,
        conn: Connection,
        *,
        credential: str | None,
        failover: bool,
        epoch: Callable[[], int],
        move_on: Callable[[int], None],
    ) -> None:
        self.conn = conn
        self.credential = credential
        self.failover = failover
        self._epoch = epoch
        self._move_on = move_on
        self._batch: list[tuple[JobSpec, asyncio.Future[SubmitResult]]] = []
        self._watch = False
        self._turn_open = False
        #: Submit messages sent and not answered yet.
        self._out = 0

    def add(self, spec: JobSpec, *, watch: bool) -> asyncio.Future[SubmitResult]:
        """Queue a spec for this turn's message; the future gets its own outcome."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[SubmitResult] = loop.create_future()
        self._batch.append((spec, future))
        self._watch = self._watch or watch
        if not self._turn_open:
            self._turn_open = True
            loop.call_soon(self._end_turn)
            if not self._out:
                # Nothing in flight (a producer waiting for each answer): send at once. Under a
                # stream of submits, they travel together at the end of the turn.
                self._send()
        elif len(self._batch) >= SUBMIT_BATCH:
            self._send()
        return future

    def _end_turn(self) -> None:
        self._turn_open = False
        self._send()

    def _send(self) -> None:
        batch, self._batch = self._batch, []
        watch, self._watch = self._watch, False
        if not batch:
            return

        left = len(self.conn.endpoints) - 1 if self.failover else 0
        epoch = self._epoch()

        def settle(reply: native.Outbound | JobqError) -> None:
            nonlocal left
            if isinstance(reply, Unavailable) and left > 0:
                # The same message (same idempotency keys) to the next hub, once the
                # connection has moved (this may be called from inside ``failover``).
                left -= 1
                asyncio.get_running_loop().call_soon(resend)
                return
            self._out -= 1
            for (_, future), outcome in zip(batch, outcomes_of(reply, len(batch)), strict=True):
                if future.done():
                    continue
                if isinstance(outcome, JobqError):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

        def resend() -> None:
            nonlocal epoch
            self._move_on(epoch)
            epoch = self._epoch()
            self.conn.call(message, settle)

        message = native.Submit(
            rid=self.conn.next_rid(),
            jobs=[spec for spec, _ in batch],
            watch=watch,
            credential=self.credential,
        )
        self._out += 1
        self.conn.call(message, settle)
