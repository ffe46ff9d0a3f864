"""Payloads and results on the JSON wire, and the 400 that names the fields at fault.

Payloads and results are frames of bytes in jobq. On the JSON wire a value travels with its
*encoding*: ``json`` (the value itself, stored as one frame of JSON text), ``text`` (a string,
stored as UTF-8) or ``base64`` (a base64 string for one frame, or a list of them for several).

Every JSON text the door decodes is first checked for its nesting (:func:`check_nesting`,
:data:`MAX_NESTING` levels): msgspec decodes nested arrays and objects recursively, so
``[`` repeated 100000 times would otherwise end in a ``RecursionError`` instead of a 400.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from jobq.core.model import BINARY, JSON, TEXT, Frames
from jobq.errors import InvalidRequest

Encoding = Literal["json", "text", "base64"]

#: Deepest nesting of arrays and objects the door decodes (a body, a message, a stored payload).
MAX_NESTING = 64

_encode = msgspec.json.encode
#: Every byte but quotes and brackets (deleted by ``bytes.translate``).
_NOT_STRUCTURE = bytes(range(256)).translate(None, b'"[]{}')


class FieldError(InvalidRequest):
    """A 400 that names the fields at fault."""

    def __init__(self, message: str, fields: Sequence[str] = (), *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.fields = list(fields)


def field_error(field: str, message: str) -> FieldError:
    return FieldError(message, [field])


def nesting_ok(data: bytes | str, limit: int = MAX_NESTING) -> bool:
    """Whether a JSON text nests arrays and objects at most ``limit`` deep, found without
    decoding it (C-speed byte operations only; an invalid text may pass, for the decoder to
    describe, as long as decoding it cannot go deeper than ``limit``)."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if data.count(b"[") + data.count(b"{") <= limit:
        return True
    # The brackets outside strings: escaped backslashes and quotes go first (left to right, as
    # escapes pair up), then all but quotes and brackets, then what lies between quotes.
    rest = data.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    if b'"' in rest:
        rest = b"".join(rest.split(b'"')[0::2])
    passes = 0
    while rest and passes < limit:  # each pass removes the innermost level
        shorter = rest.replace(b"[]", b"").replace(b"{}", b"")
        if len(shorter) == len(rest):  # unbalanced: invalid JSON, as deep as what is left at most
            return passes + len(rest) <= limit
        rest = shorter
        passes += 1
    return not rest


def check_nesting(data: bytes | str, what: str = "the body") -> None:
    """A 400 when ``data`` nests deeper than :data:`MAX_NESTING` levels."""
    if not nesting_ok(data):
        raise InvalidRequest(
            f"{what} is not valid JSON or nests arrays and objects deeper than {MAX_NESTING} levels"
        )


#: Integers a free-form value (``requires``, ``must_not``, capabilities) may hold: what a store
#: keeps (msgpack, SQLite) without overflowing.
INT_RANGE = (-(2**63), 2**63 - 1)


def check_ints(value: Any, field: str) -> None:
    """A 400 naming the field when a decoded JSON value holds an integer out of
    :data:`INT_RANGE` (JSON has no limit; the stores have)."""
    low, high = INT_RANGE
    stack: list[tuple[Any, str]] = [(value, field)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int):
            if not low <= item <= high:
                raise field_error(where, f"{where}: integer out of range (-2^63 .. 2^63-1)")
        elif isinstance(item, dict):
            stack.extend((v, f"{where}.{k}") for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(item))


def frames_from_wire(value: Any, encoding: str, field: str = "payload") -> tuple[Frames, str]:
    """A JSON value (or its raw JSON text) with its encoding → frames and the content type
    that encoding implies."""
    if isinstance(value, msgspec.Raw):
        if encoding == "json":
            return [bytes(value)], JSON
        value = msgspec.json.decode(value)
    if encoding == "json":
        return [_encode(value)], JSON
    if encoding == "text":
        if not isinstance(value, str):
            raise field_error(field, f"{field} must be a string when its encoding is text")
        return [value.encode()], TEXT
    if encoding == "base64":
        items = value if isinstance(value, list) else [value]
        frames: Frames = []
        for item in items:
            if not isinstance(item, str):
                raise field_error(field, f"{field} must be a base64 string or a list of them")
            try:
                frames.append(base64.b64decode(item, validate=True))
            except (binascii.Error, ValueError):
                raise field_error(field, f"{field} is not valid base64") from None
        return frames, BINARY
    raise field_error(f"{field}_encoding", f"{field}_encoding must be json, text or base64")


def frames_to_wire(frames: Sequence[bytes] | None, content_type: str | None = None) -> tuple[Any, Encoding]:
    """Frames → (value, encoding): one frame of JSON as the value itself (unless its content
    type says otherwise), UTF-8 as a string, anything else base64."""
    if frames is None or len(frames) != 1:
        return [base64.b64encode(f).decode() for f in frames or ()], "base64"
    data = frames[0]
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind in ("", JSON) or kind.endswith("+json"):
        try:
            if nesting_ok(data):  # a payload from another door may nest deeper than we decode
                msgspec.json.decode(data)
                return msgspec.Raw(data), "json"
        except (msgspec.MsgspecError, RecursionError):
            pass
    if kind in ("", TEXT, JSON) or kind.startswith("text/"):
        try:
            return data.decode(), "text"
        except UnicodeDecodeError:
            pass
    return base64.b64encode(data).decode(), "base64"


def raw_frames(frames: Sequence[bytes]) -> tuple[Any, Encoding]:
    """Frames as base64, always (for peers that want the bytes exactly)."""
    if len(frames) == 1:
        return base64.b64encode(frames[0]).decode(), "base64"
    return [base64.b64encode(f).decode() for f in frames], "base64"


__all__ = [
    "INT_RANGE",
    "MAX_NESTING",
    "Encoding",
    "FieldError",
    "check_ints",
    "check_nesting",
    "field_error",
    "frames_from_wire",
    "frames_to_wire",
    "nesting_ok",
    "raw_frames",
]
