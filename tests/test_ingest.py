"""The MQTT fast path's pure parts: PUBLISH bodies into ``Incoming``, and the
read-ahead socket."""

from __future__ import annotations

import struct

import pytest

from gpsd_server.ingest import Incoming, _decode_publish, _ReadAhead


def body(topic: bytes, payload: bytes, *, mid: int | None, props: bytes | None) -> bytearray:
    out = struct.pack(">H", len(topic)) + topic
    if mid is not None:
        out += struct.pack(">H", mid)
    if props is not None:
        out += bytes([len(props)]) + props
    return bytearray(out + payload)


def test_mqtt5_qos1_with_properties_skipped() -> None:
    props = bytes([0x01, 0x01]) + bytes([0x26, 0, 1, ord("k"), 0, 1, ord("v")])  # format indicator, user property
    data = body(b"fleet/V1/fix", b'{"lon": 1}', mid=513, props=props)
    assert _decode_publish(data, 1, v5=True) == Incoming("fleet/V1/fix", b'{"lon": 1}', 513, 1)


def test_mqtt5_long_properties_length() -> None:
    props = bytes([0x26, 0, 1, ord("k"), 0, 200]) + b"x" * 200  # 206 bytes: a two-byte length
    n = len(props)
    data = bytearray(struct.pack(">H", 1) + b"t" + struct.pack(">H", 7) + bytes([n & 0x7F | 0x80, n >> 7]) + props)
    data += b"payload"
    assert _decode_publish(data, 1, v5=True) == Incoming("t", b"payload", 7, 1)


def test_mqtt311_qos0_has_no_packet_id() -> None:
    data = body(b"owntracks/u/d", b"{}", mid=None, props=None)
    assert _decode_publish(data, 0, v5=False) == Incoming("owntracks/u/d", b"{}", 0, 0)


@pytest.mark.parametrize(
    "data",
    [bytearray(b"\x00\x10abc"), bytearray(b"\x00\x01t\x00\x07\x05\x01"), bytearray(b"\x00\x01\xff\x00\x07\x00")],
)
def test_malformed_bodies_raise(data: bytearray) -> None:
    with pytest.raises((IndexError, ValueError, UnicodeDecodeError)):
        _decode_publish(data, 1, v5=True)


class FakeSocket:
    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.recvs = 0

    def recv(self, n: int) -> bytes:
        self.recvs += 1
        if not self.chunks:
            raise BlockingIOError
        chunk = self.chunks.pop(0)
        assert len(chunk) <= n
        return chunk

    def fileno(self) -> int:
        return 42


def test_read_ahead_serves_small_reads_from_one_recv() -> None:
    sock = FakeSocket([b"abcdefgh", b"ij"])
    ra = _ReadAhead(sock)
    assert [ra.recv(1), ra.recv(1), ra.recv(3)] == [b"a", b"b", b"cde"]
    assert ra.pending() == 3 and sock.recvs == 1
    assert ra.recv(10) == b"fgh"  # what is buffered, short like a socket read
    assert ra.pending() == 0
    assert ra.recv(5) == b"ij"
    with pytest.raises(BlockingIOError):
        ra.recv(1)
    assert ra.fileno() == 42  # everything else is the socket's
