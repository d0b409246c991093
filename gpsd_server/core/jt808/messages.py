"""JT/T 808 message bodies: decode, encode, and the EMQX gateway JSON shape.

Pure. Each message type knows its id, how to read and write its body in both
editions, and the ``body`` object the EMQX JT/T 808 gateway publishes for it
(keys as in EMQX's data exchange guide), so our own TCP gateway and EMQX feed
one decoder. ``decode_body`` never raises: a body it cannot read is a
``FrameError`` with reason ``bad_body`` (malformed) or ``unsupported`` (a
message id this module does not know).

Times in bodies are BCD ``YYMMDDhhmmss`` in Beijing time (GMT+8).
"""

from __future__ import annotations

import base64
import calendar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from gpsd_server.core.jt808 import frame as jt808
from gpsd_server.core.jt808.frame import Edition, FrameError, Header

BEIJING_OFFSET_S = 8 * 3600
LOCATION_FIXED_BYTES = 28

# Platform general response (0x8001) results.
RESULT_OK = 0
RESULT_FAILURE = 1
RESULT_MESSAGE_ERROR = 2
RESULT_UNSUPPORTED = 3

# Additional location items (id, EMQX key) that are plain unsigned integers.
_EXTRA_INTEGERS: dict[int, tuple[str, int]] = {
    0x01: ("mileage", 4),  # 0.1 km
    0x02: ("fuel_meter", 2),  # 0.1 L
    0x03: ("speed", 2),  # tachograph speed, 0.1 km/h
    0x04: ("alarm_id", 2),
    0x06: ("carriage_temp", 2),  # 2019, sign-magnitude: passed on raw like EMQX
    0x30: ("rssi", 1),
    0x31: ("gnss_sat_num", 1),
}
EXTRA_MILEAGE = 0x01
EXTRA_SATELLITES = 0x31


class BodyReader:
    """Big-endian cursor; ``short`` is set instead of raising past the end."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos, self.short = data, 0, False

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


def _text(raw: bytes) -> str:
    # Terminals pad fixed fields with NULs (some with spaces) and write GBK.
    return raw.rstrip(b"\x00 ").decode("gbk", errors="replace")


def _fixed(text: str, size: int) -> bytes:
    return text.encode("gbk")[:size].ljust(size, b"\x00")


def bcd_time_to_posix(bcd: str) -> float | None:
    """``YYMMDDhhmmss`` Beijing time -> POSIX seconds, ``None`` if not a time."""
    if len(bcd) != 12 or not bcd.isdigit():
        return None
    yy, mo, dd, hh, mi, ss = (int(bcd[i : i + 2]) for i in range(0, 12, 2))
    if not (1 <= mo <= 12 and 1 <= dd <= calendar.monthrange(2000 + yy, mo)[1]):
        return None
    if hh > 23 or mi > 59 or ss > 59:
        return None
    return float(calendar.timegm((2000 + yy, mo, dd, hh, mi, ss)) - BEIJING_OFFSET_S)


def posix_to_bcd_time(ts: float) -> str:
    return datetime.fromtimestamp(int(ts) + BEIJING_OFFSET_S, UTC).strftime("%y%m%d%H%M%S")


@dataclass(frozen=True, slots=True)
class TerminalResponse:
    msg_id: ClassVar[int] = jt808.TERMINAL_RESPONSE
    reply_sn: int
    reply_id: int
    result: int

    def encode(self, edition: Edition) -> bytes:
        return _response(self.reply_sn, self.reply_id, self.result)

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.reply_sn, "id": self.reply_id, "result": self.result}


@dataclass(frozen=True, slots=True)
class PlatformResponse:
    """0x8001, the answer to most terminal messages."""

    msg_id: ClassVar[int] = jt808.PLATFORM_RESPONSE
    reply_sn: int
    reply_id: int
    result: int = RESULT_OK

    def encode(self, edition: Edition) -> bytes:
        return _response(self.reply_sn, self.reply_id, self.result)

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.reply_sn, "id": self.reply_id, "result": self.result}


def _response(sn: int, msg_id: int, result: int) -> bytes:
    return sn.to_bytes(2, "big") + msg_id.to_bytes(2, "big") + bytes([result])


def _decode_response(body: bytes) -> tuple[int, int, int] | None:
    if len(body) != 5:
        return None
    return int.from_bytes(body[0:2], "big"), int.from_bytes(body[2:4], "big"), body[4]


@dataclass(frozen=True, slots=True)
class RegisterResponse:
    """0x8100; the auth code is present only on success (result 0)."""

    msg_id: ClassVar[int] = jt808.REGISTER_RESPONSE
    reply_sn: int
    result: int
    auth_code: str = ""

    def encode(self, edition: Edition) -> bytes:
        code = self.auth_code.encode("gbk") if self.result == RESULT_OK else b""
        return self.reply_sn.to_bytes(2, "big") + bytes([self.result]) + code

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seq": self.reply_sn, "result": self.result}
        if self.result == RESULT_OK:
            out["auth_code"] = self.auth_code
        return out


@dataclass(frozen=True, slots=True)
class Heartbeat:
    msg_id: ClassVar[int] = jt808.HEARTBEAT

    def encode(self, edition: Edition) -> bytes:
        return b""

    def to_json(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, slots=True)
class Deregister:
    msg_id: ClassVar[int] = jt808.DEREGISTER

    def encode(self, edition: Edition) -> bytes:
        return b""

    def to_json(self) -> dict[str, Any]:
        return {}


# Field widths of 0x0100 that grew in 2019: manufacturer, model, device id.
_REGISTER_WIDTHS = {2013: (5, 20, 7), 2019: (11, 30, 30)}


@dataclass(frozen=True, slots=True)
class Register:
    msg_id: ClassVar[int] = jt808.REGISTER
    province: int
    city: int
    manufacturer: str
    model: str
    device_id: str
    plate_color: int
    plate: str

    def encode(self, edition: Edition) -> bytes:
        man, mod, dev = _REGISTER_WIDTHS[edition]
        return (
            self.province.to_bytes(2, "big")
            + self.city.to_bytes(2, "big")
            + _fixed(self.manufacturer, man)
            + _fixed(self.model, mod)
            + _fixed(self.device_id, dev)
            + bytes([self.plate_color])
            + self.plate.encode("gbk")
        )

    @classmethod
    def decode(cls, body: bytes, edition: Edition) -> Register | None:
        man, mod, dev = _REGISTER_WIDTHS[edition]
        r = BodyReader(body)
        fields = (r.uint(2), r.uint(2), r.take(man), r.take(mod), r.take(dev), r.uint(1))
        plate = r.rest()
        if r.short:
            return None
        province, city, manufacturer, model, device_id, color = fields
        return cls(
            province, city, _text(manufacturer), _text(model), _text(device_id), color,
            _text(plate),
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "province": self.province,
            "city": self.city,
            "manufacturer": self.manufacturer,
            "model": self.model,
            "dev_id": self.device_id,
            "color": self.plate_color,
            "license_number": self.plate,
        }


@dataclass(frozen=True, slots=True)
class Authenticate:
    """0x0102. 2013: the code is the whole body; 2019 adds IMEI and version."""

    msg_id: ClassVar[int] = jt808.AUTHENTICATE
    code: str
    imei: str = ""
    software_version: str = ""

    def encode(self, edition: Edition) -> bytes:
        code = self.code.encode("gbk")
        if edition == 2013:
            return code
        return bytes([len(code)]) + code + _fixed(self.imei, 15) + _fixed(self.software_version, 20)

    @classmethod
    def decode(cls, body: bytes, edition: Edition) -> Authenticate | None:
        if edition == 2013:
            return cls(_text(body))
        r = BodyReader(body)
        code = r.take(r.uint(1))
        imei, version = r.take(15), r.rest()
        return None if r.short else cls(_text(code), _text(imei), _text(version))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code}
        if self.imei or self.software_version:
            out |= {
                "code_len": len(self.code.encode("gbk")),
                "imei": self.imei,
                "sw_version_len": len(self.software_version),
                "sw_version": self.software_version,
            }
        return out


@dataclass(frozen=True, slots=True)
class Location:
    """0x0200 body: the 28 fixed bytes plus additional items (id, raw value)."""

    msg_id: ClassVar[int] = jt808.LOCATION
    alarm: int
    status: int
    latitude: int  # degrees x 10^6, unsigned; status bit 2 means south
    longitude: int  # degrees x 10^6, unsigned; status bit 3 means west
    altitude: int  # metres
    speed: int  # 0.1 km/h
    direction: int  # degrees, 0-359
    time: str  # BCD YYMMDDhhmmss, Beijing time
    extras: tuple[tuple[int, bytes], ...] = ()

    def encode(self, edition: Edition = 2013) -> bytes:
        out = bytearray()
        for value, size in (
            (self.alarm, 4), (self.status, 4), (self.latitude, 4), (self.longitude, 4),
            (self.altitude, 2), (self.speed, 2), (self.direction, 2),
        ):  # fmt: skip
            out += value.to_bytes(size, "big")
        out += jt808.bcd_encode(self.time, 6)
        for item_id, raw in self.extras:
            out += bytes([item_id, len(raw)]) + raw
        return bytes(out)

    @classmethod
    def decode(cls, body: bytes, edition: Edition = 2013) -> Location | None:
        if len(body) < LOCATION_FIXED_BYTES:
            return None
        r = BodyReader(body)
        alarm, status, lat, lon = r.uint(4), r.uint(4), r.uint(4), r.uint(4)
        alt, speed, direction = r.uint(2), r.uint(2), r.uint(2)
        bcd = jt808.bcd_decode(r.take(6))
        if bcd is None:
            return None
        return cls(alarm, status, lat, lon, alt, speed, direction, bcd, _read_extras(r))

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "alarm": self.alarm,
            "status": self.status,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "altitude": self.altitude,
            "speed": self.speed,
            "direction": self.direction,
            "time": self.time,
        }
        if self.extras:
            out["extra"] = extras_to_json(self.extras)
        return out


def _read_extras(r: BodyReader) -> tuple[tuple[int, bytes], ...]:
    # A malformed tail (a vendor item with a wrong length) ends the list: the
    # position before it is still good, and losing it would be worse.
    items: list[tuple[int, bytes]] = []
    while r.pos + 2 <= len(r.data):
        item_id, size = r.uint(1), r.uint(1)
        value = r.take(size)
        if r.short:
            break
        items.append((item_id, value))
    return tuple(items)


def extras_to_json(extras: tuple[tuple[int, bytes], ...]) -> dict[str, Any]:
    """Additional items as EMQX names them; unknown ids as base64 by decimal id."""
    out: dict[str, Any] = {}
    for item_id, value in extras:
        known = _EXTRA_INTEGERS.get(item_id)
        if known is not None and len(value) == known[1]:
            out[known[0]] = int.from_bytes(value, "big")
        elif item_id == 0x11 and len(value) in (1, 5):
            alarm = {"type": value[0]}
            out["overspeed_alarm"] = alarm | ({"id": _u(value[1:5])} if len(value) == 5 else {})
        elif item_id == 0x12 and len(value) == 6:
            out["in_out_alarm"] = {"type": value[0], "id": _u(value[1:5]), "direction": value[5]}
        elif item_id == 0x13 and len(value) == 7:
            out["path_time_alarm"] = {"id": _u(value[0:4]), "time": _u(value[4:6]), "result": value[6]}
        elif item_id == 0x2A and len(value) == 2:
            out["io_status"] = {"deep_sleep": value[0] >> 7 & 1, "sleep": value[0] >> 6 & 1}
        elif item_id == 0x2B and len(value) == 4:
            out["analog"] = {"ad0": _u(value[2:4]), "ad1": _u(value[0:2])}
        elif item_id >= 0xE0:
            out.setdefault("custome", {})[str(item_id)] = _b64(value)
        else:
            out[str(item_id)] = _b64(value)
    return out


def _u(data: bytes) -> int:
    return int.from_bytes(data, "big")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


BATCH_NORMAL = 0
BATCH_BACKFILL = 1  # blind-area backfill: positions stored while offline


@dataclass(frozen=True, slots=True)
class LocationBatch:
    """0x0704: count WORD, type BYTE, then (length WORD, 0x0200 body) items."""

    msg_id: ClassVar[int] = jt808.LOCATION_BATCH
    kind: int
    items: tuple[Location, ...]

    def encode(self, edition: Edition = 2013) -> bytes:
        out = bytearray(len(self.items).to_bytes(2, "big") + bytes([self.kind]))
        for item in self.items:
            body = item.encode(edition)
            out += len(body).to_bytes(2, "big") + body
        return bytes(out)

    @classmethod
    def decode(cls, body: bytes, edition: Edition = 2013) -> LocationBatch | None:
        r = BodyReader(body)
        count, kind = r.uint(2), r.uint(1)
        items: list[Location] = []
        for _ in range(count):
            item = Location.decode(r.take(r.uint(2)))
            if r.short or item is None:
                return None
            items.append(item)
        return None if r.short else cls(kind, tuple(items))

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "length": len(self.items),
            "location": [item.to_json() for item in self.items],
        }


Message = (
    TerminalResponse | PlatformResponse | RegisterResponse | Heartbeat | Deregister
    | Register | Authenticate | Location | LocationBatch
)  # fmt: skip


def decode_body(header: Header, body: bytes) -> Message | FrameError:
    """The body of a checked frame as a message value."""
    msg_id, edition = header.msg_id, header.edition
    message: Message | None
    if msg_id in (jt808.TERMINAL_RESPONSE, jt808.PLATFORM_RESPONSE):
        fields = _decode_response(body)
        kind = TerminalResponse if msg_id == jt808.TERMINAL_RESPONSE else PlatformResponse
        message = None if fields is None else kind(*fields)
    elif msg_id == jt808.REGISTER_RESPONSE:
        message = _decode_register_response(body)
    elif msg_id in (jt808.HEARTBEAT, jt808.DEREGISTER):
        message = Heartbeat() if msg_id == jt808.HEARTBEAT else Deregister()
    elif msg_id == jt808.REGISTER:
        message = Register.decode(body, edition)
    elif msg_id == jt808.AUTHENTICATE:
        message = Authenticate.decode(body, edition)
    elif msg_id == jt808.LOCATION:
        message = Location.decode(body, edition)
    elif msg_id == jt808.LOCATION_BATCH:
        message = LocationBatch.decode(body, edition)
    else:
        return FrameError("unsupported", f"message id {msg_id:#06x}", header)
    if message is None:
        return FrameError("bad_body", f"message {msg_id:#06x}: {len(body)} bytes", header)
    return message


def _decode_register_response(body: bytes) -> RegisterResponse | None:
    if len(body) < 3:
        return None
    code = _text(body[3:]) if body[2] == RESULT_OK else ""
    return RegisterResponse(int.from_bytes(body[0:2], "big"), body[2], code)


def emqx_json(header: Header, message: Message) -> dict[str, Any]:
    """``{"header": ..., "body": ...}`` as the EMQX JT/T 808 gateway publishes it."""
    head: dict[str, Any] = {
        "msg_id": header.msg_id,
        "encrypt": header.encrypt,
        "len": header.body_len,
        "phone": header.phone,
        "msg_sn": header.msg_sn,
    }
    if header.edition == 2019:
        head["proto_ver"] = header.proto_ver
    return {"header": head, "body": message.to_json()}
