"""Query-parameter parsing that names the parameter in every 4xx."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import HTTPException

NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL
# Times are clamped into this span: nothing is stored before the epoch, and a
# day or a range computed from the far end (end - 24 h, the next local day)
# must stay representable. Days outside it are refused naming the parameter.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)


class BadParameter(HTTPException):
    def __init__(self, name: str, reason: str, status: int = 400) -> None:
        super().__init__(status_code=status, detail={"error": reason, "parameter": name})


def parse_time(name: str, value: str | None, default: datetime | None = None) -> datetime:
    """RFC 3339 (offset required) or epoch seconds."""
    if value is None or value == "":
        if default is None:
            raise BadParameter(name, "required: an RFC 3339 time such as 2026-11-27T08:00:00+08:00")
        return default
    try:
        if value.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(value), UTC)
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise BadParameter(name, f"not an RFC 3339 time or epoch seconds: {value[:40]!r}") from None
    if dt.tzinfo is None:
        raise BadParameter(name, "RFC 3339 time needs an offset (Z or +08:00)")
    try:
        return min(max(dt.astimezone(UTC), EARLIEST), LATEST)
    except OverflowError:  # an offset that pushes the year past 1..9999
        return EARLIEST if dt.year < 5000 else LATEST


def parse_range(start: str | None, end: str | None, *, max_span: timedelta, now: datetime) -> tuple[datetime, datetime]:
    t_end = parse_time("end", end, default=now)
    t_start = parse_time("start", start, default=max(t_end - timedelta(days=1), EARLIEST))
    if t_start >= t_end:
        if not start:  # the default start (end - 24 h) was clamped up to end
            raise BadParameter("end", f"must be after {EARLIEST:%Y-%m-%dT%H:%M:%SZ}")
        raise BadParameter("start", "must be before end")
    if t_end - t_start > max_span:
        days = max_span.total_seconds() / 86400
        raise BadParameter("end" if end else "start", f"range longer than the cap of {days:g} days")
    return t_start, t_end
