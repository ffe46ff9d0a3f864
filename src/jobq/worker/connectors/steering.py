"""The worker's side of health steering, as pure functions the runtime calls: what to advertise
to the hub, and which pushed jobs to start, keep waiting, or give back."""

from __future__ import annotations

from collections import deque
from collections.abc import Container, Mapping

from jobq.core.model import Assignment


def triage(
    waiting: deque[Assignment],
    running: Container[int],
    busy: dict[str, int],
    limits: Mapping[str, int],
    down: Container[str],
    free: int,
) -> tuple[list[Assignment], list[Assignment]]:
    """Of the jobs ``waiting`` (in order), those to start now within ``free`` worker slots and each
    service's limit (``busy`` counts its running jobs and is updated), and those to give back
    because their service is down. The others stay in ``waiting``, in order."""
    start: list[Assignment] = []
    back: list[Assignment] = []
    held: list[Assignment] = []
    while waiting and len(start) < free:
        assignment = waiting.popleft()
        service = assignment.service
        if assignment.id in running:
            continue
        if service in down:
            back.append(assignment)
        elif service in limits and busy.get(service, 0) >= limits[service]:
            held.append(assignment)
        else:
            busy[service] = busy.get(service, 0) + 1
            start.append(assignment)
    waiting.extendleft(reversed(held))
    return start, back
