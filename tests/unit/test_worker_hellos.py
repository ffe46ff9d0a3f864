"""Which attempts a worker gives up when a Welcome answers its hello.

Found in CI: after a hub restart, two Reconnects made a worker say hello twice. The first
Welcome (which knew nothing of a job assigned in between) cancelled the attempt the second
hello declared and the hub then kept, so nobody ran it while the worker's heartbeats kept its
lease alive.
"""

from __future__ import annotations

from collections import deque

from jobq.core.model import Assignment
from jobq.worker.state import Hellos, token_held


def assignment(job_id: int, token: int) -> Assignment:
    return Assignment(id=job_id, service="echo", token=token, payload=[])


def test_only_the_answer_to_the_last_hello_gives_anything_away() -> None:
    hellos = Hellos()
    hellos.sent([])  # the first hello held nothing
    hellos.sent([(40, 2)])  # by the second, job 40 (attempt 2) had been assigned
    assert hellos.answered(kept=[]) == []  # the first Welcome speaks for the first hello only
    assert hellos.answered(kept=[40]) == []  # the hub kept it


def test_the_last_welcome_gives_away_what_the_hub_did_not_keep() -> None:
    hellos = Hellos()
    hellos.sent([(1, 1), (2, 1)])
    assert hellos.answered(kept=[2]) == [(1, 1)]


def test_a_new_connection_forgets_hellos_the_old_one_never_answered() -> None:
    hellos = Hellos()
    hellos.sent([(1, 1)])  # lost with the old connection
    hellos.forget()
    hellos.sent([(1, 1)])
    assert hellos.answered(kept=[]) == [(1, 1)]


def test_the_token_held_is_the_running_or_waiting_attempts() -> None:
    waiting = deque([assignment(7, 3)])
    assert token_held({}, waiting, 7) == 3
    assert token_held({}, waiting, 8) is None
