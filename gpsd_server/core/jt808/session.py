"""One terminal's JT/T 808 conversation, without I/O and without a clock.

``Jt808Session.receive(data, now)`` takes bytes read from the terminal and
returns ``Outcome`` values: what to publish (the EMQX-shaped JSON), what to
answer, what to count and whether to hang up. ``command(...)`` encodes a
platform command for this terminal; the terminal's answer comes back as an
outcome carrying an ``Ack``. ``deadline()`` says when the driver must close
the connection and why. The TCP driver performs all of it; keeping the
protocol here makes it testable by feeding bytes.

What the platform answers (JT/T 808 §8):

=========================  ================================================
0x0100 register            0x8100 result 0 with the auth code (2011, 2013
                           and 2019 layouts); result 4 for a phone that is
                           not in the vehicle registry
0x0102 authenticate        0x8001: 0 if the code is right, else 1
0x0002 heartbeat           0x8001 result 0
0x0003 deregister          0x8001 result 0 (no longer authenticated)
0x0004 query time (2019)   0x8004 with the platform's UTC time
0x0801 multimedia data     0x8800 (received, nothing to resend)
0x0200, 0x0704 and the     0x8001: 0 once published; 1 if publishing
other reports              failed or the terminal is not authenticated
                           (so it keeps the data and sends it again)
answers to our commands    nothing (0x0001, 0x0201, 0x0104, ...): they
                           acknowledge the command (``Outcome.ack``)
unknown message id         0x8001 result 3 "not supported"
malformed body             0x8001 result 2 "message error"
bad frame with a header    0x8001 result 2 when the header is this
                           terminal's; without a readable header: nothing
=========================  ================================================

What is published on ``{prefix}/{phone}/{phone}/up`` is what EMQX's gateway
publishes: every parsed message except 0x0001, 0x0002, 0x0003, 0x0004,
0x0100, 0x0102, 0x0801 and 0x0A00, plus unknown ids as ``unknown_id``. The
phone in the topic is the header's, leading zeros kept, as EMQX writes it.

Outcome reasons. Accepted: the message names (``register``, ``location``,
...), ``report`` (other parsed messages), ``unsupported`` (unknown ids,
answered 3 and published), ``subpackage`` (one packet of a longer
message). Dropped (``Outcome.dropped``): the framing reasons of
:mod:`.frame`, ``bad_body``, ``unauthenticated`` (a message that needs
authentication before it), ``auth_failed``, ``unknown_terminal``,
``phone_changed`` (another phone on the same connection), ``garbage``
(more than ``max_garbage_bytes`` without a valid frame: the connection is
closed). ``Outcome.tolerated`` names the quirks read anyway (:mod:`.frame`,
:mod:`.messages`, :mod:`.location`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from gpsd_server.core.jt808 import bodies
from gpsd_server.core.jt808 import frame as jt808
from gpsd_server.core.jt808 import messages as m
from gpsd_server.core.jt808.downlink import Command, Downlink, MediaAck, ServerTime
from gpsd_server.core.jt808.frame import Frame, FrameError, Header
from gpsd_server.settings import Jt808Settings

# Messages a terminal may send before it has authenticated.
_BEFORE_AUTH = frozenset(
    (jt808.REGISTER, jt808.AUTHENTICATE, jt808.HEARTBEAT, jt808.DEREGISTER, m.QUERY_SERVER_TIME,
     jt808.TERMINAL_RESPONSE)
)  # fmt: skip
# Not published, as EMQX does not publish them.
_NOT_PUBLISHED = frozenset(
    (jt808.TERMINAL_RESPONSE, jt808.HEARTBEAT, jt808.DEREGISTER, m.QUERY_SERVER_TIME, jt808.REGISTER,
     jt808.AUTHENTICATE, m.MEDIA_DATA, 0x0A00)
)  # fmt: skip
_REASON_BY_ID = {
    jt808.REGISTER: "register",
    jt808.AUTHENTICATE: "authenticate",
    jt808.HEARTBEAT: "heartbeat",
    jt808.DEREGISTER: "deregister",
    jt808.LOCATION: "location",
    jt808.LOCATION_BATCH: "location_batch",
    jt808.TERMINAL_RESPONSE: "terminal_response",
    m.QUERY_SERVER_TIME: "server_time",
    m.MEDIA_DATA: "media",
}
_MAX_INFLIGHT = 64


@dataclass(frozen=True, slots=True)
class Ack:
    """The terminal answered platform message ``msg_id`` number ``sn``."""

    msg_id: int
    sn: int
    result: int  # 0 ok, 1 failed, 2 message error, 3 not supported (0x0001 results)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One thing the driver must do. ``reason`` names the counter to bump."""

    reason: str
    reply: bytes | None = None  # after a successful publish, or at once
    publish: tuple[str, bytes] | None = None
    reply_if_publish_fails: bytes | None = None
    detail: str = ""
    dropped: bool = False
    close: str = ""  # why the driver must hang up ("" = keep the connection)
    tolerated: tuple[str, ...] = ()
    ack: Ack | None = None


class Jt808Session:
    """Protocol state of one TCP connection.

    ``known(phone)`` (optional) says whether a phone is in the vehicle
    registry; without it every terminal may register."""

    def __init__(
        self, settings: Jt808Settings, *, now: float = 0.0, known: Callable[[str], bool] | None = None
    ) -> None:
        self.settings = settings
        self.connected_at = self._now = now
        self.known = known
        self.phone: str | None = None  # header phone (EMQX form), bound by the first good frame
        self.edition: jt808.Edition = 2013
        self.proto_ver = 0
        self.authenticated = False
        self.state = "connected"  # registered, authenticated, auth_failed, unknown_terminal, deregistered
        self.last_valid_at: float | None = None
        self.garbage_bytes = 0  # received since the last valid frame
        self.bad_frames = 0
        self.drops: Counter[str] = Counter()
        self.register: m.Register | None = None
        self.auth: m.Authenticate | None = None
        self._splitter = jt808.FrameSplitter(
            settings.max_frame_bytes, accept_length_mismatch=settings.accept_length_mismatch
        )
        self._reassembler = jt808.Reassembler(max_bytes=settings.max_reassembly_bytes)
        self._inflight: dict[tuple[int, int], float] = {}  # (command id, sn) -> sent at
        self._next_sn = 0

    # -- what the driver asks ---------------------------------------------------

    @property
    def admitted(self) -> bool:
        """Authenticated, or (authentication not required) sent a valid frame."""
        if self.settings.require_auth:
            return self.authenticated
        return self.last_valid_at is not None

    @property
    def reassembly_bytes(self) -> int:
        return self._reassembler.pending_bytes

    def deadline(self) -> tuple[float, str]:
        """When to hang up if nothing valid arrives, and the reason to count."""
        if not self.admitted:
            return self.connected_at + self.settings.auth_timeout_s, "auth_timeout"
        last = self.last_valid_at if self.last_valid_at is not None else self.connected_at
        return last + self.settings.idle_timeout_s, "idle_timeout"

    def receive(self, data: bytes, now: float | None = None) -> list[Outcome]:
        """``now``: the time the bytes arrived (default: the last time given)."""
        if now is not None:
            self._now = now
        now = self._now
        outcomes: list[Outcome] = []
        self.garbage_bytes += len(data)
        for item in self._splitter.feed(data):
            outcome = self._frame(item, now) if isinstance(item, Frame) else self._bad_frame(item)
            outcomes.append(outcome)
            if outcome.close:
                return outcomes
        if self.garbage_bytes > self.settings.max_garbage_bytes:
            detail = f"{self.garbage_bytes} bytes without a valid frame"
            outcomes.append(self._drop("garbage", detail=detail, close="garbage"))
        return outcomes

    def eof(self) -> list[Outcome]:
        return [self._bad_frame(error) for error in self._splitter.close()]

    def command(self, command: Command, now: float, *, sn: int | None = None) -> tuple[int, bytes] | None:
        """The frame of a platform command and its sequence number; ``None``
        before the terminal is admitted (nowhere to address it). ``sn``: the
        number to use (EMQX's downlink JSON may name one), else the next."""
        if self.phone is None or not self.admitted:
            return None
        sn = self._take_sn() if sn is None else sn & 0xFFFF
        header = Header(command.msg_id, self.phone, sn, self.edition, self.proto_ver)
        frame = jt808.encode_frame(header, command.encode(header.body_edition, self.settings.string_encoding))
        self._inflight[(command.msg_id, sn)] = now
        while len(self._inflight) > _MAX_INFLIGHT:
            del self._inflight[next(iter(self._inflight))]
        return sn, frame

    def topic(self, phone: str) -> str:
        # EMQX's default uplink topic is jt808/{clientid}/{phone}/up, and a
        # terminal's client id is its phone as decoded (leading zeros kept).
        return f"{self.settings.topic_prefix}/{phone}/{phone}/up"

    # -- frames -------------------------------------------------------------------

    def _frame(self, frame: Frame, now: float) -> Outcome:
        header = frame.header
        if self.phone is None:
            self.phone = header.phone
        elif header.phone.lstrip("0") != self.phone.lstrip("0"):  # 2013 pads to 12 digits, 2019 to 20
            return self._answer("phone_changed", header, m.RESULT_FAILURE, detail=header.phone)
        self.last_valid_at = now
        self.garbage_bytes = 0
        self.edition, self.proto_ver = header.edition, header.proto_ver
        tolerated = frame.quirks
        if header.frag_total is not None:
            if not self.admitted:
                return self._answer("unauthenticated", header, m.RESULT_FAILURE, tolerated=tolerated)
            whole = self._reassembler.add(frame)
            if whole is None:  # a packet of a subpackaged message: acknowledged one by one
                return self._answer("subpackage", header, m.RESULT_OK, dropped=False, tolerated=tolerated)
            if isinstance(whole, FrameError):
                return self._bad_frame(whole, tolerated)
            frame = whole
        message = m.decode_body(frame.header, frame.body, encoding=self.settings.string_encoding)
        if isinstance(message, FrameError):
            return self._bad_frame(message, tolerated)
        return self._message(frame.header, message, now, (*tolerated, *message.quirks))

    def _message(self, header: Header, message: m.Message, now: float, tolerated: tuple[str, ...]) -> Outcome:
        msg_id = header.msg_id
        if isinstance(message, m.Register):
            return self._register(header, message, tolerated)
        if isinstance(message, m.Authenticate):
            return self._authenticate(header, message, tolerated)
        if msg_id not in _BEFORE_AUTH and not self.admitted:
            return self._answer("unauthenticated", header, m.RESULT_FAILURE, tolerated=tolerated)
        if isinstance(message, m.TerminalResponse):
            return Outcome(
                "terminal_response",
                tolerated=tolerated,
                ack=self._ack(message.reply_id, message.reply_sn, message.result),
            )
        if isinstance(message, m.Deregister):
            self.authenticated, self.state = False, "deregistered"
        reason = _REASON_BY_ID.get(msg_id, "unsupported" if isinstance(message, m.Unknown) else "report")
        if msg_id == m.QUERY_SERVER_TIME:
            return Outcome(reason, self._encode(header, ServerTime(m.server_time(now))), tolerated=tolerated)
        if msg_id == m.MEDIA_DATA and isinstance(message, m.Report):
            return Outcome(reason, self._encode(header, MediaAck(int(message.body["id"]))), tolerated=tolerated)
        publish = None
        if msg_id not in _NOT_PUBLISHED:
            publish = (self.topic(header.phone), msgspec.json.encode(m.emqx_json(header, message)))
        answers = bodies.ANSWERS.get(msg_id)
        if answers is not None and isinstance(message, m.Report):
            seq = message.body.get("seq")
            ack = next((a for a in (self._ack(c, seq, 0) for c in answers) if a is not None), None)
            return Outcome(reason, None, publish, tolerated=tolerated, ack=ack)
        if isinstance(message, m.Unknown):
            return Outcome(reason, self._general(header, m.RESULT_UNSUPPORTED), publish, tolerated=tolerated)
        ok = self._general(header, m.RESULT_OK)
        failed = self._general(header, m.RESULT_FAILURE) if publish is not None else ok
        return Outcome(reason, ok, publish, failed, tolerated=tolerated)

    def _register(self, header: Header, message: m.Register, tolerated: tuple[str, ...]) -> Outcome:
        self.register = message
        if self.known is not None and not self.known(header.phone):
            self.state = "unknown_terminal"
            reply = self._encode(header, m.RegisterResponse(header.msg_sn, m.REGISTER_NO_SUCH_TERMINAL))
            return self._drop("unknown_terminal", reply, tolerated=tolerated, detail="not in the vehicle registry")
        if not self.authenticated:
            self.state = "registered"
        reply = self._encode(header, m.RegisterResponse(header.msg_sn, m.RESULT_OK, self.settings.auth_code))
        return Outcome("register", reply, tolerated=tolerated)

    def _authenticate(self, header: Header, message: m.Authenticate, tolerated: tuple[str, ...]) -> Outcome:
        self.auth = message
        if self.known is not None and not self.known(header.phone):
            self.state = "unknown_terminal"
            reply = self._general(header, m.RESULT_FAILURE)
            return self._drop("unknown_terminal", reply, tolerated=tolerated, detail="not in the vehicle registry")
        code = self.settings.auth_code
        self.authenticated = code == "" or message.code_text == code
        if not self.authenticated:
            self.state = "auth_failed"
            return self._drop("auth_failed", self._general(header, m.RESULT_FAILURE), tolerated=tolerated)
        self.state = "authenticated"
        return Outcome("authenticate", self._general(header, m.RESULT_OK), tolerated=tolerated)

    def _ack(self, msg_id: int, sn: object, result: int) -> Ack | None:
        """An answer to one of our commands, or ``None`` when it answers none."""
        if isinstance(sn, int) and self._inflight.pop((msg_id, sn), None) is not None:
            return Ack(msg_id, sn, result)
        if sn is None:  # answers without a sequence number (0x0107): the oldest such command
            key = next((k for k in self._inflight if k[0] == msg_id), None)
            if key is not None:
                del self._inflight[key]
                return Ack(msg_id, key[1], result)
        return None

    def _bad_frame(self, error: FrameError, tolerated: tuple[str, ...] = ()) -> Outcome:
        self.bad_frames += 1
        close = "bad_frames" if self.bad_frames > self.settings.max_bad_frames else ""
        header = error.header
        # Answer only a header we can trust to be this terminal's: the phone
        # must match, or the bad bytes could make us answer a made-up terminal.
        reply = None
        if header is not None and header.phone == (self.phone or header.phone):
            reply = self._general(header, m.RESULT_MESSAGE_ERROR)
        return self._drop(error.reason, reply, detail=error.detail, close=close, tolerated=tolerated)

    def _drop(
        self, reason: str, reply: bytes | None = None, *, detail: str = "", close: str = "",
        tolerated: tuple[str, ...] = (),
    ) -> Outcome:  # fmt: skip
        self.drops[reason] += 1
        return Outcome(reason, reply, detail=detail, dropped=True, close=close, tolerated=tolerated)

    def _answer(
        self, reason: str, header: Header, result: int, *, detail: str = "", dropped: bool = True,
        tolerated: tuple[str, ...] = (),
    ) -> Outcome:  # fmt: skip
        reply = self._general(header, result)
        if dropped:
            return self._drop(reason, reply, detail=detail, tolerated=tolerated)
        return Outcome(reason, reply, detail=detail, tolerated=tolerated)

    def _general(self, header: Header, result: int) -> bytes:
        return self._encode(header, m.PlatformResponse(header.msg_sn, header.msg_id, result))

    def _encode(self, to: Header, message: Downlink) -> bytes:
        header = Header(message.msg_id, to.phone, self._take_sn(), to.edition, to.proto_ver)
        return jt808.encode_frame(header, message.encode(header.body_edition, self.settings.string_encoding))

    def _take_sn(self) -> int:
        sn, self._next_sn = self._next_sn, (self._next_sn + 1) & 0xFFFF
        return sn
