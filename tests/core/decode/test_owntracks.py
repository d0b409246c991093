"""OwnTracks payloads -> fixes. Payloads as the Android/iOS apps publish them
in MQTT mode on ``owntracks/{user}/{device}``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gpsd_server.core.decode.owntracks import decode_owntracks
from gpsd_server.errors import DecodeError
from gpsd_server.model import Fix, FixFlag
from gpsd_server.settings import IngestSettings

LIMITS = IngestSettings()
NOW = 1714950500.0
DEVICES = {"zhang.wei/pixel7": "patrol-07"}

# From the Android app (MQTT mode), a patrol officer on foot/bike.
ANDROID_LOCATION: dict[str, Any] = {
    "_type": "location",
    "acc": 8,
    "alt": 24,
    "batt": 76,
    "bs": 1,
    "cog": 270,
    "conn": "m",
    "created_at": 1714950495,
    "lat": 22.543099,
    "lon": 114.057868,
    "m": 1,
    "t": "u",
    "tid": "zw",
    "tst": 1714950490,
    "vac": 3,
    "vel": 12,
}


def decode(doc: Any, device: str = "zhang.wei/pixel7", **kwargs: Any) -> list[Fix | DecodeError]:
    payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return decode_owntracks(device, payload, now=NOW, limits=LIMITS, devices=DEVICES, **kwargs)


def reasons(results: list[Fix | DecodeError]) -> list[str]:
    return [r.reason if isinstance(r, DecodeError) else "fix" for r in results]


def test_location() -> None:
    [fix] = decode(ANDROID_LOCATION)
    assert fix == Fix(
        vehicle_id="patrol-07",
        ts=1714950490.0,
        lon=114.057868,
        lat=22.543099,
        received_at=NOW,
        speed_kmh=12.0,
        heading=270.0,
        alt_m=24.0,
        source="owntracks",
    )


def test_minimal_ios_location_without_optional_fields() -> None:
    [fix] = decode({"_type": "location", "lat": 22.5, "lon": 114.0, "tst": 1714950400, "tid": "z7"})
    assert isinstance(fix, Fix)
    assert (fix.speed_kmh, fix.heading, fix.alt_m) == (None, None, None)


def test_ios_minus_one_means_unknown_speed_and_course() -> None:
    [fix] = decode(ANDROID_LOCATION | {"vel": -1, "cog": -1})
    assert isinstance(fix, Fix) and (fix.speed_kmh, fix.heading) == (None, None)


def test_coarse_network_position_is_flagged_invalid() -> None:
    [fix] = decode(ANDROID_LOCATION | {"acc": 1500})
    assert isinstance(fix, Fix) and fix.flags & FixFlag.INVALID
    [fine] = decode(ANDROID_LOCATION | {"acc": 1500}, max_accuracy_m=2000)
    assert isinstance(fine, Fix) and not fine.flags & FixFlag.INVALID


@pytest.mark.parametrize(
    "doc",
    [
        {"_type": "lwt", "tst": 1714950400},
        {"_type": "transition", "event": "enter", "desc": "Grid 12", "tst": 1714950400, "lat": 22.5, "lon": 114.0},
        {"_type": "waypoint", "desc": "Station", "lat": 22.5, "lon": 114.0, "rad": 100, "tst": 1714950400},
        {"_type": "status", "android": {"hib": 1}},
        {"_type": "card", "name": "Zhang Wei"},
    ],
)
def test_other_types_are_ignored_not_rejected(doc: dict[str, Any]) -> None:
    assert decode(doc) == []
    assert decode(doc, device="someone/else") == []


def test_unknown_device() -> None:
    assert reasons(decode(ANDROID_LOCATION, device="li.na/iphone")) == ["unknown_terminal"]


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        (b"not json", "not_json"),
        ([ANDROID_LOCATION], "not_object"),
        ({"lat": 22.5, "lon": 114.0, "tst": 1714950400}, "wrong_type"),
        ({"_type": "encrypted", "data": "c2VjcmV0"}, "owntracks_encrypted"),
        ({k: v for k, v in ANDROID_LOCATION.items() if k != "tst"}, "ts_missing"),
        (ANDROID_LOCATION | {"tst": "1714950490"}, "ts_invalid"),
        (ANDROID_LOCATION | {"tst": NOW + 3600}, "ts_future"),
        (ANDROID_LOCATION | {"tst": NOW - 40 * 86400}, "ts_too_old"),
        ({k: v for k, v in ANDROID_LOCATION.items() if k != "lat"}, "position_missing"),
        (ANDROID_LOCATION | {"lat": 95.0}, "position_invalid"),
        (ANDROID_LOCATION | {"lat": 0, "lon": 0}, "position_zero"),
        (ANDROID_LOCATION | {"vel": "12"}, "wrong_type"),
        (ANDROID_LOCATION | {"vel": 1e39}, "wrong_type"),  # stored as an infinite speed before: real columns
        (ANDROID_LOCATION | {"vel": 401}, "wrong_type"),
        (ANDROID_LOCATION | {"alt": -1e39}, "wrong_type"),
        (ANDROID_LOCATION | {"alt": 10001}, "wrong_type"),
        (ANDROID_LOCATION | {"batt": True}, "wrong_type"),
        (ANDROID_LOCATION | {"tid": 7}, "wrong_type"),
    ],
)
def test_rejections(doc: Any, reason: str) -> None:
    assert reasons(decode(doc)) == [reason]
