"""Local time (Asia/Shanghai), RFC 3339 and the schedule windows of the geofence format.

A window is ``{"days": [1..7], "from": "HH:MM", "to": "HH:MM"}``; ``to <= from``
crosses midnight and the window belongs to the day it starts on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

TZ = ZoneInfo("Asia/Shanghai")
Window = Mapping[str, Any]


def rfc3339(ts: float) -> str:
    """Local time with its offset, seconds precision when whole (what terminals send)."""
    dt = datetime.fromtimestamp(ts, TZ)
    return dt.isoformat(timespec="seconds" if ts == int(ts) else "milliseconds")


def parse_time(text: str) -> float:
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=TZ)
    return dt.timestamp()


def windows(value: Window | Iterable[Window] | None) -> list[Window]:
    if value is None:
        return []
    return [value] if isinstance(value, Mapping) else list(value)


def _spans_starting_on(day: datetime, window: Window) -> tuple[float, float] | None:
    if day.isoweekday() not in window.get("days", range(1, 8)):
        return None
    fh, fm = (int(x) for x in window["from"].split(":"))
    th, tm = (int(x) for x in window["to"].split(":"))
    start = day.replace(hour=fh, minute=fm)
    end = day.replace(hour=th, minute=tm)
    if end <= start:
        end += timedelta(days=1)
    return start.timestamp(), end.timestamp()


def active_span(ts: float, value: Window | Iterable[Window] | None) -> tuple[float, float] | None:
    """The (start, end) of the window containing ts, if any."""
    today = datetime.fromtimestamp(ts, TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    for w in windows(value):
        for day in (today - timedelta(days=1), today):
            span = _spans_starting_on(day, w)
            if span and span[0] <= ts < span[1]:
                return span
    return None


def is_active(ts: float, value: Window | Iterable[Window] | None) -> bool:
    return active_span(ts, value) is not None


def next_start(ts: float, value: Window | Iterable[Window] | None) -> float | None:
    today = datetime.fromtimestamp(ts, TZ).replace(hour=0, minute=0, second=0, microsecond=0)
    starts = [
        span[0]
        for w in windows(value)
        for k in range(8)
        if (span := _spans_starting_on(today + timedelta(days=k), w)) and span[0] > ts
    ]
    return min(starts, default=None)
