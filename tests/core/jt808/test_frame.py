"""JT/T 808 framing, built byte by byte from the standard's layout.

The expected bytes here are written out from the tables of JT/T 808-2013
§4.4 / 2019 §4.4 (flag, header, body, checksum, flag; escaping 0x7e -> 7d 02,
0x7d -> 7d 01), independently of the encoder, and then compared with it.
"""

from __future__ import annotations

import struct
from functools import reduce

from hypothesis import given
from hypothesis import strategies as st

from gpsd_server.core.jt808 import frame as jt808
from gpsd_server.core.jt808.frame import Edition, Frame, FrameError, FrameSplitter, Header, Reassembler

PHONE_2013 = "013800138000"  # BCD[6]
PHONE_2019 = "00000000013800138000"  # BCD[10]


def xor(data: bytes) -> int:
    return reduce(lambda a, b: a ^ b, data, 0)


def header_2013(msg_id: int, body_len: int, sn: int, *, frag: tuple[int, int] | None = None, encrypt: int = 0) -> bytes:
    props = body_len | encrypt << 10 | (1 << 13 if frag else 0)
    raw = struct.pack(">HH", msg_id, props) + bytes.fromhex(PHONE_2013) + struct.pack(">H", sn)
    return raw + (struct.pack(">HH", *frag) if frag else b"")


def header_2019(msg_id: int, body_len: int, sn: int, *, frag: tuple[int, int] | None = None) -> bytes:
    props = body_len | 1 << 14 | (1 << 13 if frag else 0)
    raw = struct.pack(">HHB", msg_id, props, 1) + bytes.fromhex(PHONE_2019) + struct.pack(">H", sn)
    return raw + (struct.pack(">HH", *frag) if frag else b"")


def wire(content: bytes) -> bytes:
    """Flag + escaped(content + checksum) + flag, done the long way."""
    out = bytearray([0x7E])
    for byte in content + bytes([xor(content)]):
        out += {0x7E: b"\x7d\x02", 0x7D: b"\x7d\x01"}.get(byte, bytes([byte]))
    return bytes(out + b"\x7e")


# --- escaping and checksum -------------------------------------------------


def test_escape_example_from_the_standard() -> None:
    # §4.4.2: 0x30 7e 08 7d 55 is sent as 0x30 7d 02 08 7d 01 55.
    assert jt808.escape(bytes.fromhex("307e087d55")) == bytes.fromhex("307d02087d0155")
    assert jt808.unescape(bytes.fromhex("307d02087d0155")) == bytes.fromhex("307e087d55")


def test_unescape_rejects_a_lone_or_wrong_escape() -> None:
    assert jt808.unescape(b"\x01\x7d\x03") is None
    assert jt808.unescape(b"\x01\x7d") is None
    assert jt808.unescape(b"\x7d\x7d\x01") is None
    assert jt808.unescape(b"\x7d\x01\x02") == b"\x7d\x02"  # not 0x7e: the 02 is data


@given(st.binary(max_size=300))
def test_escape_round_trip_and_no_flag_inside(data: bytes) -> None:
    escaped = jt808.escape(data)
    assert 0x7E not in escaped
    assert jt808.unescape(escaped) == data


def test_checksum_is_xor_of_header_and_body() -> None:
    assert jt808.checksum(b"\x01\x02\x04") == 0x07
    assert jt808.checksum(b"") == 0


# --- headers, both editions --------------------------------------------------


def test_2013_heartbeat_frame_matches_the_layout() -> None:
    expected = wire(header_2013(0x0002, 0, 7))
    # flag, msg id, props (length 0), phone BCD[6], sn, checksum 02^01^38^13^80^07 = af, flag
    assert expected.hex() == "7e" + "0002" + "0000" + "013800138000" + "0007" + "af" + "7e"
    assert jt808.encode_frame(Header(0x0002, PHONE_2013, 7)) == expected
    frame = jt808.decode_frame(expected[1:-1])
    assert frame == Frame(Header(0x0002, PHONE_2013, 7, 2013, 1, 0, 0), b"")


def test_2019_header_carries_version_flag_protocol_version_and_20_digit_phone() -> None:
    body = b"\x00\x01\x02"
    expected = wire(header_2019(0x0200, 3, 0x1234) + body)
    header = Header(0x0200, PHONE_2019, 0x1234, 2019, proto_ver=1)
    assert jt808.encode_frame(header, body) == expected
    frame = jt808.decode_frame(expected[1:-1])
    assert isinstance(frame, Frame)
    assert (frame.header.edition, frame.header.proto_ver, frame.header.phone) == (2019, 1, PHONE_2019)
    assert frame.header.size == 17
    assert frame.body == body


def test_subpackage_fields_in_both_editions() -> None:
    cases: list[tuple[bytes, Edition, str]] = [
        (header_2013(0x0704, 2, 9, frag=(3, 2)), 2013, PHONE_2013),
        (header_2019(0x0704, 2, 9, frag=(3, 2)), 2019, PHONE_2019),
    ]
    for raw, edition, phone in cases:
        frame = jt808.decode_frame(wire(raw + b"\xaa\xbb")[1:-1])
        assert isinstance(frame, Frame)
        assert (frame.header.frag_total, frame.header.frag_sn) == (3, 2)
        assert frame.header.size == (16 if edition == 2013 else 21)
        assert frame.body == b"\xaa\xbb"
        again = Header(0x0704, phone, 9, edition, frag_total=3, frag_sn=2)
        assert jt808.encode_frame(again, b"\xaa\xbb") == wire(raw + b"\xaa\xbb")


def test_encryption_bits_are_read() -> None:
    frame = jt808.decode_frame(wire(header_2013(0x0200, 1, 1, encrypt=1) + b"\x00")[1:-1])
    assert isinstance(frame, Frame)
    assert frame.header.encrypt == 1


def test_bytes_needing_escape_in_header_body_and_checksum() -> None:
    body = b"\x7e\x7d\x7e"
    frame_bytes = jt808.encode_frame(Header(0x7E7D, PHONE_2013, 0x7E7E), body)
    assert frame_bytes.count(0x7E) == 2  # only the flags
    assert frame_bytes == wire(header_2013(0x7E7D, 3, 0x7E7E) + body)
    frame = jt808.decode_frame(frame_bytes[1:-1])
    assert isinstance(frame, Frame)
    assert (frame.header.msg_id, frame.header.msg_sn, frame.body) == (0x7E7D, 0x7E7E, body)


# --- malformed frames ---------------------------------------------------------


def test_bad_checksum_keeps_the_header_for_the_answer() -> None:
    good = wire(header_2013(0x0002, 0, 5))
    bad = good[:-2] + bytes([good[-2] ^ 0x01]) + good[-1:]
    error = jt808.decode_frame(bad[1:-1])
    assert isinstance(error, FrameError)
    assert error.reason == "bad_checksum"
    assert error.header is not None and error.header.msg_sn == 5


def test_bad_escape() -> None:
    error = jt808.decode_frame(b"\x00\x02\x7d\x05" + bytes(10))
    assert isinstance(error, FrameError) and error.reason == "bad_escape"


def test_truncated_header() -> None:
    short_header = jt808.decode_frame(bytes.fromhex("000200000138"))
    assert isinstance(short_header, FrameError) and short_header.reason == "truncated"


def test_declared_length_mismatch_with_a_good_checksum_is_read_and_named() -> None:
    shorter = wire(header_2013(0x0200, 10, 1) + b"\x01\x02")  # declares 10, carries 2
    longer = wire(header_2013(0x0200, 1, 1) + b"\x01\x02")  # declares 1, carries 2
    for data in (shorter, longer):
        frame = jt808.decode_frame(data[1:-1])
        assert isinstance(frame, Frame)
        assert (frame.body, frame.quirks) == (b"\x01\x02", ("length_mismatch",))
    strict = [jt808.decode_frame(d[1:-1], accept_length_mismatch=False) for d in (shorter, longer)]
    assert [e.reason for e in strict if isinstance(e, FrameError)] == ["truncated", "bad_length"]
    assert isinstance(strict[0], FrameError) and strict[0].header is not None and strict[0].header.body_len == 10


def test_a_mismatch_with_a_bad_checksum_is_still_dropped() -> None:
    data = wire(header_2013(0x0200, 10, 1) + b"\x01\x02")
    error = jt808.decode_frame(data[1:-2] + bytes([data[-2] ^ 0x55]))
    assert isinstance(error, FrameError) and error.reason == "bad_checksum"


def test_phone_that_is_not_bcd_is_kept_as_emqx_writes_it_and_encodes_back() -> None:
    raw = struct.pack(">HH", 2, 0) + bytes.fromhex("0138001380af") + b"\x00\x01"
    frame = jt808.decode_frame(wire(raw)[1:-1])
    assert isinstance(frame, Frame)
    assert (frame.header.phone, frame.quirks) == ("0138001380:?", ("non_bcd_phone",))
    assert jt808.encode_frame(frame.header) == wire(raw)


def test_version_bit_on_a_2013_layout_is_read_as_2013() -> None:
    raw = header_2013(0x0002, 0, 7)
    flagged = raw[:2] + bytes([raw[2] | 0x40]) + raw[3:]
    frame = jt808.decode_frame(wire(flagged)[1:-1])
    assert isinstance(frame, Frame)
    assert (frame.header.edition, frame.header.phone, frame.header.msg_sn) == (2013, PHONE_2013, 7)
    assert frame.quirks == ("version_bit",)


def test_version_bit_is_trusted_when_no_length_agrees() -> None:
    frame = jt808.decode_frame(wire(header_2019(0x0200, 40, 3) + bytes(28))[1:-1])
    assert isinstance(frame, Frame)
    assert (frame.header.edition, frame.header.phone, len(frame.body)) == (2019, PHONE_2019, 28)
    assert frame.quirks == ("length_mismatch",)


def test_2019_body_layouts_need_version_1_or_more() -> None:
    assert Header(2, PHONE_2019, 1, 2019, proto_ver=1).body_edition == 2019
    assert Header(2, PHONE_2019, 1, 2019, proto_ver=0).body_edition == 2013
    assert Header(2, PHONE_2013, 1, 2013).body_edition == 2013


def test_unknown_message_id_is_a_valid_frame() -> None:
    # The framing does not judge message ids; jt808_messages answers "unsupported".
    frame = jt808.decode_frame(wire(header_2013(0x0F01, 2, 1) + b"\x01\x02")[1:-1])
    assert isinstance(frame, Frame) and frame.header.msg_id == 0x0F01


# --- the stream splitter ------------------------------------------------------


def frames_of(results: list[Frame | FrameError]) -> list[Frame]:
    return [r for r in results if isinstance(r, Frame)]


def test_splitter_two_frames_in_one_chunk_with_noise_and_double_flags() -> None:
    a = wire(header_2013(0x0002, 0, 1))
    b = wire(header_2013(0x0002, 0, 2))
    results = FrameSplitter().feed(b"noise" + a + b)  # b"...7e7e..." between frames
    assert [f.header.msg_sn for f in frames_of(results)] == [1, 2]
    assert all(isinstance(r, Frame) for r in results)


def test_splitter_byte_by_byte_including_a_split_escape() -> None:
    stream = wire(header_2013(0x7E00, 2, 0x7D7D) + b"\x7d\x7e") * 3
    splitter = FrameSplitter()
    results = [r for i in range(len(stream)) for r in splitter.feed(stream[i : i + 1])]
    assert [f.body for f in frames_of(results)] == [b"\x7d\x7e"] * 3
    assert splitter.pending == 0


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_splitter_gives_the_same_frames_whatever_the_chunking(cuts: list[int]) -> None:
    stream = b"".join(wire(header_2019(0x0200, 3, sn) + b"\x7e\x7d\x00") for sn in range(5))
    splitter, results, pos = FrameSplitter(), [], 0
    for size in [*cuts, len(stream)]:
        results += splitter.feed(stream[pos : pos + size])
        pos += size
    assert [f.header.msg_sn for f in frames_of(results)] == [0, 1, 2, 3, 4]
    assert all(isinstance(r, Frame) for r in results)


def test_splitter_oversize_run_is_reported_once_and_the_stream_recovers() -> None:
    splitter = FrameSplitter(max_frame_bytes=64)
    results = splitter.feed(b"\x7e" + bytes(50))
    results += splitter.feed(bytes(50))  # still no closing flag
    results += splitter.feed(bytes(500))
    assert [r.reason for r in results if isinstance(r, FrameError)] == ["oversize"]
    assert splitter.pending == 0  # memory stays bounded
    good = wire(header_2013(0x0002, 0, 3))
    after = splitter.feed(b"\x7e" + good)
    assert [f.header.msg_sn for f in frames_of(after)] == [3]


def test_splitter_oversize_complete_frame() -> None:
    big = wire(header_2013(0x0200, 0x3FF, 1) + bytes(0x3FF))
    results = FrameSplitter(max_frame_bytes=500).feed(big)
    assert [r.reason for r in results if isinstance(r, FrameError)] == ["oversize"]


def test_splitter_reports_each_bad_frame_and_keeps_going() -> None:
    good = wire(header_2013(0x0002, 0, 1))
    bad_sum = good[:-2] + b"\x00\x7e"
    bad_escape = b"\x7e\x00\x7d\x09\x7e"
    results = FrameSplitter().feed(bad_sum + bad_escape + good)
    assert [r.reason if isinstance(r, FrameError) else "ok" for r in results] == ["bad_checksum", "bad_escape", "ok"]


def test_splitter_close_inside_a_frame_is_truncated() -> None:
    splitter = FrameSplitter()
    assert splitter.feed(wire(header_2013(0x0002, 0, 1))[:-4]) == []
    assert [e.reason for e in splitter.close()] == ["truncated"]
    assert splitter.close() == []


# --- subpackage reassembly ----------------------------------------------------


def test_reassembler_joins_packets_in_any_order() -> None:
    parts = [b"AA", b"BB", b"CC"]
    frames = [Frame(Header(0x0704, PHONE_2013, 10 + i, frag_total=3, frag_sn=i + 1), p) for i, p in enumerate(parts)]
    joiner = Reassembler()
    assert joiner.add(frames[2]) is None
    assert joiner.add(frames[0]) is None
    whole = joiner.add(frames[1])
    assert isinstance(whole, Frame)
    assert whole.body == b"AABBCC"
    assert (whole.header.msg_sn, whole.header.frag_total, whole.header.body_len) == (10, None, 6)


def test_reassembler_limits() -> None:
    joiner = Reassembler(max_parts=4, max_pending=2)
    too_many = joiner.add(Frame(Header(0x0704, PHONE_2013, 1, frag_total=5, frag_sn=1), b""))
    assert isinstance(too_many, FrameError) and too_many.reason == "oversize"
    bad_sn = joiner.add(Frame(Header(0x0704, PHONE_2013, 1, frag_total=2, frag_sn=3), b""))
    assert isinstance(bad_sn, FrameError) and bad_sn.reason == "bad_header"
    for first_sn in (100, 200, 300, 400):  # four unfinished messages, two kept
        joiner.add(Frame(Header(0x0704, PHONE_2013, first_sn, frag_total=2, frag_sn=1), b"x"))
    assert len(joiner._pending) == 2
    unframed = Frame(Header(0x0002, PHONE_2013, 1), b"")
    assert joiner.add(unframed) is unframed


def test_reassembler_byte_bound_drops_the_oldest_and_says_so() -> None:
    joiner = Reassembler(max_parts=8, max_pending=8, max_bytes=100)
    assert joiner.add(Frame(Header(0x0704, PHONE_2013, 10, frag_total=2, frag_sn=1), bytes(60))) is None
    over = joiner.add(Frame(Header(0x0704, PHONE_2013, 20, frag_total=2, frag_sn=1), bytes(60)))
    assert isinstance(over, FrameError) and over.reason == "oversize"
    assert joiner.pending_bytes == 60  # only the newer message is kept
    whole = joiner.add(Frame(Header(0x0704, PHONE_2013, 21, frag_total=2, frag_sn=2), b"z"))
    assert isinstance(whole, Frame) and len(whole.body) == 61
    assert joiner.pending_bytes == 0


def test_splitter_skips_a_flood_of_flags_cheaply() -> None:
    splitter = FrameSplitter()
    assert splitter.feed(b"\x7e" * 100_000) == []
    good = wire(header_2013(0x0002, 0, 4))
    assert [f.header.msg_sn for f in frames_of(splitter.feed(b"\x7e" * 10 + good + b"\x7e" * 10))] == [4]
