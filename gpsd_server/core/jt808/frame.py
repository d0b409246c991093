"""JT/T 808 framing: 0x7e delimiters, 0x7d escaping, XOR checksum, headers.

Pure: bytes in, values out; never raises on bad input. A frame on the wire is

    0x7e | header | body | checksum | 0x7e

with 0x7e and 0x7d inside escaped as 0x7d 0x02 and 0x7d 0x01. The checksum is
the XOR of header and body (unescaped). Two header editions share the first
four bytes; bit 14 of the body properties tells them apart:

    2013: msg_id WORD, props WORD, phone BCD[6],  msg_sn WORD [, total WORD, seq WORD]
    2019: msg_id WORD, props WORD, version BYTE, phone BCD[10], msg_sn WORD [, total, seq]

props: bits 0-9 body length, 10-12 encryption, 13 subpackaged, 14 2019 edition.

``FrameSplitter`` turns a TCP byte stream into ``Frame`` and ``FrameError``
values; ``encode_frame`` builds one. Message bodies live in ``messages``.

Terminals in the field bend the standard; where the intent is unambiguous
the frame is read anyway and the bend is named in ``Frame.quirks`` (the
gateway counts each as ``tolerated_<quirk>``):

===================  =======================================================
non_bcd_phone        header phone nibbles above 9 (binary IMEIs). The phone
                     is kept as EMQX writes it, nibble n as chr(0x30 + n)
                     (A-F become ``:;<=>?``), so replies go back to the same
                     bytes and both gateways publish the same phone.
version_bit          bit 14 set on a frame whose length fits the 2013 header
                     and not the 2019 one: read as 2013. The bit is trusted
                     only when the 2019 header length agrees.
length_mismatch      the declared body length disagrees with the bytes
                     between the flags while the checksum is right; the
                     real bytes are the body (``accept_length_mismatch``).
===================  =======================================================

Frame error reasons (the frame is dropped, counted ``dropped_<reason>``):

=============  ==========================================================
bad_escape     0x7d followed by anything but 0x01 / 0x02
bad_checksum   XOR of header and body differs from the checksum byte
truncated      shorter than its header; or than its declared length when
               length mismatches are not accepted
bad_length     longer than its declared length, mismatches not accepted
oversize       more than ``max_frame_bytes`` between two 0x7e; or a
               subpackaged message over the reassembly limits
bad_header     a subpackage number outside 1..total
=============  ==========================================================
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import reduce
from typing import Literal

FLAG = 0x7E
ESCAPE = 0x7D
Edition = Literal[2013, 2019]

# Message ids (terminal -> platform, platform -> terminal).
TERMINAL_RESPONSE = 0x0001
HEARTBEAT = 0x0002
DEREGISTER = 0x0003
REGISTER = 0x0100
AUTHENTICATE = 0x0102
LOCATION = 0x0200
LOCATION_BATCH = 0x0704
PLATFORM_RESPONSE = 0x8001
REGISTER_RESPONSE = 0x8100

MAX_BODY_BYTES = 0x3FF  # ten bits of body length
DEFAULT_MAX_FRAME_BYTES = 4096  # escaped, between the flags: twice the largest frame, rounded

_PROP_LENGTH = 0x03FF
_PROP_ENCRYPT_SHIFT = 10
_PROP_SUBPACKAGE = 1 << 13
_PROP_2019 = 1 << 14
_PHONE_DIGITS = {2013: 12, 2019: 20}
_NIBBLES = "0123456789:;<=>?"  # EMQX's from_bcd: nibble n -> chr(0x30 + n)
_NOT_FLAG = re.compile(rb"[^\x7e]")
_EMQX_NIBBLES = str.maketrans(":;<=>?abcdef", "ABCDEFABCDEF")
_PHONE_CHARS = frozenset("0123456789ABCDEF")


def normalize_phone(phone: str) -> str:
    """A terminal phone in one stable form: BCD left padding removed
    (``013800138000`` -> ``13800138000``) and non-BCD nibbles as A-F
    (EMQX's ``4>;6?;4:=628`` -> ``4EB6FB4AD628``)."""
    return phone.translate(_EMQX_NIBBLES).lstrip("0") or "0"


def valid_phone(phone: str) -> bool:
    """What the ingest and the vehicles file take as a terminal phone (1-20 BCD/hex digits)."""
    return 0 < len(phone) <= 20 and set(normalize_phone(phone)) <= _PHONE_CHARS


@dataclass(frozen=True, slots=True)
class Header:
    """A message header; ``phone`` is the BCD digit string as sent."""

    msg_id: int
    phone: str
    msg_sn: int
    edition: Edition = 2013
    proto_ver: int = 1  # 2019 only
    encrypt: int = 0
    body_len: int = 0  # filled in by encode_frame
    frag_total: int | None = None
    frag_sn: int | None = None

    @property
    def size(self) -> int:
        return header_size(self.edition, self.frag_total is not None)

    @property
    def body_edition(self) -> Edition:
        """Which body layouts apply: 2019 only with the 2019 header and a
        version byte of 1 or more (as EMQX decides; a 2019 header with
        version 0 carries 2013 bodies)."""
        return 2019 if self.edition == 2019 and self.proto_ver >= 1 else 2013


def header_size(edition: Edition, subpackaged: bool) -> int:
    return (12 if edition == 2013 else 17) + (4 if subpackaged else 0)


@dataclass(frozen=True, slots=True)
class Frame:
    """A message whose escaping and checksum are right. ``quirks`` names the
    tolerated departures from the standard (see the module docstring)."""

    header: Header
    body: bytes
    quirks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FrameError:
    """A frame that could not be accepted. ``header`` is kept when it could be
    read, so the platform can answer the terminal with 0x8001 "message error"."""

    reason: str
    detail: str = ""
    header: Header | None = None


def escape(data: bytes) -> bytes:
    return data.replace(b"\x7d", b"\x7d\x01").replace(b"\x7e", b"\x7d\x02")


def unescape(data: bytes) -> bytes | None:
    """Undo the escaping; ``None`` when a 0x7d starts no valid sequence."""
    # Every 0x7d in valid data starts an escape (0x01/0x02 never equal 0x7d),
    # so counting is exact, and the replaces cannot match across sequences.
    escapes = data.count(b"\x7d\x01") + data.count(b"\x7d\x02")
    if data.count(b"\x7d") != escapes:
        return None
    return data.replace(b"\x7d\x02", b"\x7e").replace(b"\x7d\x01", b"\x7d")


def checksum(data: bytes) -> int:
    return reduce(operator.xor, data, 0)


def bcd_encode(digits: str, size: int) -> bytes:
    """Left-pad ``digits`` with zeros to ``2 * size`` and pack two per byte."""
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 2 * size:
        raise ValueError(f"not a BCD value of at most {2 * size} digits: {digits!r}")
    return bytes.fromhex(digits.rjust(2 * size, "0"))


def bcd_decode(data: bytes) -> str | None:
    text = data.hex()
    return text if text.isascii() and text.isdigit() else None


def nibbles(data: bytes) -> str:
    """Each nibble as EMQX writes it (digits, and ``:;<=>?`` for A-F)."""
    return "".join(_NIBBLES[b >> 4] + _NIBBLES[b & 0xF] for b in data)


def phone_encode(phone: str, size: int) -> bytes:
    """The inverse of :func:`nibbles`, left-padded with zeros: a phone read
    from a non-BCD header goes back as the same bytes."""
    if len(phone) > 2 * size or any(c not in _NIBBLES for c in phone):
        raise ValueError(f"not a terminal phone of at most {2 * size} digits: {phone!r}")
    padded = phone.rjust(2 * size, "0")
    return bytes((ord(padded[i]) - 0x30) << 4 | (ord(padded[i + 1]) - 0x30) for i in range(0, len(padded), 2))


def encode_header(header: Header) -> bytes:
    props = (header.body_len & _PROP_LENGTH) | ((header.encrypt & 0x7) << _PROP_ENCRYPT_SHIFT)
    if header.frag_total is not None:
        props |= _PROP_SUBPACKAGE
    out = bytearray(header.msg_id.to_bytes(2, "big"))
    if header.edition == 2019:
        out += (props | _PROP_2019).to_bytes(2, "big")
        out.append(header.proto_ver & 0xFF)
        out += phone_encode(header.phone, 10)
    else:
        out += props.to_bytes(2, "big")
        out += phone_encode(header.phone, 6)
    out += header.msg_sn.to_bytes(2, "big")
    if header.frag_total is not None:
        out += header.frag_total.to_bytes(2, "big") + (header.frag_sn or 0).to_bytes(2, "big")
    return bytes(out)


def encode_frame(header: Header, body: bytes = b"") -> bytes:
    """A complete, escaped frame with flags; the body length is set here."""
    if len(body) > MAX_BODY_BYTES:
        raise ValueError(f"body of {len(body)} bytes needs subpackaging")
    raw = encode_header(_with_body_len(header, len(body))) + body
    return bytes([FLAG]) + escape(raw + bytes([checksum(raw)])) + bytes([FLAG])


def _with_body_len(header: Header, body_len: int) -> Header:
    if header.body_len == body_len:
        return header
    return Header(
        header.msg_id, header.phone, header.msg_sn, header.edition, header.proto_ver,
        header.encrypt, body_len, header.frag_total, header.frag_sn,
    )  # fmt: skip


def decode_header(raw: bytes, edition: Edition | None = None) -> Header | FrameError:
    """Read the header at the start of an unescaped frame, in the layout bit
    14 names or in ``edition`` when given. The phone is never refused: see
    :func:`nibbles`."""
    if len(raw) < 4:
        return FrameError("truncated", f"{len(raw)} bytes, no header")
    msg_id = int.from_bytes(raw[0:2], "big")
    props = int.from_bytes(raw[2:4], "big")
    if edition is None:
        edition = 2019 if props & _PROP_2019 else 2013
    subpackaged = bool(props & _PROP_SUBPACKAGE)
    fixed_end = header_size(edition, subpackaged)
    if len(raw) < fixed_end:
        return FrameError("truncated", f"{len(raw)} bytes, header needs {fixed_end}")
    pos, proto_ver = (5, raw[4]) if edition == 2019 else (4, 1)
    phone_len = _PHONE_DIGITS[edition] // 2
    phone = nibbles(raw[pos : pos + phone_len])
    pos += phone_len
    msg_sn = int.from_bytes(raw[pos : pos + 2], "big")
    frag_total = frag_sn = None
    if subpackaged:
        frag_total = int.from_bytes(raw[pos + 2 : pos + 4], "big")
        frag_sn = int.from_bytes(raw[pos + 4 : pos + 6], "big")
    return Header(
        msg_id, phone, msg_sn, edition, proto_ver,
        (props >> _PROP_ENCRYPT_SHIFT) & 0x7, props & _PROP_LENGTH, frag_total, frag_sn,
    )  # fmt: skip


def _layout(content: bytes) -> tuple[Edition | None, bool]:
    """(header layout, whether the declared length agrees with it).

    Bit 14 is trusted when the 2019 header length agrees with the bytes;
    otherwise a 2013 header that agrees wins; with no agreement at all the
    bit decides (and the length is a mismatch)."""
    props = int.from_bytes(content[2:4], "big")
    declared, subpackaged = props & _PROP_LENGTH, bool(props & _PROP_SUBPACKAGE)
    layouts: tuple[Edition, ...] = (2019, 2013) if props & _PROP_2019 else (2013,)
    for edition in layouts:
        if header_size(edition, subpackaged) + declared == len(content):
            return edition, True
    for edition in layouts:
        if header_size(edition, subpackaged) <= len(content):
            return edition, False
    return None, False


def decode_frame(escaped: bytes, *, accept_length_mismatch: bool = True) -> Frame | FrameError:
    """Check one frame given without its 0x7e flags."""
    raw = unescape(escaped)
    if raw is None:
        return FrameError("bad_escape", "0x7d not followed by 0x01 or 0x02")
    if len(raw) < 5:
        return FrameError("truncated", f"{len(raw)} bytes")
    content, check = raw[:-1], raw[-1]
    edition, agrees = _layout(content)
    header = decode_header(content, edition)
    if isinstance(header, FrameError):
        return header
    if checksum(content) != check:
        return FrameError("bad_checksum", f"{checksum(content):#04x} != {check:#04x}", header)
    body = content[header.size :]
    quirks: list[str] = []
    if edition == 2013 and content[2] & (_PROP_2019 >> 8):
        quirks.append("version_bit")
    if not agrees:
        if not accept_length_mismatch:
            if len(body) < header.body_len:
                return FrameError("truncated", f"body {len(body)} < {header.body_len} bytes", header)
            return FrameError("bad_length", f"body {len(body)} > {header.body_len} bytes", header)
        quirks.append("length_mismatch")
    if not (header.phone.isascii() and header.phone.isdigit()):
        quirks.append("non_bcd_phone")
    return Frame(header, body, tuple(quirks))


class FrameSplitter:
    """Split a byte stream into frames; bounded memory whatever arrives.

    Frames are the runs between two 0x7e. Empty runs (back-to-back flags,
    ``7e 7e``) are skipped; bytes before the first flag are noise and skipped.
    A run that grows past ``max_frame_bytes`` without a closing flag is
    reported once as ``oversize`` and skipped up to the next flag.
    """

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, *, accept_length_mismatch: bool = True) -> None:
        self.max_frame_bytes = max_frame_bytes
        self.accept_length_mismatch = accept_length_mismatch
        self._buf = bytearray()
        self._started = False  # a 0x7e has been seen: _buf is inside a frame
        self._skipping = False  # inside an oversize run: drop until the next flag

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        return list(self._split(data))

    def close(self) -> list[FrameError]:
        """End of stream: a started, unfinished frame is truncated."""
        leftover = self._started and bool(self._buf) and not self._skipping
        self._buf.clear()
        self._started = self._skipping = False
        return [FrameError("truncated", "stream ended inside a frame")] if leftover else []

    def _split(self, data: bytes) -> Iterator[Frame | FrameError]:
        start = 0
        while True:
            end = data.find(FLAG, start)
            if end < 0:
                yield from self._keep(data[start:])
                return
            yield from self._finish(data[start:end])
            start = end + 1
            if not self._buf and start < len(data) and data[start] == FLAG:
                # A run of flags holds no frames: skip it at C speed, so a
                # 0x7e flood costs one search per chunk, not a loop per byte.
                more = _NOT_FLAG.search(data, start)
                start = more.start() if more else len(data)

    def _keep(self, chunk: bytes) -> Iterator[FrameError]:
        if not self._started or self._skipping:
            return
        self._buf += chunk
        if len(self._buf) > self.max_frame_bytes:
            self._buf.clear()
            self._skipping = True
            yield FrameError("oversize", f"no end flag within {self.max_frame_bytes} bytes")

    def _finish(self, chunk: bytes) -> Iterator[Frame | FrameError]:
        """A flag arrived: ``chunk`` closes the current run."""
        was_started, was_skipping = self._started, self._skipping
        self._started, self._skipping = True, False
        if not was_started or was_skipping:
            self._buf.clear()
            return
        self._buf += chunk
        run, self._buf = bytes(self._buf), bytearray()
        if not run:
            return
        if len(run) > self.max_frame_bytes:
            yield FrameError("oversize", f"{len(run)} bytes > {self.max_frame_bytes}")
            return
        yield decode_frame(run, accept_length_mismatch=self.accept_length_mismatch)


class Reassembler:
    """Joins a subpackaged message (props bit 13) from its packets.

    Packets of one message share ``msg_id`` and consecutive ``msg_sn``, so
    ``msg_sn - frag_sn`` identifies the message. Memory stays bounded: a
    message may have at most ``max_parts`` packets, at most ``max_pending``
    messages are incomplete at once and together they hold at most
    ``max_bytes`` (past either bound the oldest incomplete message is
    dropped and reported as ``oversize``).
    """

    def __init__(self, max_parts: int = 64, max_pending: int = 4, max_bytes: int = 65536) -> None:
        self.max_parts = max_parts
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self._pending: dict[tuple[int, int], dict[int, bytes]] = {}
        self._bytes = 0

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        self._pending.clear()
        self._bytes = 0

    def add(self, frame: Frame) -> Frame | FrameError | None:
        """The whole message once its last packet arrived, else ``None``."""
        header = frame.header
        total, sn = header.frag_total, header.frag_sn
        if total is None or sn is None:
            return frame
        if total > self.max_parts:
            return FrameError("oversize", f"{total} packets > {self.max_parts}", header)
        if not 1 <= sn <= total:
            return FrameError("bad_header", f"packet {sn} of {total}", header)
        key = (header.msg_id, (header.msg_sn - sn) & 0xFFFF)
        parts = self._pending.setdefault(key, {})
        self._bytes += len(frame.body) - len(parts.get(sn, b""))
        parts[sn] = frame.body
        if len(parts) < total:
            dropped = False
            while len(self._pending) > self.max_pending or self._bytes > self.max_bytes:
                oldest = next(iter(self._pending))
                self._bytes -= sum(len(p) for p in self._pending.pop(oldest).values())
                dropped = True
            if dropped:
                return FrameError("oversize", f"reassembly over {self.max_pending} messages or {self.max_bytes} bytes")
            return None
        del self._pending[key]
        body = b"".join(parts[i] for i in range(1, total + 1))
        self._bytes -= len(body)
        first = Header(
            header.msg_id, header.phone, (key[1] + 1) & 0xFFFF, header.edition,
            header.proto_ver, header.encrypt, len(body),
        )  # fmt: skip
        return Frame(first, body)
