"""Platform messages and commands: bytes for our gateway, JSON for EMQX's."""

from __future__ import annotations

import pytest

from gpsd_server.core.jt808 import downlink as dl
from gpsd_server.core.jt808 import frame as jt808
from gpsd_server.core.jt808.frame import Edition, Frame, Header
from gpsd_server.core.jt808.params import REPORT_INTERVAL_DEFAULT, REPORT_INTERVAL_SLEEP, encode_param_value


def round_trip(edition: Edition, message: dl.Downlink) -> dl.Downlink | None:
    phone = "013800138000" if edition == 2013 else "00000000013800138000"
    header = Header(message.msg_id, phone, 9, edition)
    [frame] = jt808.FrameSplitter().feed(jt808.encode_frame(header, message.encode(edition)))
    assert isinstance(frame, Frame)
    return dl.decode_downlink(frame.header, frame.body)


@pytest.mark.parametrize("edition", [2013, 2019])
def test_general_and_register_responses(edition: Edition) -> None:
    message = dl.PlatformResponse(0x1234, 0x0200, 0)
    assert message.encode(edition) == bytes.fromhex("1234020000")
    assert round_trip(edition, message) == message
    ok = dl.RegisterResponse(3, 0, "gpsd-808")
    assert ok.encode(edition) == b"\x00\x03\x00gpsd-808"
    assert round_trip(edition, ok) == ok
    refused = dl.RegisterResponse(3, 4)
    assert refused.encode(edition) == b"\x00\x03\x04"
    assert refused.to_json() == {"seq": 3, "result": 4}


def test_text_message_0x8300_in_both_editions() -> None:
    text = dl.TextMessage("12319派单：占道经营")
    assert text.encode(2013) == bytes([0x0C]) + "12319派单：占道经营".encode("gbk")
    assert text.encode(2019) == bytes([0x0C, 1]) + "12319派单：占道经营".encode("gbk")
    assert text.encode(2013, "utf8")[1:] == "12319派单：占道经营".encode()
    assert round_trip(2013, text) == text
    assert round_trip(2019, text) == text
    assert text.to_json(2013) == {"flag": 12, "text": "12319派单：占道经营"}
    assert text.to_json(2019) == {"flag": 12, "text": "12319派单：占道经营", "text_type": 1}
    long = dl.TextMessage("长" * 2000)
    assert len(long.encode(2019)) == 2 + dl.TEXT_MAX_BYTES  # one packet


def test_position_query_0x8201_has_no_body() -> None:
    assert dl.PositionQuery().encode() == b""
    assert dl.command_json(dl.PositionQuery()) == {"header": {"msg_id": 0x8201}}


def test_set_reporting_intervals_0x8103() -> None:
    command = dl.SetParameters(((REPORT_INTERVAL_DEFAULT, 10), (REPORT_INTERVAL_SLEEP, 120)))
    assert command.encode() == bytes.fromhex("0200000029040000000a000000270400000078")
    assert round_trip(2013, command) == command
    assert dl.command_json(command, msg_sn=7) == {
        "header": {"msg_id": 0x8103, "msg_sn": 7},
        "body": {"length": 2, "params": [{"id": 0x29, "value": 10}, {"id": 0x27, "value": 120}]},
    }


def test_commands_from_emqx_json_are_checked() -> None:
    made = dl.command_from_json(0x8103, {"length": 1, "params": [{"id": 0x29, "value": 30}]})
    assert made == dl.SetParameters(((0x29, 30),))
    for msg_id, body in (
        (0x8103, {"params": [{"id": 0x29, "value": "thirty"}]}),
        (0x8103, {"params": []}),
        (0x8300, {"flag": 1}),
        (0x8300, {"flag": 300, "text": "x"}),
        (0x8105, {}),
    ):
        with pytest.raises(dl.JsonError):
            dl.command_from_json(msg_id, body)


def test_parameter_types() -> None:
    assert encode_param_value(0x0013, "gps.example.cn", "gbk") == b"gps.example.cn"
    assert encode_param_value(0x0031, 500, "gbk") == b"\x01\xf4"  # WORD
    assert encode_param_value(0x0110, "AQIDBAUGBwg=", "gbk") == bytes(range(1, 9))
    for param_id, value in ((0x0029, -1), (0x0029, 1 << 32), (0x0013, 5), (0x0110, "AQI="), (0x0999, "!!")):
        with pytest.raises(ValueError, match=f"{param_id:#06x}"):
            encode_param_value(param_id, value, "gbk")
