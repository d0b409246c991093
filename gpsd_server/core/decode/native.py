"""Native JSON payload -> ``Fix`` values, with a reason for every rejection.

Payload on ``{prefix}/{vehicle_id}/fix``: one JSON object or an array of
them (batch / backfill). Fields are documented in the README. The decoder
returns one entry per item: a ``Fix`` or a ``DecodeError`` whose ``index``
says which item of a batch it was. A payload-level problem (not JSON, too
big) is a single ``DecodeError`` with ``index=None``. Reasons are those of
:mod:`.common` plus ``bad_vehicle_id`` (topic vehicle id empty, too long or
with bad characters) and ``vehicle_mismatch`` (``vehicle_id`` in the body
disagrees with the topic). An item with ``alarm`` or ``status`` but no valid
position (missing, zero, out of range) is not rejected: it decodes to a fix
flagged ``NOFIX``, whose alarms the rules raise at the last known position.

Two paths give the same answer. The fast one decodes straight into typed
structs (msgspec checks types and ranges in C) and is taken when every item
of the payload is valid; anything it does not accept goes to the general
path, which finds and names the reason. ``tests/core/decode/test_native.py``
checks that both agree on generated payloads.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from gpsd_server.core.decode.common import VEHICLE_ID_RE, check_position, check_ts, decode_batch, parse_ts
from gpsd_server.errors import DecodeError
from gpsd_server.model import Fix, FixFlag, Sensors
from gpsd_server.settings import IngestSettings

NOFIX = int(FixFlag.NOFIX)


def _number(item: dict[str, Any], name: str, lo: float, hi: float, *, integer: bool = False) -> Any:
    v = item.get(name)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DecodeError("wrong_type", f"{name} must be a number")
    if integer and not (isinstance(v, int) or float(v).is_integer()):
        raise DecodeError("wrong_type", f"{name} must be an integer")
    if not math.isfinite(v) or not lo <= v <= hi:
        raise DecodeError("wrong_type", f"{name} out of range [{lo:g}, {hi:g}]")
    return int(v) if integer else float(v)


def _flag(item: dict[str, Any], name: str) -> bool | None:
    v = item.get(name)
    if v is None or isinstance(v, bool):
        return v
    raise DecodeError("wrong_type", f"{name} must be true or false")


_DRUM = ("cw", "ccw", "stopped")


def _sensors(value: Any) -> Sensors | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DecodeError("wrong_type", "sensors must be an object")
    drum = value.get("drum")
    if drum is not None and drum not in _DRUM:
        raise DecodeError("wrong_type", "sensors.drum must be cw, ccw or stopped")
    try:
        return Sensors(
            cover_closed=_flag(value, "cover_closed"),
            loaded=_flag(value, "loaded"),
            lift=_flag(value, "lift"),
            drum=drum,
        )
    except DecodeError as exc:
        raise DecodeError("wrong_type", f"sensors.{exc.detail}") from None


def decode_item(
    vehicle_id: str, item: Any, *, now: float, limits: IngestSettings, index: int | None = None
) -> Fix | DecodeError:
    """One JSON value -> a ``Fix`` or the reason it was rejected."""
    try:
        if not isinstance(item, dict):
            raise DecodeError("not_object", "item is not an object")
        body_vid = item.get("vehicle_id")
        if body_vid is not None and body_vid != vehicle_id:
            raise DecodeError("vehicle_mismatch", "body vehicle_id differs from the topic")
        if "ts" not in item or item["ts"] is None:
            raise DecodeError("ts_missing", "no ts")
        ts = parse_ts(item["ts"])
        check_ts(ts, now, limits)
        alarm = _number(item, "alarm", 0, 0xFFFFFFFF, integer=True)
        status = _number(item, "status", 0, 0xFFFFFFFF, integer=True)
        flags = 0
        try:
            if item.get("lon") is None or item.get("lat") is None:
                raise DecodeError("position_missing", "lon and lat are required")
            lon, lat = check_position(item["lon"], item["lat"])
        except DecodeError as exc:
            # Alarm or status words without a position (an SOS in a tunnel): the
            # alarm rules still run, at the last known position; no track point.
            if (alarm is None and status is None) or exc.reason == "wrong_type":
                raise
            lon, lat, flags = 0.0, 0.0, NOFIX
        return Fix(
            vehicle_id=vehicle_id,
            ts=ts,
            lon=lon,
            lat=lat,
            received_at=now,
            speed_kmh=_number(item, "speed_kmh", 0, 400),
            heading=_number(item, "heading", 0, 360),
            alt_m=_number(item, "alt_m", -1000, 10000),
            sats=_number(item, "sats", 0, 255, integer=True),
            hdop=_number(item, "hdop", 0, 100),
            ignition=_flag(item, "ignition"),
            alarm=alarm or 0,
            status=status or 0,
            sensors=_sensors(item.get("sensors")),
            mileage_km=_number(item, "mileage_km", 0, 1e8),
            flags=flags,
        )
    except DecodeError as exc:
        exc.index = index
        return exc


def decode_native(vehicle_id: str, payload: bytes, *, now: float, limits: IngestSettings) -> list[Fix | DecodeError]:
    """Decode a native payload published on ``{prefix}/{vehicle_id}/fix``."""
    if not VEHICLE_ID_RE.match(vehicle_id):
        return [DecodeError("bad_vehicle_id", "topic vehicle id is empty or malformed")]
    if len(payload) <= limits.max_payload_bytes:
        fast = _decode_typed(vehicle_id, payload, now, limits)
        if fast is not None:
            return fast
    return decode_general(vehicle_id, payload, now=now, limits=limits)


def decode_general(vehicle_id: str, payload: bytes, *, now: float, limits: IngestSettings) -> list[Fix | DecodeError]:
    """The general path: every item checked field by field, every rejection named."""
    return decode_batch(vehicle_id, payload, decode_item, now=now, limits=limits)


# -- the typed fast path ------------------------------------------------------

_U32 = Annotated[int, Meta(ge=0, le=0xFFFFFFFF)]


class _ItemIn(msgspec.Struct, gc=False):
    """One native item as the fast path accepts it: the README's field table."""

    ts: str | int | float | None = None
    # Ranges here, so a fix needs no check of its own but the zero position
    # (msgspec takes an integer for a float, never a bool; JSON has no NaN).
    lon: Annotated[float, Meta(ge=-180, le=180)] | None = None
    lat: Annotated[float, Meta(ge=-90, le=90)] | None = None
    vehicle_id: str | None = None
    speed_kmh: Annotated[float, Meta(ge=0, le=400)] | None = None
    heading: Annotated[float, Meta(ge=0, le=360)] | None = None
    alt_m: Annotated[float, Meta(ge=-1000, le=10000)] | None = None
    sats: Annotated[int, Meta(ge=0, le=255)] | None = None
    hdop: Annotated[float, Meta(ge=0, le=100)] | None = None
    ignition: bool | None = None
    alarm: _U32 | None = None
    status: _U32 | None = None
    sensors: Sensors | None = None  # decoded straight into the model's struct
    mileage_km: Annotated[float, Meta(ge=0, le=1e8)] | None = None


_typed = msgspec.json.Decoder(_ItemIn | list[_ItemIn])


def _decode_typed(
    vehicle_id: str, payload: bytes, now: float, limits: IngestSettings
) -> list[Fix | DecodeError] | None:
    """All items valid -> their fixes; anything else -> None (take the general path)."""
    try:
        doc = _typed.decode(payload)
    except (msgspec.DecodeError, ValueError, RecursionError):
        return None
    items = [doc] if isinstance(doc, _ItemIn) else doc
    if not items or len(items) > limits.max_batch_items:
        return None
    out: list[Fix | DecodeError] = []
    for it in items:
        if it.ts is None or it.lon is None or it.lat is None:
            return None
        if it.vehicle_id is not None and it.vehicle_id != vehicle_id:
            return None
        lon, lat = it.lon, it.lat
        if lon == 0.0 and lat == 0.0:
            return None
        try:
            ts = parse_ts(it.ts)
            check_ts(ts, now, limits)
        except (DecodeError, OverflowError):  # OverflowError: an integer ts beyond float range
            return None
        out.append(
            Fix(
                vehicle_id=vehicle_id,
                ts=ts,
                lon=lon,
                lat=lat,
                received_at=now,
                speed_kmh=it.speed_kmh,
                heading=it.heading,
                alt_m=it.alt_m,
                sats=it.sats,
                hdop=it.hdop,
                ignition=it.ignition,
                alarm=it.alarm or 0,
                status=it.status or 0,
                sensors=it.sensors,
                mileage_km=it.mileage_km,
            )
        )
    return out
