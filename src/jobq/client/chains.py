"""The client SDK's chains (``docs/workflows.md``, "Dependencies"): specs that each wait for the
one before. A base of :class:`~jobq.client.client.Client`; a dependency on any job is
``submit(..., after=[ids], after_policy="always")``, which needs nothing here.

A chain goes as batches whose specs name each other by ``ref`` (the hub creates each batch all
or nothing, in dependency order); a chain longer than one message's ``SUBMIT_BATCH`` specs goes
as several, sent one after the other, each one's first spec waiting for the last id of the one
before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import msgspec

from jobq.client.batching import SUBMIT_BATCH, SubmitResult
from jobq.core.model import JobSpec
from jobq.errors import InvalidRequest


def chained(specs: Sequence[JobSpec], before: int | None, base: int = 0) -> list[JobSpec]:
    """``specs`` each waiting for the one before (the first for job ``before``, if any), named
    by refs ``chain.<base + i>`` (refs are batch-local)."""
    out = []
    for i, spec in enumerate(specs):
        if spec.ref is not None:
            raise InvalidRequest("a chain names its specs itself: leave their ref unset")
        previous: list[int | str] = [f"chain.{base + i - 1}"] if i else [] if before is None else [before]
        out.append(msgspec.structs.replace(spec, ref=f"chain.{base + i}", after=[*spec.after, *previous]))
    return out


class ChainCalls:
    if TYPE_CHECKING:  # Client's

        async def submit_many(
            self, specs: Iterable[JobSpec], *, watch: bool = False
        ) -> list[SubmitResult]: ...

    async def chain(self, specs: Iterable[JobSpec], *, watch: bool = False) -> list[SubmitResult]:
        """Submit ``specs`` so that each waits for the one before to complete (``after``; a
        spec's own ``after`` and ``after_policy`` are kept, and add to it): if one fails or is
        cancelled, the rest end ``cancelled``. Returns (id, state, created) per spec, in order."""
        specs = list(specs)
        out: list[SubmitResult] = []
        for start in range(0, len(specs), SUBMIT_BATCH):
            before = out[-1][0] if out else None
            batch = chained(specs[start : start + SUBMIT_BATCH], before, start)
            out += await self.submit_many(batch, watch=watch)
        return out
