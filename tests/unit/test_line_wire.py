"""The line protocols' wire with no socket: parsing, the line splitter, the reply table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobq.core.states import JobState
from jobq.protocol import line as wire
from jobq.protocol.line import Family, LineSplitter, Replies

DSJQ, WQ = Family.DSJQ, Family.WORKQUEUE


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"JOB hello world", wire.Submit(WQ, "hello world")),
        (b"job   inner  spaces kept  ", wire.Submit(WQ, "inner  spaces kept")),
        (b"Job\tafter a tab", wire.Submit(WQ, "after a tab")),
        (b"JOB", wire.Submit(WQ, "")),
        (b"SUBMIT x", wire.Submit(DSJQ, "x")),
        (b"STATUS 12", wire.Status(12)),
        (b"status 12 trailing", wire.Status(12)),
        (b"STATUS abc", wire.Status(None)),
        (b"STATUS", wire.Status(None)),
        (b"STATUS 0", wire.Status(None)),
        (b"STATUS -3", wire.Status(None)),
        (b"STATUS 99999999999999999999999", wire.Status(None)),
        ("STATUS \u0661\u0662".encode(), wire.Status(None)),  # Arabic-Indic digits are no id
        (b"FETCH", wire.Fetch(WQ)),
        (b"request", wire.Fetch(DSJQ)),
        (b"DONE 4", wire.Finish(WQ, 4, "")),
        (b"DONE 4 the result", wire.Finish(WQ, 4, "the result")),
        (b"ACK 5", wire.Finish(DSJQ, 5, "")),
        (b"DONE", wire.Finish(WQ, None, "")),
        (b"FAIL 6 out of memory", wire.Fail(6, "out of memory")),
        (b"QUIT", wire.Quit()),
        (b"  FETCH  \r", wire.Fetch(WQ)),
        (b"HELLO there", wire.Unknown("HELLO")),
        (b"\xff\xfe", wire.NotText()),
        (b"", None),
        (b"   \t \r", None),
    ],
)
def test_parse(raw: bytes, expected: wire.Request | None) -> None:
    assert wire.parse(raw) == expected


def test_ids_up_to_the_store_limit() -> None:
    assert wire.parse_id(str(wire.MAX_ID)) == wire.MAX_ID
    assert wire.parse_id(str(wire.MAX_ID + 1)) is None


def test_splitter_cuts_lines_and_drops_one_cr() -> None:
    s = LineSplitter(100)
    assert s.feed(b"JOB a\r\nJOB b\nJO") == [b"JOB a", b"JOB b"]
    assert s.pending == 2
    assert s.feed(b"B c\r\r\n") == [b"JOB c\r"]
    assert s.feed(b"\n\n") == [b"", b""]


def test_splitter_refuses_a_line_over_the_limit_in_or_out_of_one_read() -> None:
    s = LineSplitter(5)
    assert s.feed(b"12345\n123456\nlater\n") == [b"12345"]
    assert s.too_long
    assert s.feed(b"more\n") == [], "nothing after the refusal"
    s = LineSplitter(5)
    assert s.feed(b"12345\r") == []
    assert not s.too_long, "the \\r may still end a line at the limit"
    assert s.feed(b"\n") == [b"12345"]
    assert s.feed(b"123") == [] and s.feed(b"4567") == []
    assert s.too_long


@given(st.lists(st.binary(max_size=30), max_size=20), st.data())
def test_splitter_gives_the_same_lines_however_the_bytes_are_cut(
    parts: list[bytes], data: st.DataObject
) -> None:
    stream = b"\n".join(parts) + b"\n"
    whole = LineSplitter(1000).feed(stream)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    s = LineSplitter(1000)
    pieces: list[bytes] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        pieces.extend(s.feed(stream[start:cut]))
        start = cut
    assert pieces == whole
    assert whole == [p[:-1] if p.endswith(b"\r") else p for p in stream.split(b"\n")[:-1]]


def test_document_replies() -> None:
    r = Replies()
    assert r.submitted(wire.Submit(DSJQ, "x"), 7) == b"JOB_ID 7\n"
    assert r.submitted(wire.Submit(WQ, "x"), 7) == b"ID 7\n"
    assert r.job(wire.Fetch(DSJQ), 7, "a b") == b"JOB 7 a b\n"
    assert r.job(wire.Fetch(WQ), 7, "a b") == b"JOB 7 a b\n"
    assert r.no_job(wire.Fetch(DSJQ)) == b"EMPTY\n"
    assert r.no_job(wire.Fetch(WQ)) == b"NOJOB\n"
    assert r.done(wire.Finish(DSJQ, 7)) == b"OK\n"
    assert r.done(wire.Fail(7)) == b"OK\n"
    assert r.done(wire.Finish(WQ, 7)) == b"OK\n"
    assert r.refused(wire.Finish(WQ, 7)) == b"ERR\n"
    assert r.refused(wire.Unknown("X")) == b"ERR\n"
    assert r.refused(wire.Status(None)) == b"unknown\n"
    assert r.error(wire.NotText(), "line is not valid UTF-8") == b"ERR line is not valid UTF-8\n"
    assert r.error(wire.Submit(WQ, "x"), "the hub is shutting down") == b"ERR the hub is shutting down\n"
    assert r.error(wire.Fetch(WQ), "boom") == b"NOJOB\n"


def test_compat_replies_are_silent_where_the_cpp_peers_read_nothing() -> None:
    r = Replies(compat=True)
    assert r.submitted(wire.Submit(DSJQ, "x"), 7) is None
    assert r.job(wire.Fetch(DSJQ), 7, "a b") == b"7 a b\n"
    assert r.no_job(wire.Fetch(DSJQ)) == b"EMPTY\n"
    for request in (wire.Finish(DSJQ, 7), wire.Fail(7)):
        assert r.done(request) is None
        assert r.refused(request) is None
    assert r.refused(wire.Unknown("X")) is None
    assert r.error(wire.NotText(), "not UTF-8") is None
    assert r.error(wire.Submit(DSJQ, "x"), "too large") is None
    # The work-queue commands keep their replies on a compat listener.
    assert r.submitted(wire.Submit(WQ, "x"), 7) == b"ID 7\n"
    assert r.job(wire.Fetch(WQ), 7, "a") == b"JOB 7 a\n"
    assert r.done(wire.Finish(WQ, 7)) == b"OK\n"
    assert r.refused(wire.Finish(WQ, 7)) == b"ERR\n"
    assert r.fatal("line too long") == b"ERR line too long\n"


@pytest.mark.parametrize(
    ("state", "word"),
    [
        (JobState.QUEUED, "waiting"),
        (JobState.SCHEDULED, "waiting"),
        (JobState.RUNNING, "running"),
        (JobState.COMPLETED, "completed"),
        (JobState.FAILED, "failed"),
        (JobState.CANCELLED, "cancelled"),
        (None, "unknown"),
    ],
)
def test_status_words(state: JobState | None, word: str) -> None:
    assert wire.status_word(state) == word
