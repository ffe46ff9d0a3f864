"""Dependencies (``after``) at the hub: batches whose specs name each other, who may name
which prerequisite, and what a waiting job waits for (``explain``). The stores apply the rules
(``core/dependencies.py``) in the step that creates or ends a job.

A batch whose specs name each other (``ref``, and ``after`` entries that are refs) is taken
all or nothing: its specs are checked first (one refused spec refuses the batch, each spec with
the reason), then created in one store call in dependency order (``order_batch``: each after
the specs it waits for, otherwise in submit order; unknown or duplicate refs and cycles are
refused, naming the path). The store replaces each ref with the id it just made. Outcomes come
back in the caller's order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from jobq.core.dependencies import BatchItem, Wait, order_batch
from jobq.core.model import Job, JobSpec, Submitted
from jobq.errors import InvalidRequest, JobqError, NotFound

Outcome = Submitted | JobqError


def linked(specs: Sequence[JobSpec]) -> bool:
    """Whether some spec of the batch names another by ref (or has a ref to be named by)."""
    return any(
        spec.ref is not None or (spec.after and any(isinstance(item, str) for item in spec.after))
        for spec in specs
    )


async def submit_linked(
    specs: Sequence[JobSpec],
    refused: dict[int, JobqError],
    check: Callable[[JobSpec], None],
    create: Callable[[list[JobSpec]], Awaitable[Sequence[Submitted]]],
) -> list[Outcome]:
    """One outcome per spec, in order: all created, or all refused (``refused``: specs the
    caller may not submit, by index; ``check`` raises why a spec would be refused; ``create``
    makes the ordered specs in one store call)."""
    try:
        order = order_batch([BatchItem(spec.ref, spec.after) for spec in specs])
    except JobqError as exc:
        return [exc.with_traceback(None)] * len(specs)
    errors = dict(refused)
    for index, spec in enumerate(specs):
        if index not in errors:
            try:
                check(spec)
            except JobqError as exc:
                errors[index] = exc.with_traceback(None)
    if errors:
        first = min(errors)
        why = InvalidRequest(
            f"not submitted: spec #{first} of its batch was refused ({errors[first]}), "
            "and specs that name each other are submitted together or not at all"
        )
        return [errors.get(index, why) for index in range(len(specs))]
    try:
        made = list(await create([specs[i] for i in order]))
    except JobqError as exc:
        return [exc.with_traceback(None)] * len(specs)
    out: list[Outcome | None] = [None] * len(specs)
    for position, index in enumerate(order):
        out[index] = made[position]
    return [item for item in out if item is not None]


async def check_prerequisites(
    specs: Sequence[JobSpec], refused: dict[int, JobqError], read: Callable[[int], Awaitable[object]]
) -> None:
    """A restricted caller may name as prerequisites only jobs it may read (``read`` raises
    why not): a spec naming another job is refused with that reason (added to ``refused``). An
    unknown id is left to the store, which refuses it in the same step as the submit."""
    for index, spec in enumerate(specs):
        if index in refused or not spec.after:
            continue
        for item in spec.after:
            if isinstance(item, str):
                continue
            try:
                await read(item)
            except NotFound:
                continue
            except JobqError as exc:
                refused[index] = exc.with_traceback(None)
                break


async def waits_for(job: Job, get: Callable[[int], Awaitable[Job | None]]) -> str:
    """What a waiting job waits for: "waits for jobs 12 (running), 15 (queued)"."""
    found = await asyncio.gather(*(get(item) for item in job.after))
    pending = tuple((p.id, p.state) for p in found if p is not None and not p.state.terminal)
    return Wait(pending).reason if pending else "waiting for its prerequisites"
