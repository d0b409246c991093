"""The JT/T 808 conversation without sockets or a clock: bytes and ``now`` in,
outcomes out."""

from __future__ import annotations

import json
import struct

from gpsd_server.core.jt808 import downlink as dl
from gpsd_server.core.jt808 import frame as jt808
from gpsd_server.core.jt808 import messages as m
from gpsd_server.core.jt808.frame import Frame, Header
from gpsd_server.core.jt808.session import Ack, Jt808Session, Outcome
from gpsd_server.settings import Jt808Settings

PHONE = "013800138000"
NOW = 1_714_950_489.0
NOW_BCD = "240506070809"


def send(
    session: Jt808Session, message: m.Message, sn: int, edition: jt808.Edition = 2013, now: float = NOW
) -> Outcome:
    phone = PHONE if edition == 2013 else PHONE.rjust(20, "0")
    frame = jt808.encode_frame(Header(message.msg_id, phone, sn, edition), message.encode(edition))
    [outcome] = session.receive(frame, now)
    return outcome


def answer(data: bytes | None) -> tuple[Header, dl.Downlink | None]:
    assert data is not None
    [frame] = jt808.FrameSplitter().feed(data)
    assert isinstance(frame, Frame)
    return frame.header, dl.decode_downlink(frame.header, frame.body)


def reply(data: bytes | None) -> dl.Downlink | None:
    return answer(data)[1]


def loc(alarm: int = 0) -> m.Location:
    return m.Location(alarm, 0b11, 22543100, 114057900, 10, 300, 45, NOW_BCD)


def authed(settings: Jt808Settings | None = None) -> Jt808Session:
    session = Jt808Session(settings or Jt808Settings(auth_code="secret"), now=NOW)
    assert send(session, m.Authenticate("secret"), sn=0).reason == "authenticate"
    return session


def test_register_answers_0x8100_with_the_auth_code_and_is_not_published() -> None:
    session = Jt808Session(Jt808Settings(auth_code="secret"), now=NOW)
    outcome = send(session, m.Register(44, 300, "GPSD", "X1", "0000001", 2, "粤B12345"), sn=3)
    assert (outcome.reason, outcome.publish) == ("register", None)  # EMQX does not publish 0x0100 either
    assert reply(outcome.reply) == dl.RegisterResponse(3, m.RESULT_OK, "secret")
    assert session.register is not None and session.register.plate_text == "粤B12345"


def test_2011_register_gets_0x8100_too() -> None:
    session = Jt808Session(Jt808Settings(auth_code="secret"), now=NOW)
    outcome = send(session, m.Register(44, 300, "GPSD", "X1", "0000001", 2, "湘A1", 2011), sn=1)
    assert (outcome.reason, outcome.tolerated) == ("register", ("register_2011",))
    assert reply(outcome.reply) == dl.RegisterResponse(1, m.RESULT_OK, "secret")


def test_a_phone_not_in_the_registry_is_told_so() -> None:
    session = Jt808Session(Jt808Settings(auth_code="secret"), now=NOW, known=lambda phone: False)
    refused = send(session, m.Register(44, 300, "GPSD", "X1", "0000001", 2, "粤B1"), sn=1)
    assert (refused.reason, refused.dropped) == ("unknown_terminal", True)
    assert reply(refused.reply) == dl.RegisterResponse(1, m.REGISTER_NO_SUCH_TERMINAL)
    auth = send(session, m.Authenticate("secret"), sn=2)
    assert auth.reason == "unknown_terminal" and not session.authenticated
    assert reply(auth.reply) == dl.PlatformResponse(2, jt808.AUTHENTICATE, m.RESULT_FAILURE)
    assert (session.state, session.drops["unknown_terminal"]) == ("unknown_terminal", 2)


def test_positions_need_authentication_first() -> None:
    session = Jt808Session(Jt808Settings(auth_code="secret"), now=NOW)
    refused = send(session, loc(), sn=1)
    assert (refused.reason, refused.publish, refused.dropped) == ("unauthenticated", None, True)
    assert reply(refused.reply) == dl.PlatformResponse(1, jt808.LOCATION, m.RESULT_FAILURE)
    wrong = send(session, m.Authenticate("guess"), sn=2)
    assert (wrong.reason, session.state) == ("auth_failed", "auth_failed")
    assert reply(wrong.reply) == dl.PlatformResponse(2, jt808.AUTHENTICATE, m.RESULT_FAILURE)
    right = send(session, m.Authenticate("secret\x00"), sn=3)  # padded codes compare equal
    assert reply(right.reply) == dl.PlatformResponse(3, jt808.AUTHENTICATE, m.RESULT_OK)
    assert (right.publish, session.state) == (None, "authenticated")
    accepted = send(session, loc(alarm=1), sn=4)
    assert accepted.reason == "location"
    assert reply(accepted.reply) == dl.PlatformResponse(4, jt808.LOCATION, m.RESULT_OK)
    assert reply(accepted.reply_if_publish_fails) == dl.PlatformResponse(4, jt808.LOCATION, m.RESULT_FAILURE)
    assert accepted.publish is not None
    topic, payload = accepted.publish
    assert topic == "jt808/013800138000/013800138000/up"  # EMQX's topic: the phone as decoded
    assert json.loads(payload)["body"]["alarm"] == 1
    assert session.drops == {"unauthenticated": 1, "auth_failed": 1}


def test_2019_answers_in_2019() -> None:
    session = Jt808Session(Jt808Settings(auth_code=""), now=NOW)
    outcome = send(session, m.Authenticate("anything", "860000000000001", "1.0", 2019), sn=9, edition=2019)
    header, _ = answer(outcome.reply)
    assert (header.edition, header.phone) == (2019, PHONE.rjust(20, "0"))
    assert session.auth is not None and session.auth.imei == "860000000000001"


def test_heartbeat_is_answered_not_published() -> None:
    session = authed()
    beat = send(session, m.Heartbeat(), sn=5)
    assert reply(beat.reply) == dl.PlatformResponse(5, jt808.HEARTBEAT, m.RESULT_OK)
    assert beat.publish is None


def test_query_time_and_multimedia_get_their_own_answers() -> None:
    session = authed()
    frame = jt808.encode_frame(Header(m.QUERY_SERVER_TIME, PHONE.rjust(20, "0"), 6, 2019))
    [outcome] = session.receive(frame, NOW)
    assert reply(outcome.reply) == dl.ServerTime("240505230809")  # UTC
    media = struct.pack(">IBBBB", 77, 0, 0, 1, 1) + loc().encode()[:28] + b"\xff\xd8"
    [outcome] = session.receive(jt808.encode_frame(Header(m.MEDIA_DATA, PHONE, 7), media), NOW)
    assert (reply(outcome.reply), outcome.publish) == (dl.MediaAck(77), None)


def test_a_command_is_addressed_to_the_terminal_and_its_answer_acks_it() -> None:
    before = Jt808Session(Jt808Settings(auth_code="secret"), now=NOW)
    assert before.command(dl.TextMessage("hi"), NOW) is None  # nowhere to send it yet
    session = authed()
    sent = session.command(dl.TextMessage("12319：前往东门"), NOW)
    assert sent is not None
    sn, frame = sent
    header, text = answer(frame)
    assert (header.msg_id, header.phone, header.msg_sn) == (dl.TEXT_MESSAGE, PHONE, sn)
    assert text == dl.TextMessage("12319：前往东门")
    ack = send(session, m.TerminalResponse(sn, dl.TEXT_MESSAGE, 0), sn=8)
    assert (ack.reason, ack.reply, ack.ack) == ("terminal_response", None, Ack(dl.TEXT_MESSAGE, sn, 0))
    again = send(session, m.TerminalResponse(sn, dl.TEXT_MESSAGE, 0), sn=9)
    assert again.ack is None  # answered once only


def test_a_position_query_is_answered_by_0x0201_which_is_published() -> None:
    session = authed()
    sent = session.command(dl.PositionQuery(), NOW)
    assert sent is not None
    body = sent[0].to_bytes(2, "big") + loc().encode()
    [outcome] = session.receive(jt808.encode_frame(Header(0x0201, PHONE, 3), body), NOW)
    assert outcome.ack == Ack(dl.POSITION_QUERY, sent[0], 0)
    assert outcome.reply is None and outcome.publish is not None
    assert json.loads(outcome.publish[1])["body"]["params"]["latitude"] == 22543100


def test_bad_checksum_answered_message_error_bad_escape_dropped() -> None:
    session = Jt808Session(Jt808Settings(), now=NOW)
    good = jt808.encode_frame(Header(jt808.HEARTBEAT, PHONE, 8))
    [bad_sum] = session.receive(good[:-2] + bytes([good[-2] ^ 0xFF]) + good[-1:], NOW)
    assert (bad_sum.reason, bad_sum.dropped) == ("bad_checksum", True)
    assert reply(bad_sum.reply) == dl.PlatformResponse(8, jt808.HEARTBEAT, m.RESULT_MESSAGE_ERROR)
    [bad_escape] = session.receive(b"\x7e\x00\x02\x7d\x07\x7e", NOW)
    assert (bad_escape.reason, bad_escape.reply) == ("bad_escape", None)


def test_unknown_message_id_is_answered_not_supported_published_and_not_held_against_the_terminal() -> None:
    session = authed(Jt808Settings(auth_code="secret", max_bad_frames=0))
    [outcome] = session.receive(jt808.encode_frame(Header(0x0F01, PHONE, 4), b"\x01"), NOW)
    assert (outcome.reason, outcome.close, outcome.dropped) == ("unsupported", "", False)
    assert reply(outcome.reply) == dl.PlatformResponse(4, 0x0F01, m.RESULT_UNSUPPORTED)
    assert outcome.publish is not None
    assert json.loads(outcome.publish[1])["body"] == {"unknown_id": True, "data": "AQ=="}


def test_non_bcd_phone_is_answered_at_the_same_bytes() -> None:
    session = Jt808Session(Jt808Settings(auth_code=""), now=NOW)
    raw = struct.pack(">HH", jt808.HEARTBEAT, 0) + bytes.fromhex("4eb6fb4ad628") + b"\x00\x05"
    frame = b"\x7e" + jt808.escape(raw + bytes([jt808.checksum(raw)])) + b"\x7e"
    [outcome] = session.receive(frame, NOW)
    assert outcome.tolerated == ("non_bcd_phone",)
    assert outcome.reply is not None and bytes.fromhex("4eb6fb4ad628") in outcome.reply
    assert session.phone == "4>;6?;4:=628"


def test_too_many_bad_frames_closes() -> None:
    session = Jt808Session(Jt808Settings(max_bad_frames=2), now=NOW)
    outcomes = session.receive(b"\x7e\x7d\x09\x7e" * 5, NOW)
    assert [o.close for o in outcomes] == ["", "", "bad_frames"]


def test_another_phone_on_the_same_connection_is_refused() -> None:
    session = authed()
    frame = jt808.encode_frame(Header(jt808.HEARTBEAT, "013900000000", 2))
    [outcome] = session.receive(frame, NOW)
    assert (outcome.reason, outcome.publish, outcome.dropped) == ("phone_changed", None, True)


def packets(body: bytes, first_sn: int = 10) -> list[bytes]:
    half = len(body) // 2
    return [
        jt808.encode_frame(Header(jt808.LOCATION_BATCH, PHONE, first_sn, frag_total=2, frag_sn=1), body[:half]),
        jt808.encode_frame(Header(jt808.LOCATION_BATCH, PHONE, first_sn + 1, frag_total=2, frag_sn=2), body[half:]),
    ]


def test_subpackaged_batch_is_published_once_whole_after_authentication() -> None:
    body = m.LocationBatch(m.BATCH_BACKFILL, (loc(), loc(alarm=2))).encode(2013)
    stranger = Jt808Session(Jt808Settings(auth_code="secret"), now=NOW)
    [refused] = stranger.receive(packets(body)[0], NOW)
    assert (refused.reason, stranger.reassembly_bytes) == ("unauthenticated", 0)  # nothing buffered
    session = authed()
    first, second = (session.receive(p, NOW)[0] for p in packets(body))
    assert (first.reason, first.publish) == ("subpackage", None)
    assert reply(first.reply) == dl.PlatformResponse(10, jt808.LOCATION_BATCH, m.RESULT_OK)
    assert second.reason == "location_batch" and second.publish is not None
    published = json.loads(second.publish[1])
    assert published["body"]["type"] == 1
    assert [item["alarm"] for item in published["body"]["location"]] == [0, 2]
    assert "frag_total" not in published["header"]


def test_reassembly_is_bounded() -> None:
    session = authed(Jt808Settings(auth_code="secret", max_reassembly_bytes=1024))
    outcomes = [session.receive(packets(bytes(1000), sn)[0], NOW)[0] for sn in range(10, 20, 2)]
    assert "oversize" in [o.reason for o in outcomes]
    assert session.reassembly_bytes <= 1024


def test_a_flood_without_valid_frames_is_cut_off() -> None:
    session = authed(Jt808Settings(auth_code="secret", max_garbage_bytes=4096))
    assert session.receive(b"\x7e" * 4000, NOW + 1) == []
    [outcome] = session.receive(b"\x7e" * 200, NOW + 2)
    assert (outcome.reason, outcome.close, outcome.dropped) == ("garbage", "garbage", True)
    assert session.last_valid_at == NOW  # noise does not keep a connection alive


def test_deadlines_authentication_then_idle_reset_only_by_valid_frames() -> None:
    settings = Jt808Settings(auth_code="secret", auth_timeout_s=30, idle_timeout_s=180)
    session = Jt808Session(settings, now=NOW)
    assert session.deadline() == (NOW + 30, "auth_timeout")
    send(session, m.Heartbeat(), sn=1, now=NOW + 10)  # valid, but not an authentication
    assert session.deadline() == (NOW + 30, "auth_timeout")
    send(session, m.Authenticate("secret"), sn=2, now=NOW + 20)
    assert session.deadline() == (NOW + 200, "idle_timeout")
    session.receive(b"\x7e" * 100, NOW + 50)  # noise
    assert session.deadline() == (NOW + 200, "idle_timeout")
    send(session, m.Heartbeat(), sn=3, now=NOW + 60)
    assert session.deadline() == (NOW + 240, "idle_timeout")


def test_without_required_authentication_a_valid_frame_admits() -> None:
    session = Jt808Session(Jt808Settings(require_auth=False, auth_timeout_s=5), now=NOW)
    assert session.deadline()[1] == "auth_timeout"
    assert send(session, loc(), sn=1).reason == "location"
    assert session.deadline() == (NOW + 180, "idle_timeout")


def test_eof_inside_a_frame() -> None:
    session = Jt808Session(Jt808Settings(), now=NOW)
    assert session.receive(jt808.encode_frame(Header(jt808.HEARTBEAT, PHONE, 1))[:-3], NOW) == []
    assert [o.reason for o in session.eof()] == ["truncated"]
