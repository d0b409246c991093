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
    assert m.server_time(POSIX_TIME) == "240505230809"  # 0x8004 carries UTC


@pytest.mark.parametrize("edition", EDITIONS)
def test_heartbeat(edition: Edition) -> None:
    assert m.Heartbeat().encode(edition) == b""
    assert round_trip(edition, m.Heartbeat()) == m.Heartbeat()


def register_2013_body() -> bytes:
    return (
        struct.pack(">HH", 44, 300)
        + b"GPSD\x00"  # manufacturer BYTE[5]
        + b"SIM-808".ljust(20, b"\x00")  # model BYTE[20]
        + b"0138000"  # terminal id BYTE[7]
        + b"\x02"  # plate colour
        + "粤B12345".encode("gbk")
    )


def test_register_2013_layout_keeps_emqx_strings() -> None:
    message = m.Register(44, 300, "GPSD", "SIM-808", "0138000", 2, "粤B12345")
    assert message.encode(2013) == register_2013_body()
    decoded = m.Register.decode(register_2013_body(), 2013)
    # EMQX keeps the 2013 manufacturer's padding and strips the model's.
    assert decoded == m.Register(44, 300, "GPSD\x00", "SIM-808", "0138000", 2, "粤B12345")
    assert decoded.to_json() == {
        "province": 44, "city": 300, "manufacturer": "GPSD\x00", "model": "SIM-808", "dev_id": "0138000",
        "color": 2, "license_number": "粤B12345",
    }  # fmt: skip
    assert m.Register.decode(register_2013_body(), 2013, "utf8").plate_text != "粤B12345"  # GBK read as UTF-8


def test_register_2011_layout_is_read_and_named() -> None:
    body = struct.pack(">HH", 40, 50) + b"1234\x00" + b"tk12345\x00" + b"CHI123\x00" + b"\x01" + "粤A1".encode("gbk")
    message = m.decode_body(Header(jt808.REGISTER, PHONES[2013], 1), body)
    assert isinstance(message, m.Register)
    assert (message.layout, message.quirks, message.model_text, message.device_id) == (
        2011, ("register_2011",), "tk12345", "CHI123",
    )  # fmt: skip
    again = m.Register(40, 50, "1234", "tk12345", "CHI123", 1, "粤A1", 2011)
    assert again.encode(2013) == body


def test_register_2019_layout_has_wider_fields() -> None:
    body = (
        struct.pack(">HH", 44, 300)
        + b"GPSD".ljust(11, b"\x00")
        + b"SIM-808".ljust(30, b"\x00")
        + b"TERMINAL-0001".ljust(30, b"\x00")
        + b"\x01"
        + "粤B12345".encode("gbk")
    )
    message = m.Register(44, 300, "GPSD", "SIM-808", "TERMINAL-0001", 1, "粤B12345", 2019)
    assert message.encode(2019) == body
    assert round_trip(2019, message) == message
    assert message.to_json()["license_number"] == "粤B12345"
    # A 2019 terminal that sends the 2013 layout is read in it.
    layout_2013 = m.Register.decode(register_2013_body(), 2019)
    assert layout_2013 is not None and layout_2013.quirks == ("register_layout_2013",)


def test_register_too_short_is_bad_body() -> None:
    error = m.decode_body(Header(jt808.REGISTER, PHONES[2013], 1), b"\x00\x2c\x01")
    assert isinstance(error, FrameError) and error.reason == "bad_body"


def test_authenticate_2013_is_the_code_alone() -> None:
    assert m.Authenticate("gpsd-808").encode(2013) == b"gpsd-808"
    assert round_trip(2013, m.Authenticate("gpsd-808")) == m.Authenticate("gpsd-808")
    assert m.Authenticate("gpsd-808").to_json() == {"code": "gpsd-808"}


def test_authenticate_2019_has_length_imei_and_version_named_like_emqx() -> None:
    message = m.Authenticate("gpsd-808", "860000000000001", "V1.2", 2019)
    body = b"\x08gpsd-808" + b"860000000000001" + b"V1.2".ljust(20, b"\x00")
    assert message.encode(2019) == body
    assert round_trip(2019, message) == message
    assert message.to_json() == {"code": "gpsd-808", "imei": "860000000000001", "software_version": "V1.2"}
    short = m.decode_body(Header(jt808.AUTHENTICATE, PHONES[2019], 1, 2019), b"\x04gpsd860")
    assert isinstance(short, m.Authenticate) and short.quirks == ("auth_truncated",)
    bare = m.decode_body(Header(jt808.AUTHENTICATE, PHONES[2019], 1, 2019), b"123456")
    assert isinstance(bare, m.Authenticate)
    assert (bare.code, bare.layout, bare.quirks) == ("123456", 2013, ("auth_layout_2013",))


def test_authenticate_code_compares_without_padding() -> None:
    assert m.Authenticate("gpsd-808\x00\x00 ").code_text == "gpsd-808"


@pytest.mark.parametrize("edition", EDITIONS)
def test_location_with_additional_items(edition: Edition) -> None:
    message = m.Location.decode(location_body(), edition)
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


def test_location_time_is_passed_on_as_sent() -> None:
    # EMQX copies the BCD nibbles unchecked; the Fix decoder rejects the time.
    bad_time = location_body()[:22] + bytes.fromhex("2405060708ff")
    message = m.decode_body(Header(jt808.LOCATION, PHONES[2013], 1), bad_time)
    assert isinstance(message, m.Location) and message.time == "2405060708??"


def test_location_too_short_is_bad_body() -> None:
    error = m.decode_body(Header(jt808.LOCATION, PHONES[2013], 1), location_body()[:27])
    assert isinstance(error, FrameError) and error.reason == "bad_body"


@pytest.mark.parametrize("edition", EDITIONS)
def test_location_batch_backfill(edition: Edition) -> None:
    item = location_body()
    body = struct.pack(">HB", 2, 1) + struct.pack(">H", len(item)) + item + struct.pack(">H", len(item)) + item
    message = m.LocationBatch.decode(body, edition)
    assert message is not None and message.kind == m.BATCH_BACKFILL and len(message.items) == 2
    assert message.encode(edition) == body
    assert round_trip(edition, message) == message
    as_json = message.to_json()
    assert (as_json["type"], as_json["length"], len(as_json["location"])) == (1, 2, 2)


def test_terminal_response_and_deregister() -> None:
    assert round_trip(2013, m.TerminalResponse(1, 0x8103, 0)) == m.TerminalResponse(1, 0x8103, 0)
    assert round_trip(2019, m.Deregister()) == m.Deregister()
    padded = m.decode_body(Header(jt808.TERMINAL_RESPONSE, PHONES[2013], 1), bytes.fromhex("0001830000ff"))
    assert padded == m.TerminalResponse(1, 0x8300, 0, ("response_padded",))


def test_unknown_message_id_is_published_like_emqx() -> None:
    message = m.decode_body(Header(0x0F01, PHONES[2013], 1), b"\x01\x02")
    assert message == m.Unknown(0x0F01, b"\x01\x02")
    assert isinstance(message, m.Unknown) and message.to_json() == {"unknown_id": True, "data": "AQI="}


def test_reports_carry_emqx_bodies() -> None:
    event = m.decode_body(Header(0x0301, PHONES[2013], 1), b"\x05")
    assert event == m.Report(0x0301, {"id": 5})
    answer = m.decode_body(Header(0x0201, PHONES[2013], 1), b"\x00\x07" + location_body())
    assert isinstance(answer, m.Report) and answer.body["seq"] == 7
    assert answer.body["params"]["latitude"] == 22_543_100
    broken = m.decode_body(Header(0x0201, PHONES[2013], 1), b"\x00\x07\x01")
    assert isinstance(broken, FrameError) and broken.reason == "bad_body"


def test_emqx_json_envelope() -> None:
    header_2013 = Header(jt808.HEARTBEAT, PHONES[2013], 5)
    assert m.emqx_json(header_2013, m.Heartbeat()) == {
        "header": {"msg_id": 2, "encrypt": 0, "len": 0, "phone": "013800138000", "msg_sn": 5},
        "body": {},
    }
    header_2019 = Header(jt808.HEARTBEAT, PHONES[2019], 5, 2019, proto_ver=1)
    assert m.emqx_json(header_2019, m.Heartbeat())["header"]["proto_ver"] == 1
    packet = Header(jt808.LOCATION_BATCH, PHONES[2013], 5, frag_total=3, frag_sn=1)
    assert m.emqx_json(packet, m.Heartbeat())["header"] | {} == {
        "msg_id": 0x0704, "encrypt": 0, "len": 0, "phone": "013800138000", "msg_sn": 5, "frag_total": 3,
        "frag_sn": 1,
    }  # fmt: skip
