"""Native JSON payload -> ``Fix`` values, with a reason for every rejection.

Payload on ``{prefix}/{vehicle_id}/fix``: one JSON object or an array of
them (batch / backfill). Fields are documented in the README. The decoder
returns one entry per item: a ``Fix`` or a ``DecodeError`` whose ``index``
says which item of a batch it was. A payload-level problem (not JSON, too
big) is a single ``DecodeError`` with ``index=None``.

Rejection reasons (stable codes, counted and sent to the dead-letter topic):

==================  =====================================================
oversize            payload larger than ``max_payload_bytes``
not_json            not parseable as JSON
not_object          JSON that is neither an object nor an array; or a
                    batch item that is not an object
empty_batch         an empty array
batch_too_large     more than ``max_batch_items`` items
bad_vehicle_id      topic vehicle id empty, too long or with bad characters
vehicle_mismatch    ``vehicle_id`` in the body disagrees with the topic
ts_missing          no ``ts``
ts_invalid          ``ts`` is not RFC 3339 / epoch seconds / epoch ms
ts_future           ``ts`` more than ``max_future_s`` ahead of the server
ts_too_old          ``ts`` older than ``max_age_s``
position_missing    no ``lon`` or ``lat``
position_invalid    lon/lat out of range, NaN or infinite (the NaN and
                    Infinity literals and overflowing numbers such as
                    1e999 are accepted by the parser to report this)
position_zero       lon = lat = 0 (a terminal without a fix)
wrong_type          a field of the wrong type or out of its range; the
                    detail names the field
==================  =====================================================
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from gpsd_server.errors import DecodeError
from gpsd_server.model import Fix, Sensors

VEHICLE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$")
_json_decoder = msgspec.json.Decoder()

# Epoch numbers above this are milliseconds (year 2286 in seconds).
_EPOCH_MS_THRESHOLD = 1e10


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Input limits; mapped from the ``[ingest]`` config section."""

    max_payload_bytes: int = 262144
    max_batch_items: int = 1000
    max_future_s: float = 300.0
    max_age_s: float = 30 * 86400.0


def parse_json(payload: bytes, limits: DecodeLimits) -> Any:
    """Parse a payload or raise ``DecodeError`` (oversize, not_json)."""
    if len(payload) > limits.max_payload_bytes:
        raise DecodeError("oversize", f"{len(payload)} bytes > {limits.max_payload_bytes}")
    if _HUGE_INT.search(payload):
        # Integers beyond float range would raise OverflowError in every
        # numeric check below: parse them as floats (inf) instead, so the
        # field's own check rejects them.
        return _lenient(payload, "integer beyond float range")
    try:
        return _json_decoder.decode(payload)
    except (msgspec.DecodeError, ValueError, RecursionError) as exc:
        # msgspec raises UnicodeDecodeError for bad UTF-8 in a key and
        # RecursionError for deep nesting (found by tools/fuzz_decoders.py).
        # Terminals do send NaN, Infinity and 1e999. They are not JSON, but a
        # lenient second parse lets the position check name the real problem
        # (position_invalid) instead of a generic not_json.
        return _lenient(payload, str(exc))


_HUGE_INT = re.compile(rb"[0-9]{300}")


def _int_or_float(text: str) -> int | float:
    return float(text) if len(text) >= 300 else int(text)


def _lenient(payload: bytes, why: str) -> Any:
    try:
        return json.loads(payload, parse_int=_int_or_float)
    except (ValueError, RecursionError):
        raise DecodeError("not_json", why[:120]) from None


def parse_ts(value: Any) -> float:
    """RFC 3339 string or epoch seconds/milliseconds -> POSIX seconds."""
    if isinstance(value, bool):
        raise DecodeError("ts_invalid", "boolean")
    if isinstance(value, (int, float)):
        t = float(value)
        if not math.isfinite(t) or t <= 0:
            raise DecodeError("ts_invalid", "not a positive finite epoch")
        return t / 1000.0 if t > _EPOCH_MS_THRESHOLD else t
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value)
        except ValueError:
            raise DecodeError("ts_invalid", "not RFC 3339") from None
        if dt.tzinfo is None:
            raise DecodeError("ts_invalid", "RFC 3339 time without an offset")
        return dt.timestamp()
    raise DecodeError("ts_invalid", f"type {type(value).__name__}")


def check_ts(ts: float, now: float, limits: DecodeLimits) -> None:
    if ts > now + limits.max_future_s:
        raise DecodeError("ts_future", f"{ts - now:.0f} s ahead")
    if ts < now - limits.max_age_s:
        raise DecodeError("ts_too_old", f"{(now - ts) / 86400:.1f} days old")


def check_position(lon: Any, lat: Any) -> tuple[float, float]:
    for name, v in (("lon", lon), ("lat", lat)):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise DecodeError("wrong_type", f"{name} must be a number")
    lon_f, lat_f = float(lon), float(lat)
    if not (math.isfinite(lon_f) and math.isfinite(lat_f)):
        raise DecodeError("position_invalid", "not finite")
    if not (-180.0 <= lon_f <= 180.0 and -90.0 <= lat_f <= 90.0):
        raise DecodeError("position_invalid", "out of range")
    if lon_f == 0.0 and lat_f == 0.0:
        raise DecodeError("position_zero", "lat = lon = 0")
    return lon_f, lat_f


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
    vehicle_id: str, item: Any, *, now: float, limits: DecodeLimits, index: int | None = None
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
        if item.get("lon") is None or item.get("lat") is None:
            raise DecodeError("position_missing", "lon and lat are required")
        lon, lat = check_position(item["lon"], item["lat"])
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
            alarm=_number(item, "alarm", 0, 0xFFFFFFFF, integer=True) or 0,
            status=_number(item, "status", 0, 0xFFFFFFFF, integer=True) or 0,
            sensors=_sensors(item.get("sensors")),
            mileage_km=_number(item, "mileage_km", 0, 1e8),
        )
    except DecodeError as exc:
        exc.index = index
        return exc


def decode_batch(
    vehicle_id: str,
    payload: bytes,
    item_decoder: Callable[..., Fix | DecodeError],
    *,
    now: float,
    limits: DecodeLimits,
) -> list[Fix | DecodeError]:
    """Shared framing: payload -> JSON -> one object or a bounded array."""
    try:
        doc = parse_json(payload, limits)
    except DecodeError as exc:
        return [exc]
    if isinstance(doc, dict):
        return [item_decoder(vehicle_id, doc, now=now, limits=limits)]
    if not isinstance(doc, list):
        return [DecodeError("not_object", "payload is neither an object nor an array")]
    if not doc:
        return [DecodeError("empty_batch", "empty array")]
    if len(doc) > limits.max_batch_items:
        return [DecodeError("batch_too_large", f"{len(doc)} items > {limits.max_batch_items}")]
    return [item_decoder(vehicle_id, item, now=now, limits=limits, index=i) for i, item in enumerate(doc)]


def decode_native(vehicle_id: str, payload: bytes, *, now: float, limits: DecodeLimits) -> list[Fix | DecodeError]:
    """Decode a native payload published on ``{prefix}/{vehicle_id}/fix``."""
    if not VEHICLE_ID_RE.match(vehicle_id):
        return [DecodeError("bad_vehicle_id", "topic vehicle id is empty or malformed")]
    return decode_batch(vehicle_id, payload, decode_item, now=now, limits=limits)
