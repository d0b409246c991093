"""Platform -> terminal messages: the answers the standard prescribes and the
commands operators send. Pure.

Each type encodes its body for either edition and reads/writes the JSON
EMQX's gateway takes on ``jt808/{clientid}/{phone}/dn`` (``to_json`` /
``from_json``), so a command goes out the same way through our gateway
(bytes) and through EMQX (JSON): see docs/emqx-jt808-json.md, "Downlink".

==========  ==========================  =====================================
0x8001      PlatformResponse            answer to most terminal messages
0x8004      ServerTime                  answer to 0x0004 (2019): UTC time
0x8100      RegisterResponse            answer to 0x0100, with the auth code
0x8103      SetParameters               e.g. reporting intervals 0x0027/0x0029
0x8201      PositionQuery               the terminal answers 0x0201
0x8300      TextMessage                 shown on the screen, read out by TTS
0x8800      MediaAck                    answer to 0x0801 multimedia data
==========  ==========================  =====================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from gpsd_server.core.jt808 import frame as jt808
from gpsd_server.core.jt808.codec import BodyReader, Encoding, encode_text, nibbles, text, u
from gpsd_server.core.jt808.frame import Edition
from gpsd_server.core.jt808.params import decode_param_value, encode_param_value

SERVER_TIME = 0x8004
SET_PARAMETERS = 0x8103
POSITION_QUERY = 0x8201
TEXT_MESSAGE = 0x8300
MEDIA_ACK = 0x8800

# 0x8300 flag bits (JT/T 808-2013 table 38): 0 emergency, 2 terminal display,
# 3 TTS read-out, 4 advertising screen. 2019 keeps 2 and 3.
TEXT_DISPLAY = 1 << 2
TEXT_TTS = 1 << 3
TEXT_MAX_BYTES = 1000  # a 0x8300 body fits one packet (1023 bytes)


class JsonError(ValueError):
    """A downlink JSON object without the fields its message needs."""


def _int(doc: dict[str, Any], key: str, size: int, default: int | None = None) -> int:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << (8 * size):
        raise JsonError(f"body.{key} must be an integer of {size} bytes")
    return value


@dataclass(frozen=True, slots=True)
class PlatformResponse:
    """0x8001, the answer to most terminal messages."""

    msg_id: ClassVar[int] = jt808.PLATFORM_RESPONSE
    reply_sn: int
    reply_id: int
    result: int = 0

    def encode(self, edition: Edition = 2013, encoding: Encoding = "gbk") -> bytes:
        return self.reply_sn.to_bytes(2, "big") + self.reply_id.to_bytes(2, "big") + bytes([self.result])

    def to_json(self, edition: Edition = 2013) -> dict[str, Any]:
        return {"seq": self.reply_sn, "id": self.reply_id, "result": self.result}

    @classmethod
    def from_json(cls, body: dict[str, Any], edition: Edition = 2013) -> PlatformResponse:
        return cls(_int(body, "seq", 2), _int(body, "id", 2), _int(body, "result", 1))

    @classmethod
    def decode(cls, body: bytes, edition: Edition = 2013, encoding: Encoding = "gbk") -> PlatformResponse | None:
        return cls(u(body[0:2]), u(body[2:4]), body[4]) if len(body) >= 5 else None


@dataclass(frozen=True, slots=True)
class RegisterResponse:
    """0x8100; the auth code is present only on success (result 0)."""

    msg_id: ClassVar[int] = jt808.REGISTER_RESPONSE
    reply_sn: int
    result: int
    auth_code: str = ""

    def encode(self, edition: Edition = 2013, encoding: Encoding = "gbk") -> bytes:
        # The standard has the code only on success; a code given with a
        # failure (EMQX's downlink JSON allows it) is written as given.
        code = encode_text(self.auth_code, encoding)
        return self.reply_sn.to_bytes(2, "big") + bytes([self.result]) + code

    def to_json(self, edition: Edition = 2013) -> dict[str, Any]:
        out: dict[str, Any] = {"seq": self.reply_sn, "result": self.result}
        if self.result == 0 or self.auth_code:
            out["auth_code"] = self.auth_code
        return out

    @classmethod
    def from_json(cls, body: dict[str, Any], edition: Edition = 2013) -> RegisterResponse:
        code = body.get("auth_code", "")
        if not isinstance(code, str):
            raise JsonError("body.auth_code must be a string")
        return cls(_int(body, "seq", 2), _int(body, "result", 1), code)

    @classmethod
    def decode(cls, body: bytes, edition: Edition = 2013, encoding: Encoding = "gbk") -> RegisterResponse | None:
        if len(body) < 3:
            return None
        code = text(body[3:], encoding).rstrip("\x00") if body[2] == 0 else ""
        return cls(u(body[0:2]), body[2], code)


@dataclass(frozen=True, slots=True)
class ServerTime:
    """0x8004 (2019): the platform's time, UTC, BCD ``YYMMDDhhmmss``."""

    msg_id: ClassVar[int] = SERVER_TIME
    time: str

    def encode(self, edition: Edition = 2019, encoding: Encoding = "gbk") -> bytes:
        return jt808.bcd_encode(self.time, 6)

    def to_json(self, edition: Edition = 2019) -> dict[str, Any]:
        return {"time": self.time}

    @classmethod
    def decode(cls, body: bytes, edition: Edition = 2019, encoding: Encoding = "gbk") -> ServerTime | None:
        return cls(nibbles(body[:6])) if len(body) >= 6 else None


@dataclass(frozen=True, slots=True)
class MediaAck:
    """0x8800: multimedia id and the packets to send again (none: complete)."""

    msg_id: ClassVar[int] = MEDIA_ACK
    media_id: int
    retransmit: tuple[int, ...] = ()

    def encode(self, edition: Edition = 2013, encoding: Encoding = "gbk") -> bytes:
        out = self.media_id.to_bytes(4, "big") + bytes([len(self.retransmit)])
        return out + b"".join(i.to_bytes(2, "big") for i in self.retransmit)

    def to_json(self, edition: Edition = 2013) -> dict[str, Any]:
        return {"mm_id": self.media_id, "length": len(self.retransmit), "retx_ids": list(self.retransmit)}

    @classmethod
    def decode(cls, body: bytes, edition: Edition = 2013, encoding: Encoding = "gbk") -> MediaAck | None:
        if len(body) == 4:  # some platforms leave the count out when nothing is to be resent
            return cls(u(body))
        r = BodyReader(body)
        media_id, count = r.uint(4), r.uint(1)
        ids = tuple(r.uint(2) for _ in range(count))
        return None if r.short else cls(media_id, ids)


@dataclass(frozen=True, slots=True)
class TextMessage:
    """0x8300. ``flag`` bits: see ``TEXT_*``; 2019 adds a text type (1 notice,
    2 service). The text goes out in the configured encoding (GBK by the
    standard), cut to ``TEXT_MAX_BYTES``."""

    msg_id: ClassVar[int] = TEXT_MESSAGE
    text: str
    flag: int = TEXT_DISPLAY | TEXT_TTS
    text_type: int = 1

    def encode(self, edition: Edition = 2013, encoding: Encoding = "gbk") -> bytes:
        data = encode_text(self.text, encoding)[:TEXT_MAX_BYTES]
        head = bytes([self.flag, self.text_type]) if edition == 2019 else bytes([self.flag])
        return head + data

    def to_json(self, edition: Edition = 2013) -> dict[str, Any]:
        out: dict[str, Any] = {"flag": self.flag, "text": self.text}
        if edition == 2019:
            out["text_type"] = self.text_type
        return out

    @classmethod
    def from_json(cls, body: dict[str, Any], edition: Edition = 2013) -> TextMessage:
        value = body.get("text")
        if not isinstance(value, str):
            raise JsonError("body.text must be a string")
        return cls(value, _int(body, "flag", 1), _int(body, "text_type", 1, 1))

    @classmethod
    def decode(cls, body: bytes, edition: Edition = 2013, encoding: Encoding = "gbk") -> TextMessage | None:
        if edition == 2019:
            return cls(text(body[2:], encoding), body[0], body[1]) if len(body) >= 2 else None
        return cls(text(body[1:], encoding), body[0]) if body else None


@dataclass(frozen=True, slots=True)
class PositionQuery:
    """0x8201, no body; the terminal answers 0x0201 with its position."""

    msg_id: ClassVar[int] = POSITION_QUERY

    def encode(self, edition: Edition = 2013, encoding: Encoding = "gbk") -> bytes:
        return b""

    def to_json(self, edition: Edition = 2013) -> dict[str, Any]:
        return {}

    @classmethod
    def from_json(cls, body: dict[str, Any], edition: Edition = 2013) -> PositionQuery:
        return cls()

    @classmethod
    def decode(cls, body: bytes, edition: Edition = 2013, encoding: Encoding = "gbk") -> PositionQuery:
        return cls()


@dataclass(frozen=True, slots=True)
class SetParameters:
    """0x8103: count BYTE, then (id DWORD, length BYTE, value) per parameter."""

    msg_id: ClassVar[int] = SET_PARAMETERS
    params: tuple[tuple[int, int | str], ...]

    def encode(self, edition: Edition = 2013, encoding: Encoding = "gbk") -> bytes:
        out = bytearray([len(self.params)])
        for param_id, value in self.params:
            data = encode_param_value(param_id, value, encoding)
            out += param_id.to_bytes(4, "big") + bytes([len(data)]) + data
        return bytes(out)

    def to_json(self, edition: Edition = 2013) -> dict[str, Any]:
        return {"length": len(self.params), "params": [{"id": i, "value": v} for i, v in self.params]}

    @classmethod
    def from_json(cls, body: dict[str, Any], edition: Edition = 2013) -> SetParameters:
        params = body.get("params")
        if not isinstance(params, list) or not 1 <= len(params) <= 255:
            raise JsonError("body.params must be a list of 1 to 255 parameters")
        out: list[tuple[int, int | str]] = []
        for p in params:
            if not isinstance(p, dict) or not isinstance(p.get("value"), int | str):
                raise JsonError("body.params[] must be {id, value}")
            out.append((_int(p, "id", 4), p["value"]))
        made = cls(tuple(out))
        try:
            made.encode(edition)
        except ValueError as exc:
            raise JsonError(str(exc)) from None
        return made

    @classmethod
    def decode(cls, body: bytes, edition: Edition = 2013, encoding: Encoding = "gbk") -> SetParameters | None:
        r = BodyReader(body)
        count = r.uint(1)
        params: list[tuple[int, int | str]] = []
        for _ in range(count):
            param_id, size = r.uint(4), r.uint(1)
            params.append((param_id, decode_param_value(param_id, r.take(size), encoding)))
        return None if r.short else cls(tuple(params))


Downlink = (
    PlatformResponse | RegisterResponse | ServerTime | MediaAck | TextMessage | PositionQuery | SetParameters
)  # fmt: skip
Command = TextMessage | PositionQuery | SetParameters
COMMANDS: dict[int, type[TextMessage] | type[PositionQuery] | type[SetParameters]] = {
    TEXT_MESSAGE: TextMessage,
    POSITION_QUERY: PositionQuery,
    SET_PARAMETERS: SetParameters,
}
_DECODERS = {
    jt808.PLATFORM_RESPONSE: PlatformResponse.decode,
    jt808.REGISTER_RESPONSE: RegisterResponse.decode,
    SERVER_TIME: ServerTime.decode,
    TEXT_MESSAGE: TextMessage.decode,
    POSITION_QUERY: PositionQuery.decode,
    SET_PARAMETERS: SetParameters.decode,
    MEDIA_ACK: MediaAck.decode,
}


def decode_downlink(header: jt808.Header, body: bytes, encoding: Encoding = "gbk") -> Downlink | None:
    """A platform message as a terminal reads it (the simulator, the tests)."""
    decoder = _DECODERS.get(header.msg_id)
    if decoder is None:
        return None
    return decoder(body, header.body_edition, encoding)


def command_from_json(msg_id: int, body: dict[str, Any], edition: Edition = 2013) -> Command:
    """A command from EMQX's downlink JSON body; ``JsonError`` if malformed or
    not one we send."""
    kind = COMMANDS.get(msg_id)
    if kind is None:
        raise JsonError(f"message id {msg_id:#06x} is not a command this gateway sends")
    return kind.from_json(body, edition)


def command_json(command: Command, edition: Edition = 2013, *, msg_sn: int | None = None) -> dict[str, Any]:
    """The payload to publish on EMQX's ``.../dn`` topic. With ``msg_sn`` the
    header carries the sequence number to use (EMQX 5.9 and later honour it),
    so the terminal's answer can be matched by number."""
    header: dict[str, Any] = {"msg_id": command.msg_id}
    if msg_sn is not None:
        header["msg_sn"] = msg_sn
    body = command.to_json(edition)
    return {"header": header, "body": body} if body else {"header": header}
