"""JT/T 808 message bodies in both editions, laid out by hand from the standard."""

from __future__ import annotations

import struct

import pytest

from gpsd_server.core.jt808 import frame as jt808
from gpsd_server.core.jt808 import messages as m
from gpsd_server.core.jt808.frame import Edition, Frame, FrameError, Header

PHONES: dict[Edition, str] = {2013: "013800138000", 2019: "00000000013800138000"}
EDITIONS: tuple[Edition, ...] = (2013, 2019)

# 2024-05-06 07:08:09 Beijing = 2024-05-05 23:08:09 UTC
BCD_TIME = "240506070809"
POSIX_TIME = 1714950489.0


def round_trip(edition: Edition, message: m.Message) -> m.Message | FrameError:
    """Through a whole frame: encode, split from a stream, decode."""
    header = Header(message.msg_id, PHONES[edition], 42, edition)
    [frame] = jt808.FrameSplitter().feed(jt808.encode_frame(header, message.encode(edition)))
    assert isinstance(frame, Frame)
    return m.decode_body(frame.header, frame.body)


def location_body() -> bytes:
    fixed = struct.pack(">IIIIHHH", 0x0000_0001, 0x0000_0303, 22_543_100, 114_057_900, 12, 356, 90)
    extras = b"\x01\x04" + struct.pack(">I", 123_456) + b"\x31\x01\x0c" + b"\x30\x01\x1f"
    return fixed + bytes.fromhex(BCD_TIME) + extras


def test_bcd_time_is_beijing_time() -> None:
    assert m.bcd_time_to_posix(BCD_TIME) == POSIX_TIME
    assert m.posix_to_bcd_time(POSIX_TIME) == BCD_TIME
    for bad in ("241306070809", "240230000000", "240506250000", "2405060708", "24050607080x"):
        assert m.bcd_time_to_posix(bad) is None


@pytest.mark.parametrize("edition", EDITIONS)
def test_heartbeat(edition: Edition) -> None:
    assert m.Heartbeat().encode(edition) == b""
    assert round_trip(edition, m.Heartbeat()) == m.Heartbeat()


def test_register_2013_layout() -> None:
    body = (
        struct.pack(">HH", 44, 300)
        + b"GPSD\x00"  # manufacturer BYTE[5]
        + b"SIM-808".ljust(20, b"\x00")  # model BYTE[20]
        + b"0138000"  # terminal id BYTE[7]
        + b"\x02"  # plate colour
        + "粤B12345".encode("gbk")
    )
    message = m.Register(44, 300, "GPSD", "SIM-808", "0138000", 2, "粤B12345")
    assert message.encode(2013) == body
    assert m.Register.decode(body, 2013) == message
    assert round_trip(2013, message) == message


def test_register_2019_layout_has_wider_fields() -> None:
    body = (
        struct.pack(">HH", 44, 300)
        + b"GPSD".ljust(11, b"\x00")
        + b"SIM-808".ljust(30, b"\x00")
        + b"TERMINAL-0001".ljust(30, b"\x00")
        + b"\x01"
        + "粤B12345".encode("gbk")
    )
    message = m.Register(44, 300, "GPSD", "SIM-808", "TERMINAL-0001", 1, "粤B12345")
    assert message.encode(2019) == body
    assert round_trip(2019, message) == message
    assert message.to_json()["license_number"] == "粤B12345"


def test_register_too_short_is_bad_body() -> None:
    error = m.decode_body(Header(jt808.REGISTER, PHONES[2013], 1), b"\x00\x2c\x01")
    assert isinstance(error, FrameError) and error.reason == "bad_body"


def test_authenticate_2013_is_the_code_alone() -> None:
    assert m.Authenticate("gpsd-808").encode(2013) == b"gpsd-808"
    assert round_trip(2013, m.Authenticate("gpsd-808")) == m.Authenticate("gpsd-808")


def test_authenticate_2019_has_length_imei_and_version() -> None:
    message = m.Authenticate("gpsd-808", imei="860000000000001", software_version="V1.2")
    body = b"\x08gpsd-808" + b"860000000000001" + b"V1.2".ljust(20, b"\x00")
    assert message.encode(2019) == body
    assert round_trip(2019, message) == message
    assert message.to_json() == {
        "code": "gpsd-808",
        "code_len": 8,
        "imei": "860000000000001",
        "sw_version_len": 4,
        "sw_version": "V1.2",
    }
    short = m.decode_body(Header(jt808.AUTHENTICATE, PHONES[2019], 1, 2019), b"\x08gpsd")
    assert isinstance(short, FrameError) and short.reason == "bad_body"


@pytest.mark.parametrize("edition", EDITIONS)
def test_location_with_additional_items(edition: Edition) -> None:
    message = m.Location.decode(location_body())
    assert message is not None
    assert (message.alarm, message.status, message.latitude, message.longitude) == (1, 0x303, 22_543_100, 114_057_900)
    assert (message.altitude, message.speed, message.direction, message.time) == (12, 356, 90, BCD_TIME)
    assert message.encode(edition) == location_body()
    assert round_trip(edition, message) == message
    assert message.to_json() == {
        "alarm": 1,
        "status": 0x303,
        "latitude": 22_543_100,
        "longitude": 114_057_900,
        "altitude": 12,
        "speed": 356,
        "direction": 90,
        "time": BCD_TIME,
        "extra": {"mileage": 123_456, "gnss_sat_num": 12, "rssi": 31},
    }


def test_location_extras_named_like_emqx() -> None:
    extras = (
        (0x02, b"\x01\x00"),
        (0x11, b"\x01" + struct.pack(">I", 7)),
        (0x12, b"\x02" + struct.pack(">I", 9) + b"\x01"),
        (0x13, struct.pack(">IHB", 5, 300, 1)),
        (0x2A, b"\xc0\x00"),
        (0x2B, struct.pack(">HH", 11, 22)),
        (0xE1, b"\xde\xad"),
        (0x77, b"\x01"),
    )
    assert m.extras_to_json(extras) == {
        "fuel_meter": 256,
        "overspeed_alarm": {"type": 1, "id": 7},
        "in_out_alarm": {"type": 2, "id": 9, "direction": 1},
        "path_time_alarm": {"id": 5, "time": 300, "result": 1},
        "io_status": {"deep_sleep": 1, "sleep": 1},
        "analog": {"ad0": 22, "ad1": 11},
        "custome": {"225": "3q0="},
        "119": "AQ==",
    }


def test_location_with_a_broken_extra_keeps_the_position() -> None:
    body = location_body()[:28] + b"\x01\x04\x00"  # mileage item cut short
    message = m.Location.decode(body)
    assert message is not None and message.extras == () and message.latitude == 22_543_100


def test_location_too_short_or_bad_time_is_bad_body() -> None:
    assert m.Location.decode(location_body()[:27]) is None
    bad_time = location_body()[:22] + bytes.fromhex("2405060708ff")
    error = m.decode_body(Header(jt808.LOCATION, PHONES[2013], 1), bad_time)
    assert isinstance(error, FrameError) and error.reason == "bad_body"


@pytest.mark.parametrize("edition", EDITIONS)
def test_location_batch_backfill(edition: Edition) -> None:
    item = location_body()
    body = struct.pack(">HB", 2, 1) + struct.pack(">H", len(item)) + item + struct.pack(">H", len(item)) + item
    message = m.LocationBatch.decode(body)
    assert message is not None and message.kind == m.BATCH_BACKFILL and len(message.items) == 2
    assert message.encode(edition) == body
    assert round_trip(edition, message) == message
    as_json = message.to_json()
    assert (as_json["type"], as_json["length"], len(as_json["location"])) == (1, 2, 2)


def test_location_batch_shorter_than_its_count_is_bad_body() -> None:
    item = location_body()
    body = struct.pack(">HB", 3, 0) + struct.pack(">H", len(item)) + item
    error = m.decode_body(Header(jt808.LOCATION_BATCH, PHONES[2013], 1), body)
    assert isinstance(error, FrameError) and error.reason == "bad_body"


@pytest.mark.parametrize("edition", EDITIONS)
def test_platform_general_response_0x8001(edition: Edition) -> None:
    message = m.PlatformResponse(reply_sn=0x1234, reply_id=0x0200, result=m.RESULT_OK)
    assert message.encode(edition) == bytes.fromhex("1234020000")
    assert round_trip(edition, message) == message


@pytest.mark.parametrize("edition", EDITIONS)
def test_register_response_0x8100(edition: Edition) -> None:
    ok = m.RegisterResponse(reply_sn=3, result=m.RESULT_OK, auth_code="gpsd-808")
    assert ok.encode(edition) == b"\x00\x03\x00gpsd-808"
    assert round_trip(edition, ok) == ok
    refused = m.RegisterResponse(reply_sn=3, result=4, auth_code="ignored")
    assert refused.encode(edition) == b"\x00\x03\x04"
    assert refused.to_json() == {"seq": 3, "result": 4}


def test_terminal_response_and_deregister() -> None:
    assert round_trip(2013, m.TerminalResponse(1, 0x8103, 0)) == m.TerminalResponse(1, 0x8103, 0)
    assert round_trip(2019, m.Deregister()) == m.Deregister()


def test_unknown_message_id_is_unsupported() -> None:
    error = m.decode_body(Header(0x0F01, PHONES[2013], 1), b"\x01")
    assert isinstance(error, FrameError) and error.reason == "unsupported"
    assert error.header is not None and error.header.msg_id == 0x0F01


def test_emqx_json_envelope() -> None:
    header_2013 = Header(jt808.HEARTBEAT, PHONES[2013], 5)
    assert m.emqx_json(header_2013, m.Heartbeat()) == {
        "header": {"msg_id": 2, "encrypt": 0, "len": 0, "phone": "013800138000", "msg_sn": 5},
        "body": {},
    }
    header_2019 = Header(jt808.HEARTBEAT, PHONES[2019], 5, 2019, proto_ver=1)
    assert m.emqx_json(header_2019, m.Heartbeat())["header"]["proto_ver"] == 1
