"""Dependencies between jobs (core/dependencies.py): after decisions, batch order, cycles."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobq.core.dependencies import (
    BatchItem,
    CancelDependent,
    Runnable,
    Wait,
    after_decision,
    check_after,
    order_batch,
)
from jobq.core.errors import InvalidRequest
from jobq.core.states import JobState

C, F, X, Q = JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.QUARANTINED

R, QU, S = JobState.RUNNING, JobState.QUEUED, JobState.SCHEDULED


@pytest.mark.parametrize(
    ("prereqs", "policy", "expected"),
    [
        ([], "completed", Runnable()),
        ([(1, C), (2, C)], "completed", Runnable()),
        ([(1, C), (2, R), (3, QU)], "completed", Wait(((2, R), (3, QU)))),
        ([(1, R), (2, F)], "completed", CancelDependent(2, "prerequisite 2 ended failed")),
        ([(1, X), (2, F)], "completed", CancelDependent(1, "prerequisite 1 ended cancelled")),
        ([(1, Q)], "completed", CancelDependent(1, "prerequisite 1 ended quarantined")),
        ([(1, None)], "completed", CancelDependent(1, "prerequisite 1 is gone")),
        ([(1, F), (2, X), (3, None), (4, C)], "always", Runnable()),
        ([(1, F), (2, S)], "always", Wait(((2, S),))),
    ],
)
def test_after_decision(prereqs: list[tuple[int, JobState | None]], policy: str, expected: object) -> None:
    assert after_decision(prereqs, policy) == expected


def test_wait_reason_names_what_it_waits_for() -> None:
    assert Wait(((2, R),)).reason == "waits for job 2 (running)"
    assert Wait(((2, R), (3, QU))).reason == "waits for jobs 2 (running), 3 (queued)"
    many = Wait(tuple((i, QU) for i in range(1, 9)))
    assert many.reason.endswith("5 (queued) and 3 more")


@pytest.mark.parametrize(
    ("after", "policy", "reason"),
    [
        ([1, 2, 1], "completed", "names 1 twice"),
        ([0], "completed", "0 names no job"),
        ([""], "completed", "'' names no job"),
        ([True], "completed", "job ids"),
        ([1.5], "completed", "job ids"),
        ([1], "sometimes", "after_policy must be one of completed, always"),
        (list(range(1, 1002)), "completed", "1001 jobs; at most 1000"),
    ],
)
def test_check_after(after: list[Any], policy: str, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        check_after(after, policy)


def test_batch_order_puts_prerequisites_first_and_keeps_submit_order_otherwise() -> None:
    items = [
        BatchItem("report", ["fetch", "parse"]),
        BatchItem("fetch"),
        BatchItem(None, [42]),
        BatchItem("parse", ["fetch", 7]),
    ]
    assert order_batch(items) == [1, 2, 3, 0]
    assert order_batch([BatchItem(None), BatchItem(None)]) == [0, 1]


@pytest.mark.parametrize(
    ("items", "reason"),
    [
        ([BatchItem("a", ["b"]), BatchItem("b", ["a"])], "dependency cycle: 'a' → 'b' → 'a'"),
        (
            [BatchItem("x", ["a"]), BatchItem("a", ["b"]), BatchItem("b", ["c"]), BatchItem("c", ["a"])],
            "dependency cycle: 'a' → 'b' → 'c' → 'a'",
        ),
        ([BatchItem("a", ["a"])], "'a' waits for itself"),
        ([BatchItem("a", ["zz"])], "no spec in this batch has ref 'zz'"),
        ([BatchItem("a"), BatchItem("a")], "'a' is empty or names two specs"),
        ([BatchItem("")], "'' is empty"),
    ],
)
def test_batch_refusals(items: list[BatchItem], reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        order_batch(items)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_batch_order_respects_every_dependency_or_names_a_real_cycle(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 12))
    edges = data.draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=20))
    needs: dict[int, set[int]] = {i: set() for i in range(n)}
    for a, b in edges:
        if a != b:
            needs[a].add(b)
    items = [BatchItem(f"s{i}", sorted(f"s{j}" for j in needs[i])) for i in range(n)]
    try:
        order = order_batch(items)
    except InvalidRequest as exc:
        names = exc.message.removeprefix("dependency cycle: ").split(" → ")
        path = [int(name.strip("'s")) for name in names]
        assert path[0] == path[-1] and len(path) >= 3
        assert all(path[k + 1] in needs[path[k]] for k in range(len(path) - 1))
        return
    assert sorted(order) == list(range(n))
    position = {i: k for k, i in enumerate(order)}
    assert all(position[dep] < position[i] for i in range(n) for dep in needs[i])
