"""The pure rules behind what every door shows (core/views.py), at their boundaries."""

from __future__ import annotations

from typing import Any

import pytest

from jobq.core.model import Job, StoreStats, WorkerInfo
from jobq.core.states import JobState
from jobq.core.views import (
    ServiceInfo,
    estimated_start,
    queue_positions,
    queued_summary,
    services_of,
    worker_health,
)

NOW = 1_000_000.0


def job(job_id: int, service: str = "a", state: JobState = JobState.QUEUED) -> Job:
    return Job(id=job_id, service=service, state=state, seq=job_id, submitted_at=NOW)


def stats(by_service: dict[str, dict[str, int]]) -> StoreStats:
    by_state: dict[str, int] = {}
    for states in by_service.values():
        for state, count in states.items():
            by_state[state] = by_state.get(state, 0) + count
    return StoreStats(by_state=by_state, by_service=by_service)


def worker(
    worker_id: str, services: list[str], slots: int = 1, schemas: dict[str, Any] | None = None
) -> WorkerInfo:
    return WorkerInfo(id=worker_id, services=services, slots=slots, schemas=schemas or {})


# ---------------------------------------------------------------- worker_health


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        (0.0, "ok"),
        (2.5, "ok"),  # two heartbeats and the half-second slack: still ok
        (2.5001, "late"),
        (5.0, "late"),  # the liveness window is closed only after it
        (5.0001, "silent"),
        (1e9, "silent"),
    ],
)
def test_worker_health_boundaries(age: float, expected: str) -> None:
    assert worker_health(age, heartbeat=1.0, silence=5.0) == expected


def test_worker_health_ok_wins_over_a_silence_window_shorter_than_two_heartbeats() -> None:
    # heartbeat 1 s, silence 2 s: 2.2 s is within the ok slack although past the silence window;
    # past the slack there is no "late" band at all.
    assert worker_health(2.2, heartbeat=1.0, silence=2.0) == "ok"
    assert worker_health(2.6, heartbeat=1.0, silence=2.0) == "silent"


# ---------------------------------------------------------------- queue_positions


def test_queue_positions_of_nothing() -> None:
    assert queue_positions(stats({}), []) == []


def test_new_jobs_line_up_behind_the_queue_of_their_own_service() -> None:
    before = stats({"a": {"queued": 5, "running": 7}, "b": {"scheduled": 3}})
    made = [(job(10, "a"), True), (job(11, "b"), True), (job(12, "a"), True), (job(13, "c"), True)]
    # a: 5 queued ahead (running ones do not count); b: scheduled ones are not in the queue;
    # c: a service the stats never saw.
    assert queue_positions(before, made) == [6, 1, 7, 1]


def test_jobs_that_are_not_queued_have_no_position_and_take_no_place() -> None:
    before = stats({"a": {"queued": 2}})
    made = [
        (job(10, state=JobState.SCHEDULED), True),
        (job(11, state=JobState.RUNNING), True),
        (job(12, state=JobState.COMPLETED), False),
        (job(13), True),
    ]
    assert queue_positions(before, made) == [None, None, None, 3]


def test_a_job_found_again_is_placed_at_the_back_of_the_queue_it_is_already_in() -> None:
    # Found (idempotency key): it is counted in ``before`` already, so no "+1" ...
    assert queue_positions(stats({"a": {"queued": 4}}), [(job(3), False)]) == [4]
    # ... and never below 1, even when the stats were taken before it existed.
    assert queue_positions(stats({}), [(job(3), False)]) == [1]


def test_a_duplicate_within_one_batch_gets_the_place_of_the_job_created_before_it() -> None:
    # [spec key=k, spec key=k]: the store creates the first and finds it for the second.
    created, found = job(10), job(10)
    assert queue_positions(stats({"a": {"queued": 2}}), [(created, True), (found, False)]) == [3, 3]


def test_found_jobs_take_no_new_place_for_those_after_them() -> None:
    before = stats({"a": {"queued": 2}})
    assert queue_positions(before, [(job(1), False), (job(10), True)]) == [2, 3]


def test_an_older_job_found_again_is_not_placed_behind_jobs_created_after_it() -> None:
    # Jobs 1..4 queued for "a"; a batch creates job 10 and then finds job 3 by its key.
    before = stats({"a": {"queued": 4}})
    positions = queue_positions(before, [(job(10), True), (job(3), False)])
    assert positions[0] == 5
    older = positions[1]
    assert older is not None and older <= 4  # job 3 is somewhere among the 4 queued before


# ---------------------------------------------------------------- services_of


def test_services_of_nothing() -> None:
    assert services_of([], stats({})) == []


def test_services_add_up_workers_and_slots_and_count_jobs_waiting_or_running() -> None:
    workers = [
        worker("w1", ["b", "a"], slots=2, schemas={"a": {"type": "object"}}),
        worker("w2", ["a"], slots=3),
        worker("w3", ["c"], slots=0),
    ]
    jobs = stats(
        {
            "a": {"queued": 1, "scheduled": 2, "running": 4, "completed": 9, "failed": 1},
            "d": {"queued": 7},
        }
    )
    assert services_of(workers, jobs) == [
        ServiceInfo(name="a", workers=2, slots=5, queued=3, running=4, schema={"type": "object"}),
        ServiceInfo(name="b", workers=1, slots=2, queued=0, running=0),
        ServiceInfo(name="c", workers=1, slots=0, queued=0, running=0),
        # jobs wait for "d" though nobody serves it
        ServiceInfo(name="d", workers=0, slots=0, queued=7, running=0),
    ]


def test_a_service_schema_is_the_last_advertised() -> None:
    workers = [
        worker("w1", ["a"], schemas={"a": {"title": "old"}}),
        worker("w2", ["a"]),
        worker("w3", ["a"], schemas={"a": {"title": "new"}}),
    ]
    [service] = services_of(workers, stats({}))
    assert service.schema == {"title": "new"}


# ---------------------------------------------------------------- estimated_start


def test_no_estimate_without_an_eligible_worker_even_at_the_head() -> None:
    assert estimated_start(0, 0, 10.0, NOW) is None


def test_the_head_of_the_queue_starts_now_even_without_a_rate() -> None:
    assert estimated_start(0, 1, 0.0, NOW) == NOW


def test_jobs_ahead_are_worked_off_at_the_completion_rate() -> None:
    assert estimated_start(4, 3, 2.0, NOW) == NOW + 2.0


@pytest.mark.parametrize("rate", [0.0, -1.0])
def test_no_estimate_behind_others_without_a_positive_rate(rate: float) -> None:
    assert estimated_start(1, 2, rate, NOW) is None


# ---------------------------------------------------------------- queued_summary


def test_blocked_is_said_first() -> None:
    assert queued_summary("needs gpu", 0, 0, 0) == "blocked: needs gpu"
    assert queued_summary("needs gpu", 3, 2, 0) == "blocked: needs gpu"


def test_an_empty_block_reason_is_not_a_block() -> None:
    assert queued_summary("", 0, 0, 0) == "no eligible worker is connected"


@pytest.mark.parametrize(
    ("eligible", "free_slots", "ahead", "expected"),
    [
        (0, 5, 0, "no eligible worker is connected"),
        (2, 1, 0, "about to start"),
        (2, 0, 0, "waiting behind 0 job(s) for 2 eligible worker(s)"),  # eligible but all busy
        (2, 3, 1, "waiting behind 1 job(s) for 2 eligible worker(s)"),  # free, but not first
    ],
)
def test_queued_summary(eligible: int, free_slots: int, ahead: int, expected: str) -> None:
    assert queued_summary(None, eligible, free_slots, ahead) == expected
