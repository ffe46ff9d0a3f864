"""Cron schedules (core/schedule.py): syntax, next firings across DST, catch-up, firing ids."""

from __future__ import annotations

import calendar
import itertools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from jobq.core.errors import InvalidRequest
from jobq.core.model import JobSpec
from jobq.core.schedule import (
    MAX_COUNTED,
    MAX_DUE,
    CatchUp,
    Skipped,
    firing_id,
    firing_key,
    firings_between,
    iter_firings,
    new_schedule,
    next_at,
    next_firing,
    parse_cron,
    pause,
    plan,
    previous_firing,
    resume,
)

AMS = ZoneInfo("Europe/Amsterdam")
NYC = ZoneInfo("America/New_York")


def at(tz: ZoneInfo | None, year: int, month: int = 1, day: int = 1, hour: int = 0, minute: int = 0) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=tz or UTC).timestamp()


def utc(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M")


def local(t: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(t, tz).strftime("%Y-%m-%d %H:%M%z")


def take(expr: str, tz: str | ZoneInfo, after: float, n: int) -> list[float]:
    it = iter_firings(expr, tz, after)
    return [next(it) for _ in range(n)]


# --- syntax ---


@pytest.mark.parametrize(
    ("expr", "field", "expected"),
    [
        ("*/15 * * * *", "minutes", (0, 15, 30, 45)),
        ("5-20/5 * * * *", "minutes", (5, 10, 15, 20)),
        ("50/4 * * * *", "minutes", (50, 54, 58)),
        ("1,2,3,59 * * * *", "minutes", (1, 2, 3, 59)),
        ("0 9-17/4,23 * * *", "hours", (9, 13, 17, 23)),
        ("0 0 * JAN,mar-May *", "months", frozenset({1, 3, 4, 5})),
        ("0 0 * */5 *", "months", frozenset({1, 6, 11})),
        ("0 0 * * MON-FRI", "weekdays", frozenset({1, 2, 3, 4, 5})),
        ("0 0 * * 7", "weekdays", frozenset({0})),
        ("0 0 * * 5-7", "weekdays", frozenset({5, 6, 0})),
        ("0 0 * * sun,sat", "weekdays", frozenset({0, 6})),
        ("0 0 1,15 * ?", "days", frozenset({1, 15})),
        ("0 0 L * *", "last_day", True),
        ("0 0 * * 5L", "last_weekdays", frozenset({5})),
        ("0 0 * * FRIL,0L", "last_weekdays", frozenset({5, 0})),
        ("0 0 * * MON#2,5#5", "nth", frozenset({(1, 2), (5, 5)})),
    ],
)
def test_fields(expr: str, field: str, expected: object) -> None:
    assert getattr(parse_cron(expr), field) == expected


@pytest.mark.parametrize(
    ("macro", "same"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@MIDNIGHT", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_macros(macro: str, same: str) -> None:
    start = at(None, 2025, 1, 1, 0, 0)
    assert take(macro, "UTC", start, 5) == take(same, "UTC", start, 5)


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("* * * *", "has 4 fields; five are needed"),
        ("* * * * * *", "has 6 fields"),
        ("", "has 0 fields"),
        ("@reboot", "unknown macro"),
        ("60 * * * *", "minute: 60 is outside 0-59"),
        ("* 24 * * *", "hour: 24 is outside 0-23"),
        ("* * 0 * *", "day of month: 0 is outside 1-31"),
        ("* * * 13 *", "month: 13 is outside 1-12"),
        ("* * * * 8", "day of week: 8 is outside 0-7"),
        ("5-1 * * * *", "reversed range"),
        ("*/0 * * * *", "must be a positive integer"),
        ("*/x * * * *", "must be a positive integer"),
        ("1,,2 * * * *", "empty item"),
        ("x * * * *", "'x' is not a number"),
        ("? * * * *", "'\\?' is not a number"),
        ("0 0 * FOO *", "'FOO' is not a number or a name"),
        ("0 0 15W * *", "'15W' is not a number"),
        ("0 0 LW * *", "'LW' is not a number"),
        ("H * * * *", "'H' is not a number"),
        ("0 0 * * 1#6", "the n in d#n is 1-5"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("0 0 ٣ * *", "not a number"),
    ],
)
def test_bad_expressions(expr: str, reason: str) -> None:
    with pytest.raises(InvalidRequest, match=reason):
        parse_cron(expr)


def test_unknown_time_zone() -> None:
    with pytest.raises(InvalidRequest, match="unknown time zone 'Mars/Olympus'"):
        next_firing("* * * * *", "Mars/Olympus", 0)
    with pytest.raises(InvalidRequest, match="unknown time zone"):
        next_firing("* * * * *", "../etc/passwd", 0)


# --- next firing (UTC) ---


def test_next_firing_basics() -> None:
    start = at(None, 2025, 6, 13, 10, 7)  # a Friday
    assert [utc(t) for t in take("0 9 * * MON-FRI", "UTC", start, 3)] == [
        "2025-06-16 09:00", "2025-06-17 09:00", "2025-06-18 09:00",
    ]  # fmt: skip
    assert utc(next_firing("*/5 * * * *", "UTC", start) or 0) == "2025-06-13 10:10"
    assert utc(next_firing("*/5 * * * *", "UTC", at(None, 2025, 6, 13, 10, 10)) or 0) == "2025-06-13 10:15"
    assert utc(next_firing("0 0 29 2 *", "UTC", start) or 0) == "2028-02-29 00:00"
    assert utc(next_firing("0 0 L * *", "UTC", start) or 0) == "2025-06-30 00:00"
    assert utc(next_firing("0 0 * * 5L", "UTC", start) or 0) == "2025-06-27 00:00"
    assert utc(next_firing("0 0 * * MON#1", "UTC", start) or 0) == "2025-07-07 00:00"
    assert utc(next_firing("@yearly", "UTC", start) or 0) == "2026-01-01 00:00"


def test_day_of_month_or_day_of_week_when_both_are_restricted() -> None:
    start = at(None, 2025, 6, 1, 0, 0)  # a Sunday
    # Both restricted: the 13th, or any Friday.
    assert [utc(t)[:10] for t in take("0 0 13 * 5", "UTC", start, 4)] == [
        "2025-06-06", "2025-06-13", "2025-06-20", "2025-06-27",
    ]  # fmt: skip
    # Day of week starts with '*': both must hold (a 13th that is a Sunday, Tuesday, ...).
    assert [utc(t)[:10] for t in take("0 0 13 * */2", "UTC", start, 2)] == ["2025-07-13", "2025-09-13"]


def test_never_after_the_horizon() -> None:
    # Feb 29 that is a Sunday (day of week starts with '*', so both must hold): years apart.
    assert utc(next_firing("0 0 29 2 */7", "UTC", at(None, 2025, 1, 1)) or 0) == "2032-02-29 00:00"
    # Days 1 and 31 of February that are a fifth Friday: never; looked for 50 years, then None.
    assert next_firing("0 0 */30 2 5#5", "UTC", at(None, 2025, 1, 1)) is None
    assert previous_firing("0 0 */30 2 5#5", "UTC", at(None, 2025, 1, 1)) is None


# --- DST: Europe/Amsterdam (2025-03-30 02:00 → 03:00, 2025-10-26 03:00 → 02:00) ---


def test_amsterdam_spring_forward() -> None:
    before = at(AMS, 2025, 3, 29, 12, 0)
    # Fixed-time: 02:30 does not exist on the 30th: it fires once at the end of the gap.
    assert [local(t, AMS) for t in take("30 2 * * *", AMS, before, 3)] == [
        "2025-03-30 03:00+0200", "2025-03-31 02:30+0200", "2025-04-01 02:30+0200",
    ]  # fmt: skip
    # Several firings in the gap are one, and it is the same firing as 03:00 itself.
    assert [local(t, AMS) for t in take("0,30 2,3 * * *", AMS, before, 4)] == [
        "2025-03-30 03:00+0200", "2025-03-30 03:30+0200", "2025-03-31 02:00+0200", "2025-03-31 02:30+0200",
    ]  # fmt: skip
    # Interval-like: follows elapsed time; the missing hour simply has no firings.
    start = at(AMS, 2025, 3, 30, 1, 0)
    assert [local(t, AMS) for t in take("*/30 * * * *", AMS, start, 3)] == [
        "2025-03-30 01:30+0100", "2025-03-30 03:00+0200", "2025-03-30 03:30+0200",
    ]  # fmt: skip
    assert [local(t, AMS) for t in take("15 * * * *", AMS, start, 2)] == [
        "2025-03-30 01:15+0100", "2025-03-30 03:15+0200",
    ]  # fmt: skip
    assert take("* 2 * * *", AMS, start, 1) == [at(AMS, 2025, 3, 31, 2, 0)]


def test_amsterdam_fall_back() -> None:
    start = at(AMS, 2025, 10, 26, 1, 0)
    # Fixed-time: 02:30 happens twice; it fires at the first.
    assert [local(t, AMS) for t in take("30 2 * * *", AMS, start, 2)] == [
        "2025-10-26 02:30+0200", "2025-10-27 02:30+0100",
    ]  # fmt: skip
    # Interval-like: both occurrences, in elapsed-time order.
    assert [local(t, AMS) for t in take("*/30 * * * *", AMS, start, 6)] == [
        "2025-10-26 01:30+0200", "2025-10-26 02:00+0200", "2025-10-26 02:30+0200",
        "2025-10-26 02:00+0100", "2025-10-26 02:30+0100", "2025-10-26 03:00+0100",
    ]  # fmt: skip
    firings = take("0 * * * *", AMS, start, 4)
    assert [b - a for a, b in itertools.pairwise(firings)] == [3600.0] * 3


# --- DST: America/New_York (2025-03-09 02:00 → 03:00, 2025-11-02 02:00 → 01:00) ---


def test_new_york_spring_forward_and_fall_back() -> None:
    assert (
        utc(next_firing("30 2 * * *", NYC, at(NYC, 2025, 3, 8, 12, 0)) or 0) == "2025-03-09 07:00"
    )  # 03:00 EDT
    assert utc(next_firing("30 2 * * *", NYC, at(NYC, 2025, 3, 9, 12, 0)) or 0) == "2025-03-10 06:30"
    fall = take("30 1 * * *", NYC, at(NYC, 2025, 11, 1, 12, 0), 2)
    assert [utc(t) for t in fall] == ["2025-11-02 05:30", "2025-11-03 06:30"]  # 01:30 EDT, once
    both = take("30 * * * *", NYC, at(NYC, 2025, 11, 2, 0, 0), 3)
    assert [local(t, NYC) for t in both] == [
        "2025-11-02 00:30-0400", "2025-11-02 01:30-0400", "2025-11-02 01:30-0500",
    ]  # fmt: skip
    weekday = take("0 9 * * MON-FRI", NYC, at(NYC, 2025, 3, 7, 10, 0), 1)
    assert utc(weekday[0]) == "2025-03-10 13:00"  # 09:00 EDT


def test_zones_with_a_half_hour_shift_and_midnight_transitions() -> None:
    lord_howe = ZoneInfo("Australia/Lord_Howe")  # 2025-10-05 02:00 → 02:30
    assert local(next_firing("15 2 * * *", lord_howe, at(lord_howe, 2025, 10, 4, 12)) or 0, lord_howe) == (
        "2025-10-05 02:30+1100"
    )
    havana = ZoneInfo("America/Havana")  # 2025-03-09 00:00 → 01:00
    assert local(next_firing("30 0 * * *", havana, at(havana, 2025, 3, 8, 12)) or 0, havana) == (
        "2025-03-09 01:00-0400"
    )


# --- properties: against a brute-force scan of every UTC minute ---

_ZONES = [
    "UTC", "Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata",
    "America/St_Johns", "Pacific/Chatham", "America/Havana", "America/Santiago",
]  # fmt: skip


def _transitions(name: str) -> list[float]:
    """UTC instants (2024-2026) where the zone's offset changes, to start scans near them."""
    tz = ZoneInfo(name)
    out, t = [], at(None, 2024, 1, 1)
    last = datetime.fromtimestamp(t, tz).utcoffset()
    while t < at(None, 2027, 1, 1):
        t += 3600
        offset = datetime.fromtimestamp(t, tz).utcoffset()
        if offset != last:
            out.append(t)
            last = offset
    return out or [at(None, 2025, 1, 1)]


_NEAR = {name: _transitions(name) for name in _ZONES}


@dataclass
class Field:
    text: str
    values: set[int]
    star: bool
    nth: set[tuple[int, int]]
    lasts: set[int]
    last_day: bool


@st.composite
def _field(draw: st.DrawFn, low: int, high: int, special: str = "") -> Field:
    items: list[str] = []
    values: set[int] = set()
    nth: set[tuple[int, int]] = set()
    lasts: set[int] = set()
    last_day = False
    for _ in range(draw(st.integers(1, 3))):
        kinds = ["*", "*/s", "a", "a-b", "a-b/s", "a/s"] + ["S"] * (4 if special else 0)
        kind = draw(st.sampled_from(kinds))
        a = draw(st.integers(low, high))
        b = draw(st.integers(a, high))
        s = draw(st.integers(1, max(1, (high - low) // 2 + 1)))
        if kind == "*":
            items.append("*")
            values.update(range(low, high + 1))
        elif kind == "*/s":
            items.append(f"*/{s}")
            values.update(range(low, high + 1, s))
        elif kind == "a":
            items.append(str(a))
            values.add(a)
        elif kind == "a-b":
            items.append(f"{a}-{b}")
            values.update(range(a, b + 1))
        elif kind == "a-b/s":
            items.append(f"{a}-{b}/{s}")
            values.update(range(a, b + 1, s))
        elif kind == "a/s":
            items.append(f"{a}/{s}")
            values.update(range(a, high + 1, s))
        elif special == "dom":
            items.append("L")
            last_day = True
        else:
            d, n = draw(st.integers(0, 7)), draw(st.integers(1, 5))
            if draw(st.booleans()):
                items.append(f"{d}#{n}")
                nth.add((d % 7, n))
            else:
                items.append(f"{d}L")
                lasts.add(d % 7)
    return Field(",".join(items), values, items[0].startswith("*"), nth, lasts, last_day)


@st.composite
def _crons(draw: st.DrawFn) -> tuple[str, list[Field]]:
    fields = [
        draw(_field(0, 59)),
        draw(_field(0, 23)),
        draw(_field(1, 31, "dom")),
        draw(_field(1, 12)),
        draw(_field(0, 7, "dow")),
    ]
    return " ".join(f.text for f in fields), fields


def _oracle_matches(fields: list[Field], wall: datetime) -> bool:
    minute, hour, dom, month, dow = fields
    length = calendar.monthrange(wall.year, wall.month)[1]
    weekday = wall.isoweekday() % 7
    dom_ok = wall.day in dom.values or (dom.last_day and wall.day == length)
    dow_ok = (
        weekday in {v % 7 for v in dow.values}
        or (weekday, (wall.day - 1) // 7 + 1) in dow.nth
        or (weekday in dow.lasts and wall.day + 7 > length)
    )
    day_ok = (dom_ok and dow_ok) if dom.star or dow.star else (dom_ok or dow_ok)
    return wall.minute in minute.values and wall.hour in hour.values and wall.month in month.values and day_ok


def _brute_force(fields: list[Field], tz: ZoneInfo, start: float, minutes: int) -> list[float]:
    """Scan every UTC minute: fire when the local time matches (a fixed-time schedule only at
    a time's first occurrence), and at a spring-forward instant when a skipped time matches."""
    interval_like = fields[0].star or fields[1].star
    out = []
    first = (int(start) // 60 + 1) * 60
    for t in range(first, first + minutes * 60, 60):
        now, before = datetime.fromtimestamp(t, tz), datetime.fromtimestamp(t - 60, tz)
        fire = _oracle_matches(fields, now.replace(tzinfo=None)) and (interval_like or now.fold == 0)
        if not fire and not interval_like and now.utcoffset() != before.utcoffset():
            wall, end = before.replace(tzinfo=None) + timedelta(minutes=1), now.replace(tzinfo=None)
            while wall < end and not fire:
                fire = _oracle_matches(fields, wall)
                wall += timedelta(minutes=1)
        if fire:
            out.append(float(t))
    return out


@settings(max_examples=150, deadline=None)
@given(
    cron=_crons(),
    zone=st.sampled_from(_ZONES),
    pick=st.integers(0, 10**6),
    shift=st.integers(-2 * 86400, 86400),
)
def test_firings_match_a_brute_force_minute_scan(
    cron: tuple[str, list[Field]], zone: str, pick: int, shift: int
) -> None:
    expr, fields = cron
    try:
        parse_cron(expr)
    except InvalidRequest:
        assume(False)
    tz = ZoneInfo(zone)
    near = _NEAR[zone]
    start = near[pick % len(near)] + shift + (pick % 60)  # not on a minute boundary
    minutes = 3 * 24 * 60
    expected = _brute_force(fields, tz, start, minutes)
    got = []
    for t in iter_firings(expr, tz, start):
        if t >= start + minutes * 60 + (60 - start % 60):
            break
        got.append(t)
    got = [t for t in got if t < (int(start) // 60 + 1) * 60 + minutes * 60]
    assert got == expected, expr
    # next_firing agrees and is strictly increasing; previous_firing inverts it.
    if got:
        assert next_firing(expr, tz, start) == got[0]
        before = previous_firing(expr, tz, got[0])
        assert before is None or before <= start
    pairs = list(itertools.pairwise(got))
    assert all(a < b for a, b in pairs)
    for a, b in pairs[:10] + pairs[-10:]:  # each call builds a day's firings: sample them
        assert next_firing(expr, tz, a) == b
        assert previous_firing(expr, tz, b) == a


@settings(max_examples=200, deadline=None)
@given(dom=_field(1, 31, "dom"), month=_field(1, 12), dow=_field(0, 7, "dow"))
def test_day_rules_match_the_oracle_on_every_day_of_two_years(dom: Field, month: Field, dow: Field) -> None:
    expr = f"0 0 {dom.text} {month.text} {dow.text}"
    try:
        cron = parse_cron(expr)
    except InvalidRequest:
        assume(False)
    anytime = [Field("0", {0}, False, set(), set(), False)] * 2
    day = datetime(2024, 1, 1)
    for _ in range(731):
        assert cron.day_matches(day.date()) == _oracle_matches([*anytime, dom, month, dow], day), (expr, day)
        day += timedelta(days=1)


@settings(max_examples=150, deadline=None)
@given(
    zone=st.sampled_from([z for z in _ZONES if z not in ("UTC", "Asia/Kolkata")]),
    pick=st.integers(0, 10**6),
    minute=_field(0, 59),
    hours=st.lists(st.integers(-2, 2), min_size=1, max_size=3, unique=True),
    star_hour=st.booleans(),
)
def test_dst_transitions_match_a_brute_force_minute_scan(
    zone: str, pick: int, minute: Field, hours: list[int], star_hour: bool
) -> None:
    """Every transition of 2024-2026 in each zone, with hours around it: fixed-time and
    interval-like schedules against the same brute-force scan."""
    tz = ZoneInfo(zone)
    moment = _NEAR[zone][pick % len(_NEAR[zone])]
    around = datetime.fromtimestamp(moment - 60, tz).hour
    hour_values = {(around + h) % 24 for h in hours}
    hour = (
        Field("*", set(range(24)), True, set(), set(), False)
        if star_hour
        else Field(",".join(map(str, sorted(hour_values))), hour_values, False, set(), set(), False)
    )
    anyday = [
        Field("*", set(range(1, 32)), True, set(), set(), False),
        Field("*", set(range(1, 13)), True, set(), set(), False),
        Field("*", set(range(8)), True, set(), set(), False),
    ]
    fields = [minute, hour, *anyday]
    expr = " ".join(f.text for f in fields)
    start = moment - 6 * 3600 + 7
    expected = _brute_force(fields, tz, start, 12 * 60)
    end = (int(start) // 60 + 1) * 60 + 12 * 3600
    got = []
    for t in iter_firings(expr, tz, start):
        if t >= end:
            break
        got.append(t)
    assert got == expected, expr


# --- catch-up ---


def test_a_normal_tick_fires_the_one_firing_on_time() -> None:
    since = at(None, 2025, 1, 1, 9, 0)
    got = firings_between("*/5 * * * *", "UTC", since, since + 300.4)
    assert got == CatchUp(due=(since + 300,), cursor=since + 300)
    nothing = firings_between("*/5 * * * *", "UTC", since + 300, since + 301)
    assert nothing == CatchUp(due=(), cursor=since + 300)


def test_a_tick_late_by_less_than_a_minute_is_not_a_miss() -> None:
    since = at(None, 2025, 1, 1, 9, 0)
    got = firings_between("0 * * * *", "UTC", since, since + 3600 + 45, catch_up=0)
    assert got.due == (since + 3600,) and got.skipped is None
    late = firings_between("0 * * * *", "UTC", since, since + 3600 + 61, catch_up=0)
    assert late.due == () and late.skipped == Skipped(1, since + 3600, since + 3600)
    assert late.cursor == since + 3600


def test_downtime_coalesces_within_the_window_and_skips_older_ones() -> None:
    since = at(None, 2025, 1, 1, 0, 0)
    until = since + 5 * 3600 + 30  # down five hours; hourly; window two hours
    got = firings_between("0 * * * *", "UTC", since, until, catch_up=7200)
    hour = [since + h * 3600 for h in range(1, 6)]
    assert got.due == (hour[4],)
    assert got.coalesced == (hour[3],)  # 03:00 is 2 h 0 m 30 s old: outside; 04:00 and 05:00 inside
    assert got.skipped == Skipped(3, hour[0], hour[2])
    assert got.cursor == hour[4]
    each = firings_between("0 * * * *", "UTC", since, until, catch_up=7200, coalesce=False)
    assert (each.due, each.coalesced, each.skipped) == ((hour[3], hour[4]), (), Skipped(3, hour[0], hour[2]))


def test_a_long_outage_is_summarized_not_enumerated() -> None:
    since = at(None, 2024, 1, 1)
    until = at(None, 2025, 1, 1)  # a year of a per-minute schedule
    got = firings_between("* * * * *", "UTC", since, until, catch_up=600)
    assert got.due == (until,)
    assert len(got.coalesced) == 10
    assert got.skipped == Skipped(MAX_COUNTED, since + 60, until - 660, more=True)
    assert got.cursor == until


def test_at_most_max_due_firings_run_without_coalescing() -> None:
    since = at(None, 2025, 1, 1)
    until = since + (MAX_DUE + 10) * 60
    got = firings_between("* * * * *", "UTC", since, until, catch_up=86400, coalesce=False)
    assert len(got.due) == MAX_DUE and got.due[-1] == until
    assert got.skipped == Skipped(10, since + 60, since + 600)


def test_catch_up_across_dst_uses_real_instants() -> None:
    since = at(AMS, 2025, 3, 30, 0, 0)
    until = at(AMS, 2025, 3, 30, 4, 0)
    got = firings_between("30 2 * * *", "Europe/Amsterdam", since, until, catch_up=7200)
    assert got.due == (at(AMS, 2025, 3, 30, 3, 0),)


# --- firing ids and schedules ---


def test_firing_ids_are_deterministic_utc() -> None:
    t = at(AMS, 2025, 3, 30, 3, 0)
    assert firing_id("nightly", t) == "nightly@2025-03-30T01:00:00Z"
    assert firing_key("nightly", t) == "schedule:nightly@2025-03-30T01:00:00Z"
    assert firing_id("a@b", 0) == "a@b@1970-01-01T00:00:00Z"


def test_schedule_life() -> None:
    spec = JobSpec(service="report", payload=[b"{}"])
    t0 = at(None, 2025, 1, 1, 7, 59)
    s = new_schedule("daily-report", " 0 9 * * * ", spec, t0, tz="Europe/Amsterdam")
    assert (s.cron, s.cursor, s.tz) == ("0 9 * * *", t0, "Europe/Amsterdam")
    assert next_at(s) == at(AMS, 2025, 1, 1, 9, 0)
    first = plan(s, at(AMS, 2025, 1, 1, 9, 0) + 1)
    assert first.due == (at(AMS, 2025, 1, 1, 9, 0),)
    s = pause(s)
    assert next_at(s) is None
    assert plan(s, at(AMS, 2025, 1, 5)) == CatchUp(due=(), cursor=s.cursor)
    resumed = resume(s, at(AMS, 2025, 1, 5, 12))
    assert not resumed.paused and resumed.cursor == at(AMS, 2025, 1, 5, 12)
    assert next_at(resumed) == at(AMS, 2025, 1, 6, 9)
    assert resume(resumed, 0) is resumed


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"name": ""}, "schedule name"),
        ({"name": "-x"}, "schedule name"),
        ({"name": "a b"}, "schedule name"),
        ({"name": "x" * 201}, "schedule name"),
        ({"cron": "* * *"}, "five are needed"),
        ({"tz": "Nowhere/Else"}, "unknown time zone"),
        ({"catch_up": -1.0}, "catch_up must be"),
        ({"catch_up": float("inf")}, "catch_up must be"),
        ({"catch_up": 8 * 86400.0}, "catch_up must be"),
    ],
)
def test_schedule_refusals(kwargs: dict[str, object], reason: str) -> None:
    args: dict[str, object] = {"name": "ok", "cron": "@daily", "tz": "UTC", "catch_up": 60.0} | kwargs
    with pytest.raises(InvalidRequest, match=reason):
        new_schedule(
            str(args["name"]), str(args["cron"]), JobSpec(service="s"), 0.0,
            tz=str(args["tz"]), catch_up=float(args["catch_up"]),  # type: ignore[arg-type]
        )  # fmt: skip


def test_local_dates_near_the_search_start() -> None:
    # A firing early on the local day after ``after`` in a zone far ahead of UTC.
    chatham = ZoneInfo("Pacific/Chatham")
    start = at(None, 2025, 6, 1, 11, 0)  # 2025-06-01 23:45 in Chatham
    assert local(next_firing("0 0 * * *", chatham, start) or 0, chatham) == "2025-06-02 00:00+1245"
