"""A listing that names its jobs (``JobFilter.ids``) in the embedded stores: each id looked up
(live, then finished), not every job scanned, so its cost follows the ids asked for (a group's
members a page at a time: ``Hub.group_members``), not the jobs the store holds."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import msgspec

from jobq.core.model import Job, JobFilter
from jobq.store.embedded import EmbeddedStore


def listed_by_ids(query: JobFilter, live: Mapping[int, Job], load: Callable[[int], Job | None]) -> list[Job]:
    """``Store.list_jobs`` for a query with ``ids``: those of its jobs that exist and match its
    other filters, newest first, its page (``offset``, ``limit``). ``load`` reads a finished job."""
    rest = msgspec.structs.replace(query, ids=[])
    live_only = bool(query.states) and not any(state.terminal for state in query.states)
    want = query.offset + query.limit
    found: list[Job] = []
    for job_id in sorted(set(query.ids), reverse=True):
        job = live.get(job_id)
        if job is None and not live_only:
            job = load(job_id)
        if job is not None and rest.matches(job):
            found.append(job)
            if len(found) >= want:
                break
    return found[query.offset : want]


class EmbeddedLookups(EmbeddedStore):
    """``list_jobs`` by ids for the embedded stores (a base of ``MemoryStore``, ``SqliteStore``)."""

    async def list_jobs(self, query: JobFilter) -> list[Job]:
        if query.ids:
            return listed_by_ids(query, self._live, self._load)
        return await super().list_jobs(query)


__all__ = ["EmbeddedLookups", "listed_by_ids"]
