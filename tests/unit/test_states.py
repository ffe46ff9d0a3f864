import pytest

from jobq.core.states import TERMINAL, TRANSITIONS, JobState, can_transition, check_transition
from jobq.errors import InvalidTransition


def test_every_state_has_a_row() -> None:
    assert set(TRANSITIONS) == set(JobState)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        ("queued", "running"),
        ("queued", "cancelled"),
        ("scheduled", "queued"),
        ("scheduled", "cancelled"),
        ("running", "completed"),
        ("running", "scheduled"),
        ("running", "queued"),
        ("running", "failed"),
        ("running", "cancelled"),
        ("failed", "queued"),
        ("cancelled", "queued"),
        ("cancelled", "waiting"),
        ("waiting", "queued"),
        ("waiting", "scheduled"),
        ("waiting", "cancelled"),
    ],
)
def test_allowed(current: str, target: str) -> None:
    check_transition(JobState(current), JobState(target))


def test_everything_else_is_refused() -> None:
    allowed = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    for a in JobState:
        for b in JobState:
            if (a, b) in allowed:
                continue
            assert not can_transition(a, b)
            with pytest.raises(InvalidTransition):
                check_transition(a, b)


def test_completed_is_final_and_queued_never_ends_without_running_or_cancel() -> None:
    assert TRANSITIONS[JobState.COMPLETED] == frozenset()
    assert JobState.COMPLETED not in TRANSITIONS[JobState.QUEUED]
    assert {s for s in JobState if s.terminal} == TERMINAL
