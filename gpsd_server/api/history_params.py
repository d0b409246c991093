"""Parameters of the history routes, each 4xx naming its parameter."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from gpsd_server.api.params import EARLIEST, LATEST, BadParameter, parse_range

TRACK_FORMATS = {"geojson": "application/geo+json", "gpx": "application/gpx+xml", "csv": "text/csv; charset=utf-8"}
_BUCKET = re.compile(r"^\s*(\d+)\s*(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?)\s*$", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_format(value: str, allowed: tuple[str, ...]) -> str:
    fmt = value.lower()
    if fmt not in allowed:
        raise BadParameter("format", f"unknown format {value[:20]!r}; one of {', '.join(allowed)}")
    return fmt


def parse_tolerance(value: str | None) -> float | None:
    if value is None or value == "":
        return None
    try:
        tol = float(value)
    except ValueError:
        raise BadParameter("simplify_m", "not a number of metres") from None
    if not 0 < tol <= 1000:
        raise BadParameter("simplify_m", "must be > 0 and <= 1000 metres")
    return tol


def parse_bucket(value: str | None) -> timedelta | None:
    """``30s``, ``1 min``, ``5 minutes``, ``1 hour``, ``1d``: 1 s to 1 day."""
    if value is None or value == "":
        return None
    m = _BUCKET.match(value)
    if m is None:
        raise BadParameter("bucket", "an interval such as 30s, 1 min, 5 min or 1 hour")
    seconds = int(m.group(1)) * _UNIT_S[m.group(2)[0].lower()]
    if not 1 <= seconds <= 86400:
        raise BadParameter("bucket", "must be between 1 second and 1 day")
    return timedelta(seconds=seconds)


def parse_positive(name: str, value: float | None, default: float, upper: float) -> float:
    if value is None:
        return default
    if not 0 < value <= upper:
        raise BadParameter(name, f"must be > 0 and <= {upper:g}")
    return float(value)


def history_range(start: str | None, end: str | None, max_days: float) -> tuple[datetime, datetime]:
    return parse_range(start, end, max_span=timedelta(days=max_days), now=datetime.now(UTC))


def local_day(value: str | None, timezone: str, name: str = "day") -> tuple[date, datetime, datetime]:
    """A local calendar day ``YYYY-MM-DD`` (default: yesterday) as [start, end) instants."""
    tz = ZoneInfo(timezone)
    if value is None or value == "":
        day = datetime.now(tz).date() - timedelta(days=1)
    else:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise BadParameter(name, "a local date YYYY-MM-DD") from None
        if not EARLIEST.date() < day < LATEST.date():
            raise BadParameter(name, f"a local date after {EARLIEST.date()} and before {LATEST.date()}")
    start = datetime.combine(day, time(), tz)
    end = datetime.combine(day + timedelta(days=1), time(), tz)
    return day, start.astimezone(UTC), end.astimezone(UTC)
