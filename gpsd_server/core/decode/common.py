"""What every decoder shares: input limits, JSON parsing that never raises
anything but ``DecodeError``, time and position checks, batch framing.

Rejection reasons (stable codes, counted and sent to the dead-letter topic):

==================  =====================================================
oversize            payload larger than ``max_payload_bytes``
not_json            not parseable as JSON, or not UTF-8
not_object          JSON that is neither an object nor an array; or a
                    batch item that is not an object
empty_batch         an empty array
batch_too_large     more than ``max_batch_items`` items
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
from datetime import datetime
from typing import Any

import msgspec

from gpsd_server.errors import DecodeError
from gpsd_server.model import Fix
from gpsd_server.settings import IngestSettings

VEHICLE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}\Z")  # \Z: "$" also matches before a final newline
_json_decoder = msgspec.json.Decoder()

# Epoch numbers above this are milliseconds (year 2286 in seconds).
_EPOCH_MS_THRESHOLD = 1e10


def parse_json(payload: bytes, limits: IngestSettings) -> Any:
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


# Only from the first digit of a run: searched from every digit, a run of 299
# cost 299 steps per position (a 256 KiB payload of them 61 ms, 2026-12-06).
_HUGE_INT = re.compile(rb"(?<![0-9])[0-9]{300}")


def _int_or_float(text: str) -> int | float:
    return float(text) if len(text) >= 300 else int(text)


def _lenient(payload: bytes, why: str) -> Any:
    # UTF-8 only (a BOM tolerated): json.loads on bytes would also guess UTF-16 and UTF-32.
    try:
        return json.loads(payload.decode("utf-8-sig"), parse_int=_int_or_float)
    except UnicodeDecodeError:
        raise DecodeError("not_json", "not UTF-8") from None
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


def check_ts(ts: float, now: float, limits: IngestSettings) -> None:
    if ts > now + limits.max_future_s:
        raise DecodeError("ts_future", f"{ts - now:.0f} s ahead")
    if ts < now - limits.max_age_days * 86400.0:
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


def decode_batch(
    vehicle_id: str,
    payload: bytes,
    item_decoder: Callable[..., Fix | DecodeError],
    *,
    now: float,
    limits: IngestSettings,
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
