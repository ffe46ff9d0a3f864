"""Which attempts a worker keeps: when a Welcome answers its hello, and when the hub assigns a
job it already has.

Found in CI: after a hub restart, two Reconnects made a worker say hello twice. The first
Welcome (which knew nothing of a job assigned in between) cancelled the attempt the second
hello declared and the hub then kept, so nobody ran it while the worker's heartbeats kept its
lease alive. And an attempt re-assigned while an older one of the same job waited for a slot
was dropped when it came to start.
"""

from __future__ import annotations

from collections import deque

from jobq.core.model import Assignment
from jobq.worker.state import Hellos, Running, admit, token_held


def assignment(job_id: int, token: int) -> Assignment:
    return Assignment(id=job_id, service="echo", token=token, payload=[])


def test_only_the_answer_to_the_last_hello_gives_anything_away() -> None:
    hellos = Hellos()
    hellos.sent([], 0.0)  # the first hello held nothing
    hellos.sent([(40, 2)], 0.1)  # by the second, job 40 (attempt 2) had been assigned
    assert hellos.answered(kept=[]) == []  # the first Welcome speaks for the first hello only
    assert hellos.answered(kept=[40]) == []  # the hub kept it


def test_the_last_welcome_gives_away_what_the_hub_did_not_keep() -> None:
    hellos = Hellos()
    hellos.sent([(1, 1), (2, 1)], 0.0)
    assert hellos.answered(kept=[2]) == [(1, 1)]


def test_a_new_connection_forgets_hellos_the_old_one_never_answered() -> None:
    hellos = Hellos()
    hellos.sent([(1, 1)], 0.0)  # lost with the old connection
    hellos.forget()
    hellos.sent([(1, 1)], 5.0)
    assert hellos.answered(kept=[]) == [(1, 1)]


def test_the_token_held_is_the_running_or_waiting_attempts() -> None:
    waiting = deque([assignment(7, 3)])
    assert token_held({}, waiting, 7) == 3
    assert token_held({}, waiting, 8) is None


def test_a_newer_attempt_of_a_waiting_job_takes_its_place() -> None:
    # Job 40's attempt 2 waits behind full slots when the hub re-assigns it as attempt 3: one
    # run, under token 3 (before, both waited and the second was dropped on start, so attempt
    # 3 never ran while heartbeats kept its lease).
    waiting: deque[Assignment] = deque([assignment(40, 2)])
    assert admit({}, waiting, assignment(40, 3)) is False
    assert [(a.id, a.token) for a in waiting] == [(40, 3)]
    assert admit({}, waiting, assignment(40, 2)) is False  # an older one changes nothing
    assert [(a.id, a.token) for a in waiting] == [(40, 3)]


def test_a_new_job_waits_and_a_newer_attempt_of_a_running_one_takes_over_the_run() -> None:
    waiting: deque[Assignment] = deque()
    assert admit({}, waiting, assignment(1, 1)) is True
    run = Running(assignment=assignment(2, 1), ctx=None)  # type: ignore[arg-type]
    assert admit({2: run}, waiting, assignment(2, 5)) is False
    assert run.assignment.token == 5
    assert [a.id for a in waiting] == [1]


def test_a_reconnect_needs_no_second_hello_while_one_is_on_its_way() -> None:
    # After a hub restart, heartbeats that crossed the hello each drew "unknown worker; say
    # hello"; every extra hello gave back the jobs assigned in flight, an attempt each, until
    # jobs failed after 3 attempts that never ran.
    hellos = Hellos()
    assert not hellos.pending(now=0.0, patience=2.0)
    hellos.sent([], 10.0)
    assert hellos.pending(now=10.5, patience=2.0)
    assert not hellos.pending(now=12.5, patience=2.0)  # overdue: it may have been lost
    hellos.answered(kept=[])
    assert not hellos.pending(now=10.6, patience=2.0)
