"""Parameters of the history routes, each 4xx naming its parameter."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from gpsd_server.api.params import EARLIEST, LATEST, BadParameter, parse_range

TRACK_FORMATS = {"geojson": "application/geo+json", "gpx": "application/gpx+xml", "csv": "text/csv; charset=utf-8"}
BUCKET_PATTERN = r"^ *([0-9]{1,6}) *(s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?) *$"
_BUCKET = re.compile(BUCKET_PATTERN)
_DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
FIRST_DAY = EARLIEST.date() + timedelta(days=1)
LAST_DAY = LATEST.date() - timedelta(days=2)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


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
            if not _DAY.match(value):
                raise ValueError(value)
            day = date.fromisoformat(value)
        except ValueError:
            raise BadParameter(name, "a local date YYYY-MM-DD") from None
        # Clamped like times, so that the day's bounds in any time zone stay representable.
        day = min(max(day, FIRST_DAY), LAST_DAY)
    start = datetime.combine(day, time(), tz)
    end = datetime.combine(day + timedelta(days=1), time(), tz)
    return day, start.astimezone(UTC), end.astimezone(UTC)
