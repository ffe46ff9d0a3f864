"""Parameter expansion: one spec with an ``expand`` mapping becomes one member per combination.

Pure: no I/O, no clock. The syntax and the order are documented in ``docs/workflows.md``.

- ``expand`` maps names (keys) to axes. An axis is a **list** of JSON values taken literally,
  or a **string** of comma-separated items, each a range or a literal:

  ========== ================================================ ===========================
  item       values                                           example
  ========== ================================================ ===========================
  ``a..b``   integers a to b inclusive (JSON numbers)         ``1..9``, ``-2..2``
  ``a..b/s`` every s-th integer from a, not past b            ``1..9/2`` → 1 3 5 7 9
  ``0a..0b`` zero-padded strings, both bounds the same width  ``01..12`` → "01" … "12"
  ``X..Y``   letters (same case, bijective base 26)           ``A..H``, ``A..AF``
  ``R1..R2`` well-plate coordinates, row-major                ``A01..P24`` → "A01" … "P24"
  other      a literal: a JSON number or true/false, else     ``0.5``, ``true``, ``DAPI``
             the text itself
  ========== ================================================ ===========================

- Members are the Cartesian product, keys in the mapping's order, the **last key varying
  fastest**. Each member is the base payload (a JSON object; an empty payload is ``{}``) with
  the combination merged in: the base's other keys first (in their order), then the expansion
  keys in mapping order (a key the base also has takes the combination's value).
- Refused (:class:`InvalidRequest`, with the reason): an empty mapping or axis, a malformed or
  reversed range, a value that is neither a list nor a string, keys that collide once
  normalized (surrounding blanks removed, Unicode NFC), a value repeated within an axis, more
  than :data:`MAX_KEYS` keys, a base payload that is not one JSON object, and more than
  :data:`MAX_MEMBERS` members. The size is the product of the axes' sizes, computed from the
  ranges' bounds **before** anything is materialized.
"""

from __future__ import annotations

import itertools
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from jobq.core.errors import InvalidRequest, PayloadTooLarge

#: Most members one expansion (one group) may have.
MAX_MEMBERS = 100_000
#: Most keys an ``expand`` mapping may have.
MAX_KEYS = 32
#: Longest key, in bytes of UTF-8.
MAX_KEY_BYTES = 255
#: Largest magnitude of an integer range bound (JSON-safe in every language).
MAX_BOUND = 10**15
#: Longest row name of a letter range or a well plate (``ZZZ`` is row 18,278).
MAX_LETTERS = 3

_INT = re.compile(r"-?[0-9]{1,16}")
_LETTERS = re.compile(r"[A-Z]+|[a-z]+")
_WELL = re.compile(r"([A-Z]+)([0-9]{1,6})")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_encode = msgspec.json.encode
_decode = msgspec.json.decode


# --- ranges: sized first, materialized only once the product is known to be within the limit ---


@dataclass(frozen=True, slots=True)
class _Term:
    """One item of an axis: a lazily materialized run of values."""

    size: int
    make: Callable[[], Iterable[Any]]
    #: Ranges: values that are distinct by construction (no need to look for repeats).
    distinct: bool = True
    #: Integer ranges: ``"key":value`` texts made in one go (``name`` is ``"key":``).
    encoded: Callable[[bytes], list[bytes]] | None = None


def _letters_to_int(text: str) -> int:
    n = 0
    for ch in text.upper():
        n = n * 26 + (ord(ch) - 64)
    return n


def _int_to_letters(n: int, lower: bool) -> str:
    out = []
    while n:
        n, rem = divmod(n - 1, 26)
        out.append(chr(65 + rem))
    text = "".join(reversed(out))
    return text.lower() if lower else text


def _padded(token: str) -> bool:
    digits = token.lstrip("-")
    return len(digits) > 1 and digits[0] == "0"


def _int_range(where: str, lo: str, hi: str, step_text: str | None) -> _Term:
    a, b = int(lo), int(hi)
    if abs(a) >= MAX_BOUND or abs(b) >= MAX_BOUND:
        raise InvalidRequest(f"{where}: bounds must be smaller than {MAX_BOUND:,} in magnitude")
    step = 1
    if step_text is not None:
        if not re.fullmatch(r"[0-9]{1,16}", step_text) or int(step_text) < 1:
            raise InvalidRequest(f"{where}: the step after '/' must be a positive integer")
        step = int(step_text)
    if a > b:
        raise InvalidRequest(f"{where}: reversed range (write the smaller bound first)")
    size = (b - a) // step + 1
    if not (_padded(lo) or _padded(hi)):
        numbers = range(a, b + 1, step)
        return _Term(size, lambda: numbers, encoded=lambda name: [b"%s%d" % (name, v) for v in numbers])
    if lo.startswith("-") or hi.startswith("-"):
        raise InvalidRequest(f"{where}: zero-padded bounds must not be negative")
    if len(lo) != len(hi):
        raise InvalidRequest(f"{where}: zero-padded bounds must have the same width")
    width = len(lo)
    numbers = range(a, b + 1, step)
    return _Term(
        size,
        lambda: (f"{v:0{width}d}" for v in numbers),
        encoded=lambda name: [b'%s"%0*d"' % (name, width, v) for v in numbers],
    )


def _letter_range(where: str, lo: str, hi: str) -> _Term:
    if lo.islower() != hi.islower():
        raise InvalidRequest(f"{where}: both letters must have the same case")
    if max(len(lo), len(hi)) > MAX_LETTERS:
        raise InvalidRequest(f"{where}: rows have at most {MAX_LETTERS} letters")
    a, b = _letters_to_int(lo), _letters_to_int(hi)
    if a > b:
        raise InvalidRequest(f"{where}: reversed range (write the smaller bound first)")
    lower = lo.islower()
    return _Term(b - a + 1, lambda: (_int_to_letters(n, lower) for n in range(a, b + 1)))


def _plate_range(where: str, lo: re.Match[str], hi: re.Match[str]) -> _Term:
    (r1, c1), (r2, c2) = lo.groups(), hi.groups()
    if max(len(r1), len(r2)) > MAX_LETTERS:
        raise InvalidRequest(f"{where}: rows have at most {MAX_LETTERS} letters")
    a, b, x, y = _letters_to_int(r1), _letters_to_int(r2), int(c1), int(c2)
    if a > b or x > y:
        raise InvalidRequest(f"{where}: reversed range (first row and column come first)")
    if x < 1:
        raise InvalidRequest(f"{where}: plate columns start at 1")
    width = 0
    if _padded(c1) or _padded(c2):
        if len(c1) != len(c2):
            raise InvalidRequest(f"{where}: zero-padded columns must have the same width")
        width = len(c1)
    rows, cols = range(a, b + 1), range(x, y + 1)

    def make() -> Iterator[str]:
        for row in rows:
            name = _int_to_letters(row, False)
            for col in cols:
                yield f"{name}{col:0{width}d}"

    return _Term(len(rows) * len(cols), make)


def _literal(item: str) -> Any:
    if item in ("true", "false"):
        return item == "true"
    if _NUMBER.fullmatch(item):
        try:
            value = _decode(item)
        except msgspec.DecodeError:  # out of range: keep the text
            return item
        return item if isinstance(value, float) and not math.isfinite(value) else value
    return item


def _term(where: str, item: str) -> _Term:
    if ".." not in item:
        value = _literal(item)
        return _Term(1, lambda: (value,))
    where = f"{where}: {item!r}"
    lo, _, rest = item.partition("..")
    hi, slash, step = rest.partition("/")
    if not lo or not hi or ".." in rest or "..." in item:
        raise InvalidRequest(f"{where}: a range is FIRST..LAST (see docs/workflows.md)")
    if _INT.fullmatch(lo) and _INT.fullmatch(hi):
        return _int_range(where, lo, hi, step if slash else None)
    if slash:
        raise InvalidRequest(f"{where}: only integer ranges take a step")
    if _LETTERS.fullmatch(lo) and _LETTERS.fullmatch(hi):
        return _letter_range(where, lo, hi)
    lo_well, hi_well = _WELL.fullmatch(lo), _WELL.fullmatch(hi)
    if lo_well and hi_well:
        return _plate_range(where, lo_well, hi_well)
    raise InvalidRequest(f"{where}: not a range of integers (1..9), letters (A..H) or wells (A01..P24)")


def _terms(key: str, value: object, limit: int) -> list[_Term]:
    where = f"expand[{key!r}]"
    if isinstance(value, str):
        if value.count(",") >= limit:  # refuse before making a term per item
            raise InvalidRequest(f"{where}: more than {limit:,} items; the limit is {limit:,} members")
        items = [item.strip() for item in value.split(",")]
        if any(not item for item in items):
            raise InvalidRequest(f"{where}: empty item in {value!r}")
        return [_term(where, item) for item in items]
    if isinstance(value, list | tuple):
        if not value:
            raise InvalidRequest(f"{where}: the list is empty")
        values = tuple(value)
        return [_Term(len(values), lambda: values, distinct=False)]
    kind = "an object" if isinstance(value, Mapping) else type(value).__name__
    raise InvalidRequest(f"{where}: must be a list of values or a range string, not {kind}")


def normalize_key(key: object) -> str:
    """The key as the expansion uses it: blanks around it removed, Unicode NFC."""
    if not isinstance(key, str):
        raise InvalidRequest(f"expand keys must be strings, not {type(key).__name__}")
    name = unicodedata.normalize("NFC", key.strip())
    if not name or len(name.encode()) > MAX_KEY_BYTES:
        raise InvalidRequest(f"expand key {key!r} must be 1 to {MAX_KEY_BYTES} bytes long")
    if _CONTROL.search(name):
        raise InvalidRequest(f"expand key {key!r} must not contain control characters")
    return name


# --- the expansion ---


@dataclass(frozen=True, slots=True)
class Axis:
    """One key and its values, in order; ``fragments`` are the ``"key":value`` JSON texts."""

    key: str
    values: tuple[Any, ...]
    fragments: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class Expansion:
    """A validated ``expand`` mapping: its axes, its size, and the mapping as given (keys
    normalized), which is what a store keeps to rebuild any member's combination."""

    axes: tuple[Axis, ...]
    size: int
    source: dict[str, Any]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(axis.key for axis in self.axes)

    def combinations(self) -> Iterator[dict[str, Any]]:
        """Every combination in member order (last key fastest)."""
        keys = self.keys
        for combo in itertools.product(*(axis.values for axis in self.axes)):
            yield dict(zip(keys, combo, strict=True))

    def combination_at(self, index: int) -> dict[str, Any]:
        """Member ``index``'s combination, without walking the ones before it."""
        if not 0 <= index < self.size:
            raise IndexError(f"member {index} of {self.size}")
        picked: list[tuple[str, Any]] = []
        for axis in reversed(self.axes):
            index, at = divmod(index, len(axis.values))
            picked.append((axis.key, axis.values[at]))
        return dict(reversed(picked))

    def payloads(
        self,
        base: bytes | Sequence[bytes] = b"",
        *,
        content_type: str | None = None,
        max_payload: int | None = None,
    ) -> Iterator[bytes]:
        """Every member's payload (one JSON frame each) in member order.

        The base is checked now (refused when it is not one JSON object, or when the largest
        member would pass ``max_payload``); members are then made one at a time."""
        prefix = _base_prefix(base, content_type, frozenset(self.keys))
        if max_payload is not None:
            largest = len(prefix) + sum(max(map(len, axis.fragments)) + 1 for axis in self.axes)
            if largest > max_payload:
                raise PayloadTooLarge(
                    f"the largest expanded payload is {largest} bytes; the limit is {max_payload}"
                )
        return _members(prefix, [axis.fragments for axis in self.axes])


def _members(prefix: bytes, fragments: list[tuple[bytes, ...]]) -> Iterator[bytes]:
    # The fast path: every "key":value text is encoded once per axis value; a member is one
    # join of pre-encoded pieces (no dict, no encoder call per member).
    last = [fragment + b"}" for fragment in fragments[-1]]
    if len(fragments) == 1:
        for tail in last:
            yield prefix + tail
        return
    for head in itertools.product(*fragments[:-1]):
        start = prefix + b",".join(head) + b","
        for tail in last:
            yield start + tail


def _base_prefix(base: bytes | Sequence[bytes], content_type: str | None, keys: frozenset[str]) -> bytes:
    if content_type is not None and not _is_json(content_type):
        raise InvalidRequest(f"expand needs a JSON payload; the content type is {content_type}")
    if not isinstance(base, bytes | bytearray | memoryview):
        if len(base) > 1:
            raise InvalidRequest("expand needs a one-frame JSON payload")
        base = base[0] if base else b""
    raw = bytes(base)
    if not raw.strip():
        obj: object = {}
    else:
        try:
            obj = _decode(raw)
        except msgspec.DecodeError as exc:
            raise InvalidRequest(f"expand needs a JSON object payload: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidRequest(
            f"expand needs the payload to be a JSON object, to merge each combination into; "
            f"it is {_json_kind(obj)}"
        )
    rest = {k: v for k, v in obj.items() if k not in keys}
    return _encode(rest)[:-1] + (b"," if rest else b"")


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _json_kind(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return "true, false or null"
    return "a number"


def _sizes_text(sizes: list[tuple[str, int]]) -> str:
    return " x ".join(f"{key} {size:,}" for key, size in sizes)


def parse_expand(expand: Mapping[str, object], *, limit: int = MAX_MEMBERS) -> Expansion:
    """Validate ``expand`` and size it; values are materialized only within ``limit``."""
    if not isinstance(expand, Mapping):
        raise InvalidRequest("expand must be an object of names to lists or ranges")
    if not expand:
        raise InvalidRequest("expand names no key")
    if len(expand) > MAX_KEYS:
        raise InvalidRequest(f"expand has {len(expand)} keys; at most {MAX_KEYS}")
    parsed: dict[str, list[_Term]] = {}
    source: dict[str, Any] = {}
    for raw_key, value in expand.items():
        key = normalize_key(raw_key)
        if key in parsed:
            raise InvalidRequest(f"expand names {key!r} twice (keys are compared trimmed, in NFC)")
        parsed[key] = _terms(key, value, limit)
        source[key] = list(value) if isinstance(value, list | tuple) else value
    sizes = [(key, sum(term.size for term in terms)) for key, terms in parsed.items()]
    total = math.prod(size for _, size in sizes)
    if total > limit:
        raise InvalidRequest(
            f"expand makes {total:,} members ({_sizes_text(sizes)}); the limit is {limit:,}",
            hint="split the submit into several groups",
        )
    return Expansion(tuple(_axis(key, terms) for key, terms in parsed.items()), total, source)


def _axis(key: str, terms: list[_Term]) -> Axis:
    values: list[Any] = []
    fragments: list[bytes] = []
    seen: set[bytes] = set()
    check = len(terms) > 1 or not terms[0].distinct
    name = _encode(key) + b":"
    for term in terms:
        made = list(term.make())
        texts = term.encoded(name) if term.encoded else [name + _text(key, value) for value in made]
        if check:
            for text in texts:
                if text in seen:
                    raise InvalidRequest(f"expand[{key!r}]: {text[len(name) :].decode()} appears twice")
                seen.add(text)
        values += made
        fragments += texts
    return Axis(key, tuple(values), tuple(fragments))


def _text(key: str, value: Any) -> bytes:
    """``value`` as JSON text; the kinds ranges make are encoded without the encoder."""
    kind = type(value)
    if kind is int:
        return b"%d" % value
    if kind is str and value.isascii() and value.isalnum():
        return b'"%s"' % value.encode()
    if kind is float and not math.isfinite(value):
        raise InvalidRequest(f"expand[{key!r}]: {value} is not a JSON number")
    try:
        return _encode(value)
    except (TypeError, msgspec.EncodeError) as exc:
        raise InvalidRequest(f"expand[{key!r}]: a value is not JSON ({exc})") from None


def expand_payloads(
    base: bytes | Sequence[bytes],
    expand: Mapping[str, object],
    *,
    content_type: str | None = None,
    limit: int = MAX_MEMBERS,
    max_payload: int | None = None,
) -> Iterator[bytes]:
    """Check ``expand`` and ``base`` now, then yield each member's payload in member order."""
    expansion = parse_expand(expand, limit=limit)
    return expansion.payloads(base, content_type=content_type, max_payload=max_payload)


def parse_cli_expand(options: Iterable[str]) -> dict[str, Any]:
    """``--expand KEY=ITEMS`` options as an ``expand`` mapping (the CLI's syntax).

    ``ITEMS`` is the axis string (comma-separated ranges and literals), or a JSON array when
    it starts with ``[`` (for values that contain commas or ``..``). Naming a key twice is
    refused, like in the mapping."""
    expand: dict[str, Any] = {}
    for option in options:
        raw_key, eq, items = option.partition("=")
        if not eq:
            raise InvalidRequest(f"--expand {option!r}: expected KEY=VALUES")
        key = normalize_key(raw_key)
        if key in expand:
            raise InvalidRequest(f"--expand names {key!r} twice")
        if items.lstrip().startswith("["):
            try:
                value = _decode(items)
            except msgspec.DecodeError as exc:
                raise InvalidRequest(f"--expand {key}: not a JSON array ({exc})") from None
            if not isinstance(value, list):
                raise InvalidRequest(f"--expand {key}: not a JSON array")
            expand[key] = value
        else:
            expand[key] = items
    return expand
