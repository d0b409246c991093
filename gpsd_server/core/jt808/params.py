"""Terminal parameters (JT/T 808 table 12): their types, read from 0x0104 and
written into 0x8103, with values as EMQX's JSON carries them (integers for
DWORD/WORD/BYTE, text for strings, base64 for the CAN-ID block
0x0110-0x01FF and for ids the standard does not define). Pure."""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from gpsd_server.core.jt808.codec import Encoding, b64, encode_text, text

ParamType = Literal["dword", "word", "byte", "string", "byte8", "reserved"]

HEARTBEAT_INTERVAL = 0x0001
REPORT_INTERVAL_SLEEP = 0x0027  # seconds between reports while the vehicle sleeps (ACC off)
REPORT_INTERVAL_DEFAULT = 0x0029  # seconds between reports by default

_STRINGS = frozenset(
    (0x0010, 0x0011, 0x0012, 0x0013, 0x0014, 0x0015, 0x0016, 0x0017, 0x001A, 0x001D,
     0x0040, 0x0041, 0x0042, 0x0043, 0x0044, 0x0048, 0x0049, 0x0083)
)  # fmt: skip
_WORDS = frozenset((0x0031, 0x005B, 0x005C, 0x005D, 0x005E, 0x0081, 0x0082, 0x0101, 0x0103))
_BYTES = frozenset((0x0084, 0x0090, 0x0091, 0x0092, 0x0094))
_DWORDS = frozenset(
    (*range(0x0001, 0x0008), 0x0018, 0x0019, 0x001B, 0x001C, 0x0020, 0x0021, 0x0022, 0x0027, 0x0028, 0x0029,
     0x002C, 0x002D, 0x002E, 0x002F, 0x0030, 0x0045, 0x0046, 0x0047, *range(0x0050, 0x005B), 0x0064, 0x0065,
     *range(0x0070, 0x0075), 0x0080, 0x0093, 0x0095, 0x0100, 0x0102)
)  # fmt: skip
_SIZES = {"dword": 4, "word": 2, "byte": 1}


def param_type(param_id: int) -> ParamType:
    if param_id in _DWORDS:
        return "dword"
    if param_id in _WORDS:
        return "word"
    if param_id in _BYTES:
        return "byte"
    if param_id in _STRINGS:
        return "string"
    if 0x0110 <= param_id <= 0x01FF:
        return "byte8"
    return "reserved"


def decode_param_value(param_id: int, raw: bytes, encoding: Encoding) -> int | str:
    kind = param_type(param_id)
    if kind in _SIZES:
        return int.from_bytes(raw, "big")
    if kind == "string":
        return text(raw, encoding)
    return b64(raw)


def encode_param_value(param_id: int, value: int | str, encoding: Encoding) -> bytes:
    """A value as 0x8103 carries it; ``ValueError`` naming the parameter when
    it does not fit its type."""
    kind = param_type(param_id)
    if kind in _SIZES:
        size = _SIZES[kind]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << (8 * size):
            raise ValueError(f"parameter {param_id:#06x} takes an integer of {size} bytes")
        return value.to_bytes(size, "big")
    if not isinstance(value, str):
        raise ValueError(f"parameter {param_id:#06x} takes a string")
    if kind == "string":
        data = encode_text(value, encoding)
    else:
        try:
            data = base64.b64decode(value, validate=True)
        except binascii.Error:
            raise ValueError(f"parameter {param_id:#06x} takes base64") from None
        if kind == "byte8" and len(data) != 8:
            raise ValueError(f"parameter {param_id:#06x} takes 8 bytes")
    if len(data) > 255:
        raise ValueError(f"parameter {param_id:#06x}: value longer than 255 bytes")
    return data
