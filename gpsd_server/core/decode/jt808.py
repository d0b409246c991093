"""EMQX JT/T 808 gateway JSON -> ``Fix`` values (our TCP gateway emits the same).

Payload on ``jt808/{clientid}/{phone}/up``: ``{"header": {...}, "body": {...}}``.
0x0200 gives one fix, 0x0704 one per item (type 1, blind-area backfill, is
flagged ``BACKFILL``), 0x0201 (the answer to a position query) and 0x0500
(the answer to a vehicle control) one each. Every other message id
(heartbeat, driver id, ...) is a valid message with no position: it decodes
to an empty list, not to a rejection.

Units on the wire: degrees x 10^6 (unsigned, hemisphere in status bits 2/3),
speed 0.1 km/h, time BCD ``YYMMDDhhmmss`` in Beijing time, mileage 0.1 km.
Values are range-checked like the native JSON: a speed above 400 km/h (the
0xFFFF "unknown" of some terminals reads as 6,553.5 km/h) is rejected as
``speed_out_of_range``, an altitude outside -1,000..10,000 m as
``altitude_out_of_range``, a mileage above 10^8 km as ``mileage_out_of_range``.

The terminal phone maps to a vehicle through the terminal registry; phones
are compared in :func:`normalize_phone` form: without leading zeros (the
2013 header pads to 12 digits, the 2019 header to 20), and with the nibbles
A-F of a non-BCD header (which EMQX writes ``:;<=>?``) as the letters A-F,
so a binary IMEI in the header becomes a stable, safe vehicle id. Rejection
reasons are those of ``common`` plus ``unknown_terminal``, ``bad_phone`` (a
topic phone with other characters) and the three range reasons above; a
header phone that disagrees with the topic is ``vehicle_mismatch``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gpsd_server.core.decode.common import check_position, check_ts, parse_json
from gpsd_server.core.jt808 import frame as jt808
from gpsd_server.core.jt808.codec import bcd_time_to_posix
from gpsd_server.core.jt808.frame import normalize_phone as normalize_phone  # used by the gateway and tests
from gpsd_server.core.jt808.frame import valid_phone as valid_phone
from gpsd_server.core.jt808.location import BATCH_BACKFILL
from gpsd_server.errors import DecodeError
from gpsd_server.model import Fix, FixFlag, Sensors
from gpsd_server.settings import IngestSettings

STATUS_ACC = 1 << 0
STATUS_POSITIONED = 1 << 1
STATUS_SOUTH = 1 << 2
STATUS_WEST = 1 << 3
_LOAD_SHIFT = 8  # bits 8-9: 00 empty, 01 half, 11 full, 10 reserved
_LOADED = {0b00: False, 0b01: True, 0b11: True}

AUTO_REGISTER_PREFIX = "T"


MAX_SPEED_KMH = 400.0  # the native JSON path's bound
ALTITUDE_RANGE_M = (-1000.0, 10000.0)
MAX_MILEAGE_KM = 1e8
QUERY_ANSWER = 0x0201
CONTROL_ANSWER = 0x0500


def terminal_registry(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """``(phone, vehicle_id)`` pairs -> the mapping ``decode_jt808`` expects.

    Keys are normalised, so a registry written with 12-digit phones also
    matches 2019 terminals that send 20 digits.
    """
    return {normalize_phone(phone): vehicle for phone, vehicle in pairs}


def resolve_terminal(phone: str, terminals: Mapping[str, str], *, auto_register: bool) -> str | DecodeError:
    """Phone -> vehicle id; the registry is keyed as sent or normalised."""
    if not valid_phone(phone):
        return DecodeError("bad_phone", "terminal phone is not 1-20 BCD/hex digits")
    vehicle = terminals.get(normalize_phone(phone)) or terminals.get(phone)
    if vehicle is not None:
        return vehicle
    if auto_register:
        return AUTO_REGISTER_PREFIX + normalize_phone(phone)
    return DecodeError("unknown_terminal", f"phone {normalize_phone(phone)} is not registered")


def decode_jt808(
    phone: str,
    payload: bytes,
    *,
    now: float,
    limits: IngestSettings,
    terminals: Mapping[str, str],
    auto_register: bool = False,
) -> list[Fix | DecodeError]:
    """Decode one uplink published on ``jt808/{clientid}/{phone}/up``."""
    try:
        doc = parse_json(payload, limits)
        header, body = _envelope(doc)
        msg_id = header["msg_id"]
        if msg_id not in _POSITION_IDS:
            return []
        _check_phone(phone, header)
        if not isinstance(body, dict):
            raise DecodeError("wrong_type", "body must be an object")
        vehicle = resolve_terminal(phone, terminals, auto_register=auto_register)
        if isinstance(vehicle, DecodeError):
            raise vehicle
    except DecodeError as exc:
        return [exc]
    if msg_id == jt808.LOCATION:
        return [decode_location(vehicle, body, now=now, limits=limits)]
    if msg_id == QUERY_ANSWER:
        return [decode_location(vehicle, body.get("params"), now=now, limits=limits)]
    if msg_id == CONTROL_ANSWER:
        return [decode_location(vehicle, body.get("location"), now=now, limits=limits)]
    return _decode_batch(vehicle, body, now=now, limits=limits)


_POSITION_IDS = (jt808.LOCATION, jt808.LOCATION_BATCH, QUERY_ANSWER, CONTROL_ANSWER)


def _envelope(doc: Any) -> tuple[dict[str, Any], Any]:
    if not isinstance(doc, dict):
        raise DecodeError("not_object", "payload is not an object")
    header = doc.get("header")
    if not isinstance(header, dict):
        raise DecodeError("wrong_type", "header must be an object")
    msg_id = header.get("msg_id")
    if isinstance(msg_id, bool) or not isinstance(msg_id, int):
        raise DecodeError("wrong_type", "header.msg_id must be an integer")
    return header, doc.get("body")


def _check_phone(topic_phone: str, header: dict[str, Any]) -> None:
    # EMQX writes the phone as a digit string; its guide's examples show a number.
    body_phone = header.get("phone")
    if body_phone is None:
        return
    if isinstance(body_phone, bool) or not isinstance(body_phone, (str, int)):
        raise DecodeError("wrong_type", "header.phone must be a string")
    if normalize_phone(str(body_phone)) != normalize_phone(topic_phone):
        raise DecodeError("vehicle_mismatch", "header phone differs from the topic")


def _decode_batch(vehicle: str, body: dict[str, Any], *, now: float, limits: IngestSettings) -> list[Fix | DecodeError]:
    items, kind = body.get("location"), body.get("type", 0)
    if not isinstance(items, list):
        return [DecodeError("wrong_type", "body.location must be an array")]
    if isinstance(kind, bool) or not isinstance(kind, int):
        return [DecodeError("wrong_type", "body.type must be an integer")]
    if not items:
        return [DecodeError("empty_batch", "0x0704 without locations")]
    if len(items) > limits.max_batch_items:
        return [DecodeError("batch_too_large", f"{len(items)} items > {limits.max_batch_items}")]
    flags = FixFlag.BACKFILL if kind == BATCH_BACKFILL else FixFlag.NONE
    return [
        decode_location(vehicle, item, now=now, limits=limits, flags=flags, index=i) for i, item in enumerate(items)
    ]


def decode_location(
    vehicle: str,
    body: Any,
    *,
    now: float,
    limits: IngestSettings,
    flags: int = 0,
    index: int | None = None,
) -> Fix | DecodeError:
    """One 0x0200 body (EMQX JSON) -> a ``Fix`` or the reason it was rejected."""
    try:
        if not isinstance(body, dict):
            raise DecodeError("not_object", "location is not an object")
        ts = _fix_time(body.get("time"))
        check_ts(ts, now, limits)
        status = _word(body, "status", 0xFFFFFFFF) or 0
        try:
            lon, lat = _position(body, status)
            if not status & STATUS_POSITIONED:
                flags |= FixFlag.INVALID
        except DecodeError as exc:
            # No fix at all (zero or impossible coordinates): a location report
            # always carries the alarm and status words, which still count.
            if exc.reason not in ("position_zero", "position_invalid"):
                raise
            lon, lat, flags = 0.0, 0.0, flags | FixFlag.NOFIX
        extra = body.get("extra")
        extra = {} if extra is None else extra
        if not isinstance(extra, dict):
            raise DecodeError("wrong_type", "extra must be an object")
        speed, mileage = _word(body, "speed", 0xFFFF), _word(extra, "mileage", 0xFFFFFFFF)
        speed_kmh = None if speed is None else speed / 10.0
        if speed_kmh is not None and speed_kmh > MAX_SPEED_KMH:
            raise DecodeError("speed_out_of_range", f"speed {speed_kmh:g} km/h > {MAX_SPEED_KMH:g}")
        alt_m = _altitude(_word(body, "altitude", 0xFFFF))
        if alt_m is not None and not ALTITUDE_RANGE_M[0] <= alt_m <= ALTITUDE_RANGE_M[1]:
            raise DecodeError("altitude_out_of_range", f"altitude {alt_m:g} m outside {ALTITUDE_RANGE_M}")
        mileage_km = None if mileage is None else mileage / 10.0
        if mileage_km is not None and mileage_km > MAX_MILEAGE_KM:
            raise DecodeError("mileage_out_of_range", f"mileage {mileage_km:g} km > {MAX_MILEAGE_KM:g}")
        return Fix(
            vehicle_id=vehicle,
            ts=ts,
            lon=lon,
            lat=lat,
            received_at=now,
            speed_kmh=speed_kmh,
            heading=_heading(_word(body, "direction", 0xFFFF)),
            alt_m=alt_m,
            sats=_word(extra, "gnss_sat_num", 0xFF),
            ignition=bool(status & STATUS_ACC),
            alarm=_word(body, "alarm", 0xFFFFFFFF) or 0,
            status=status,
            sensors=Sensors(loaded=_LOADED.get(status >> _LOAD_SHIFT & 0b11)),
            mileage_km=mileage_km,
            source="jt808",
            flags=flags,
        )
    except DecodeError as exc:
        exc.index = index
        return exc


def _fix_time(value: Any) -> float:
    if value is None:
        raise DecodeError("ts_missing", "no time")
    if not isinstance(value, str):
        raise DecodeError("ts_invalid", "time must be a BCD string")
    ts = bcd_time_to_posix(value)
    if ts is None:
        raise DecodeError("ts_invalid", "time is not YYMMDDhhmmss")
    return ts


def _position(body: dict[str, Any], status: int) -> tuple[float, float]:
    lat, lon = _word(body, "latitude", 0xFFFFFFFF), _word(body, "longitude", 0xFFFFFFFF)
    if lat is None or lon is None:
        raise DecodeError("position_missing", "latitude and longitude are required")
    lat_deg = lat / 1e6 * (-1 if status & STATUS_SOUTH else 1)
    lon_deg = lon / 1e6 * (-1 if status & STATUS_WEST else 1)
    return check_position(lon_deg, lat_deg)


def _word(obj: dict[str, Any], name: str, maximum: int) -> int | None:
    """An unsigned integer field (BYTE, WORD or DWORD), or ``None`` if absent."""
    value = obj.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise DecodeError("wrong_type", f"{name} must be an integer in [0, {maximum}]")
    return value


def _heading(direction: int | None) -> float | None:
    # Some terminals send 360 for north; anything else past 359 means "unknown".
    if direction is None or direction > 360:
        return None
    return float(direction % 360)


def _altitude(word: int | None) -> float | None:
    # The standard says WORD; terminals below sea level send two's complement.
    if word is None:
        return None
    return float(word - 0x10000 if word >= 0x8000 else word)
