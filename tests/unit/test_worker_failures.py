"""How the worker SDK reports a failed attempt: the traceback it sends, the line it logs, and
the native ``fail`` message with and without its trailing ``traceback``."""

from __future__ import annotations

import logging

import msgspec
import pytest

from jobq import Worker
from jobq.core.model import TRACEBACK_LIMIT, Assignment
from jobq.protocol import native as jqp
from jobq.worker.failures import failure, format_traceback

ATTEMPT = Assignment(id=7, token=42, service="svc", payload=[b"secret"], attempt=1, max_attempts=2)


def _raise_deep(n: int) -> None:
    if n:
        _raise_deep(n - 1)
    raise KeyError("missing")


def test_a_raised_exception_is_sent_and_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    try:
        _raise_deep(3)
    except KeyError as exc:
        with caplog.at_level(logging.WARNING, logger="jobq.worker"):
            fail = failure(ATTEMPT, "KeyError: 'missing'", True, exc)
    assert fail.traceback is not None and "in _raise_deep" in fail.traceback
    assert fail.traceback.rstrip().endswith("KeyError: 'missing'")
    (record,) = caplog.records
    assert record.levelno == logging.WARNING and record.exc_info is not None
    assert record.getMessage() == "job 7 (svc) failed on attempt 1 of 2 (retryable): KeyError: 'missing'"
    assert "secret" not in caplog.text and "42" not in record.getMessage()  # no payload, no token


def test_a_final_failure_is_an_error_and_a_handler_error_has_no_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    last = msgspec.structs.replace(ATTEMPT, attempt=2)
    with caplog.at_level(logging.WARNING, logger="jobq.worker"):
        fail = failure(last, "bad input", True)
        refused = failure(ATTEMPT, "not retryable", False)
    assert fail.traceback is None and refused.traceback is None
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.ERROR]
    assert all(r.exc_info is None for r in caplog.records)


def test_a_long_traceback_keeps_its_innermost_frames_within_the_limit() -> None:
    # 500 distinct frames (Python folds repeated ones): well over the limit.
    source = "".join(f"def f{i}():\n    f{i + 1}()\n" for i in range(500))
    scope: dict[str, object] = {}
    exec(source + "def f500():\n    raise KeyError('missing')\n", scope)
    try:
        scope["f0"]()  # type: ignore[operator]
    except KeyError as exc:
        text = format_traceback(exc)
    assert text is not None and len(text.encode()) <= TRACEBACK_LIMIT
    assert "bytes cut; the innermost frames follow" in text.splitlines()[0]
    assert text.rstrip().endswith("KeyError: 'missing'") and "in f500" in text and "in f0\n" not in text


def test_the_fail_message_traceback_is_an_optional_trailing_field() -> None:
    old = msgspec.msgpack.encode(["fail", 1, 2, "boom", True, None])  # a peer before tracebacks
    decoded = jqp.decode_inbound(old)
    assert isinstance(decoded, jqp.Fail) and decoded.traceback is None and decoded.error == "boom"
    new = jqp.decode_inbound(jqp.encode(jqp.Fail(id=1, token=2, error="boom", traceback="tb")))
    assert isinstance(new, jqp.Fail) and new.traceback == "tb"


def test_run_forever_configures_logging_when_the_application_did_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "level", logging.WARNING)
    with pytest.raises(ValueError, match="register at least one handler"):
        Worker().run_forever()  # configures logging first, then refuses to run without handlers
    assert root.handlers and root.level == logging.INFO
