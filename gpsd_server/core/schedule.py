"""Weekly time windows in the city's local time (zone schedules, permit hours).

A window is ``{"days": [1..7], "from": "HH:MM", "to": "HH:MM"}`` with ISO
weekdays (1 = Monday, default all days). ``to <= from`` means the window
crosses midnight: the part after midnight belongs to the day the window
started, so ``{"days": [5], "from": "21:00", "to": "06:00"}`` is Friday
21:00 to Saturday 06:00. ``from == to`` is a full 24 hours. ``"to": "24:00"``
is the end of the day, as people write it.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, NamedTuple

_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
ALL_DAYS = frozenset(range(1, 8))


class LocalTime(NamedTuple):
    """A fix time seen on the city's wall clock (a named tuple: built per fix
    for every permitted truck, and a frozen dataclass took 1.8 µs to make)."""

    weekday: int  # ISO 1..7
    minute: int  # minutes since local midnight
    day: int  # proleptic Gregorian ordinal of the local date


_EPOCH_ORDINAL = 719163  # date(1970, 1, 1).toordinal()
_BUCKET_S = 900  # UTC offsets change only at multiples of 15 minutes
_offsets: dict[tuple[tzinfo, int], float] = {}


def local_time(ts: float, tz: tzinfo) -> LocalTime:
    """Weekday, minute and date on the local wall clock; the offset is cached per 15 min."""
    bucket = int(ts // _BUCKET_S)
    offset = _offsets.get((tz, bucket))
    if offset is None:
        if len(_offsets) > 100_000:  # replaying years of data: keep the cache bounded
            _offsets.clear()
        delta = datetime.fromtimestamp(bucket * _BUCKET_S, tz).utcoffset()
        offset = _offsets[(tz, bucket)] = delta.total_seconds() if delta is not None else 0.0
    local = ts + offset
    days = int(local // 86400)
    return LocalTime((days + 3) % 7 + 1, int(local - days * 86400) // 60, days + _EPOCH_ORDINAL)


@dataclass(frozen=True, slots=True)
class Window:
    days: frozenset[int]
    start_min: int
    end_min: int

    def contains(self, t: LocalTime) -> bool:
        if self.start_min < self.end_min:
            return t.weekday in self.days and self.start_min <= t.minute < self.end_min
        # Crosses midnight: the evening part on a listed day, or the morning
        # part on the day after a listed day.
        if t.minute >= self.start_min:
            return t.weekday in self.days
        return t.minute < self.end_min and (t.weekday - 2) % 7 + 1 in self.days

    @property
    def always(self) -> bool:
        """Every minute of every day (``from == to``, or 00:00-24:00, on all seven days)."""
        full_day = self.start_min == self.end_min or (self.start_min == 0 and self.end_min == 24 * 60)
        return full_day and self.days == ALL_DAYS


@dataclass(frozen=True, slots=True)
class Schedule:
    windows: tuple[Window, ...]
    # Active at any time: FixContext.in_hours skips the local clock (1.2 µs per fix) for it.
    always: bool = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "always", any(w.always for w in self.windows))

    def active(self, t: LocalTime) -> bool:
        for w in self.windows:
            if w.contains(t):
                return True
        return False


def parse_schedule(value: Any) -> Schedule:
    """One window object or a non-empty list of them; ValueError names the problem."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("bad schedule: empty list")
    return Schedule(tuple(_parse_window(item) for item in items))


def _parse_window(item: Any) -> Window:
    if not isinstance(item, dict):
        raise ValueError("bad schedule: a window must be an object")
    unknown = set(item) - {"days", "from", "to"}
    if unknown:
        key = sorted(unknown)[0]
        close = difflib.get_close_matches(key, ["days", "from", "to"], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"bad schedule: unknown key {key!r}{hint}")
    days = item.get("days", sorted(ALL_DAYS))
    if (
        not isinstance(days, list)
        or not days
        or any(isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 7 for d in days)
    ):
        raise ValueError("bad schedule: days must be a non-empty list of ISO weekdays 1..7")
    return Window(frozenset(days), _minutes(item, "from"), _minutes(item, "to"))


def _minutes(item: dict[str, Any], key: str) -> int:
    text = item.get(key)
    if key == "to" and text == "24:00":
        return 24 * 60
    match = _HHMM.match(text) if isinstance(text, str) else None
    if match is None:
        allowed = "00:00..23:59, or 24:00 for the end of the day" if key == "to" else "00:00..23:59"
        raise ValueError(f"bad schedule: {key!r} must be HH:MM ({allowed})")
    return int(match.group(1)) * 60 + int(match.group(2))
