"""Cron schedules: expressions, the next firing in a time zone, and what to fire after downtime.

Pure: no clock (times are POSIX seconds passed in), no dependency (no croniter). The only data
read is the system's time zone database, through :mod:`zoneinfo`. ``docs/workflows.md`` has the
user-facing rules; in short:

- **Syntax**: five fields ``minute hour day-of-month month day-of-week``; ``*``, ``?`` (days
  only), ``a``, ``a-b``, ``*/s``, ``a-b/s``, ``a/s`` (a to the end), lists with ``,``; month
  names ``JAN``-``DEC`` and day names ``SUN``-``SAT`` (any case); day of week 0-7 (0 and 7 are
  Sunday); ``L`` (last day) in day-of-month; ``dL`` (last weekday d of the month) and ``d#n``
  (n-th weekday d) in day-of-week; macros ``@yearly`` ``@annually`` ``@monthly`` ``@weekly``
  ``@daily`` ``@midnight`` ``@hourly``. Day of month and day of week: when both are restricted
  (neither starts with ``*`` or ``?``) a day matches either (crontab(5)), else both.
- **Time zones and DST** (cronie's rule): a schedule whose minute or hour field starts with
  ``*`` (*interval-like*) follows elapsed time: a local time that does not exist (spring
  forward) is skipped, one that happens twice (fall back) fires twice. Any other schedule
  (*fixed-time*) fires once per local day and time: a time in a gap fires at the end of the
  gap (the transition instant, once however many fell in it), a repeated time fires at its
  first occurrence.
- **Catch-up**: :func:`firings_between` splits the firings missed since the last one into those
  within the catch-up window (run: only the latest when ``coalesce``, the default, else each
  once) and older ones (skipped, summarized for the log).
- **Exactly once**: each firing has a deterministic id (:func:`firing_id`), the idempotency key
  of the job it submits.
"""

from __future__ import annotations

import calendar
import functools
import math
import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo

import msgspec

from jobq.core.errors import InvalidRequest
from jobq.core.model import JobSpec

#: Default seconds a missed firing may be late and still run.
DEFAULT_CATCH_UP = 3600.0
#: A window is never shorter than this: a firing found by a late tick is not a missed one.
MIN_CATCH_UP = 60.0
#: Longest catch-up window a schedule may ask for.
MAX_CATCH_UP = 7 * 24 * 3600.0
#: Most firings one catch-up submits when not coalescing (older ones are skipped).
MAX_DUE = 1000
#: Skipped firings counted one by one at most (beyond, the count is a lower bound).
MAX_COUNTED = 10_000
#: How far ahead a next firing is looked for; an expression that fires less often never fires.
SEARCH_YEARS = 50
#: Schedules a store keeps at most.
MAX_SCHEDULES = 10_000

MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = {
    name: i
    for i, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1
    )
}
_DAYS = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
#: (name, lowest, highest, names)
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_LONGEST = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_EPOCH = date(1970, 1, 1).toordinal()
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed expression. Days of week are 0-6, Sunday 0."""

    expr: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    last_day: bool = False
    nth: frozenset[tuple[int, int]] = frozenset()
    last_weekdays: frozenset[int] = frozenset()
    dom_star: bool = True
    dow_star: bool = True
    #: Minute or hour starts with ``*``: follows elapsed time across DST changes.
    interval_like: bool = False

    def day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        length = calendar.monthrange(day.year, day.month)[1]
        dom = day.day in self.days or (self.last_day and day.day == length)
        weekday = (day.weekday() + 1) % 7
        dow = (
            weekday in self.weekdays
            or (weekday, (day.day - 1) // 7 + 1) in self.nth
            or (weekday in self.last_weekdays and day.day + 7 > length)
        )
        return (dom and dow) if self.dom_star or self.dow_star else (dom or dow)

    def matches(self, wall: datetime) -> bool:
        """Whether a local wall time (its minute) matches, DST rules aside."""
        return wall.minute in self.minutes and wall.hour in self.hours and self.day_matches(wall.date())


def _value(text: str, field: int) -> int:
    name, low, high, names = _FIELDS[field]
    number = names.get(text.upper()) if names else None
    if number is None:
        if not text.isascii() or not text.isdigit():
            what = "a number or a name" if names else "a number"
            raise InvalidRequest(
                f"cron {name}: {text!r} is not {what} (L, W, # and H: see docs/workflows.md)"
            )
        number = int(text)
    if not low <= number <= high:
        raise InvalidRequest(f"cron {name}: {number} is outside {low}-{high}")
    return number


def _element(text: str, field: int, out: set[int]) -> None:
    name, low, high, _ = _FIELDS[field]
    body, slash, step_text = text.partition("/")
    step = 1
    if slash:
        if not step_text.isascii() or not step_text.isdigit() or int(step_text) < 1:
            raise InvalidRequest(f"cron {name}: the step in {text!r} must be a positive integer")
        step = int(step_text)
    if body in ("*", "?") and (body == "*" or field in (2, 4)):
        first, last = low, high
    elif "-" in body:
        a, _, b = body.partition("-")
        first, last = _value(a, field), _value(b, field)
        if first > last:
            raise InvalidRequest(f"cron {name}: reversed range {text!r}")
    else:
        first = _value(body, field)
        last = high if slash else first
    out.update(range(first, last + 1, step))


def _field(text: str, field: int) -> tuple[set[int], set[tuple[int, int]], set[int], bool]:
    values: set[int] = set()
    nth: set[tuple[int, int]] = set()
    lasts: set[int] = set()
    last_day = False
    for item in text.split(","):
        upper = item.upper()
        if not item:
            raise InvalidRequest(f"cron {_FIELDS[field][0]}: empty item in {text!r}")
        if field == 2 and upper == "L":
            last_day = True
        elif field == 4 and upper.endswith("L") and len(upper) > 1:
            lasts.add(_value(item[:-1], 4) % 7)
        elif field == 4 and "#" in item:
            day, _, n = item.partition("#")
            if n not in ("1", "2", "3", "4", "5"):
                raise InvalidRequest(f"cron day of week: {item!r}: the n in d#n is 1-5")
            nth.add((_value(day, 4) % 7, int(n)))
        else:
            _element(item, field, values)
    return values, nth, lasts, last_day


@functools.lru_cache(maxsize=1024)
def parse_cron(expr: str) -> Cron:
    """Parse and check an expression; refused with the reason (an expression that can never
    fire, like ``0 0 30 2 *``, is refused too)."""
    text = expr.strip()
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise InvalidRequest(f"cron: unknown macro {text!r} (one of {', '.join(MACROS)})")
        text = MACROS[text.lower()]
    parts = text.split()
    if len(parts) != 5:
        raise InvalidRequest(f"cron: {expr!r} has {len(parts)} fields; five are needed (m h dom mon dow)")
    fields = [_field(part, i) for i, part in enumerate(parts)]
    days, _, _, last_day = fields[2]
    weekdays, nth, last_weekdays, _ = fields[4]
    stars = [part[0] in "*?" for part in parts]
    cron = Cron(
        expr=expr.strip(),
        minutes=tuple(sorted(fields[0][0])),
        hours=tuple(sorted(fields[1][0])),
        days=frozenset(days),
        months=frozenset(fields[3][0]),
        weekdays=frozenset(d % 7 for d in weekdays),
        last_day=last_day,
        nth=frozenset(nth),
        last_weekdays=frozenset(last_weekdays),
        dom_star=stars[2],
        dow_star=stars[4],
        interval_like=stars[0] or stars[1],
    )
    and_mode = cron.dom_star or cron.dow_star
    if and_mode and not last_day and all(min(days, default=32) > _LONGEST[m] for m in cron.months):
        raise InvalidRequest(f"cron: {expr!r} never fires (no such day in those months)")
    return cron


@functools.lru_cache(maxsize=256)
def _zone_named(name: str) -> tzinfo:
    if name.upper() == "UTC":
        return UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidRequest(f"unknown time zone {name!r} (an IANA name like Europe/Amsterdam)") from None


def zone(tz: str | tzinfo) -> tzinfo:
    """A time zone by IANA name (``UTC`` too), or a ``tzinfo`` as is."""
    return _zone_named(tz) if isinstance(tz, str) else tz


# --- firing instants ---


def _transition(tz: tzinfo, before: int, after: int) -> float:
    """The first instant in (before, after] whose UTC offset differs from ``before``'s."""
    offset = datetime.fromtimestamp(before, tz).utcoffset()
    while after - before > 1:
        mid = (before + after) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == offset:
            before = mid
        else:
            after = mid
    return float(after)


def _wall(cron: Cron, tz: tzinfo, day: date, hour: int, minute: int) -> list[float]:
    first = datetime(day.year, day.month, day.day, hour, minute, tzinfo=tz)
    t0, t1 = first.timestamp(), first.replace(fold=1).timestamp()
    if t0 == t1:
        return [t0]
    if t0 < t1:  # happens twice (fall back)
        return [t0, t1] if cron.interval_like else [t0]
    # Does not exist (spring forward): fold 0 used the offset before the gap, fold 1 after.
    return [] if cron.interval_like else [_transition(tz, int(t1), math.ceil(t0))]


def day_firings(cron: Cron, tz: tzinfo, day: date) -> list[float]:
    """The instants ``cron`` fires at for local ``day`` (ascending; empty if the day does not
    match). Days without a UTC offset change take the arithmetic path."""
    if not cron.day_matches(day):
        return []
    y, m, d = day.year, day.month, day.day
    start, end = datetime(y, m, d, tzinfo=tz), datetime(y, m, d, 23, 59, tzinfo=tz)
    offsets = {
        start.utcoffset(),
        start.replace(fold=1).utcoffset(),
        end.utcoffset(),
        end.replace(fold=1).utcoffset(),
    }
    if len(offsets) == 1:
        delta = offsets.pop()
        base = (day.toordinal() - _EPOCH) * 86400.0 - (delta.total_seconds() if delta else 0.0)
        return [base + h * 3600 + mi * 60 for h in cron.hours for mi in cron.minutes]
    return sorted({t for h in cron.hours for mi in cron.minutes for t in _wall(cron, tz, day, h, mi)})


def _local_day(t: float, tz: tzinfo) -> date:
    return datetime.fromtimestamp(t, tz).date()


def iter_firings(expr: str | Cron, tz: str | tzinfo, after: float) -> Iterator[float]:
    """Firings strictly after ``after``, ascending, for up to :data:`SEARCH_YEARS` years."""
    cron = parse_cron(expr) if isinstance(expr, str) else expr
    zone_ = zone(tz)
    day = _local_day(after, zone_) - timedelta(days=1)
    stop = day + timedelta(days=366 * SEARCH_YEARS)
    last = after
    while day < stop:
        if day.month not in cron.months:
            day = date(day.year + day.month // 12, day.month % 12 + 1, 1)
            continue
        for t in day_firings(cron, zone_, day):
            if t > last:
                last = t
                yield t
        day += timedelta(days=1)


def next_firing(expr: str | Cron, tz: str | tzinfo, after: float) -> float | None:
    """The first firing strictly after ``after`` (``None``: none within the search horizon)."""
    return next(iter_firings(expr, tz, after), None)


def previous_firing(expr: str | Cron, tz: str | tzinfo, before: float) -> float | None:
    """The last firing strictly before ``before``."""
    cron = parse_cron(expr) if isinstance(expr, str) else expr
    zone_ = zone(tz)
    day = _local_day(before, zone_) + timedelta(days=1)
    for _ in range(366 * SEARCH_YEARS):
        for t in reversed(day_firings(cron, zone_, day)):
            if t < before:
                return t
        day -= timedelta(days=1)
    return None


# --- catch-up and exactly-once ---


@dataclass(frozen=True, slots=True)
class Skipped:
    """Firings too old to run, for the log: how many, the first and the last."""

    count: int
    first: float
    last: float
    #: ``count`` stopped at :data:`MAX_COUNTED`: there were more.
    more: bool = False


@dataclass(frozen=True, slots=True)
class CatchUp:
    """What to do with the firings in (since, until]."""

    #: Submit each of these, in order (one job each, keyed by :func:`firing_key`).
    due: tuple[float, ...]
    #: Within the window but folded into the last due firing (``coalesce``): log only.
    coalesced: tuple[float, ...] = ()
    skipped: Skipped | None = None
    #: The schedule's new cursor: the latest firing considered (``since`` if none was).
    cursor: float = 0.0


def firings_between(
    expr: str | Cron,
    tz: str | tzinfo,
    since: float,
    until: float,
    catch_up: float = DEFAULT_CATCH_UP,
    *,
    coalesce: bool = True,
) -> CatchUp:
    """Split the firings in (``since``, ``until``]: those at most ``catch_up`` seconds old
    (at least :data:`MIN_CATCH_UP`) run, the latest only when ``coalesce`` (what Celery beat
    and APScheduler's ``coalesce=True`` do), else each once, at most :data:`MAX_DUE`;
    older ones are skipped. A normal tick finds one firing, on time, and submits it."""
    cron = parse_cron(expr) if isinstance(expr, str) else expr
    zone_ = zone(tz)
    window_start = until - max(catch_up, MIN_CATCH_UP)
    count, first, last, more = 0, None, None, False
    for t in iter_firings(cron, zone_, since):
        if t >= window_start:
            break
        count += 1
        first = t if first is None else first
        last = t
        if count == MAX_COUNTED:  # a long outage: stop counting, find the last skipped one
            more = True
            before = previous_firing(cron, zone_, window_start)
            last = t if before is None else before
            break
    window = list(_until(iter_firings(cron, zone_, since if last is None else last), until))
    if not coalesce and len(window) > MAX_DUE:
        extra, window = window[:-MAX_DUE], window[-MAX_DUE:]
        count += len(extra)
        first = extra[0] if first is None else first
        last = extra[-1]
    skipped = Skipped(count, first, last, more) if first is not None and last is not None else None
    considered = max(window[-1] if window else since, last if last is not None else since)
    if coalesce and window:
        return CatchUp(due=(window[-1],), coalesced=tuple(window[:-1]), skipped=skipped, cursor=considered)
    return CatchUp(due=tuple(window), skipped=skipped, cursor=considered)


def _until(firings: Iterator[float], until: float) -> Iterator[float]:
    for t in firings:
        if t > until:
            return
        yield t


def firing_id(name: str, at: float) -> str:
    """``NAME@YYYY-MM-DDTHH:MM:SSZ``: one firing of one schedule, the same on every hub."""
    return f"{name}@{datetime.fromtimestamp(at, UTC):%Y-%m-%dT%H:%M:%SZ}"


def firing_key(name: str, at: float) -> str:
    """The idempotency key of the job a firing submits (``schedule:`` is reserved)."""
    return f"schedule:{firing_id(name, at)}"


#: Put before a firing key on the job it creates: a control character, which no client's key may
#: hold (``core/validate.py``), so a firing key never meets a client's, tenant-scoped or not.
FIRING_MARK = "\x1f"


def firing_spec(schedule: Schedule, at: float) -> JobSpec:
    """The job one firing submits: the schedule's spec, keyed by the firing."""
    return msgspec.structs.replace(schedule.spec, idempotency_key=FIRING_MARK + firing_key(schedule.name, at))


# --- a schedule as a store keeps it ---


class Schedule(msgspec.Struct, kw_only=True, omit_defaults=True):
    name: str
    cron: str
    spec: JobSpec
    created_at: float
    #: The latest firing considered (run, coalesced or skipped), or when counting started
    #: (creation, resume): firings after it are still to come.
    cursor: float
    tz: str = "UTC"
    paused: bool = False
    catch_up: float = DEFAULT_CATCH_UP
    coalesce: bool = True
    owner: str | None = None


def new_schedule(
    name: str,
    cron: str,
    spec: JobSpec,
    now: float,
    *,
    tz: str = "UTC",
    catch_up: float = DEFAULT_CATCH_UP,
    coalesce: bool = True,
    owner: str | None = None,
) -> Schedule:
    """A checked schedule that fires from ``now`` on."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidRequest("a schedule name is 1-200 of A-Z a-z 0-9 . _ - (starting alphanumeric)")
    parse_cron(cron)
    zone(tz)
    if not math.isfinite(catch_up) or not 0 <= catch_up <= MAX_CATCH_UP:
        raise InvalidRequest(f"catch_up must be 0 to {int(MAX_CATCH_UP)} seconds")
    return Schedule(
        name=name, cron=cron.strip(), spec=spec, created_at=now, cursor=now, tz=tz,
        catch_up=catch_up, coalesce=coalesce, owner=owner,
    )  # fmt: skip


def plan(schedule: Schedule, now: float) -> CatchUp:
    """What a tick at ``now`` fires for ``schedule`` (nothing while paused)."""
    if schedule.paused:
        return CatchUp(due=(), cursor=schedule.cursor)
    return firings_between(
        schedule.cron, schedule.tz, schedule.cursor, now, schedule.catch_up, coalesce=schedule.coalesce
    )


def pause(schedule: Schedule) -> Schedule:
    return msgspec.structs.replace(schedule, paused=True)


def resume(schedule: Schedule, now: float) -> Schedule:
    """Fire again from ``now``: what would have fired while paused is not caught up."""
    if not schedule.paused:
        return schedule
    return msgspec.structs.replace(schedule, paused=False, cursor=max(schedule.cursor, now))


def next_at(schedule: Schedule) -> float | None:
    """When it fires next (``None`` while paused, or if it never fires again)."""
    return None if schedule.paused else next_firing(schedule.cron, schedule.tz, schedule.cursor)
