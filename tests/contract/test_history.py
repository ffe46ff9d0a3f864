"""The history every store keeps (``record_history`` / ``read_history``, ``core/history.py``):
rows add up per bucket and service, depth is the last written, old buckets are forgotten,
durable stores keep it across a reopen, and two hubs on one Redis add into the same buckets."""

from __future__ import annotations

from jobq.core.history import COARSE, FINE, KEPT, HistoryRow, observe
from jobq.store.base import Store
from tests.contract.support import T0, Backend

BASE = int(T0)  # 1,000,000: a multiple of 10 (and of 40, not of 60)


def row(
    t: int,
    service: str = "echo",
    resolution: int = FINE,
    *,
    submitted: int = 0,
    completed: int = 0,
    failed: int = 0,
    depth: int | None = None,
) -> HistoryRow:
    return HistoryRow(
        resolution=resolution,
        t=t,
        service=service,
        submitted=submitted,
        completed=completed,
        failed=failed,
        depth=depth,
    )


def summary(rows: list[HistoryRow]) -> dict[tuple[int, str], tuple[int, int, int, int | None]]:
    return {(r.t, r.service): (r.submitted, r.completed, r.failed, r.depth) for r in rows}


async def test_rows_add_up_per_bucket_and_service(store: Store) -> None:
    first = row(BASE, submitted=3, depth=4)
    observe(first.wait, 0.25)
    await store.record_history([first, row(BASE, "other", submitted=1)], T0)
    second = row(BASE, completed=2, failed=1, depth=1)
    observe(second.wait, 0.25)
    observe(second.run, 3.0)
    await store.record_history([second, row(BASE + 10, submitted=5)], T0 + 10)

    found = await store.read_history(BASE, BASE + 20, FINE)
    assert summary(found) == {
        (BASE, "echo"): (3, 2, 1, 1),
        (BASE, "other"): (1, 0, 0, None),
        (BASE + 10, "echo"): (5, 0, 0, None),
    }
    echo = next(r for r in found if (r.t, r.service) == (BASE, "echo"))
    assert sum(echo.wait.values()) == 2 and len(echo.wait) == 1 and sum(echo.run.values()) == 1
    assert summary(await store.read_history(BASE, BASE + 10, FINE, "other")) == {
        (BASE, "other"): (1, 0, 0, None)
    }
    assert await store.read_history(BASE, BASE + 20, COARSE) == []  # another resolution


async def test_resolutions_are_kept_apart_and_old_buckets_forgotten(store: Store) -> None:
    await store.record_history([row(BASE, submitted=1), row(BASE - 40, resolution=COARSE, submitted=6)], T0)
    later = T0 + KEPT[FINE] + 100  # the 10-second bucket is a day old, the minute is not
    await store.record_history([row(int(later) // 10 * 10, submitted=2)], later)
    assert summary(await store.read_history(0, 2**40, FINE)) == {
        (int(later) // 10 * 10, "echo"): (2, 0, 0, None)
    }
    assert summary(await store.read_history(0, 2**40, COARSE)) == {(BASE - 40, "echo"): (6, 0, 0, None)}
    much_later = T0 + KEPT[COARSE] + 100
    await store.record_history([row(int(much_later) // 60 * 60, resolution=COARSE, submitted=1)], much_later)
    assert summary(await store.read_history(0, 2**40, COARSE)) == {
        (int(much_later) // 60 * 60, "echo"): (1, 0, 0, None)
    }


async def test_the_history_survives_a_reopen(backend: Backend) -> None:
    store = await backend.open()
    await store.record_history([row(BASE, submitted=2, failed=1, depth=3)], T0)
    if not backend.durable:
        return
    store = await backend.reopen(store, T0 + 1)
    assert summary(await store.read_history(BASE, BASE + 10, FINE)) == {(BASE, "echo"): (2, 0, 1, 3)}


async def test_two_hubs_on_one_redis_add_into_the_same_buckets(backend: Backend) -> None:
    if backend.name != "redis":
        return
    a, b = await backend.open(), await backend.open()
    await a.record_history([row(BASE, submitted=2, depth=5)], T0)
    await b.record_history([row(BASE, submitted=3, completed=1, depth=6), row(BASE, "other", failed=1)], T0)
    for store in (a, b):
        assert summary(await store.read_history(BASE, BASE + 10, FINE)) == {
            (BASE, "echo"): (5, 1, 0, 6),
            (BASE, "other"): (0, 0, 1, None),
        }
