"""A listing by ids on the embedded stores (store/embedded_query.py) looks each id up: it tests
the other filters on the named jobs only, never on every job the store holds (the outcome on
every store is a contract case: tests/contract/test_store_contract.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobq.core.model import Job, JobFilter, JobSpec
from jobq.store.base import open_store

T0 = 1_000_000.0


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_a_listing_by_ids_reads_only_those_jobs(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store("memory://" if kind == "memory" else f"sqlite:///{tmp_path}/jobq.db")
    await store.open(T0)
    try:
        made = await store.submit([JobSpec(service="echo", payload=[b"x"]) for _ in range(300)], T0)
        ids = [m.job.id for m in made]
        await store.cancel(ids[5], T0)  # one ended, read from where finished jobs are kept
        tested: list[int] = []
        matches = JobFilter.matches

        def counting(self: JobFilter, job: Job) -> bool:
            tested.append(job.id)
            return matches(self, job)

        monkeypatch.setattr(JobFilter, "matches", counting)
        listed = await store.list_jobs(JobFilter(ids=[ids[5], ids[7], ids[250]], service="echo"))
        assert [j.id for j in listed] == [ids[250], ids[7], ids[5]]
        assert sorted(tested) == sorted([ids[5], ids[7], ids[250]])
        assert await store.list_jobs(JobFilter(ids=[ids[7]], service="other")) == []
    finally:
        monkeypatch.undo()
        await store.close()
