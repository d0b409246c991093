"""JT/T 808 terminal messages: decode, encode, and the EMQX gateway JSON shape.

Pure. ``decode_body`` turns a checked frame into one message value; each
value knows its id, how to write its body, and the ``body`` object EMQX's
JT/T 808 gateway builds for it (``to_json``), so our TCP gateway and EMQX
publish the same JSON and feed one decoder. ``decode_body`` never raises:

* the messages the platform acts on are typed (register, authenticate,
  locations, the terminal's general response, heartbeat, deregister);
* every other id EMQX parses is a :class:`Report` holding EMQX's body object
  (:mod:`.bodies`);
* an id nobody parses is :class:`Unknown`, published as EMQX does
  (``{"unknown_id": true, "data": <base64>}``) and answered "not supported";
* a body without its id's layout is a ``FrameError`` ``bad_body``.

Tolerated quirks of register and authenticate (``Message.quirks``):

====================  ====================================================
register_2011         a 0x0100 in the 2011 layout (8-byte model, no 2013
                      fields): read, answered 0x8100 like any register
register_layout_2013  a 2019 terminal sending the 2013 register layout
auth_layout_2013      a 2019 terminal sending a bare 2013 auth code
auth_truncated        a 2019 auth shorter than its IMEI and version fields
response_padded       a 0x0001 longer than its 5 bytes (the rest ignored)
====================  ====================================================

Times in bodies are BCD ``YYMMDDhhmmss`` in Beijing time (GMT+8).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from gpsd_server.core.jt808 import bodies
from gpsd_server.core.jt808 import frame as jt808
from gpsd_server.core.jt808.codec import (
    BEIJING_OFFSET_S,
    BodyReader,
    Encoding,
    b64,
    bcd_time_to_posix,
    clean,
    encode_text,
    fixed,
    posix_to_bcd_time,
    raw_text,
    strip_tail_zeros,
    text,
    u,
)
from gpsd_server.core.jt808.downlink import PlatformResponse, RegisterResponse
from gpsd_server.core.jt808.frame import Edition, FrameError, Header
from gpsd_server.core.jt808.location import (
    BATCH_BACKFILL,
    BATCH_NORMAL,
    EXTRA_MILEAGE,
    EXTRA_SATELLITES,
    LOCATION_FIXED_BYTES,
    Location,
    LocationBatch,
    extras_to_json,
)

# Platform general response (0x8001) results.
RESULT_OK = 0
RESULT_FAILURE = 1
RESULT_MESSAGE_ERROR = 2
RESULT_UNSUPPORTED = 3
# 0x8100 results.
REGISTER_NO_SUCH_TERMINAL = 4

QUERY_SERVER_TIME = 0x0004
MEDIA_DATA = 0x0801


@dataclass(frozen=True, slots=True)
class TerminalResponse:
    """0x0001: the terminal's answer to a platform command."""

    msg_id: ClassVar[int] = jt808.TERMINAL_RESPONSE
    reply_sn: int
    reply_id: int
    result: int
    quirks: tuple[str, ...] = ()

    def encode(self, edition: Edition = 2013, encoding: Encoding = "gbk") -> bytes:
        return self.reply_sn.to_bytes(2, "big") + self.reply_id.to_bytes(2, "big") + bytes([self.result])

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.reply_sn, "id": self.reply_id, "result": self.result}


@dataclass(frozen=True, slots=True)
class Heartbeat:
    msg_id: ClassVar[int] = jt808.HEARTBEAT
    quirks: ClassVar[tuple[str, ...]] = ()

    def encode(self, edition: Edition = 2013, encoding: Encoding = "gbk") -> bytes:
        return b""

    def to_json(self) -> dict[str, Any]:
        return {}


@dataclass(frozen=True, slots=True)
class Deregister:
    msg_id: ClassVar[int] = jt808.DEREGISTER
    quirks: ClassVar[tuple[str, ...]] = ()

    def encode(self, edition: Edition = 2013, encoding: Encoding = "gbk") -> bytes:
        return b""

    def to_json(self) -> dict[str, Any]:
        return {}


RegisterLayout = Literal[2011, 2013, 2019]
# Field widths of 0x0100 per layout: manufacturer, model, device id.
_REGISTER_WIDTHS: dict[RegisterLayout, tuple[int, int, int]] = {2011: (5, 8, 7), 2013: (5, 20, 7), 2019: (11, 30, 30)}


def _register_size(layout: RegisterLayout) -> int:
    man, mod, dev = _REGISTER_WIDTHS[layout]
    return 4 + man + mod + dev + 1


@dataclass(frozen=True, slots=True)
class Register:
    """0x0100. Fields hold the strings as EMQX publishes them (padding kept
    where EMQX keeps it); :attr:`plate_text` and friends are for people."""

    msg_id: ClassVar[int] = jt808.REGISTER
    province: int
    city: int
    manufacturer: str
    model: str
    device_id: str
    plate_color: int
    plate: str
    layout: RegisterLayout = 2013
    quirks: tuple[str, ...] = ()

    @property
    def plate_text(self) -> str:
        return clean(self.plate)

    @property
    def model_text(self) -> str:
        return clean(self.model)

    def encode(self, edition: Edition = 2013, encoding: Encoding = "gbk") -> bytes:
        layout: RegisterLayout = 2011 if self.layout == 2011 else edition
        man, mod, dev = _REGISTER_WIDTHS[layout]
        return (
            self.province.to_bytes(2, "big")
            + self.city.to_bytes(2, "big")
            + fixed(self.manufacturer, man)
            + fixed(self.model, mod)
            + fixed(self.device_id, dev)
            + bytes([self.plate_color])
            + encode_text(self.plate, encoding)
        )

    @classmethod
    def decode(cls, body: bytes, edition: Edition = 2013, encoding: Encoding = "gbk") -> Register | None:
        quirks: tuple[str, ...] = ()
        layout: RegisterLayout
        if edition == 2019 and len(body) >= _register_size(2019):
            layout = 2019
        elif len(body) >= _register_size(2013):
            layout = 2013
            quirks = ("register_layout_2013",) if edition == 2019 else ()
        elif len(body) >= _register_size(2011):
            layout, quirks = 2011, ("register_2011",)
        else:
            return None
        man, mod, dev = _REGISTER_WIDTHS[layout]
        r = BodyReader(body)
        province, city = r.uint(2), r.uint(2)
        manufacturer, model, device_id, color = r.take(man), r.take(mod), r.take(dev), r.uint(1)
        plate = r.rest()
        if layout == 2019:
            manufacturer = strip_tail_zeros(manufacturer)
        return cls(
            province, city, raw_text(manufacturer), raw_text(strip_tail_zeros(model)),
            raw_text(strip_tail_zeros(device_id)), color, text(plate, encoding), layout, quirks,
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
    """0x0102. 2013: the code is the whole body; 2019 adds a code length,
    the IMEI (15 bytes) and the software version (20 bytes)."""

    msg_id: ClassVar[int] = jt808.AUTHENTICATE
    code: str
    imei: str = ""
    software_version: str = ""
    layout: Literal[2013, 2019] = 2013
    quirks: tuple[str, ...] = ()

    @property
    def code_text(self) -> str:
        return clean(self.code)

    def encode(self, edition: Edition = 2013, encoding: Encoding = "gbk") -> bytes:
        code = self.code.encode("utf-8")
        if edition == 2013:
            return code
        return bytes([len(code)]) + code + fixed(self.imei, 15) + fixed(self.software_version, 20)

    @classmethod
    def decode(cls, body: bytes, edition: Edition = 2013, encoding: Encoding = "gbk") -> Authenticate | None:
        if edition == 2019 and body and 1 + body[0] <= len(body):
            r = BodyReader(body)
            code = r.take(r.uint(1))
            imei, version = r.take(15), r.take(20)
            return cls(
                raw_text(code), raw_text(strip_tail_zeros(imei)), raw_text(strip_tail_zeros(version)), 2019,
                ("auth_truncated",) if r.short else (),
            )  # fmt: skip
        quirks = ("auth_layout_2013",) if edition == 2019 else ()
        return cls(raw_text(body), layout=2013, quirks=quirks)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code}
        if self.layout == 2019:
            out |= {"imei": self.imei, "software_version": self.software_version}
        return out


@dataclass(frozen=True, slots=True)
class Report:
    """Any other message EMQX parses: its id and EMQX's body object."""

    msg_id: int
    body: dict[str, Any] = field(hash=False)
    quirks: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return self.body


@dataclass(frozen=True, slots=True)
class Unknown:
    """A message id neither gateway parses (vendor ids, JT/T 1078, ...)."""

    msg_id: int
    data: bytes
    quirks: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        return {"unknown_id": True, "data": b64(self.data)}


Message = (
    TerminalResponse | Heartbeat | Deregister | Register | Authenticate | Location | LocationBatch | Report | Unknown
)  # fmt: skip


def _decode_response(body: bytes) -> TerminalResponse | None:
    if len(body) < 5:
        return None
    quirks = ("response_padded",) if len(body) > 5 else ()
    return TerminalResponse(u(body[0:2]), u(body[2:4]), body[4], quirks)


def decode_body(header: Header, body: bytes, *, encoding: Encoding = "gbk") -> Message | FrameError:
    """The body of a checked frame as a message value."""
    msg_id, edition = header.msg_id, header.body_edition
    message: Message | None
    if msg_id == jt808.TERMINAL_RESPONSE:
        message = _decode_response(body)
    elif msg_id == jt808.HEARTBEAT:
        message = Heartbeat()
    elif msg_id == jt808.DEREGISTER:
        message = Deregister()
    elif msg_id == jt808.REGISTER:
        message = Register.decode(body, edition, encoding)
    elif msg_id == jt808.AUTHENTICATE:
        message = Authenticate.decode(body, edition, encoding)
    elif msg_id == jt808.LOCATION:
        message = Location.decode(body, edition)
    elif msg_id == jt808.LOCATION_BATCH:
        message = LocationBatch.decode(body, edition)
    elif msg_id in bodies.READERS:
        doc = bodies.READERS[msg_id](body, edition, encoding)
        message = None if doc is None else Report(msg_id, doc)
    else:
        return Unknown(msg_id, body)
    if message is None:
        return FrameError("bad_body", f"message {msg_id:#06x}: {len(body)} bytes", header)
    return message


def emqx_header(header: Header) -> dict[str, Any]:
    head: dict[str, Any] = {
        "msg_id": header.msg_id,
        "encrypt": header.encrypt,
        "len": header.body_len,
        "phone": header.phone,
        "msg_sn": header.msg_sn,
    }
    if header.edition == 2019:
        head["proto_ver"] = header.proto_ver
    if header.frag_total is not None:
        head |= {"frag_total": header.frag_total, "frag_sn": header.frag_sn}
    return head


def emqx_json(header: Header, message: Message) -> dict[str, Any]:
    """``{"header": ..., "body": ...}`` as the EMQX JT/T 808 gateway publishes it."""
    return {"header": emqx_header(header), "body": message.to_json()}


def server_time(now: float) -> str:
    """0x8004's body: the platform's UTC time as BCD ``YYMMDDhhmmss``."""
    return posix_to_bcd_time(now, 0)


__all__ = [
    "BATCH_BACKFILL",
    "BATCH_NORMAL",
    "BEIJING_OFFSET_S",
    "EXTRA_MILEAGE",
    "EXTRA_SATELLITES",
    "LOCATION_FIXED_BYTES",
    "REGISTER_NO_SUCH_TERMINAL",
    "RESULT_FAILURE",
    "RESULT_MESSAGE_ERROR",
    "RESULT_OK",
    "RESULT_UNSUPPORTED",
    "Authenticate",
    "Deregister",
    "Heartbeat",
    "Location",
    "LocationBatch",
    "Message",
    "PlatformResponse",
    "Register",
    "RegisterResponse",
    "Report",
    "TerminalResponse",
    "Unknown",
    "bcd_time_to_posix",
    "decode_body",
    "emqx_json",
    "extras_to_json",
    "posix_to_bcd_time",
]
