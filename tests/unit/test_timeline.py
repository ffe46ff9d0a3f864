"""The pure rules of a job's timeline (``core/timeline.py``): bounds, sampling, cutting, states."""

from __future__ import annotations

import msgspec

from jobq.core import timeline
from jobq.core.model import Job, JobSpec, Mark, new_job
from jobq.core.states import JobState


def job(**kw: object) -> Job:
    return new_job(JobSpec(service="echo", **kw), 1, 100.0)  # type: ignore[arg-type]


def test_a_new_job_starts_with_its_submit_and_when_it_may_run() -> None:
    assert job().timeline == [Mark(at=100.0, kind="submitted")]
    assert job(delay=5).timeline == [Mark(at=100.0, kind="submitted", value=105.0)]
    assert timeline.state_after(job(delay=5).timeline[0]) is JobState.SCHEDULED
    assert timeline.state_after(job().timeline[0]) is JobState.QUEUED


def test_marks_are_compact_on_the_wire_and_read_back_as_lua_writes_them() -> None:
    mark = Mark(at=1.5, kind="started", attempt=2, worker="w1")
    raw = msgspec.msgpack.encode(mark)
    assert msgspec.msgpack.decode(raw) == {"t": 1.5, "k": "started", "a": 2, "w": "w1"}
    # Lua's cmsgpack writes a whole-number time as an integer, and the keys in any order.
    lua = msgspec.msgpack.encode({"w": "w1", "k": "started", "t": 2, "a": 2})
    assert msgspec.msgpack.decode(lua, type=Mark) == Mark(at=2.0, kind="started", attempt=2, worker="w1")


def test_a_full_timeline_keeps_its_first_marks_and_the_most_recent() -> None:
    marks: list[Mark] = []
    for n in range(timeline.MARKS_KEPT + 10):
        timeline.add(marks, Mark(at=float(n), kind="progress"))
    assert len(marks) == timeline.MARKS_KEPT
    kept = [int(m.at) for m in marks]
    first = list(range(timeline.FIRST_KEPT))
    recent = list(
        range(
            timeline.MARKS_KEPT + 10 - (timeline.MARKS_KEPT - timeline.FIRST_KEPT), timeline.MARKS_KEPT + 10
        )
    )
    assert kept == first + recent


def test_progress_is_sampled_once_a_second_and_a_few_times_per_attempt() -> None:
    j = job()
    j.state, j.attempts, j.worker = JobState.RUNNING, 1, "w1"
    timeline.started(j, 100.0)
    timeline.progress(j, 100.0, 1.0, None)  # the first one is always kept
    timeline.progress(j, 100.9, 2.0, None)  # under a second later
    timeline.progress(j, 101.0, 3.0, "three")
    assert [(m.kind, m.value, m.detail) for m in j.timeline[2:]] == [
        ("progress", 1.0, None),
        ("progress", 3.0, "three"),
    ]
    for n in range(50):
        timeline.progress(j, 102.0 + n, float(n), None)
    progress = [m for m in j.timeline if m.kind == "progress"]
    assert len(progress) == timeline.PROGRESS_MARKS
    # The next attempt samples afresh.
    j.attempts = 2
    timeline.started(j, 200.0)
    assert timeline.progress_due(j.timeline, 200.0)


def test_an_end_names_the_attempt_only_when_it_ran() -> None:
    j = job()
    timeline.ended(j, JobState.CANCELLED, 101.0)  # cancelled while queued
    j.state, j.attempts, j.worker, j.error = JobState.RUNNING, 3, "w9", "boom"
    timeline.ended(j, JobState.FAILED, 102.0)
    assert j.timeline[1:] == [
        Mark(at=101.0, kind="cancelled"),
        Mark(at=102.0, kind="failed", attempt=3, worker="w9", detail="boom"),
    ]
    assert [timeline.state_after(m) for m in j.timeline] == [
        JobState.QUEUED,
        JobState.CANCELLED,
        JobState.FAILED,
    ]


def test_details_are_cut_to_whole_characters() -> None:
    assert timeline.cut(None) is None and timeline.cut("") is None
    assert timeline.cut("short") == "short"
    cut = timeline.cut("a" + "é" * 600)
    assert cut is not None and cut == "a" + "é" * ((timeline.DETAIL_LIMIT - 1) // 2)
    assert len(cut.encode()) <= timeline.DETAIL_LIMIT


def test_an_unknown_kind_from_a_newer_hub_is_read() -> None:
    raw = msgspec.msgpack.encode([{"t": 1.0, "k": "paused"}])
    (mark,) = msgspec.msgpack.decode(raw, type=list[Mark])
    assert mark.kind == "paused" and timeline.state_after(mark) is JobState.QUEUED
