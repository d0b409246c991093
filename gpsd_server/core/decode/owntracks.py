"""OwnTracks (phones on patrol officers) -> ``Fix`` values.

The app publishes JSON on ``owntracks/{user}/{device}``; a ``_type:
location`` message gives one fix: ``lat``, ``lon``, ``tst`` (epoch seconds),
``vel`` (km/h), ``cog`` (degrees), ``alt`` (m), ``acc`` (m, radius of
accuracy), ``tid``, ``batt``. Other types (``lwt``, ``transition``,
``waypoint``, ``card``, ``status``, ...) carry no track point and decode to an
empty list, not a rejection. Sub-topics (``.../event``, ``.../info``, ...)
are not positions either (the topic router says so).

``user/device`` maps to a vehicle through a registry; an unknown device is
``unknown_terminal``. A phone's network (cell/Wi-Fi) position can be off by
kilometres; a fix whose ``acc`` exceeds ``max_accuracy_m`` is kept but
flagged ``INVALID`` so that it is stored without driving the rules.

Rejections use the reasons of ``common`` plus ``unknown_terminal`` and
``owntracks_encrypted`` (the app's payload encryption is on: we hold no key,
and silently ignoring it would hide a phone that looks configured).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from gpsd_server.core.decode.common import check_position, check_ts, parse_json
from gpsd_server.errors import DecodeError
from gpsd_server.model import Fix, FixFlag
from gpsd_server.settings import IngestSettings

DEFAULT_MAX_ACCURACY_M = 500.0


def decode_owntracks(
    device: str,
    payload: bytes,
    *,
    now: float,
    limits: IngestSettings,
    devices: Mapping[str, str],
    max_accuracy_m: float = DEFAULT_MAX_ACCURACY_M,
) -> list[Fix | DecodeError]:
    """Decode one message of ``user/device``, published on ``owntracks/user/device``."""
    try:
        doc = parse_json(payload, limits)
        if not isinstance(doc, dict):
            raise DecodeError("not_object", "payload is not an object")
        kind = doc.get("_type")
        if not isinstance(kind, str):
            raise DecodeError("wrong_type", "_type must be a string")
        if kind == "encrypted":
            raise DecodeError("owntracks_encrypted", "turn payload encryption off in the app")
        if kind != "location":
            return []
        vehicle = devices.get(device)
        if vehicle is None:
            raise DecodeError("unknown_terminal", f"device {device} is not registered")
        return [_location(vehicle, doc, now=now, limits=limits, max_accuracy_m=max_accuracy_m)]
    except DecodeError as exc:
        return [exc]


def _location(vehicle: str, doc: dict[str, Any], *, now: float, limits: IngestSettings, max_accuracy_m: float) -> Fix:
    tst = doc.get("tst")
    if tst is None:
        raise DecodeError("ts_missing", "no tst")
    if isinstance(tst, bool) or not isinstance(tst, (int, float)) or not math.isfinite(tst):
        raise DecodeError("ts_invalid", "tst must be epoch seconds")
    check_ts(float(tst), now, limits)
    if doc.get("lat") is None or doc.get("lon") is None:
        raise DecodeError("position_missing", "lat and lon are required")
    lon, lat = check_position(doc["lon"], doc["lat"])
    accuracy = _number(doc, "acc")
    _check_optional_types(doc)
    return Fix(
        vehicle_id=vehicle,
        ts=float(tst),
        lon=lon,
        lat=lat,
        received_at=now,
        speed_kmh=_within(_non_negative(_number(doc, "vel")), "vel", 0, 400),
        heading=_heading(_number(doc, "cog")),
        alt_m=_within(_number(doc, "alt"), "alt", -1000, 10000),
        source="owntracks",
        flags=FixFlag.INVALID if accuracy is not None and accuracy > max_accuracy_m else 0,
    )


def _number(doc: dict[str, Any], name: str) -> float | None:
    value = doc.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DecodeError("wrong_type", f"{name} must be a number")
    return float(value)


def _check_optional_types(doc: dict[str, Any]) -> None:
    # Not stored in a Fix, but a wrong type means a client we do not understand.
    _number(doc, "batt")
    tid = doc.get("tid")
    if tid is not None and not isinstance(tid, str):
        raise DecodeError("wrong_type", "tid must be a string")


def _within(value: float | None, name: str, lo: float, hi: float) -> float | None:
    """The native path's ranges (km/h, m): a phone's 1e39 was stored as an infinite speed."""
    if value is not None and not lo <= value <= hi:
        raise DecodeError("wrong_type", f"{name} must be {lo:g}..{hi:g}")
    return value


def _non_negative(value: float | None) -> float | None:
    # iOS reports -1 for "speed/course not available".
    return None if value is None or value < 0 else value


def _heading(cog: float | None) -> float | None:
    if cog is None or cog < 0 or cog > 360:
        return None
    return cog % 360.0
