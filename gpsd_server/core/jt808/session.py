"""One terminal's JT/T 808 conversation, without I/O.

``Jt808Session.receive(data)`` takes bytes read from the terminal and
returns ``Outcome`` values: what to publish (the EMQX-shaped JSON), what to
answer, and what to count. The TCP driver performs them. Keeping the
protocol here makes it testable by feeding bytes, like the framing below it.

What the platform answers (JT/T 808 §8):

=====================  ===============================================
0x0100 register        0x8100 result 0 with the auth code
0x0102 authenticate    0x8001: 0 if the code is right, else 1
0x0002 heartbeat       0x8001 result 0
0x0003 deregister      0x8001 result 0 (the session is no longer authenticated)
0x0200 location        0x8001: 0 once published; 1 if publishing failed
0x0704 batch           (or the terminal never authenticated), so the
                       terminal keeps the data and sends it again later
0x0001 terminal ack    nothing (answers are not answered)
unknown message id     0x8001 result 3 "not supported"
malformed body         0x8001 result 2 "message error"
bad frame with header  0x8001 result 2; without a readable header: dropped
=====================  ===============================================
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from gpsd_server.core.decode.jt808 import normalize_phone
from gpsd_server.core.jt808 import frame as jt808
from gpsd_server.core.jt808 import messages as m
from gpsd_server.core.jt808.frame import Frame, FrameError, Header
from gpsd_server.settings import Jt808Settings


@dataclass(frozen=True, slots=True)
class Outcome:
    """One thing the driver must do. ``reason`` names the counter to bump."""

    reason: str
    reply: bytes | None = None  # after a successful publish, or at once
    publish: tuple[str, bytes] | None = None
    reply_if_publish_fails: bytes | None = None
    detail: str = ""
    close: bool = False

    @property
    def is_error(self) -> bool:
        return self.reason in BAD_FRAME_REASONS


BAD_FRAME_REASONS = frozenset(
    ("bad_escape", "bad_checksum", "truncated", "bad_length", "bad_header", "oversize", "bad_body")
)
_POSITIONS = (jt808.LOCATION, jt808.LOCATION_BATCH)
_REASON_BY_ID = {
    jt808.REGISTER: "register",
    jt808.AUTHENTICATE: "authenticate",
    jt808.HEARTBEAT: "heartbeat",
    jt808.DEREGISTER: "deregister",
    jt808.LOCATION: "location",
    jt808.LOCATION_BATCH: "location_batch",
    jt808.TERMINAL_RESPONSE: "terminal_response",
}


class Jt808Session:
    """Protocol state of one TCP connection."""

    def __init__(self, settings: Jt808Settings) -> None:
        self.settings = settings
        self.phone: str | None = None  # bound by the first good frame
        self.authenticated = False
        self.bad_frames = 0
        self._splitter = jt808.FrameSplitter(settings.max_frame_bytes)
        self._reassembler = jt808.Reassembler()
        self._next_sn = 0

    def receive(self, data: bytes) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for item in self._splitter.feed(data):
            outcome = self._frame(item) if isinstance(item, Frame) else self._bad_frame(item)
            outcomes.append(outcome)
            if outcome.close:
                break
        return outcomes

    def eof(self) -> list[Outcome]:
        return [self._bad_frame(error) for error in self._splitter.close()]

    def _frame(self, frame: Frame) -> Outcome:
        header = frame.header
        if self.phone is None:
            self.phone = header.phone
        elif header.phone != self.phone:
            return self._answer("phone_changed", header, m.RESULT_FAILURE, detail=header.phone)
        whole = self._reassembler.add(frame)
        if whole is None:  # a packet of a subpackaged message: acknowledged one by one
            return self._answer("subpackage", header, m.RESULT_OK)
        if isinstance(whole, FrameError):
            return self._bad_frame(whole)
        message = m.decode_body(whole.header, whole.body)
        if isinstance(message, FrameError):
            return self._bad_frame(message)
        return self._message(whole.header, message)

    def _message(self, header: Header, message: m.Message) -> Outcome:
        reason = _REASON_BY_ID.get(header.msg_id, "other")
        publish = (self.topic(header.phone), msgspec.json.encode(m.emqx_json(header, message)))
        if isinstance(message, m.Register):
            reply = self._encode(header, m.RegisterResponse(header.msg_sn, m.RESULT_OK, self.settings.auth_code))
            return Outcome(reason, reply, publish, reply)
        if isinstance(message, m.Authenticate):
            self.authenticated = self.settings.auth_code in ("", message.code)
            result = m.RESULT_OK if self.authenticated else m.RESULT_FAILURE
            reason = reason if self.authenticated else "auth_failed"
            reply = self._general(header, result)
            return Outcome(reason, reply, publish, reply)
        if isinstance(message, m.TerminalResponse | m.PlatformResponse | m.RegisterResponse):
            return Outcome(reason, None, publish)
        if isinstance(message, m.Deregister):
            self.authenticated = False
        if header.msg_id in _POSITIONS and self.settings.require_auth and not self.authenticated:
            return self._answer("unauthenticated", header, m.RESULT_FAILURE)
        ok = self._general(header, m.RESULT_OK)
        failed = self._general(header, m.RESULT_FAILURE) if header.msg_id in _POSITIONS else ok
        return Outcome(reason, ok, publish, failed)

    def _bad_frame(self, error: FrameError) -> Outcome:
        # A message id we do not know is a terminal feature, not line noise:
        # answered "not supported" but not held against the connection.
        if error.reason != "unsupported":
            self.bad_frames += 1
        close = self.bad_frames > self.settings.max_bad_frames
        header = error.header
        # Answer only a header we can trust to be this terminal's: the phone
        # must match, or the bad bytes could make us answer a made-up terminal.
        reply = None
        if header is not None and header.phone == (self.phone or header.phone):
            result = m.RESULT_UNSUPPORTED if error.reason == "unsupported" else m.RESULT_MESSAGE_ERROR
            reply = self._general(header, result)
        return Outcome(error.reason, reply, detail=error.detail, close=close)

    def _answer(self, reason: str, header: Header, result: int, detail: str = "") -> Outcome:
        return Outcome(reason, self._general(header, result), detail=detail)

    def _general(self, header: Header, result: int) -> bytes:
        return self._encode(header, m.PlatformResponse(header.msg_sn, header.msg_id, result))

    def _encode(self, to: Header, message: m.PlatformResponse | m.RegisterResponse) -> bytes:
        sn, self._next_sn = self._next_sn, (self._next_sn + 1) & 0xFFFF
        header = Header(message.msg_id, to.phone, sn, to.edition, to.proto_ver)
        return jt808.encode_frame(header, message.encode(to.edition))

    def topic(self, phone: str) -> str:
        # EMQX's default uplink topic is jt808/{clientid}/{phone}/up; the
        # client id of a terminal is its phone number.
        clean = normalize_phone(phone)
        return f"{self.settings.topic_prefix}/{clean}/{clean}/up"
