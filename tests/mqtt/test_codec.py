"""The sans-I/O codec: round trips, edges, and malformed input (never a crash)."""

from __future__ import annotations

import contextlib
import struct

import mqtt5
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpsd_server.mqtt import MalformedPacket, Message, codec
from gpsd_server.mqtt.codec import (
    ConnAck,
    Disconnect,
    PingResp,
    PubAck,
    StreamDecoder,
    SubAck,
    decode_control,
    decode_varint,
    encode_varint,
)

pytestmark = pytest.mark.timeout(60)

V4, V5 = 4, 5


# -- variable byte integers ---------------------------------------------------


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_151, b"\xff\xff\x7f"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (268_435_455, b"\xff\xff\xff\x7f"),
    ],
)
def test_varint_edges(value: int, encoded: bytes) -> None:
    assert encode_varint(value) == encoded
    assert decode_varint(b"\xaa" + encoded + b"\x55", 1) == (value, 1 + len(encoded))
    for cut in range(len(encoded)):  # every prefix is "incomplete", not an error
        assert decode_varint(encoded[:cut], 0) == (-1, 0)


def test_varint_out_of_range_and_too_long() -> None:
    with pytest.raises(ValueError):
        encode_varint(268_435_456)
    with pytest.raises(ValueError):
        encode_varint(-1)
    with pytest.raises(MalformedPacket, match="longer than 4 bytes"):
        decode_varint(b"\xff\xff\xff\xff\x01", 0)


@given(st.integers(0, codec.MAX_VARINT))
def test_varint_round_trip(value: int) -> None:
    assert decode_varint(encode_varint(value), 0) == (value, len(encode_varint(value)))


# -- PUBLISH through the fast path ------------------------------------------------


def decode_all(data: bytes, protocol: int, chunk: int = 0) -> tuple[list[Message], list[bytes], StreamDecoder]:
    d = StreamDecoder(protocol)
    out: list[Message] = []
    controls: list[bytes] = []
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] if chunk else [data]
    for piece in pieces:
        _, _, c = d.feed(piece, out)
        controls += c
    assert d.buffered == 0
    return out, controls, d


@pytest.mark.parametrize("protocol", [V4, V5])
@pytest.mark.parametrize(
    ("topic", "payload", "qos", "pid", "retain"),
    [
        ("a/b", b"hello", 0, 0, False),
        ("gps/dev1/fix", b"x" * 150, 1, 1, False),
        ("gps/dev1/fix", b"", 1, 65535, True),
        ("城市/车辆/粤B12345", "定位".encode(), 1, 7, False),
        ("t", b"y" * 70_000, 1, 300, False),  # 3-byte remaining length
    ],
)
def test_publish_round_trip(protocol: int, topic: str, payload: bytes, qos: int, pid: int, retain: bool) -> None:
    raw = codec.encode_publish(protocol, topic, payload, qos, pid, retain)
    (m,), controls, d = decode_all(raw, protocol)
    assert m == Message(topic, payload, pid, qos, retain)
    assert controls == []
    assert d.fast_publishes == 1 and d.slow_publishes == 0


@pytest.mark.parametrize("protocol", [V4, V5])
def test_stream_split_anywhere(protocol: int) -> None:
    """Many packets, fed one byte at a time and in odd chunks, decode the same."""
    msgs = [
        Message(f"t/{i}", bytes([i % 256]) * (i * 7 % 300), i + 1 if i % 3 else 0, 1 if i % 3 else 0) for i in range(60)
    ]
    stream = b"".join(codec.encode_publish(protocol, m.topic, m.payload, m.qos, m.packet_id) for m in msgs)
    stream += codec.PINGREQ_PACKET.replace(b"\xc0", b"\xd0")  # a PINGRESP at the end
    for chunk in (1, 2, 3, 7, 150, 4096, 0):
        out, controls, _ = decode_all(stream, protocol, chunk)
        assert out == msgs, chunk
        assert controls == [b"\xd0\x00"]


def test_feed_returns_counts() -> None:
    d = StreamDecoder(V5)
    out: list[Message] = []
    raw = codec.encode_publish(V5, "a", b"12345", 1, 1) + codec.encode_publish(V5, "b", b"678", 0)
    assert d.feed(raw, out) == (1, 8, [])


def test_mqtt5_publish_with_properties_takes_mqtt5_path() -> None:
    raw = mqtt5.PublishPacket(
        "a/b",
        b"payload",
        qos=mqtt5.QoS.AT_LEAST_ONCE,
        packet_id=9,
        message_expiry_interval=60,
        user_properties=[("k", "v")],
        content_type="application/json",
    ).write()
    (m,), _, d = decode_all(raw, V5)
    assert m == Message("a/b", b"payload", 9, 1, False)
    assert d.slow_publishes == 1 and d.fast_publishes == 0


def test_fast_path_agrees_with_mqtt5() -> None:
    for qos, pid in ((0, None), (1, 1234)):
        raw = mqtt5.PublishPacket("x/y/z", b"\x00\x01\xff", qos=mqtt5.QoS(qos), packet_id=pid, retain=True).write()
        (m,), _, d = decode_all(raw, V5)
        assert m == Message("x/y/z", b"\x00\x01\xff", pid or 0, qos, True)
        assert d.fast_publishes == 1


def test_topic_alias_is_refused() -> None:
    raw = mqtt5.PublishPacket("a", b"p", topic_alias=3).write()
    with pytest.raises(MalformedPacket, match="topic alias"):
        decode_all(raw, V5)


def pub(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_varint(len(body)) + body


@pytest.mark.parametrize(
    ("raw", "protocol", "match"),
    [
        (pub(0x30, b"\x00"), V4, "too short"),
        (pub(0x30, b"\x00\x09ab"), V4, "shorter than its topic"),
        (pub(0x32, b"\x00\x01a\x00"), V4, "shorter than its topic and packet id"),
        (pub(0x32, b"\x00\x01a\x00\x00"), V4, "packet id 0"),
        (pub(0x34, b"\x00\x01a\x00\x01"), V4, "QoS 2"),
        (pub(0x36, b"\x00\x01a\x00\x01"), V4, "QoS 3"),
        (pub(0x30, b"\x00\x02\xff\xfe"), V4, "undecodable"),
        (pub(0x30, b"\x00\x02a\x00"), V4, "U\\+0000"),
        (pub(0x30, b"\x00\x00xx"), V4, "empty topic"),
        (pub(0x30, b"\x00\x01a"), V5, "property length"),
        (pub(0x30, b"\x00\x01a\x05\x01"), V5, "undecodable MQTT 5"),
        (b"\x30\xff\xff\xff\xff\x01", V4, "longer than 4 bytes"),
        (b"\x30\xff\xff\xff\x7f", V5, "exceeds the maximum"),
    ],
)
def test_malformed_publish(raw: bytes, protocol: int, match: str) -> None:
    with pytest.raises(MalformedPacket, match=match):
        StreamDecoder(protocol).feed(raw, [])


def test_packet_too_large_is_refused_before_it_is_buffered() -> None:
    d = StreamDecoder(V5, max_packet_bytes=1000)
    with pytest.raises(MalformedPacket, match="exceeds the maximum of 1000"):
        d.feed(b"\x30\xe9\x07", [])  # announces 1001 bytes of body


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.sampled_from([V4, V5]))
def test_garbage_never_crashes(data: bytes, protocol: int) -> None:
    d = StreamDecoder(protocol)
    try:
        _, _, controls = d.feed(data, [])
        for c in controls:
            decode_control(c, protocol)
    except MalformedPacket:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=2, max_size=40), st.sampled_from([V4, V5]))
def test_control_garbage_never_crashes(body: bytes, protocol: int) -> None:
    raw = bytes((body[0],)) + encode_varint(len(body) - 1) + body[1:]
    with contextlib.suppress(MalformedPacket):
        decode_control(raw, protocol)


# -- control packets ----------------------------------------------------------


def test_v311_control_packets() -> None:
    assert decode_control(b"\x20\x02\x01\x00", V4) == ConnAck(True, 0, "ACCEPTED")
    assert decode_control(b"\x20\x02\x00\x05", V4) == ConnAck(False, 5, "NOT_AUTHORIZED")
    assert decode_control(b"\x90\x04\x00\x07\x01\x80", V4) == SubAck(7, (1, 0x80))
    assert decode_control(b"\x40\x02\x01\x02", V4) == PubAck(0x102)
    assert decode_control(b"\xd0\x00", V4) == PingResp()
    for bad in (
        b"\x20\x03\x00\x00\x00",
        b"\x20\x02\x02\x00",
        b"\x40\x02\x00\x00",
        b"\x90\x03\x00\x01\x03",
        b"\xe0\x00",
    ):
        with pytest.raises(MalformedPacket):
            decode_control(bad, V4)


def test_v5_control_packets() -> None:
    connack = mqtt5.ConnAckPacket(session_present=True, receive_max=20, server_keep_alive=15, reason_str="hi").write()
    c = decode_control(connack, V5)
    assert c == ConnAck(True, 0, "SUCCESS", 15, 20, None, "hi")
    refused = mqtt5.ConnAckPacket(reason_code=mqtt5.ConnAckReasonCode.CLIENT_ID_NOT_VALID).write()
    assert decode_control(refused, V5) == ConnAck(False, 0x85, "CLIENT_ID_NOT_VALID")
    assert decode_control(b"\xe0\x01\x8e", V5) == Disconnect(0x8E, "SESSION_TAKEN_OVER")
    assert decode_control(b"\xe0\x00", V5) == Disconnect(0, "NORMAL_DISCONNECTION")
    assert decode_control(b"\xe0\x02\x8e\x00", V5) == Disconnect(0x8E, "SESSION_TAKEN_OVER")
    assert decode_control(b"\xe0\x01\x7b", V5) == Disconnect(0x7B, "UNKNOWN")  # unknown code: still named
    assert decode_control(b"\x40\x03\x00\x05\x10", V5) == PubAck(5, 0x10, "NO_MATCHING_SUBSCRIBERS")
    assert decode_control(b"\x90\x05\x00\x02\x00\x01\x87", V5) == SubAck(2, (1, 0x87))
    assert decode_control(b"\xd0\x00", V5) == PingResp()
    with pytest.raises(MalformedPacket, match="unexpected packet type"):
        decode_control(b"\x50\x02\x00\x01", V5)  # PUBREC: we never publish QoS 2
    with pytest.raises(MalformedPacket):
        decode_control(b"\x20\x02\x00\x00", V5)  # a 3.1.1 CONNACK on a v5 connection


# -- packets out ------------------------------------------------------------------


def test_v311_connect_bytes() -> None:
    raw = codec.encode_connect(V4, client_id="abc", username="u", password="p", keepalive_s=30, clean_start=False)
    assert raw == b"\x10\x15\x00\x04MQTT\x04\xc0\x00\x1e\x00\x03abc\x00\x01u\x00\x01p"
    assert codec.encode_connect(V4, client_id="x", clean_start=True)[9] == 0x02
    with pytest.raises(ValueError):
        codec.encode_connect(V4, client_id="x", password="p")


def test_v5_connect_carries_the_session_settings() -> None:
    raw = codec.encode_connect(
        V5, client_id="gpsd-1", keepalive_s=20, clean_start=False, session_expiry_s=3600, receive_maximum=10
    )
    p, used = mqtt5.read(memoryview(raw))
    assert used == len(raw)
    assert isinstance(p, mqtt5.ConnectPacket)
    assert (p.client_id, p.clean_start, p.keep_alive) == ("gpsd-1", False, 20)
    assert (p.session_expiry_interval, p.receive_max, p.topic_alias_max) == (3600, 10, 0)
    assert p.max_packet_size == 1 << 20


def test_subscribe_bytes() -> None:
    assert codec.encode_subscribe(V4, 1, ["a/#", "b"], 1) == b"\x82\x0c\x00\x01\x00\x03a/#\x01\x00\x01b\x01"
    p, _ = mqtt5.read(memoryview(codec.encode_subscribe(V5, 3, ["a/+"], 0)))
    assert isinstance(p, mqtt5.SubscribePacket)
    assert [(f.pattern, int(f.max_qos)) for f in p.topic_filters] == [("a/+", 0)]


def test_pubacks_in_order_in_one_buffer() -> None:
    raw = codec.encode_pubacks([5, 1, 65535])
    assert raw == b"\x40\x02\x00\x05" + b"\x40\x02\x00\x01" + b"\x40\x02\xff\xff"
    # the short PUBACK is valid MQTT 5 too: reason "success"
    p, _ = mqtt5.read(memoryview(raw[:4]))
    assert isinstance(p, mqtt5.PubAckPacket) and p.packet_id == 5 and int(p.reason_code) == 0
    assert codec.encode_pubacks([]) == b""
    assert codec.encode_puback(258) == struct.pack(">BBH", 0x40, 2, 258)


def test_pack_pubacks_matches_encode_pubacks() -> None:
    ids = [1, 2, 300, 65535]
    assert codec.pack_pubacks([0x40020000 | i for i in ids]) == codec.encode_pubacks(ids)
