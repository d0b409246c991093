"""MqttClient against the real Mosquitto (tools/services.sh, GPSD_MQTT_PORT)."""

from __future__ import annotations

import asyncio
import time

import mqtt5
import pytest

from gpsd_server.mqtt import (
    ConnectionLost,
    ConnectRefused,
    DisconnectedByBroker,
    MqttTimeout,
    NotConnected,
)
from gpsd_server.mqtt.codec import StreamDecoder, encode_connect, encode_pubacks
from tests.fixtures.services import free_port
from tests.mqtt.conftest import HOST, Broker, read_packet, receive

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

BOTH = pytest.mark.parametrize("protocol", [5, 4], ids=["v5", "v311"])


def payloads(n: int, tag: str = "m") -> list[bytes]:
    return [f'{{"{tag}":{i},"lat":22.54321,"lon":114.05678,"speed":42.0,"ts":1700000000}}'.encode() for i in range(n)]


@BOTH
async def test_receive_qos0_and_qos1_and_ack(broker: Broker, topic: str, protocol: int) -> None:
    c = broker.client(protocol=protocol, keepalive_s=10)
    assert await c.connect() is False  # a new session
    assert c.connected
    await c.subscribe([f"{topic}/#"], qos=1)
    await broker.publish(f"{topic}/q1", payloads(5, "q1"), qos=1)
    await broker.publish(f"{topic}/q0", payloads(3, "q0"), qos=0)
    got = await receive(c, 8)
    assert [m.payload for m in got if m.qos == 1] == payloads(5, "q1")
    assert [m.payload for m in got if m.qos == 0] == payloads(3, "q0")
    assert all(m.packet_id == 0 for m in got if m.qos == 0)
    assert all(m.packet_id > 0 for m in got if m.qos == 1)
    assert {m.topic for m in got} == {f"{topic}/q1", f"{topic}/q0"}
    s = c.stats
    assert s.messages_in == 8 and s.qos1_in == 5 and s.acks_sent == 5
    assert c.unacked == 0
    await c.close()
    assert not c.connected


@BOTH
async def test_fast_path_decodes_every_message(broker: Broker, topic: str, protocol: int) -> None:
    """Fails if PUBLISH decoding leaves our own fast path (the hot path)."""
    c = broker.client(protocol=protocol)
    await c.connect()
    await c.subscribe([topic])
    await broker.publish(topic, payloads(200))
    await receive(c, 200)
    assert c.stats.messages_in == 200
    assert c.stats.fast_path_decodes == 200
    assert c.stats.slow_path_decodes == 0
    await c.close()


async def test_publish_with_properties_is_parsed_by_mqtt5(broker: Broker, topic: str) -> None:
    """A v5 PUBLISH that carries properties goes through mqtt5, and is counted so."""
    c = broker.client()
    await c.connect()
    await c.subscribe([topic])
    reader, writer = await asyncio.open_connection(HOST, broker.port)
    writer.write(encode_connect(5, client_id=f"raw-{topic[-8:]}", clean_start=True, session_expiry_s=0))
    await read_packet(reader)
    writer.write(mqtt5.PublishPacket(topic, b"with-props", user_properties=[("k", "v")]).write())
    writer.write(mqtt5.PublishPacket(topic, b"plain").write())
    await writer.drain()
    got = await receive(c, 2)
    assert [m.payload for m in got] == [b"with-props", b"plain"]
    assert (c.stats.slow_path_decodes, c.stats.fast_path_decodes) == (1, 1)
    writer.close()
    await writer.wait_closed()
    await c.close()


@BOTH
async def test_persistent_session_queues_while_away(broker: Broker, topic: str, protocol: int) -> None:
    c = broker.client(protocol=protocol)
    await c.connect()
    await c.subscribe([topic])
    await c.close()
    await broker.publish(topic, payloads(50))  # while the subscriber is away
    assert await c.connect() is True  # same object, connect() again
    got = await receive(c, 50)
    assert [m.payload for m in got] == payloads(50)
    await c.close()
    # and a brand-new client object with the same id resumes too
    again = broker.client(protocol=protocol, client_id=c.client_id)
    assert await again.connect() is True
    await again.close()


@BOTH
async def test_unacked_messages_are_redelivered_in_order(broker: Broker, topic: str, protocol: int) -> None:
    c = broker.client(protocol=protocol)
    await c.connect()
    await c.subscribe([topic])
    await broker.publish(topic, payloads(20))
    got = await receive(c, 20, ack=False)
    c.ack(got[:8])  # the first 8 only, in order, one write
    assert c.stats.ack_writes == 1 and c.stats.acks_sent == 8
    assert c.unacked == 12
    await c.close()
    assert await c.connect() is True
    again = await receive(c, 12)
    assert [m.payload for m in again] == payloads(20)[8:]
    # nothing more: the 8 acknowledged ones do not come back
    await broker.publish(topic, [b"end"])
    (last,) = await receive(c, 1)
    assert last.payload == b"end"
    await c.close()


async def test_ack_is_one_write_in_order(broker: Broker, topic: str) -> None:
    c = broker.client()
    await c.connect()
    await c.subscribe([topic])
    await broker.publish(topic, payloads(300))
    got = await receive(c, 300, ack=False)
    writes0 = c.stats.ack_writes
    c.ack(got)
    assert c.stats.ack_writes == writes0 + 1
    assert c.stats.acks_sent == 300
    await c.close()
    # all acknowledged: a reconnect brings nothing back
    await c.connect()
    await broker.publish(topic, [b"only"])
    (m,) = await receive(c, 1)
    assert m.payload == b"only"
    await c.close()


async def test_batches_are_bounded(broker: Broker, topic: str) -> None:
    c = broker.client()
    await c.connect()
    await c.subscribe([topic])
    await broker.publish(topic, payloads(100))
    await asyncio.sleep(0.3)  # let them all arrive
    sizes: list[int] = []
    async with asyncio.timeout(10):
        async for batch in c.batches(max_messages=7, max_bytes=10_000):
            sizes.append(len(batch))
            c.ack(batch)
            if sum(sizes) >= 100:
                break
    assert sum(sizes) == 100 and max(sizes) <= 7
    await broker.publish(topic, [b"x" * 3000] * 5)
    await asyncio.sleep(0.3)
    async for batch in c.batches(max_bytes=7000):
        assert 1 <= len(batch) <= 2  # 2 x 3000 bytes fit, 3 do not
        c.ack(batch)
        sizes.append(len(batch))
        if sum(sizes) >= 105:
            break
    await c.close()


@BOTH
async def test_broker_restart_loses_nothing(broker: Broker, topic: str, protocol: int) -> None:
    c = broker.client(protocol=protocol, keepalive_s=5)
    await c.connect()
    await c.subscribe([topic])
    await broker.publish(topic, payloads(40))
    first = await receive(c, 40, ack=False)
    c.ack(first[:10])
    await asyncio.sleep(0.1)  # the PUBACKs reach the broker before it stops
    stopped = asyncio.get_running_loop().run_in_executor(None, broker.restart)
    with pytest.raises(ConnectionLost) as err:
        await receive(c, 1)
    assert not c.connected
    await stopped
    # Mosquitto 2.0.11 sends no DISCONNECT (0x8B server shutting down) on SIGTERM: it just closes.
    if isinstance(err.value, DisconnectedByBroker):
        assert err.value.reason_code == 0x8B
    with pytest.raises(NotConnected):
        await c.publish(topic, b"x", qos=1)
    assert await c.connect() is True
    await broker.publish(topic, payloads(5, "after"))
    got = await receive(c, 35)
    assert [m.payload for m in got] == payloads(40)[10:] + payloads(5, "after")
    await c.close()


async def test_frozen_broker_is_detected_by_keepalive(broker: Broker, topic: str) -> None:
    c = broker.client(keepalive_s=1)
    await c.connect()
    await c.subscribe([topic])
    t0 = time.monotonic()
    with broker.frozen(), pytest.raises(ConnectionLost, match="no PINGRESP"):
        await receive(c, 1, timeout=10)
    assert time.monotonic() - t0 < 4
    assert c.stats.pings_sent >= 1
    assert not c.connected


async def test_keepalive_pings_keep_an_idle_connection(broker: Broker, topic: str) -> None:
    c = broker.client(keepalive_s=1)
    await c.connect()
    await c.subscribe([topic])
    await asyncio.sleep(3.2)  # Mosquitto drops a client silent for 1.5 keepalives
    assert c.connected
    assert c.stats.pongs_received >= 2
    await broker.publish(topic, [b"still here"])
    (m,) = await receive(c, 1)
    assert m.payload == b"still here"
    await c.close()


@BOTH
async def test_session_takeover(broker: Broker, topic: str, protocol: int) -> None:
    """A second client with the same id takes the session; the first gets an MqttError.

    Mosquitto 2.0.11 only closes the old connection, in MQTT 5 too: it sends
    no DISCONNECT 0x8E (checked on a raw socket). The naming of 0x8E when a
    broker does send it is tested against a fake broker (test_fake_broker.py)."""
    first = broker.client(protocol=protocol)
    await first.connect()
    await first.subscribe([topic])
    second = broker.client(protocol=protocol, client_id=first.client_id)
    assert await second.connect() is True
    with pytest.raises(ConnectionLost) as err:
        await receive(first, 1)
    if isinstance(err.value, DisconnectedByBroker):  # a broker that says why
        assert (err.value.reason_code, err.value.reason) == (0x8E, "SESSION_TAKEN_OVER")
    assert not first.connected
    assert second.connected
    await broker.publish(topic, [b"to the second"])
    (m,) = await receive(second, 1)
    assert m.payload == b"to the second"
    await second.close()


async def test_receive_maximum_with_1000_queued(broker: Broker, topic: str) -> None:
    """receive_maximum=10, 1,000 messages queued while away, a slow consumer.

    Mosquitto 2.0.11 honours the 10 for the first window only: for queued
    messages each PUBACK releases up to another 10 (see the wire test below),
    so it does send past the receive maximum. What the client guarantees is
    checked here: every message once and in order, no disconnect, the excess
    counted, and reading paused whenever 10 or more are unacknowledged."""
    c = broker.client(receive_maximum=10)
    await c.connect()
    await c.subscribe([topic])
    await c.close()
    await broker.publish(topic, payloads(1000))
    assert await c.connect() is True
    got: list = []
    async with asyncio.timeout(20):
        async for batch in c.batches():
            got.extend(batch)
            if c.unacked >= 10:
                assert c.reading_paused
            await asyncio.sleep(0.002)  # a slow consumer
            c.ack(batch)
            if len(got) >= 1000:
                break
    assert [m.payload for m in got] == payloads(1000)
    assert c.connected
    s = c.stats
    assert s.pauses >= 1
    assert s.over_receive_maximum >= s.max_unacked - 10  # the excess at the peak was counted
    print(f"max unacked delivered: {s.max_unacked}, past the receive maximum: {s.over_receive_maximum}")
    await c.close()


async def test_mosquitto_receive_maximum_on_the_wire(broker: Broker, topic: str) -> None:
    """What Mosquitto does with a receive maximum of 10, on a raw socket that
    never pauses: the first window is exactly 10; acknowledging ONE of them
    releases more than one (Mosquitto 2.0.11: another 10). If a broker upgrade
    makes it honour the limit, the second assertion fails and tells us."""
    c = broker.client()
    await c.connect()
    await c.subscribe([topic])
    await c.close()
    await broker.publish(topic, payloads(100))
    reader, writer = await asyncio.open_connection(HOST, broker.port)
    writer.write(encode_connect(5, client_id=c.client_id, receive_maximum=10, keepalive_s=30))
    decoder = StreamDecoder(5)
    out: list = []

    async def read_for(seconds: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while (left := end - loop.time()) > 0:
            try:
                data = await asyncio.wait_for(reader.read(65536), left)
            except TimeoutError:
                return
            decoder.feed(data, out)

    await read_for(0.5)
    assert len(out) == 10  # honoured at connect
    writer.write(encode_pubacks([out[0].packet_id]))
    await read_for(0.5)
    assert len(out) - 1 > 10, "Mosquitto now honours the receive maximum: update the docs and this test"
    writer.write(encode_pubacks([m.packet_id for m in out[1:]]))
    writer.close()
    await writer.wait_closed()
    assert [m.payload for m in out] == payloads(len(out))


async def test_flow_control_pauses_reading(broker: Broker, topic: str) -> None:
    """The client pauses reading at its receive maximum and resumes on ack."""
    c = broker.client(receive_maximum=10, read_coalesce_s=0)
    await c.connect()
    await c.subscribe([topic])
    await broker.publish(topic, payloads(30))
    first = await receive(c, 10, ack=False)
    assert len(first) == 10
    assert c.reading_paused and c.stats.pauses >= 1
    c.ack(first)
    assert not c.reading_paused
    rest = await receive(c, 20)
    assert [m.payload for m in first + rest] == payloads(30)
    await c.close()


@BOTH
async def test_publish_qos0_and_qos1(broker: Broker, topic: str, protocol: int) -> None:
    sub = broker.client()
    await sub.connect()
    await sub.subscribe([topic])
    pub = broker.client(protocol=protocol, clean_start=True, session_expiry_s=0)
    await pub.connect()
    await pub.publish(topic, b"zero", qos=0)
    await pub.publish(topic, b"one", qos=1)
    await asyncio.gather(*(pub.publish(topic, b"%d" % i, qos=1) for i in range(100)))
    assert pub.stats.pubacks_in == 101
    got = await receive(sub, 102)
    assert [m.payload for m in got[:2]] == [b"zero", b"one"]
    assert sorted(int(m.payload) for m in got[2:]) == list(range(100))
    await pub.close()
    await sub.close()


@BOTH
async def test_publish_many_sends_every_message_in_order_in_one_write(
    broker: Broker, topic: str, protocol: int
) -> None:
    sub = broker.client()
    await sub.connect()
    await sub.subscribe([f"{topic}/#"])
    pub = broker.client(protocol=protocol, clean_start=True, session_expiry_s=0)
    await pub.connect()
    messages = [(f"{topic}/{reason}", b"%d" % i) for i, reason in enumerate(["a", "b", "c"] * 100)]
    await pub.publish_many(messages)
    await pub.publish_many([])  # nothing: no write
    assert pub.stats.publishes_out == 300 and pub.stats.publish_writes == 1
    got = await receive(sub, 300)
    assert [(m.topic, m.payload) for m in got] == messages
    await pub.close()
    with pytest.raises(NotConnected):
        await pub.publish_many(messages[:1])
    await sub.close()


async def test_publish_when_not_connected(broker: Broker, topic: str) -> None:
    c = broker.client()
    with pytest.raises(NotConnected):
        await c.publish(topic, b"x")
    await c.connect()
    await c.close()
    with pytest.raises(NotConnected):
        await c.publish(topic, b"x", qos=1)
    with pytest.raises(NotConnected):
        await c.subscribe([topic])
    c.ack([])  # nothing to do, no error


async def test_publish_timeout(broker: Broker, topic: str) -> None:
    c = broker.client(keepalive_s=30)
    await c.connect()
    with broker.frozen():
        t0 = time.monotonic()
        with pytest.raises(MqttTimeout, match="no PUBACK"):
            await c.publish(topic, b"x", qos=1, timeout_s=0.5)
        assert 0.4 < time.monotonic() - t0 < 2
    assert c.connected  # a timeout is not a disconnect
    await c.publish(topic, b"y", qos=1, timeout_s=5)  # the broker is back, a new packet id
    await c.close()


async def test_connect_refused_names_the_reason(broker: Broker) -> None:
    """MQTT 3.1.1 forbids an empty client id with a persistent session: Mosquitto
    refuses it (MQTT 5 lets the broker assign one instead, so the v5 refusal is
    tested against the fake broker)."""
    c = broker.client(protocol=4, client_id=" ")
    c.client_id = ""
    with pytest.raises(ConnectRefused) as err:
        await c.connect()
    assert (err.value.reason_code, err.value.reason) == (2, "IDENTIFIER_REJECTED")
    assert "0x02 IDENTIFIER_REJECTED" in str(err.value)
    assert not c.connected


async def test_connect_to_nothing_fails_fast() -> None:
    from gpsd_server.mqtt import MqttClient

    c = MqttClient(host=HOST, port=free_port(), client_id="nobody")
    with pytest.raises(ConnectionLost, match="cannot connect"):
        await c.connect()


async def test_username_and_password_are_sent(broker: Broker, topic: str) -> None:
    # The test broker allows anonymous clients and has no password file, so it
    # accepts any credentials: this checks that CONNECT with them is well formed.
    for protocol in (5, 4):
        c = broker.client(protocol=protocol, username="gpsd", password="s3cret")
        await c.connect()
        await c.subscribe([topic])
        await c.close()


async def test_invalid_filter(broker: Broker) -> None:
    c = broker.client()
    await c.connect()
    with pytest.raises(ValueError, match="Invalid topic filter"):  # mqtt5 refuses to encode it
        await c.subscribe(["bad/#/filter"])
    assert c.connected
    await c.close()
    v4 = broker.client(protocol=4)
    await v4.connect()
    with pytest.raises(ConnectionLost):  # Mosquitto 2.0.11 drops a 3.1.1 client for it
        await v4.subscribe(["bad/#/filter"])
    await v4.close()


async def test_buffered_bytes_are_bounded(broker: Broker, topic: str) -> None:
    """QoS 0 is not bounded by the receive maximum: max_buffered_bytes is."""
    c = broker.client(max_buffered_bytes=2000, read_coalesce_s=0)
    await c.connect()
    await c.subscribe([topic], qos=0)
    for k in range(5):  # 10 x 200 bytes at a time: the first 10 reach the bound
        await broker.publish(topic, [b"%04d" % i + b"x" * 196 for i in range(k * 10, k * 10 + 10)], qos=0)
        await asyncio.sleep(0.1)  # nobody consumes
    assert c.reading_paused
    assert c.stats.messages_in < 50  # the rest waits in the kernel
    got = await receive(c, 50)
    assert [m.payload[:4] for m in got] == [b"%04d" % i for i in range(50)]
    assert c.stats.pauses >= 1 and c.stats.resumes >= 1
    await c.close()


async def test_ack_without_connection_is_dropped(broker: Broker, topic: str) -> None:
    c = broker.client()
    await c.connect()
    await c.subscribe([topic])
    await broker.publish(topic, payloads(5))
    got = await receive(c, 5, ack=False)
    await c.close()
    c.ack(got)  # no connection: counted, not sent; the broker redelivers
    assert c.stats.acks_dropped == 5 and c.stats.acks_sent == 0
    assert await c.connect() is True
    again = await receive(c, 5)
    assert [m.payload for m in again] == payloads(5)
    await c.close()
