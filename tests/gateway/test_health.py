"""Terminal registry and health records, without sockets."""

from __future__ import annotations

from gpsd_server.core.jt808 import messages as m
from gpsd_server.core.jt808.frame import Header, encode_frame
from gpsd_server.core.jt808.session import Jt808Session
from gpsd_server.gateway.health import MAX_STRANGERS, TCP_GRACE_S, TerminalHealth, TerminalRegistry
from gpsd_server.settings import Jt808Settings

NOW = 1_767_225_600.0


def test_registry_maps_phones_both_ways_in_one_form() -> None:
    registry = TerminalRegistry()
    assert registry.known("013800138000")  # an empty registry turns nobody away
    registry.use([("013800138000", "MT-1"), ("4EB6FB4AD628", "MT-2")])
    assert registry.vehicle_of("00000000013800138000") == "MT-1"
    assert registry.vehicle_of("4>;6?;4:=628") == "MT-2"
    assert registry.phone_of("MT-1") == "13800138000" and registry.vehicles == {
        "MT-1": "13800138000",
        "MT-2": "4EB6FB4AD628",
    }
    assert not registry.known("013900000000")
    auto = TerminalRegistry(auto_register=True)
    auto.use([("013800138000", "MT-1")])
    assert auto.vehicle_of("013900000000") == "T13900000000" and auto.phone_of("T13900000000") == "13900000000"
    assert auto.phone_of("T13/#") is None


def session_after(*messages: m.Message) -> Jt808Session:
    session = Jt808Session(Jt808Settings(auth_code="secret"), now=NOW)
    for sn, message in enumerate(messages):
        session.receive(encode_frame(Header(message.msg_id, "013800138000", sn), message.encode()), NOW + sn)
    return session


def test_a_connection_is_recorded_with_its_state_and_drops() -> None:
    registry = TerminalRegistry()
    registry.use([("013800138000", "MT-1")])
    health = TerminalHealth(registry)
    session = session_after(m.Heartbeat())
    rec = health.attach(session, "10.0.0.1:5000", NOW)
    assert rec is not None
    wrong = m.Authenticate("guess")
    outcomes = session.receive(encode_frame(Header(wrong.msg_id, "013800138000", 5), wrong.encode()), NOW + 5)
    health.update(rec, session, outcomes, NOW + 5)
    assert (rec.vehicle_id, rec.state, rec.connected, rec.connections) == ("MT-1", "auth_failed", True, 1)
    assert (rec.drops, rec.last_drop, rec.last_drop_at, rec.last_frame) == (
        {"auth_failed": 1}, "auth_failed", NOW + 5, NOW + 5,
    )  # fmt: skip
    health.detach(rec, "auth_timeout", NOW + 30)
    assert (rec.connected, rec.close_reason, rec.last_disconnect) == (False, "auth_timeout", NOW + 30)
    assert rec.row()["drops"] == {"auth_failed": 1} and "dirty" not in rec.row()


def test_uplinks_through_emqx_mark_a_terminal_unless_our_gateway_holds_it() -> None:
    health = TerminalHealth(TerminalRegistry())
    rec = health.seen_via_mqtt("013800138000", "013800138000", NOW)
    assert rec is not None and (rec.transport, rec.state, rec.mqtt_clientid) == ("mqtt", "emqx", "013800138000")
    tcp = health.attach(session_after(m.Authenticate("secret")), "10.0.0.1:1", NOW)
    assert tcp is not None
    assert health.seen_via_mqtt("013800138000", "013800138000", NOW + 1) is None  # our own publication
    health.detach(tcp, "eof", NOW + 2)
    assert health.seen_via_mqtt("013800138000", "013800138000", NOW + 3) is None  # still in flight
    assert health.seen_via_mqtt("013800138000", "013800138000", NOW + 3 + TCP_GRACE_S) is not None
    assert health.seen_via_mqtt("x", "13800/#", NOW) is None


def test_restore_continues_the_counters_without_losing_live_records() -> None:
    health = TerminalHealth(TerminalRegistry())
    live = health.attach(session_after(m.Heartbeat()), "10.0.0.1:1", NOW)
    assert live is not None
    live.drops["bad_checksum"] = 1
    stored = {"phone": "13800138000", "state": "authenticated", "connections": 5, "drops": {"bad_checksum": 2}}
    health.restore([stored, {"phone": "13900000000", "state": "auth_failed", "connections": 1, "drops": {}}])
    assert (live.drops["bad_checksum"], live.connections, live.connected) == (3, 6, True)
    assert health.records["13900000000"].connected is False


def test_strangers_are_bounded() -> None:
    health = TerminalHealth(TerminalRegistry())
    for i in range(MAX_STRANGERS + 50):
        health.record(f"1{i:010d}", NOW + i)
    assert len(health.records) <= MAX_STRANGERS + 1
