"""Fix records -> bytes on the wire: native JSON, OwnTracks, EMQX JT/T 808 gateway JSON.

Also the GPS noise (independent Gaussian east and north errors of σ metres)
and the malformed payloads used to exercise the server's rejection paths.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .clock import TZ, rfc3339

STATUS_ACC, STATUS_FIXED, STATUS_LOADED = 1 << 0, 1 << 1, 3 << 8
STATUS_GPS, STATUS_BEIDOU = 1 << 18, 1 << 19
ALARM_POWER_CUT = 1 << 8


@dataclass
class FixRecord:
    vehicle_id: str
    ts: float
    lon: float
    lat: float
    speed_kmh: float
    heading: float
    alt_m: float
    sats: int
    hdop: float
    ignition: bool
    alarm: int
    status: int
    sensors: dict[str, Any] | None


def status_word(ignition: bool, loaded: bool | None) -> int:
    word = STATUS_FIXED | STATUS_GPS | STATUS_BEIDOU
    if ignition:
        word |= STATUS_ACC
    if loaded:
        word |= STATUS_LOADED
    return word


def native(fix: FixRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": rfc3339(fix.ts),
        "lon": round(fix.lon, 6),
        "lat": round(fix.lat, 6),
        "speed_kmh": round(fix.speed_kmh, 1),
        "heading": round(fix.heading) % 360,
        "alt_m": round(fix.alt_m, 1),
        "sats": fix.sats,
        "hdop": round(fix.hdop, 1),
        "ignition": fix.ignition,
        "alarm": fix.alarm,
        "status": fix.status,
    }
    if fix.sensors:
        out["sensors"] = fix.sensors
    return out


def encode(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def owntracks(fix: FixRecord, user_device: str) -> dict[str, Any]:
    return {
        "_type": "location",
        "lat": round(fix.lat, 6),
        "lon": round(fix.lon, 6),
        "tst": int(fix.ts),
        "vel": round(fix.speed_kmh),
        "cog": round(fix.heading) % 360,
        "alt": round(fix.alt_m),
        "acc": 10,
        "tid": user_device.split("/")[0][-2:].upper(),
    }


def jt808(fix: FixRecord, phone: str, serial: int) -> dict[str, Any]:
    """A 0x0200 location report as the EMQX JT/T 808 gateway publishes it (see domain/JT808.md)."""
    return {
        "header": {"msg_id": 512, "encrypt": 0, "phone": phone, "msg_sn": serial % 65536},
        "body": {
            "alarm": fix.alarm,
            "status": fix.status,
            "latitude": round(fix.lat * 1e6),
            "longitude": round(fix.lon * 1e6),
            "altitude": round(fix.alt_m),
            "speed": round(fix.speed_kmh * 10),
            "direction": round(fix.heading) % 360,
            "time": datetime.fromtimestamp(fix.ts, TZ).strftime("%y%m%d%H%M%S"),
            "extra": {"gnss_sat_num": fix.sats},
        },
    }


# Malformed payloads and the rejection reason the server's decoder should give.
MALFORMED: tuple[tuple[str, Any], ...] = (
    ("not_json", lambda d: encode(d)[:-7]),
    ("ts_missing", lambda d: encode({k: v for k, v in d.items() if k != "ts"})),
    ("position_invalid", lambda d: encode({**d, "lat": 128.57})),
    ("wrong_type", lambda d: encode({**d, "speed_kmh": "fast"})),
)


def malformed(index: int, fix: FixRecord) -> tuple[str, bytes]:
    reason, make = MALFORMED[index % len(MALFORMED)]
    return reason, make(native(fix))
