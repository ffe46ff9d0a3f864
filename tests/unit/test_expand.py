"""Parameter expansion (core/expand.py): the syntax, the order, the limits, the refusals."""

from __future__ import annotations

import itertools
import json
import math
import unicodedata
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobq.core import expand as expand_module
from jobq.core.errors import InvalidRequest, PayloadTooLarge
from jobq.core.expand import (
    MAX_KEYS,
    MAX_MEMBERS,
    expand_payloads,
    parse_cli_expand,
    parse_expand,
)


def values(text: str | list[Any] | tuple[Any, ...]) -> list[Any]:
    return list(parse_expand({"k": text}).axes[0].values)


def members(base: bytes, expand: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(p) for p in expand_payloads(base, expand)]


# --- ranges ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1..5", [1, 2, 3, 4, 5]),
        ("0..0", [0]),
        ("-2..2", [-2, -1, 0, 1, 2]),
        ("1..9/2", [1, 3, 5, 7, 9]),
        ("1..10/3", [1, 4, 7, 10]),
        ("1..10/4", [1, 5, 9]),
        ("0..10/100", [0]),
        ("01..03", ["01", "02", "03"]),
        ("001..100/50", ["001", "051"]),
        ("00..02", ["00", "01", "02"]),
        ("8..10", [8, 9, 10]),
        ("A..D", ["A", "B", "C", "D"]),
        ("x..z", ["x", "y", "z"]),
        ("Y..AB", ["Y", "Z", "AA", "AB"]),
        ("A01..B03", ["A01", "A02", "A03", "B01", "B02", "B03"]),
        ("A1..B2", ["A1", "A2", "B1", "B2"]),
        ("C5..C5", ["C5"]),
    ],
)
def test_ranges(text: str, expected: list[Any]) -> None:
    assert values(text) == expected


@pytest.mark.parametrize(
    ("text", "size", "first", "last"),
    [
        ("A01..H12", 96, "A01", "H12"),
        ("A01..P24", 384, "A01", "P24"),
        ("A01..AF48", 1536, "A01", "AF48"),
    ],
)
def test_well_plates_are_row_major(text: str, size: int, first: str, last: str) -> None:
    wells = values(text)
    assert (len(wells), wells[0], wells[-1]) == (size, first, last)
    assert len(set(wells)) == size
    # Row-major: the whole first row, then the second.
    columns = int(last[-2:])
    assert wells[columns - 1] == f"A{columns:02d}"
    assert wells[columns] == "B01"


def test_items_mix_ranges_and_literals() -> None:
    assert values("A01..A03, C07 ,1..2,x,0.5,true,false,-3,01,1e3") == [
        "A01", "A02", "A03", "C07", 1, 2, "x", 0.5, True, False, -3, "01", 1000.0,
    ]  # fmt: skip


def test_out_of_range_number_literals_stay_text() -> None:
    assert values(["ok"]) == ["ok"]
    assert values("1" * 30) == [int("1" * 30)]  # a JSON integer msgspec keeps
    assert values("1e400") == ["1e400"]
    assert values("1" * 5000) == ["1" * 5000]


def test_lists_are_literal_json_values() -> None:
    assert values(["1..3", 1, 2.5, None, True, {"a": [1]}, [1, 2]]) == [
        "1..3", 1, 2.5, None, True, {"a": [1]}, [1, 2],
    ]  # fmt: skip
    assert values(("a", "b")) == ["a", "b"]


@pytest.mark.parametrize(
    "text", ["1..5", "-3..3/2", "01..12/5", "000..999/250", "A01..B02", "x..z", "a,1,0.5,true"]
)
def test_member_payloads_carry_the_values(text: str) -> None:
    got = [json.loads(p)["k"] for p in expand_payloads(b"{}", {"k": text})]
    assert got == values(text)


# --- refusals, each with its reason ---


@pytest.mark.parametrize(
    ("expand", "reason"),
    [
        ({}, "names no key"),
        ({"k": []}, "the list is empty"),
        ({"k": ""}, "empty item"),
        ({"k": "1,,2"}, "empty item"),
        ({"k": "1,"}, "empty item"),
        ({"k": "1.."}, "FIRST..LAST"),
        ({"k": "..5"}, "FIRST..LAST"),
        ({"k": "1...5"}, "FIRST..LAST"),
        ({"k": "1..3..5"}, "FIRST..LAST"),
        ({"k": "1..x"}, "not a range"),
        ({"k": "a..5"}, "not a range"),
        ({"k": "1.5..3"}, "not a range"),
        ({"k": "A1..5"}, "not a range"),
        ({"k": "9..1"}, "reversed range"),
        ({"k": "H..A"}, "reversed range"),
        ({"k": "A12..A01"}, "reversed range"),
        ({"k": "B01..A12"}, "reversed range"),
        ({"k": "A0..A3"}, "columns start at 1"),
        ({"k": "1..9/0"}, "positive integer"),
        ({"k": "1..9/x"}, "positive integer"),
        ({"k": "1..9/-1"}, "positive integer"),
        ({"k": "A..H/2"}, "only integer ranges take a step"),
        ({"k": "A01..H12/2"}, "only integer ranges take a step"),
        ({"k": "01..100"}, "same width"),
        ({"k": "A01..A100"}, "same width"),
        ({"k": "-05..05"}, "must not be negative"),
        ({"k": "A..b"}, "same case"),
        ({"k": "A..AAAA"}, "at most 3 letters"),
        ({"k": "AAAA1..AAAA2"}, "at most 3 letters"),
        ({"k": "1..1000000000000000"}, "smaller than"),
        ({"k": "1..99999999999999999"}, "not a range"),
        ({"k": 5}, "not int"),
        ({"k": None}, "not NoneType"),
        ({"k": True}, "not bool"),
        ({"k": {"a": 1}}, "not an object"),
        ({"k": [1, 2, 1]}, "1 appears twice"),
        ({"k": "1..5,3"}, "3 appears twice"),
        ({"k": ["a", "a"]}, '"a" appears twice'),
        ({"k": [float("nan")]}, "not a JSON number"),
        ({"k": [object()]}, "not JSON"),
        ({"well": [1], " well ": [2]}, "names 'well' twice"),
        ({"": [1]}, "1 to 255 bytes"),
        ({"   ": [1]}, "1 to 255 bytes"),
        ({"a\nb": [1]}, "control characters"),
        ({"x" * 256: [1]}, "1 to 255 bytes"),
        ({f"k{i}": [1] for i in range(MAX_KEYS + 1)}, "at most 32"),
    ],
)
def test_bad_specs_are_refused_with_the_reason(expand: dict[Any, Any], reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason.replace("(", r"\(").replace(".", r"\.")):
        parse_expand(expand)


def test_keys_are_compared_after_nfc() -> None:
    composed = "café"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    with pytest.raises(InvalidRequest, match="twice"):
        parse_expand({composed: [1], decomposed: [2]})
    assert parse_expand({decomposed: [1]}).keys == (composed,)


def test_non_string_keys_and_non_mappings_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="keys must be strings"):
        parse_expand({1: [1]})  # type: ignore[dict-item]
    with pytest.raises(InvalidRequest, match="must be an object"):
        parse_expand([("k", [1])])  # type: ignore[arg-type]


# --- the limit, checked before materializing ---


def test_limit_is_refused_before_materializing(monkeypatch: pytest.MonkeyPatch) -> None:
    def materialize(*_: object) -> None:
        raise AssertionError("values were made before the size was checked")

    monkeypatch.setattr(expand_module, "_axis", materialize)
    with pytest.raises(InvalidRequest) as info:
        parse_expand({"a": "1..999999999999999", "b": "A01..P24"})
    message = info.value.message
    assert "383,999,999,999,999,616 members" in message
    assert "a 999,999,999,999,999 x b 384" in message
    assert "the limit is 100,000" in message


def test_a_huge_item_list_is_refused_before_its_items_are_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    term = expand_module._term

    def counted(where: str, item: str) -> object:
        calls.append(item)
        return term(where, item)

    monkeypatch.setattr(expand_module, "_term", counted)
    with pytest.raises(InvalidRequest, match="more than 100,000 items"):
        parse_expand({"k": ",".join(["x"] * 2_000_000)})
    assert calls == []
    assert parse_expand({"k": ",".join(map(str, range(100_000)))}).size == 100_000


def test_exactly_the_limit_is_accepted_and_one_more_is_not() -> None:
    assert parse_expand({"a": "1..1000", "b": "1..100"}).size == MAX_MEMBERS
    with pytest.raises(InvalidRequest, match="100,100 members"):
        parse_expand({"a": "1..1001", "b": "1..100"})
    assert parse_expand({"a": "1..10"}, limit=10).size == 10
    with pytest.raises(InvalidRequest, match="the limit is 9"):
        parse_expand({"a": "1..10"}, limit=9)


# --- members: order and merge ---


def test_last_key_varies_fastest() -> None:
    got = members(b"", {"plate": "1..2", "well": "A01..A02", "ch": ["dapi", "gfp"]})
    assert [tuple(m.values()) for m in got] == list(
        itertools.product([1, 2], ["A01", "A02"], ["dapi", "gfp"])
    )


def test_base_keys_first_then_expansion_keys_and_the_combination_wins() -> None:
    got = members(b'{"z": 1, "well": "base", "a": {"n": [1]}}', {"well": "A01..A02", "b": [True]})
    assert got[0] == {"z": 1, "a": {"n": [1]}, "well": "A01", "b": True}
    assert list(got[0]) == ["z", "a", "well", "b"]
    assert got[1]["well"] == "A02"


@pytest.mark.parametrize("base", [b"", b"  ", [], [b""], [b"{}"], b"{}"])
def test_an_empty_payload_is_an_empty_object(base: bytes | list[bytes]) -> None:
    assert [json.loads(p) for p in expand_payloads(base, {"n": "1..2"})] == [{"n": 1}, {"n": 2}]


@pytest.mark.parametrize(
    ("base", "content_type", "reason"),
    [
        (b"[1, 2]", None, "it is an array"),
        (b'"text"', None, "it is a string"),
        (b"42", None, "it is a number"),
        (b"null", None, "true, false or null"),
        (b"{nope", None, "JSON object payload"),
        ([b"{}", b"{}"], None, "one-frame"),
        (b"{}", "text/plain", "content type is text/plain"),
    ],
)
def test_a_base_that_is_not_one_json_object_is_refused(
    base: bytes | list[bytes], content_type: str | None, reason: str
) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        expand_payloads(base, {"n": [1]}, content_type=content_type)  # refused at the call


def test_json_content_types_are_accepted() -> None:
    for content_type in ("application/json", "application/json; charset=utf-8", "application/vnd.x+json"):
        assert list(expand_payloads(b"{}", {"n": [1]}, content_type=content_type)) == [b'{"n":1}']


def test_max_payload_is_checked_on_the_largest_member() -> None:
    expand = {"name": ["a", "b" * 50]}
    largest = max(map(len, expand_payloads(b'{"x": 1}', expand)))
    assert list(expand_payloads(b'{"x": 1}', expand, max_payload=largest))
    with pytest.raises(PayloadTooLarge, match=f"{largest} bytes"):
        expand_payloads(b'{"x": 1}', expand, max_payload=largest - 1)


def test_combination_at_is_random_access() -> None:
    expansion = parse_expand({"a": "1..3", "b": "A..B", "c": [None, 1]})
    assert [expansion.combination_at(i) for i in range(expansion.size)] == list(expansion.combinations())
    with pytest.raises(IndexError):
        expansion.combination_at(expansion.size)
    with pytest.raises(IndexError):
        expansion.combination_at(-1)


def test_source_keeps_the_mapping_with_normalized_keys() -> None:
    assert parse_expand({" well ": "A01..H12", "n": (1, 2)}).source == {"well": "A01..H12", "n": [1, 2]}


# --- the CLI's --expand KEY=ITEMS ---


def test_cli_options() -> None:
    got = parse_cli_expand(["well=A01..H12", "ch=dapi,gfp", 'tag=["a,b", "1..2"]', " z =1"])
    assert got == {"well": "A01..H12", "ch": "dapi,gfp", "tag": ["a,b", "1..2"], "z": "1"}
    assert parse_expand(got).size == 96 * 2 * 2 * 1


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (["well"], "expected KEY=VALUES"),
        (["a=1", "a=2"], "names 'a' twice"),
        (["a=1", " a=2"], "names 'a' twice"),
        (["a=[1"], "not a JSON array"),
        (["=1"], "1 to 255 bytes"),
    ],
)
def test_cli_refusals(options: list[str], reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        parse_cli_expand(options)


# --- properties ---

_scalars = st.one_of(
    st.integers(-1000, 1000),
    st.text(max_size=4),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
)


@st.composite
def _mappings(draw: st.DrawFn) -> dict[str, list[Any]]:
    keys = draw(
        st.lists(st.text(alphabet="abcdefgh", min_size=1, max_size=3), min_size=1, max_size=4, unique=True)
    )
    out = {}
    for key in keys:
        pool = draw(st.lists(_scalars, min_size=1, max_size=5))
        unique = list({json.dumps(v): v for v in pool}.values())  # duplicates are refused
        out[key] = unique
    return out


@settings(max_examples=200, deadline=None)
@given(
    mapping=_mappings(),
    base=st.dictionaries(st.text(alphabet="abcxyz", max_size=3), st.integers(), max_size=4),
)
def test_every_combination_appears_once_in_product_order(
    mapping: dict[str, list[Any]], base: dict[str, int]
) -> None:
    expansion = parse_expand(mapping)
    sizes = [len(v) for v in mapping.values()]
    assert expansion.size == math.prod(sizes)
    payloads = list(expansion.payloads(json.dumps(base).encode()))
    assert len(payloads) == expansion.size
    combos = list(itertools.product(*mapping.values()))
    for at, (payload, combo) in enumerate(zip(payloads, combos, strict=True)):
        got = json.loads(payload)
        assert got == {**base, **dict(zip(mapping, combo, strict=True))}
        assert expansion.combination_at(at) == dict(zip(mapping, combo, strict=True))
    assert len({tuple(json.dumps(json.loads(p)[k]) for k in mapping) for p in payloads}) == expansion.size


@settings(max_examples=200, deadline=None)
@given(a=st.integers(-50, 50), length=st.integers(0, 60), step=st.integers(1, 12))
def test_integer_ranges_match_python_ranges(a: int, length: int, step: int) -> None:
    b = a + length
    assert values(f"{a}..{b}/{step}") == list(range(a, b + 1, step))
    assert parse_expand({"k": f"{a}..{b}/{step}"}).size == len(range(a, b + 1, step))


@settings(max_examples=100, deadline=None)
@given(r1=st.integers(1, 40), rows=st.integers(0, 5), c1=st.integers(1, 30), cols=st.integers(0, 30))
def test_plates_are_rows_times_columns(r1: int, rows: int, c1: int, cols: int) -> None:
    def row(n: int) -> str:
        return chr(64 + n) if n <= 26 else "A" + chr(64 + n - 26)

    text = f"{row(r1)}{c1:02d}..{row(r1 + rows)}{c1 + cols:02d}"
    got = values(text)
    assert got == [f"{row(r)}{c:02d}" for r in range(r1, r1 + rows + 1) for c in range(c1, c1 + cols + 1)]


# --- the fast path ---


def test_members_are_made_without_an_encoder_call_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path: values are encoded once per axis value, members are joins of those texts
    (the speed itself is measured in docs/workflows.md; tests never time anything)."""
    calls: list[object] = []
    encode = expand_module._encode

    def counted(value: object) -> bytes:
        calls.append(value)
        return encode(value)

    monkeypatch.setattr(expand_module, "_encode", counted)
    base = b'{"plugin": "cellprofiler", "pipeline": "s3://bucket/p.cppipe", "plate": "P-0042"}'
    expand = {"site": "1..10", "well": "A01..P24", "channel": ["dapi", "gfp", "rfp"], "z": "1..9"}
    payloads = expand_payloads(base, expand, limit=10 * 384 * 3 * 9)
    count, first, last = 0, b"", b""
    for payload in payloads:
        count, first, last = count + 1, first or payload, payload
    assert count == 103_680
    assert len(calls) <= 10  # the keys, the base, and the channel names
    assert json.loads(first) == {
        "plugin": "cellprofiler", "pipeline": "s3://bucket/p.cppipe", "plate": "P-0042",
        "site": 1, "well": "A01", "channel": "dapi", "z": 1,
    }  # fmt: skip
    assert json.loads(last)["site"] == 10 and json.loads(last)["well"] == "P24" and json.loads(last)["z"] == 9
