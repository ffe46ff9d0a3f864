"""Payloads and results on the JSON wire, and the 400 that names the fields at fault.

Payloads and results are frames of bytes in jobq. On the JSON wire a value travels with its
*encoding*: ``json`` (the value itself, stored as one frame of JSON text), ``text`` (a string,
stored as UTF-8) or ``base64`` (a base64 string for one frame, or a list of them for several).
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

_encode = msgspec.json.encode


class FieldError(InvalidRequest):
    """A 400 that names the fields at fault."""

    def __init__(self, message: str, fields: Sequence[str] = (), *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.fields = list(fields)


def field_error(field: str, message: str) -> FieldError:
    return FieldError(message, [field])


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
            msgspec.json.decode(data)
        except msgspec.MsgspecError:
            pass
        else:
            return msgspec.Raw(data), "json"
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


__all__ = ["Encoding", "FieldError", "field_error", "frames_from_wire", "frames_to_wire", "raw_frames"]
