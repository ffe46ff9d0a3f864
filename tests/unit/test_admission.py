"""Connections counted per client address and in all (protocol/admission.py), and the line
door's timeouts as decisions (doors/line_limits.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from jobq.config import HubConfig
from jobq.doors.line_limits import LineLimits
from jobq.protocol.admission import Admission


def test_per_peer_and_total() -> None:
    limits = Admission(total=4, per_peer=2)
    assert limits.admit("a1", "10.0.0.1") is None
    assert limits.admit("a2", "10.0.0.1") is None
    assert limits.admit("a3", "10.0.0.1") == "per_peer"
    assert limits.admit("b1", "10.0.0.2") is None
    assert limits.admit("c1", "") is None  # no address (a Unix socket): only the total counts
    assert limits.admit("d1", "10.0.0.3") == "total"
    assert (limits.open, limits.refused, limits.of_peer("10.0.0.1")) == (4, 2, 2)
    limits.release("a1")
    limits.release("a1")  # twice, or never admitted: nothing happens
    limits.release("a3")
    assert limits.of_peer("10.0.0.1") == 1
    assert limits.admit("a4", "10.0.0.1") is None
    assert limits.explain("per_peer", "your address") == (
        "too many connections from your address (the limit is 2 per client address)"
    )
    assert limits.explain("total", "x") == "too many connections (the limit is 4)"
    limits.count("a2", "10.0.0.1")  # a connection that changed hands: counted once
    limits.count("e1", "10.0.0.1")  # counted whatever the limits
    assert (limits.open, limits.of_peer("10.0.0.1")) == (5, 3)


def test_zero_is_no_limit_and_refusals_are_reported_in_bursts() -> None:
    limits = Admission(total=0, per_peer=0)
    assert all(limits.admit(i, "10.0.0.1") is None for i in range(1000))
    limits = Admission(total=1)
    assert limits.report() == 0
    limits.admit("a", "h")
    assert [limits.admit(i, "h") for i in range(3)] == ["total"] * 3
    assert limits.report() == 3  # the first report at once
    limits.admit("b", "h")
    assert limits.report() == 0  # the next one a minute later at most


@dataclass
class Conn:
    heard: float
    line_since: float = 0.0
    held: object = None


def test_line_timeouts() -> None:
    limits = LineLimits(HubConfig(line_idle_timeout=10, line_partial_timeout=5))
    assert limits.interval == 1.0
    assert limits.overdue(Conn(heard=100), 109) is None
    assert limits.overdue(Conn(heard=100), 110) == ("idle", "idle: nothing received for 10s")
    assert limits.overdue(Conn(heard=100, held=(1, 1, "x")), 1000) is None  # line_lease governs it
    slow = Conn(heard=104, line_since=100)
    assert limits.overdue(slow, 105) == ("slow", "line not received whole within 5s")
    assert LineLimits(HubConfig(line_idle_timeout=0, line_partial_timeout=0)).interval is None
    assert LineLimits(HubConfig(line_idle_timeout=0.2)).interval == pytest.approx(0.05)
    with pytest.raises(ValueError, match="negative"):
        LineLimits(HubConfig(line_max_per_peer=-1))
