"""The native decoder: captured-style payloads in, Fix or a reason out."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from gpsd_server.core.decode.common import parse_ts
from gpsd_server.core.decode.native import decode_native
from gpsd_server.errors import DecodeError
from gpsd_server.model import Fix, FixFlag, Sensors
from gpsd_server.settings import IngestSettings

NOW = 1795822000.0  # 2026-11-27T23:26:40Z
LIMITS = IngestSettings()


def one(payload: object, vehicle: str = "MT-001") -> Fix | DecodeError:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    [item] = decode_native(vehicle, raw, now=NOW, limits=LIMITS)
    return item


def reason(payload: object, vehicle: str = "MT-001") -> str:
    item = one(payload, vehicle)
    assert isinstance(item, DecodeError), item
    return item.reason


def test_full_payload() -> None:
    fix = one(
        {
            "ts": "2026-11-28T07:26:00+08:00",
            "lon": 112.35,
            "lat": 28.57,
            "speed_kmh": 36.5,
            "heading": 271,
            "alt_m": 45.0,
            "sats": 12,
            "hdop": 0.9,
            "ignition": True,
            "alarm": 256,
            "status": 3,
            "sensors": {"cover_closed": False, "loaded": True, "lift": False, "drum": "ccw"},
            "vehicle_id": "MT-001",
        }
    )
    assert isinstance(fix, Fix)
    assert fix.ts == NOW - 40
    assert (fix.lon, fix.lat, fix.speed_kmh, fix.heading, fix.sats, fix.alarm, fix.status) == (
        112.35, 28.57, 36.5, 271.0, 12, 256, 3,
    )  # fmt: skip
    assert fix.sensors == Sensors(cover_closed=False, loaded=True, lift=False, drum="ccw")
    assert fix.received_at == NOW and fix.source == "native" and fix.flags == 0


def test_time_forms() -> None:
    assert parse_ts(1795822000) == 1795822000.0
    assert parse_ts(1795822000123) == 1795822000.123
    assert parse_ts("2026-11-27T23:26:40Z") == NOW
    assert parse_ts("2026-11-28T07:26:40.5+08:00") == NOW + 0.5


def test_every_reason() -> None:
    ok = {"ts": NOW, "lon": 112.3, "lat": 28.5}
    assert reason(b"{oops") == "not_json"
    assert reason(b'"a string"') == "not_object"
    assert reason(b"[]") == "empty_batch"
    assert reason([ok] * 1001) == "batch_too_large"
    assert reason(b"x" * (LIMITS.max_payload_bytes + 1)) == "oversize"
    assert reason(ok, vehicle="bad/id") == "bad_vehicle_id"
    assert reason(ok, vehicle="") == "bad_vehicle_id"
    assert reason(ok, vehicle="X\n") == "bad_vehicle_id"  # "$" matched before the newline (MQTT audit)
    assert reason({**ok, "vehicle_id": "X"}) == "vehicle_mismatch"
    assert reason({"lon": 1, "lat": 1}) == "ts_missing"
    assert reason({**ok, "ts": "27/11/2026"}) == "ts_invalid"
    assert reason({**ok, "ts": "2026-11-27T10:00:00"}) == "ts_invalid"  # no offset
    assert reason({**ok, "ts": True}) == "ts_invalid"
    assert reason({**ok, "ts": NOW + 301}) == "ts_future"
    assert reason({**ok, "ts": NOW - 31 * 86400}) == "ts_too_old"
    assert reason({"ts": NOW, "lon": 112.3}) == "position_missing"
    assert reason({**ok, "lat": 90.5}) == "position_invalid"
    assert reason({**ok, "lon": -181}) == "position_invalid"
    assert reason(f'{{"ts": {NOW}, "lon": NaN, "lat": 1}}'.encode()) == "position_invalid"
    assert reason(f'{{"ts": {NOW}, "lon": 1e999, "lat": 1}}'.encode()) == "position_invalid"
    assert reason({**ok, "lon": 0, "lat": 0}) == "position_zero"
    assert reason({**ok, "lon": "112.3"}) == "wrong_type"
    for field, value in (
        ("speed_kmh", "fast"), ("speed_kmh", -1), ("heading", 400), ("sats", 2.5), ("ignition", 1),
        ("alarm", -1), ("status", 2**32), ("sensors", []), ("sensors", {"drum": "left"}),
        ("sensors", {"loaded": "yes"}),
    ):  # fmt: skip
        item = one({**ok, field: value})
        assert isinstance(item, DecodeError) and item.reason == "wrong_type", (field, value)
        assert field in item.detail


def test_alarm_words_without_a_position_are_a_nofix_fix_not_a_rejection() -> None:
    for item in (
        {"ts": NOW, "lon": 0, "lat": 0, "alarm": 1},
        {"ts": NOW, "alarm": 1},
        {"ts": NOW, "lon": 0, "lat": 0, "status": 0},
        {"ts": NOW, "lon": 200, "lat": 0, "alarm": 1, "status": 2},
    ):
        fix = one(item)
        assert isinstance(fix, Fix) and fix.flags & FixFlag.NOFIX, item
    assert one({"ts": NOW, "lon": "x", "lat": 1, "alarm": 1}).reason == "wrong_type"  # type: ignore[union-attr]


def test_batch_keeps_good_items_and_indexes_bad_ones() -> None:
    items = [
        {"ts": NOW - 3, "lon": 112.3, "lat": 28.5},
        {"ts": NOW - 2, "lon": 0, "lat": 0},
        "junk",
        {"ts": NOW, "lon": 112.31, "lat": 28.51},
    ]
    out = decode_native("V", json.dumps(items).encode(), now=NOW, limits=LIMITS)
    assert [type(x).__name__ for x in out] == ["Fix", "DecodeError", "DecodeError", "Fix"]
    assert [(x.reason, x.index) for x in out if isinstance(x, DecodeError)] == [("position_zero", 1), ("not_object", 2)]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=6),
    max_leaves=20,
)
fix_like = st.fixed_dictionaries(
    {"ts": st.one_of(st.floats(), st.integers(), st.text(max_size=30)), "lon": json_values, "lat": json_values},
    optional={k: json_values for k in ("speed_kmh", "heading", "sats", "ignition", "sensors", "alarm", "vehicle_id")},
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(fix_like, st.lists(fix_like, max_size=4), json_values))
def test_decoder_never_raises_and_always_gives_a_reason(doc: object) -> None:
    raw = json.dumps(doc, allow_nan=True).encode()
    for item in decode_native("V1", raw, now=NOW, limits=LIMITS):
        if isinstance(item, DecodeError):
            assert item.reason and item.reason.islower()
        else:
            assert math.isfinite(item.lon) and math.isfinite(item.lat) and item.ts <= NOW + 300


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    out = decode_native("V1", raw, now=NOW, limits=LIMITS)
    assert out and all(isinstance(x, (Fix, DecodeError)) for x in out)


def _plain(out: list[Fix | DecodeError]) -> list[object]:
    return [x if isinstance(x, Fix) else (x.reason, x.detail, x.index) for x in out]


def _edge(lo: float, hi: float) -> st.SearchStrategy[object]:
    """Values in range, on its edges, just outside, and of the wrong JSON type."""
    return st.one_of(
        st.floats(lo, hi),
        st.integers(int(lo), int(hi)),
        st.sampled_from([lo, hi, lo - 1, hi + 1, 2.5, 5.0, True, "1", None]),
    )


near_valid = st.fixed_dictionaries(
    {
        "ts": st.one_of(
            st.floats(NOW - 40 * 86400, NOW + 400),
            st.integers(int(NOW - 40 * 86400), int(NOW + 400)),
            st.sampled_from(["2026-11-27T23:26:40Z", "2026-11-28T07:26:40.5+08:00", "2026-11-27T23:26:40", True]),
        ),
        "lon": _edge(-181, 181),
        "lat": _edge(-91, 91),
    },
    optional={
        "speed_kmh": _edge(0, 400),
        "heading": _edge(0, 360),
        "alt_m": _edge(-1000, 10000),
        "sats": _edge(0, 255),
        "hdop": _edge(0, 100),
        "mileage_km": _edge(0, 1e8),
        "alarm": _edge(0, 0xFFFFFFFF),
        "status": _edge(0, 0xFFFFFFFF),
        "ignition": st.sampled_from([True, False, None, 1, "true"]),
        "vehicle_id": st.sampled_from(["V1", "V2", None, 7]),
        "sensors": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {},
                optional={
                    "cover_closed": st.sampled_from([True, False, None, 0]),
                    "loaded": st.booleans(),
                    "drum": st.sampled_from(["cw", "ccw", "stopped", "left", None]),
                },
            ),
            st.just([]),
        ),
    },
)


@settings(max_examples=600, deadline=None)
@given(st.one_of(near_valid, st.lists(near_valid, max_size=4)))
def test_fast_path_and_general_path_agree(doc: object) -> None:
    from gpsd_server.core.decode.native import decode_general

    raw = json.dumps(doc).encode()
    assert _plain(decode_native("V1", raw, now=NOW, limits=LIMITS)) == _plain(
        decode_general("V1", raw, now=NOW, limits=LIMITS)
    )


def test_fast_path_takes_the_common_payloads() -> None:
    from gpsd_server.core.decode.native import _decode_typed

    common = [
        {"ts": NOW - 5, "lon": 112.35, "lat": 28.57, "speed_kmh": 36, "heading": 90, "sats": 9, "ignition": True},
        [{"ts": "2026-11-27T23:26:00Z", "lon": 112.35, "lat": 28.57, "alarm": 0, "sensors": {"loaded": True}}] * 3,
    ]
    for doc in common:
        assert _decode_typed("V1", json.dumps(doc).encode(), NOW, LIMITS) is not None, doc


def test_only_utf8_json() -> None:
    """UTF-16 and UTF-32 are refused (json.loads on bytes would guess them);
    a UTF-8 byte-order mark is tolerated."""
    body = json.dumps({"ts": NOW, "lon": 112.3, "lat": 28.5})
    for encoding in ("utf-16", "utf-16-le", "utf-32", "utf-32-be"):
        assert reason(body.encode(encoding)) == "not_json", encoding
    fix = one(b"\xef\xbb\xbf" + body.encode())
    assert isinstance(fix, Fix) and fix.lon == 112.3
