"""EMQX JT/T 808 gateway JSON -> fixes.

Payloads are written as EMQX's emqx_jt808 publishes them on
``jt808/{clientid}/{phone}/up``: lower-case keys, the phone as a BCD digit
string, integers for BYTE/WORD/DWORD, the time as a BCD string.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gpsd_server.core.decode.jt808 import decode_jt808, normalize_phone, terminal_registry
from gpsd_server.errors import DecodeError
from gpsd_server.model import Fix, FixFlag
from gpsd_server.settings import IngestSettings

LIMITS = IngestSettings()
NOW = 1714950500.0  # 2024-05-05 23:08:20 UTC, 11 s after the fix below
TERMINALS = {"13800138000": "粤B12345"}
PHONE = "013800138000"

# A muck truck in Shenzhen, ACC on, positioned, loaded full, SOS alarm.
LOCATION_BODY: dict[str, Any] = {
    "alarm": 1,
    "status": 0b11_0000_0011,
    "latitude": 22543100,
    "longitude": 114057900,
    "altitude": 12,
    "speed": 356,
    "direction": 90,
    "time": "240506070809",
    "extra": {"mileage": 123456, "gnss_sat_num": 12, "rssi": 31},
}


def envelope(msg_id: int, body: Any, phone: str = PHONE, **header: Any) -> bytes:
    head = {"msg_id": msg_id, "encrypt": 0, "len": 40, "phone": phone, "msg_sn": 7} | header
    return json.dumps({"header": head, "body": body}, ensure_ascii=False).encode()


def decode(payload: bytes, phone: str = PHONE, **kwargs: Any) -> list[Fix | DecodeError]:
    return decode_jt808(phone, payload, now=NOW, limits=LIMITS, terminals=TERMINALS, **kwargs)


def one_fix(payload: bytes, **kwargs: Any) -> Fix:
    [fix] = decode(payload, **kwargs)
    assert isinstance(fix, Fix), fix
    return fix


def reasons(results: list[Fix | DecodeError]) -> list[str]:
    return [r.reason if isinstance(r, DecodeError) else "fix" for r in results]


def test_location_report_0x0200() -> None:
    fix = one_fix(envelope(512, LOCATION_BODY))
    assert fix == Fix(
        vehicle_id="粤B12345",
        ts=1714950489.0,  # 2024-05-06 07:08:09 Beijing time
        lon=114.0579,
        lat=22.5431,
        received_at=NOW,
        speed_kmh=35.6,
        heading=90.0,
        alt_m=12.0,
        sats=12,
        ignition=True,
        alarm=1,
        status=0b11_0000_0011,
        sensors=fix.sensors,
        mileage_km=12345.6,
        source="jt808",
        flags=0,
    )
    assert fix.sensors is not None and fix.sensors.loaded is True


def test_2019_header_with_20_digit_phone() -> None:
    payload = envelope(512, LOCATION_BODY, phone="00000000013800138000", proto_ver=1)
    assert one_fix(payload, phone="00000000013800138000").vehicle_id == "粤B12345"


def test_status_bits_south_west_not_positioned_acc_off_empty() -> None:
    body = LOCATION_BODY | {"status": 0b1100}  # south, west; bit 1 clear; load 00
    fix = one_fix(envelope(512, body))
    assert (fix.lat, fix.lon) == (-22.5431, -114.0579)
    assert fix.flags & FixFlag.INVALID
    assert fix.ignition is False
    assert fix.sensors is not None and fix.sensors.loaded is False


def test_alarm_bits_pass_through() -> None:
    power_cut_antenna = (1 << 8) | (1 << 5) | (1 << 7)
    assert one_fix(envelope(512, LOCATION_BODY | {"alarm": power_cut_antenna})).alarm == power_cut_antenna


def test_half_load_is_loaded_and_reserved_is_unknown() -> None:
    half = one_fix(envelope(512, LOCATION_BODY | {"status": 0b01_0000_0011}))
    reserved = one_fix(envelope(512, LOCATION_BODY | {"status": 0b10_0000_0011}))
    assert half.sensors is not None and half.sensors.loaded is True
    assert reserved.sensors is not None and reserved.sensors.loaded is None


def test_phone_as_a_number_like_the_emqx_guide_examples() -> None:
    assert one_fix(envelope(512, LOCATION_BODY, phone=13800138000)).vehicle_id == "粤B12345"  # type: ignore[arg-type]


def test_minimal_body_without_extra() -> None:
    body = {k: v for k, v in LOCATION_BODY.items() if k != "extra"}
    fix = one_fix(envelope(512, body))
    assert (fix.sats, fix.mileage_km) == (None, None)


def test_batch_0x0704_backfill_flags_every_fix() -> None:
    older = LOCATION_BODY | {"time": "240506060000"}
    payload = envelope(1796, {"type": 1, "length": 2, "location": [older, LOCATION_BODY]})
    results = decode(payload)
    assert all(isinstance(r, Fix) and r.flags & FixFlag.BACKFILL for r in results)
    assert [r.ts for r in results if isinstance(r, Fix)] == [1714946400.0, 1714950489.0]


def test_batch_0x0704_normal_type_and_a_bad_item_keeps_the_others() -> None:
    bad = LOCATION_BODY | {"time": "241306070809"}
    payload = envelope(1796, {"type": 0, "length": 3, "location": [LOCATION_BODY, bad, "x"]})
    results = decode(payload)
    assert reasons(results) == ["fix", "ts_invalid", "not_object"]
    assert [r.index for r in results if isinstance(r, DecodeError)] == [1, 2]
    first = results[0]
    assert isinstance(first, Fix) and not first.flags & FixFlag.BACKFILL


def test_batch_limits() -> None:
    assert reasons(decode(envelope(1796, {"type": 1, "length": 0, "location": []}))) == ["empty_batch"]
    big = envelope(1796, {"type": 1, "location": [LOCATION_BODY] * 3})
    limits = IngestSettings(max_batch_items=2)
    results = decode_jt808(PHONE, big, now=NOW, limits=limits, terminals=TERMINALS)
    assert reasons(results) == ["batch_too_large"]
    assert reasons(decode(envelope(1796, {"type": 1, "location": {}}))) == ["wrong_type"]


@pytest.mark.parametrize(
    ("msg_id", "body"),
    [
        (2, {}),  # heartbeat
        (
            256,
            {
                "province": 44,
                "city": 300,
                "manufacturer": "GPSD",
                "model": "X",
                "dev_id": "1",
                "color": 2,
                "license_number": "粤B12345",
            },
        ),
        (258, {"code": "gpsd-808"}),  # authenticate
        (3, {}),  # deregister
        (1, {"seq": 1, "id": 33027, "result": 0}),  # terminal general response
        (2304, {"type": 1, "data": "AQI="}),  # transparent data
    ],
)
def test_messages_without_a_position_are_ignored_not_rejected(msg_id: int, body: Any) -> None:
    assert decode(envelope(msg_id, body)) == []
    assert decode(envelope(msg_id, body), phone="19999999999") == []  # even from unknown terminals


def test_unknown_terminal_and_auto_register() -> None:
    other = "013900000000"
    assert reasons(decode(envelope(512, LOCATION_BODY, phone=other), phone=other)) == ["unknown_terminal"]
    fix = one_fix(envelope(512, LOCATION_BODY, phone=other), phone=other, auto_register=True)
    assert fix.vehicle_id == "T13900000000"


def test_registry_keys_with_padding_also_match() -> None:
    results = decode_jt808(PHONE, envelope(512, LOCATION_BODY), now=NOW, limits=LIMITS, terminals={PHONE: "V1"})
    assert isinstance(results[0], Fix) and results[0].vehicle_id == "V1"


def test_registry_written_with_12_digits_matches_a_2019_terminal() -> None:
    registry = terminal_registry([("013005591696", "MT-002")])
    phone = "00000000013005591696"
    results = decode_jt808(phone, envelope(512, LOCATION_BODY, phone=phone), now=NOW, limits=LIMITS, terminals=registry)
    assert isinstance(results[0], Fix) and results[0].vehicle_id == "MT-002"


def test_header_phone_must_match_the_topic() -> None:
    assert reasons(decode(envelope(512, LOCATION_BODY, phone="013900000000"))) == ["vehicle_mismatch"]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff{", "not_json"),
        (b"[1, 2]", "not_object"),
        (b'{"body": {}}', "wrong_type"),
        (b'{"header": {"msg_id": "512"}, "body": {}}', "wrong_type"),
        (envelope(512, None), "wrong_type"),
        (envelope(512, LOCATION_BODY | {"time": None}), "ts_missing"),
        (envelope(512, LOCATION_BODY | {"time": 240506070809}), "ts_invalid"),
        (envelope(512, LOCATION_BODY | {"time": "241306070809"}), "ts_invalid"),
        # Digits to str.isdigit but not BCD: int() raised on the superscript and the
        # server died at every redelivery; the fullwidth ones passed as a time.
        (envelope(512, LOCATION_BODY | {"time": "24050607080\u00b2"}), "ts_invalid"),
        (envelope(512, LOCATION_BODY | {"time": "２４０５０６０７０８０９"}), "ts_invalid"),  # fullwidth
        (envelope(512, LOCATION_BODY | {"time": "٢٤٠٥٠٦٠٧٠٨٠٩"}), "ts_invalid"),  # Arabic-Indic
        (envelope(512, LOCATION_BODY | {"time": "240506072000"}), "ts_future"),
        (envelope(512, LOCATION_BODY | {"time": "240301000000"}), "ts_too_old"),
        (envelope(512, {k: v for k, v in LOCATION_BODY.items() if k != "latitude"}), "position_missing"),
        (envelope(512, LOCATION_BODY | {"speed": -1}), "wrong_type"),
        (envelope(512, LOCATION_BODY | {"alarm": "1"}), "wrong_type"),
        (envelope(512, LOCATION_BODY | {"extra": []}), "wrong_type"),
        (envelope(512, LOCATION_BODY | {"extra": {"mileage": 1.5}}), "wrong_type"),
    ],
)
def test_rejections(payload: bytes, reason: str) -> None:
    assert reasons(decode(payload)) == [reason]


@pytest.mark.parametrize(
    "body",
    [
        LOCATION_BODY | {"latitude": 0, "longitude": 0, "status": 0, "alarm": 1},  # no fix, positioning bit clear
        LOCATION_BODY | {"latitude": 91_000_000, "alarm": 1},  # impossible coordinates
    ],
)
def test_a_report_without_a_fix_keeps_its_alarm_words_as_a_nofix_fix(body: dict[str, Any]) -> None:
    fix = one_fix(envelope(512, body))
    assert fix.flags & FixFlag.NOFIX and fix.alarm == 1


def test_oversize_payload() -> None:
    limits = IngestSettings(max_payload_bytes=100)
    results = decode_jt808(PHONE, envelope(512, LOCATION_BODY), now=NOW, limits=limits, terminals=TERMINALS)
    assert reasons(results) == ["oversize"]


def test_direction_360_is_north_and_altitude_below_sea_level() -> None:
    fix = one_fix(envelope(512, LOCATION_BODY | {"direction": 360, "altitude": 0x10000 - 5}))
    assert (fix.heading, fix.alt_m) == (0.0, -5.0)

    assert normalize_phone("00000000013800138000") == "13800138000"
    assert normalize_phone("000") == "0"


def test_non_bcd_phone_becomes_a_stable_safe_vehicle_id() -> None:
    # EMQX writes the nibbles A-F of a binary IMEI as ":;<=>?"; our gateway too.
    assert normalize_phone("4>;6?;4:=628") == normalize_phone("4eb6fb4ad628") == "4EB6FB4AD628"
    [fix] = decode_jt808(
        "4>;6?;4:=628", envelope(512, LOCATION_BODY, phone="4>;6?;4:=628"), now=NOW, limits=LIMITS,
        terminals={}, auto_register=True,
    )  # fmt: skip
    assert isinstance(fix, Fix) and fix.vehicle_id == "T4EB6FB4AD628"
    registered = terminal_registry([("4EB6FB4AD628", "MT-9")])
    [fix] = decode_jt808("4>;6?;4:=628", envelope(512, LOCATION_BODY, phone="4>;6?;4:=628"), now=NOW,
                         limits=LIMITS, terminals=registered)  # fmt: skip
    assert isinstance(fix, Fix) and fix.vehicle_id == "MT-9"


def test_a_phone_with_other_characters_is_refused() -> None:
    results = decode_jt808("13800/#x", envelope(512, LOCATION_BODY, phone="13800/#x"), now=NOW, limits=LIMITS,
                           terminals={}, auto_register=True)  # fmt: skip
    assert reasons(results) == ["bad_phone"]


def test_position_query_answer_0x0201_and_vehicle_control_answer_0x0500_are_fixes() -> None:
    query = one_fix(envelope(0x0201, {"seq": 3, "params": LOCATION_BODY}))
    control = one_fix(envelope(0x0500, {"seq": 4, "location": LOCATION_BODY}))
    assert (query.lat, query.lon) == (control.lat, control.lon) == (22.5431, 114.0579)
    assert reasons(decode(envelope(0x0201, {"seq": 3}))) == ["not_object"]


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("speed", 0xFFFF, "speed_out_of_range"),  # 6,553.5 km/h: "unknown" on some terminals
        ("speed", 4001, "speed_out_of_range"),
        ("altitude", 0x7FFF, "altitude_out_of_range"),
        ("altitude", 0x10000 - 2000, "altitude_out_of_range"),
    ],
)
def test_values_are_range_checked_like_the_native_json(field: str, value: int, reason: str) -> None:
    assert reasons(decode(envelope(512, LOCATION_BODY | {field: value}))) == [reason]


def test_range_limits_themselves_are_accepted() -> None:
    fix = one_fix(envelope(512, LOCATION_BODY | {"speed": 4000, "altitude": 10000}))
    assert (fix.speed_kmh, fix.alt_m) == (400.0, 10000.0)
    far = LOCATION_BODY | {"extra": {"mileage": 0xFFFFFFFF}}
    assert reasons(decode(envelope(512, far))) == ["mileage_out_of_range"]
