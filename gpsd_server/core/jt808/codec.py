"""Small readers and writers every JT/T 808 body shares. Pure.

Strings follow the EMQX gateway, so that both gateways publish the same
JSON: a few fields (plate, driver name, organisation, string parameters)
are text in the configured encoding (``Encoding``: GBK as the standard
says, or UTF-8, EMQX's default); every other string field is passed on as
its bytes read as UTF-8. ``strip_tail_zeros`` is EMQX's ``remove_tail_zero``
(an all-NUL field keeps its first byte).
"""

from __future__ import annotations

import base64
import calendar
from datetime import UTC, datetime
from typing import Literal

from gpsd_server.core.jt808.frame import bcd_decode, bcd_encode, nibbles

Encoding = Literal["gbk", "utf8"]
BEIJING_OFFSET_S = 8 * 3600


class BodyReader:
    """Big-endian cursor; ``short`` is set instead of raising past the end."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.short = data, 0, False

    @property
    def left(self) -> int:
        return max(len(self.data) - self.pos, 0)

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        self.short |= len(chunk) < n
        self.pos += n
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def rest(self) -> bytes:
        chunk, self.pos = self.data[self.pos :], len(self.data)
        return chunk


def raw_text(data: bytes) -> str:
    """A string field EMQX passes through as bytes."""
    return data.decode("utf-8", errors="replace")


def text(data: bytes, encoding: Encoding) -> str:
    """A string field EMQX converts with its ``string_encoding``."""
    return data.decode("gbk" if encoding == "gbk" else "utf-8", errors="replace")


def encode_text(value: str, encoding: Encoding) -> bytes:
    return value.encode("gbk" if encoding == "gbk" else "utf-8", errors="replace")


def strip_tail_zeros(data: bytes) -> bytes:
    stripped = data.rstrip(b"\x00")
    return stripped if stripped or not data else data[:1]


def clean(value: str) -> str:
    """A fixed-width field for people: padding (NULs, spaces) removed."""
    return value.strip("\x00 ")


def fixed(value: str, size: int, encoding: Encoding = "gbk") -> bytes:
    return encode_text(value, encoding)[:size].ljust(size, b"\x00")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def u(data: bytes) -> int:
    return int.from_bytes(data, "big")


def bcd_time_to_posix(bcd: str) -> float | None:
    """``YYMMDDhhmmss`` Beijing time -> POSIX seconds, ``None`` if not a time."""
    if len(bcd) != 12 or not (bcd.isascii() and bcd.isdigit()):  # isdigit alone: '²', '２'
        return None
    yy, mo, dd, hh, mi, ss = (int(bcd[i : i + 2]) for i in range(0, 12, 2))
    if not (1 <= mo <= 12 and 1 <= dd <= calendar.monthrange(2000 + yy, mo)[1]):
        return None
    if hh > 23 or mi > 59 or ss > 59:
        return None
    return float(calendar.timegm((2000 + yy, mo, dd, hh, mi, ss)) - BEIJING_OFFSET_S)


def posix_to_bcd_time(ts: float, offset_s: int = BEIJING_OFFSET_S) -> str:
    return datetime.fromtimestamp(int(ts) + offset_s, UTC).strftime("%y%m%d%H%M%S")


__all__ = [
    "BodyReader",
    "Encoding",
    "b64",
    "bcd_decode",
    "bcd_encode",
    "bcd_time_to_posix",
    "clean",
    "encode_text",
    "fixed",
    "nibbles",
    "posix_to_bcd_time",
    "raw_text",
    "strip_tail_zeros",
    "text",
    "u",
]
