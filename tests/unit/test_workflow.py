"""Groups, finalize, dependencies (core/workflow.py): the rules a store applies atomically."""

from __future__ import annotations

import json
import random
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobq.core.errors import Conflict, InvalidRequest
from jobq.core.model import JobSpec
from jobq.core.states import JobState
from jobq.core.workflow import (
    Group,
    GroupState,
    MemberOutcome,
    cancel_group,
    check_group,
    concat,
    counts,
    derive_state,
    finalize_input,
    read_finalize_input,
    record_end,
    record_finalize,
    record_finalize_end,
    record_retry,
)

C, F, X, Q = JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.QUARANTINED
ENDS = (C, F, X, Q)


def group(total: int = 3, *, finalize: bool = True, policy: str = "all_completed", **kw: Any) -> Group:
    spec = JobSpec(service="concat") if finalize else None
    return check_group(
        Group(id=100, service="svc", total=total, created_at=1.0, policy=policy, finalize=spec, **kw)  # type: ignore[arg-type]
    )


def end_all(g: Group, states: list[JobState], now: float = 10.0) -> tuple[Group, list[int]]:
    """Record each member's end in order; return the group and the steps that asked for finalize."""
    asked = []
    for i, state in enumerate(states):
        step = record_end(g, i, state, now + i)
        g = step.group
        if step.submit_finalize:
            asked.append(i)
    return g, asked


# --- the group's life ---


def test_all_completed_submits_finalize_once_at_the_last_end() -> None:
    g = group(3)
    step = record_end(g, 0, C, 10.0)
    assert (step.group.state, step.submit_finalize, step.ended) == (GroupState.RUNNING, False, False)
    assert step.group.ended == {"completed": 1}
    step = record_end(step.group, 2, C, 11.0)
    step = record_end(step.group, 1, C, 12.0)
    assert (step.group.state, step.submit_finalize, step.ended) == (GroupState.FINALIZING, True, False)
    assert step.group.ended_at is None
    g = record_finalize(step.group, 555)
    assert g.finalize_id == 555
    with pytest.raises(Conflict, match="already has finalize job 555"):
        record_finalize(g, 556)
    done = record_finalize_end(g, C, 20.0)
    assert (done.group.state, done.ended, done.group.ended_at, done.group.reason) == (
        GroupState.COMPLETED, True, 20.0, None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("state", "outcome"), [(F, GroupState.FAILED), (Q, GroupState.FAILED), (X, GroupState.CANCELLED)]
)
def test_the_group_ends_as_its_finalize_job_ends(state: JobState, outcome: GroupState) -> None:
    g, _ = end_all(group(2), [C, C])
    g = record_finalize(g, 7)
    step = record_finalize_end(g, state, 30.0, "boom")
    assert (step.group.state, step.ended) == (outcome, True)
    assert step.group.reason == f"finalize job {state}: boom"


def test_all_completed_with_a_failure_fails_without_finalize() -> None:
    g, asked = end_all(group(4), [C, F, C, Q])
    assert asked == []
    assert g.state is GroupState.FAILED
    assert g.ended_at == 13.0
    assert g.reason == "2 of 4 members did not complete (1 failed, 1 quarantined)"


def test_all_ended_finalizes_whatever_the_outcomes() -> None:
    g, asked = end_all(group(4, policy="all_ended"), [F, X, Q, C])
    assert asked == [3]
    assert g.state is GroupState.FINALIZING


@pytest.mark.parametrize(
    ("policy", "states", "expected"),
    [
        ("all_completed", [C, C], GroupState.COMPLETED),
        ("all_completed", [C, F], GroupState.FAILED),
        ("all_ended", [C, F], GroupState.COMPLETED),
        ("all_ended", [X, X], GroupState.COMPLETED),
    ],
)
def test_without_finalize_the_group_ends_with_its_members(
    policy: str, states: list[JobState], expected: GroupState
) -> None:
    g = group(2, finalize=False, policy=policy)
    step = record_end(g, 0, states[0], 1.0)
    assert not step.ended
    step = record_end(step.group, 1, states[1], 2.0)
    assert (step.group.state, step.ended, step.submit_finalize, step.group.ended_at) == (
        expected,
        True,
        False,
        2.0,
    )


def test_record_end_refusals() -> None:
    g = group(2)
    with pytest.raises(InvalidRequest, match="no member 2"):
        record_end(g, 2, C, 1.0)
    with pytest.raises(InvalidRequest, match="no member -1"):
        record_end(g, -1, C, 1.0)
    with pytest.raises(InvalidRequest, match="running is not an end"):
        record_end(g, 0, JobState.RUNNING, 1.0)
    g, _ = end_all(g, [C, C])
    with pytest.raises(Conflict, match="more member ends than members"):
        record_end(g, 0, C, 1.0)


def test_check_group() -> None:
    with pytest.raises(InvalidRequest, match="1 to 100,000 members, not 0"):
        group(0)
    with pytest.raises(InvalidRequest, match="not 100,001"):
        group(100_001)
    with pytest.raises(InvalidRequest, match="policy must be one of all_completed, all_ended"):
        group(2, policy="most")
    bad = Group(id=1, service="s", total=1, created_at=0, finalize=JobSpec(service="f", payload=[b"{no"]))
    with pytest.raises(InvalidRequest, match="must be JSON"):
        check_group(bad)


def test_member_index_from_contiguous_ids() -> None:
    g = group(3)
    assert [g.member_index(job_id) for job_id in (101, 102, 103)] == [0, 1, 2]
    for outsider in (100, 104):
        with pytest.raises(InvalidRequest, match="not a member of group 100"):
            g.member_index(outsider)


def test_counts_merge_live_and_ended() -> None:
    g, _ = end_all(group(5), [C, F])
    assert counts(g) == {"completed": 1, "failed": 1}
    assert counts(g, {"queued": 2, "running": 1, "scheduled": 0}) == {
        "queued": 2, "running": 1, "completed": 1, "failed": 1,
    }  # fmt: skip


# --- cancel ---


def test_cancel_a_running_group() -> None:
    g, _ = end_all(group(3), [C])
    step = cancel_group(g, 50.0, "user asked")
    assert (step.group.state, step.ended, step.cancel_rest, step.group.ended_at, step.group.reason) == (
        GroupState.CANCELLED, True, True, 50.0, "user asked",
    )  # fmt: skip
    # The members the store cancels (and one whose result raced in) are counted; nothing follows.
    g = step.group
    for i, state in ((1, X), (2, C)):
        later = record_end(g, i, state, 51.0)
        assert (later.submit_finalize, later.ended, later.group.state) == (False, False, GroupState.CANCELLED)
        g = later.group
    assert g.ended == {"completed": 2, "cancelled": 1}
    assert derive_state(g) is GroupState.CANCELLED


def test_cancel_a_finalizing_group_cancels_its_finalize_job() -> None:
    g, _ = end_all(group(1), [C])
    g = record_finalize(g, 9)
    step = cancel_group(g, 5.0)
    assert step.cancel_rest and step.group.state is GroupState.CANCELLED
    after = record_finalize_end(step.group, X, 6.0)
    assert (after.group, after.ended) == (step.group, False)


@pytest.mark.parametrize("states", [[C, C], [C, F]])
def test_an_ended_group_cannot_be_cancelled(states: list[JobState]) -> None:
    g, _ = end_all(group(2, finalize=False), states)
    with pytest.raises(Conflict, match="already ended"):
        cancel_group(g, 1.0)
    with pytest.raises(Conflict, match="already ended \\(cancelled\\)"):
        cancel_group(cancel_group(group(2), 1.0).group, 2.0)


# --- retries ---


def test_retrying_a_member_of_a_running_group() -> None:
    g, _ = end_all(group(3), [F])
    g = record_retry(g, 0, F)
    assert (g.ended, g.state) == ({}, GroupState.RUNNING)
    with pytest.raises(Conflict, match="counts no failed member"):
        record_retry(g, 0, F)


def test_retrying_reopens_a_group_that_failed_for_lack_of_completed_members() -> None:
    g, _ = end_all(group(2), [C, F])
    assert g.state is GroupState.FAILED
    g = record_retry(g, 1, F)
    assert (g.state, g.ended_at, g.reason, g.ended) == (GroupState.RUNNING, None, None, {"completed": 1})
    step = record_end(g, 1, C, 40.0)
    assert step.submit_finalize and step.group.state is GroupState.FINALIZING


def test_no_member_retry_once_finalize_was_submitted_or_the_group_completed_or_was_cancelled() -> None:
    g, _ = end_all(group(2, policy="all_ended"), [C, F])
    g = record_finalize(g, 9)
    with pytest.raises(Conflict, match="has finalized"):
        record_retry(g, 1, F)
    done, _ = end_all(group(2, finalize=False, policy="all_ended"), [C, F])
    with pytest.raises(Conflict, match="has completed"):
        record_retry(done, 1, F)
    cancelled = cancel_group(group(2), 1.0).group
    with pytest.raises(Conflict, match="was cancelled"):
        record_retry(cancelled, 0, X)
    with pytest.raises(InvalidRequest, match="no member 5"):
        record_retry(group(2), 5, F)


def test_retrying_a_failed_finalize_job() -> None:
    g, _ = end_all(group(1), [C])
    g = record_finalize(g, 9)
    with pytest.raises(Conflict, match="no failed finalize job"):
        record_retry(g, None, F)  # still finalizing
    g = record_finalize_end(g, F, 5.0, "oops").group
    g = record_retry(g, None, F)
    assert (g.state, g.ended_at, g.reason) == (GroupState.FINALIZING, None, None)
    assert record_finalize_end(g, C, 6.0).group.state is GroupState.COMPLETED
    with pytest.raises(Conflict, match="no failed finalize job"):
        record_retry(group(1), None, F)


# --- properties: whatever the order, finalize is asked for exactly once, at the last end ---


@settings(max_examples=300, deadline=None)
@given(
    states=st.lists(st.sampled_from(ENDS), min_size=1, max_size=30),
    policy=st.sampled_from(["all_completed", "all_ended"]),
    has_finalize=st.booleans(),
    seed=st.integers(0, 2**32),
)
def test_finalize_is_asked_for_once_in_any_order(
    states: list[JobState], policy: str, has_finalize: bool, seed: int
) -> None:
    g = group(len(states), finalize=has_finalize, policy=policy)
    order = list(range(len(states)))
    random.Random(seed).shuffle(order)
    asked, ended = [], []
    for n, i in enumerate(order):
        step = record_end(g, i, states[i], float(n))
        g = step.group
        assert g.state is derive_state(g)
        asked += [n] if step.submit_finalize else []
        ended += [n] if step.ended else []
    all_ok = policy == "all_ended" or all(s is C for s in states)
    assert asked == ([len(states) - 1] if has_finalize and all_ok else [])
    assert ended == ([] if has_finalize and all_ok else [len(states) - 1])
    assert sum(g.ended.values()) == len(states)


# --- the finalize input ---


def outcomes(results: list[tuple[JobState, list[bytes] | None, str | None]]) -> list[MemberOutcome]:
    return [
        MemberOutcome(index=i, id=101 + i, state=state, result=result, error=error)
        for i, (state, result, error) in enumerate(results)
    ]


def test_finalize_input_lists_members_in_member_order() -> None:
    g, _ = end_all(group(3, policy="all_ended"), [C, F, C])
    given_ = outcomes([(C, [b"ab", b"c"], None), (F, None, "disk full"), (C, [b"xyz"], None)])
    payload = finalize_input(g, list(reversed(given_)))
    assert len(payload) == 2
    manifest = json.loads(payload[0])
    assert manifest == {
        "format": "jobq.group-outcomes/1",
        "group": 100,
        "policy": "all_ended",
        "total": 3,
        "counts": {"completed": 2, "failed": 1},
        "members": [
            {
                "index": 0,
                "id": 101,
                "state": "completed",
                "result": {"inline": True, "sizes": [2, 1], "offset": 0},
            },
            {"index": 1, "id": 102, "state": "failed", "error": "disk full"},
            {
                "index": 2,
                "id": 103,
                "state": "completed",
                "result": {"inline": True, "sizes": [3], "offset": 3},
            },
        ],
    }
    assert payload[1] == b"abcxyz"
    inp = read_finalize_input(payload)
    assert [inp.result(entry) for entry in inp.manifest.members] == [[b"ab", b"c"], None, [b"xyz"]]


def test_results_beyond_the_budget_are_referenced_first_fit() -> None:
    g, _ = end_all(group(4), [C, C, C, C])
    given_ = outcomes([(C, [b"a" * 6], None), (C, [b"b" * 5], None), (C, [b"c" * 4], None), (C, [b""], None)])
    payload = finalize_input(g, given_, inline_budget=10)
    inp = read_finalize_input(payload)
    places = [(m.result.inline, m.result.offset) for m in inp.manifest.members if m.result]
    assert places == [(True, 0), (False, None), (True, 6), (True, 10)]
    assert payload[1] == b"a" * 6 + b"c" * 4
    with pytest.raises(InvalidRequest, match="102's result was not fetched"):
        inp.result(inp.manifest.members[1])
    assert inp.result(inp.manifest.members[1], {102: [b"b" * 5]}) == [b"b" * 5]
    assert inp.result(inp.manifest.members[3]) == [b""]


def test_expanded_groups_name_each_members_combination_and_args_come_from_the_finalize_spec() -> None:
    spec = JobSpec(service="concat", payload=[b'{"separator": "\\n"}'])
    g = check_group(
        Group(
            id=100, service="s", total=4, created_at=0, finalize=spec, expand={"w": "A01..A02", "z": [1, 2]}
        )
    )
    g, _ = end_all(g, [C] * 4)
    payload = finalize_input(g, outcomes([(C, [b"r"], None)] * 4))
    manifest = json.loads(payload[0])
    assert manifest["expand"] == {"w": "A01..A02", "z": [1, 2]}
    assert manifest["args"] == {"separator": "\n"}
    inp = read_finalize_input(payload)
    assert [inp.params(m) for m in inp.manifest.members] == [
        {"w": "A01", "z": 1}, {"w": "A01", "z": 2}, {"w": "A02", "z": 1}, {"w": "A02", "z": 2},
    ]  # fmt: skip
    plain, _ = end_all(group(1), [C])
    assert (
        read_finalize_input(finalize_input(plain, outcomes([(C, None, None)]))).params(
            inp.manifest.members[0]
        )
        is None
    )


def test_finalize_input_needs_every_member_once() -> None:
    g, _ = end_all(group(2), [C, C])
    with pytest.raises(InvalidRequest, match="not its 2 members"):
        finalize_input(g, outcomes([(C, [b"x"], None)]))
    twice = outcomes([(C, [b"x"], None)]) * 2
    with pytest.raises(InvalidRequest, match="not its 2 members"):
        finalize_input(g, twice)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ([], "a manifest frame and a data frame"),
        ([b"{}", b"", b""], "a manifest frame and a data frame"),
        ([b"nope"], "not a finalize manifest"),
        (
            [
                b'{"format": "x/9", "group": 1, "policy": "all_ended", "total": 0, "counts": {}, "members": []}'
            ],
            "unknown finalize format",
        ),
    ],
)
def test_reading_a_bad_finalize_payload(payload: list[bytes], reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        read_finalize_input(payload)


# --- concat ---


def concat_input(args: Any = None, budget: int = 1 << 20) -> list[bytes]:
    payload = [] if args is None else [msgspec.json.encode(args)]
    g = check_group(
        Group(
            id=100,
            service="s",
            total=4,
            created_at=0,
            policy="all_ended",
            finalize=JobSpec(service="concat", payload=payload),
        )
    )
    g, _ = end_all(g, [C, F, C, C])
    given_ = outcomes([(C, [b"a1", b"a2"], None), (F, None, "x"), (C, [b"c"], None), (C, [b"dd"], None)])
    return finalize_input(g, given_, inline_budget=budget)


def test_concat_joins_completed_members_in_order() -> None:
    assert concat(concat_input()) == [b"a1a2cdd"]
    assert concat(concat_input({"separator": "\n"})) == [b"a1a2\nc\ndd"]
    assert concat(concat_input({"mode": "frames"})) == [b"a1", b"a2", b"c", b"dd"]


def test_concat_uses_fetched_results_for_referenced_members() -> None:
    payload = concat_input(budget=4)  # a1a2 fits, c fits? 4+1 > 4: no; dd no
    manifest = read_finalize_input(payload).manifest
    referenced = [m.id for m in manifest.members if m.result and not m.result.inline]
    assert referenced == [103, 104]
    assert concat(payload, {103: [b"c"], 104: [b"dd"]}) == [b"a1a2cdd"]
    with pytest.raises(InvalidRequest, match="not fetched"):
        concat(payload)


@pytest.mark.parametrize("args", [{"mode": "zip"}, {"separator": 3}])
def test_concat_refuses_bad_args(args: dict[str, Any]) -> None:
    with pytest.raises(InvalidRequest, match="concat args"):
        concat(concat_input(args))
