"""One log format for ``jobq hub`` and ``jobq worker``, chosen by ``--log-format``.

- ``text`` (the default): one logfmt line per record,
  ``time=2025-01-02T10:11:12.345+01:00 level=info logger=jobq.hub msg="..."``; a value with
  spaces, quotes or ``=`` is quoted (JSON string escapes, so a record stays on one line), and
  an exception's traceback follows on the next lines, as Python prints it.
- ``json``: one JSON object per line with the same keys (``time``, ``level``, ``logger``,
  ``msg``), and ``traceback`` when the record carries an exception.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys

FORMATS = ("text", "json")


def _fields(record: logging.LogRecord) -> dict[str, str]:
    when = datetime.datetime.fromtimestamp(record.created).astimezone()
    return {
        "time": when.isoformat(timespec="milliseconds"),
        "level": record.levelname.lower(),
        "logger": record.name,
        "msg": record.getMessage(),
    }


def _value(text: str) -> str:
    if text and text.isprintable() and not any(c in text for c in ' "=\\'):
        return text
    return json.dumps(text, ensure_ascii=False)


class LogfmtFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = " ".join(f"{key}={_value(value)}" for key, value in _fields(record).items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, str] = _fields(record)
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        elif record.stack_info:
            data["traceback"] = self.formatStack(record.stack_info)
        return json.dumps(data, ensure_ascii=False)


def setup(level: str, fmt: str = "text") -> None:
    """The root logger on stderr at ``level`` (debug, info, warning, error), in ``fmt``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else LogfmtFormatter())
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), handlers=[handler], force=True)
