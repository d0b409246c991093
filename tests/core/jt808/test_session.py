"""The JT/T 808 conversation without sockets: bytes in, outcomes out."""

from __future__ import annotations

import json

from gpsd_server.core.jt808 import frame as jt808
from gpsd_server.core.jt808 import messages as m
from gpsd_server.core.jt808.frame import Frame, Header
from gpsd_server.core.jt808.session import Jt808Session, Outcome
from gpsd_server.settings import Jt808Settings

PHONE = "013800138000"
NOW_BCD = "240506070809"


def send(session: Jt808Session, message: m.Message, sn: int, edition: jt808.Edition = 2013) -> Outcome:
    phone = PHONE if edition == 2013 else PHONE.rjust(20, "0")
    frame = jt808.encode_frame(Header(message.msg_id, phone, sn, edition), message.encode(edition))
    [outcome] = session.receive(frame)
    return outcome


def answer(data: bytes | None) -> m.Message:
    assert data is not None
    [frame] = jt808.FrameSplitter().feed(data)
    assert isinstance(frame, Frame)
    message = m.decode_body(frame.header, frame.body)
    assert not isinstance(message, jt808.FrameError)
    return message


def loc(alarm: int = 0) -> m.Location:
    return m.Location(alarm, 0b11, 22543100, 114057900, 10, 300, 45, NOW_BCD)


def test_register_answers_0x8100_with_the_auth_code_and_publishes() -> None:
    session = Jt808Session(Jt808Settings(auth_code="secret"))
    outcome = send(session, m.Register(44, 300, "GPSD", "X1", "0000001", 2, "粤B12345"), sn=3)
    assert outcome.reason == "register"
    assert answer(outcome.reply) == m.RegisterResponse(3, m.RESULT_OK, "secret")
    assert outcome.publish is not None
    topic, payload = outcome.publish
    assert topic == "jt808/13800138000/13800138000/up"
    assert json.loads(payload)["body"]["license_number"] == "粤B12345"


def test_positions_need_authentication_first() -> None:
    session = Jt808Session(Jt808Settings(auth_code="secret"))
    refused = send(session, loc(), sn=1)
    assert (refused.reason, refused.publish) == ("unauthenticated", None)
    assert answer(refused.reply) == m.PlatformResponse(1, jt808.LOCATION, m.RESULT_FAILURE)
    wrong = send(session, m.Authenticate("guess"), sn=2)
    assert wrong.reason == "auth_failed"
    assert answer(wrong.reply) == m.PlatformResponse(2, jt808.AUTHENTICATE, m.RESULT_FAILURE)
    right = send(session, m.Authenticate("secret"), sn=3)
    assert answer(right.reply) == m.PlatformResponse(3, jt808.AUTHENTICATE, m.RESULT_OK)
    accepted = send(session, loc(alarm=1), sn=4)
    assert accepted.reason == "location"
    assert answer(accepted.reply) == m.PlatformResponse(4, jt808.LOCATION, m.RESULT_OK)
    assert answer(accepted.reply_if_publish_fails) == m.PlatformResponse(4, jt808.LOCATION, m.RESULT_FAILURE)
    assert accepted.publish is not None
    assert json.loads(accepted.publish[1])["body"]["alarm"] == 1


def test_2019_answers_in_2019() -> None:
    session = Jt808Session(Jt808Settings(auth_code=""))
    outcome = send(session, m.Authenticate("anything", "860000000000001", "1.0"), sn=9, edition=2019)
    assert outcome.reply is not None
    [frame] = jt808.FrameSplitter().feed(outcome.reply)
    assert isinstance(frame, Frame)
    assert (frame.header.edition, frame.header.phone) == (2019, PHONE.rjust(20, "0"))


def test_heartbeat_and_terminal_response() -> None:
    session = Jt808Session(Jt808Settings())
    beat = send(session, m.Heartbeat(), sn=5)
    assert answer(beat.reply) == m.PlatformResponse(5, jt808.HEARTBEAT, m.RESULT_OK)
    ack = send(session, m.TerminalResponse(0, 0x8103, 0), sn=6)
    assert (ack.reason, ack.reply) == ("terminal_response", None)


def test_bad_checksum_answered_message_error_bad_escape_dropped() -> None:
    session = Jt808Session(Jt808Settings())
    good = jt808.encode_frame(Header(jt808.HEARTBEAT, PHONE, 8))
    [bad_sum] = session.receive(good[:-2] + bytes([good[-2] ^ 0xFF]) + good[-1:])
    assert bad_sum.reason == "bad_checksum"
    assert answer(bad_sum.reply) == m.PlatformResponse(8, jt808.HEARTBEAT, m.RESULT_MESSAGE_ERROR)
    [bad_escape] = session.receive(b"\x7e\x00\x02\x7d\x07\x7e")
    assert (bad_escape.reason, bad_escape.reply) == ("bad_escape", None)


def test_unknown_message_id_is_answered_not_supported_and_not_held_against_the_terminal() -> None:
    session = Jt808Session(Jt808Settings(max_bad_frames=0))
    [outcome] = session.receive(jt808.encode_frame(Header(0x0F01, PHONE, 4), b"\x01"))
    assert outcome.reason == "unsupported" and not outcome.close
    assert answer(outcome.reply) == m.PlatformResponse(4, 0x0F01, m.RESULT_UNSUPPORTED)


def test_too_many_bad_frames_closes() -> None:
    session = Jt808Session(Jt808Settings(max_bad_frames=2))
    outcomes = session.receive(b"\x7e\x7d\x09\x7e" * 5)
    assert [o.close for o in outcomes] == [False, False, True]


def test_another_phone_on_the_same_connection_is_refused() -> None:
    session = Jt808Session(Jt808Settings())
    send(session, m.Heartbeat(), sn=1)
    frame = jt808.encode_frame(Header(jt808.HEARTBEAT, "013900000000", 2))
    [outcome] = session.receive(frame)
    assert outcome.reason == "phone_changed"
    assert outcome.publish is None


def test_subpackaged_batch_is_published_once_whole() -> None:
    session = Jt808Session(Jt808Settings(auth_code=""))
    send(session, m.Authenticate("x"), sn=0)
    body = m.LocationBatch(m.BATCH_BACKFILL, (loc(), loc(alarm=2))).encode(2013)
    half = len(body) // 2
    packets = [
        jt808.encode_frame(Header(jt808.LOCATION_BATCH, PHONE, 10, frag_total=2, frag_sn=1), body[:half]),
        jt808.encode_frame(Header(jt808.LOCATION_BATCH, PHONE, 11, frag_total=2, frag_sn=2), body[half:]),
    ]
    first, second = (session.receive(p)[0] for p in packets)
    assert (first.reason, first.publish) == ("subpackage", None)
    assert answer(first.reply) == m.PlatformResponse(10, jt808.LOCATION_BATCH, m.RESULT_OK)
    assert second.reason == "location_batch" and second.publish is not None
    published = json.loads(second.publish[1])
    assert published["body"]["type"] == 1
    assert [item["alarm"] for item in published["body"]["location"]] == [0, 2]
    assert "frag_total" not in published["header"]


def test_eof_inside_a_frame() -> None:
    session = Jt808Session(Jt808Settings())
    assert session.receive(jt808.encode_frame(Header(jt808.HEARTBEAT, PHONE, 1))[:-3]) == []
    assert [o.reason for o in session.eof()] == ["truncated"]
