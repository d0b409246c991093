"""Query-parameter parsing that names the parameter in every 4xx."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import HTTPException, Query

NO_NUL = r"^[^\x00]*$"  # PostgreSQL text cannot hold NUL
# Times are clamped into this span: nothing is stored before the epoch, and a
# day or a range computed from the far end (end - 24 h, the next local day)
# must stay representable. Days outside it are refused naming the parameter.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)


# pattern -> what it means, so a refusal says that instead of showing the pattern
PATTERN_MEANINGS: dict[str, str] = {}


def one_of(*words: str) -> str:
    """A pattern matching any of ``words`` in any case (JSON Schema patterns have no flags)."""
    pattern = "^(" + "|".join("".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in w)
                              for w in words) + ")$"  # fmt: skip
    PATTERN_MEANINGS[pattern] = f"must be one of {', '.join(words)} (any case)"
    return pattern


def format_query(*formats: str) -> Any:
    return Query(formats[0], pattern=one_of(*formats), description=" | ".join(formats) + " (any case)")


EPOCH_PATTERN = r"^[0-9]{1,15}(\.[0-9]{1,9})?$"
# The schema of every time parameter: RFC 3339 with an offset, or epoch seconds.
# Empty means the default, as leaving it out does.
TIME_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "format": "date-time"}, {"type": "string", "pattern": EPOCH_PATTERN},
        {"type": "string", "maxLength": 0}, {"type": "null"},
    ]
}  # fmt: skip
DAY_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "string", "format": "date"}, {"type": "string", "maxLength": 0}, {"type": "null"}]
}


def time_query(description: str = "RFC 3339 with an offset, or epoch seconds") -> Any:
    return Query(None, description=description, json_schema_extra=TIME_SCHEMA)


def day_query(description: str = "local date YYYY-MM-DD; default yesterday") -> Any:
    return Query(None, description=description, json_schema_extra=DAY_SCHEMA)


class BadParameter(HTTPException):
    def __init__(self, name: str, reason: str, status: int = 400) -> None:
        super().__init__(status_code=status, detail={"error": reason, "parameter": name})


_HEX = "[0-9a-fA-F]"
_ALERT_NUMBER = "[0-9]{8}-[0-9]{4,9}"
ALERT_REF_PATTERN = f"^({_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}|{_ALERT_NUMBER})$"
ALERT_REF_DESCRIPTION = "the alert's id (a UUID) or its number as the desk shows it (YYYYMMDD-NNNN)"
PATTERN_MEANINGS[ALERT_REF_PATTERN] = f"must be {ALERT_REF_DESCRIPTION}"


def parse_alert_ref(name: str, value: str) -> uuid.UUID | str:
    """An alert named by its id or by its number (what an operator reads off the
    desk or a report, and says on the phone); the schema's pattern has checked
    the form, this says which of the two it is."""
    if not re.fullmatch(ALERT_REF_PATTERN, value):
        raise BadParameter(name, PATTERN_MEANINGS[ALERT_REF_PATTERN])
    return uuid.UUID(value) if len(value) == 36 else value


def parse_time(name: str, value: str | None, default: datetime | None = None) -> datetime:
    """RFC 3339 (offset required) or epoch seconds."""
    if value is None or value == "":
        if default is None:
            raise BadParameter(name, "required: an RFC 3339 time such as 2026-11-27T08:00:00+08:00")
        return default
    if value.replace(".", "", 1).isdigit() and not _EPOCH.fullmatch(value):  # as the schema says (TIME_SCHEMA)
        raise BadParameter(name, "epoch seconds: at most 15 digits and 9 decimals")
    try:
        if value.replace(".", "", 1).isdigit():
            return min(max(datetime.fromtimestamp(min(float(value), LATEST.timestamp()), UTC), EARLIEST), LATEST)
        dt = datetime.fromisoformat(_rfc3339(value))
    except (ValueError, OverflowError, OSError):
        raise BadParameter(name, f"not an RFC 3339 time or epoch seconds: {value[:40]!r}") from None
    if dt.tzinfo is None:
        raise BadParameter(name, "RFC 3339 time needs an offset (Z or +08:00)")
    try:
        return min(max(dt.astimezone(UTC), EARLIEST), LATEST)
    except OverflowError:  # an offset that pushes the year past 1..9999
        return EARLIEST if dt.year < 5000 else LATEST


def _rfc3339(value: str) -> str:
    """What RFC 3339 allows and ``fromisoformat`` does not take: a lower-case
    t or z, more than 6 digits of fraction, a leap second (read as :59)."""
    text = value.strip()
    if len(text) > 10 and text[10] in "tT ":
        text = text[:10] + "T" + text[11:]
    if text[-1:] in "zZ":
        text = text[:-1] + "+00:00"
    m = _FRACTION.search(text)
    if m:
        text = text[: m.start()] + m.group(1)[:7] + text[m.end() :]
    return _LEAP.sub(r"\1:59", text)


_EPOCH = re.compile(EPOCH_PATTERN)
_FRACTION = re.compile(r"(\.[0-9]+)(?=[+-][0-9]{2}:?[0-9]{2}$|$)")
_LEAP = re.compile(r"(T[0-9]{2}:[0-9]{2}):60")


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
