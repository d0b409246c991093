"""Protocol cases the real Mosquitto cannot be made to produce, against a tiny
fake broker (tests/mqtt/conftest.py): a broker that sends past the receive
maximum without waiting, malformed or oversized packets, a DISCONNECT with a
reason, refusals, silence."""

from __future__ import annotations

import asyncio

import mqtt5
import pytest

from gpsd_server.mqtt import (
    ConnectionLost,
    ConnectRefused,
    DisconnectedByBroker,
    MqttClient,
    MqttTimeout,
    ProtocolViolation,
    SubscribeRefused,
)
from gpsd_server.mqtt.codec import encode_publish
from tests.mqtt.conftest import HOST, fake_broker, read_packet

pytestmark = pytest.mark.timeout(30)


def client(port: int, **kw: object) -> MqttClient:
    return MqttClient(host=HOST, port=port, client_id="fake-test", **kw)  # type: ignore[arg-type]


def publishes(start: int, n: int) -> bytes:
    return b"".join(encode_publish(5, "fake/t", b"%d" % i, 1, i + 1) for i in range(start, start + n))


async def test_broker_past_receive_maximum_pauses_and_loses_nothing() -> None:
    """50 unacknowledged PUBLISHes against a receive maximum of 10, then 50
    more: the client pauses reading, stays connected, loses nothing, and
    acknowledges all 100 in order."""
    acked: list[int] = []
    more = asyncio.Event()
    all_acked = asyncio.Event()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(publishes(0, 50))
        await writer.drain()
        await more.wait()
        writer.write(publishes(50, 50))
        await writer.drain()
        while len(acked) < 100:
            p = await read_packet(reader)
            if p[0] == 0x40:
                acked.append(int.from_bytes(p[2:4], "big"))
        all_acked.set()
        await asyncio.sleep(10)

    async with fake_broker(script) as port:
        c = client(port, receive_maximum=10, read_coalesce_s=0)
        await c.connect()
        got = []
        async with asyncio.timeout(10):
            async for batch in c.batches():
                got.extend(batch)
                if c.reading_paused:
                    break
        assert c.unacked >= 10 and c.stats.pauses == 1
        assert c.stats.over_receive_maximum == c.unacked - 10
        more.set()
        await asyncio.sleep(0.3)
        assert c.stats.messages_in == len(got)  # paused: the next 50 wait in the kernel
        async with asyncio.timeout(10):
            c.ack(got)
            async for batch in c.batches():
                got.extend(batch)
                c.ack(batch)
                if len(got) >= 100:
                    break
        assert [m.payload for m in got] == [b"%d" % i for i in range(100)]
        assert c.connected
        assert c.stats.over_receive_maximum > 0 and c.stats.resumes >= 1
        await asyncio.wait_for(all_acked.wait(), 5)
        assert acked == list(range(1, 101))
        await c.close()


async def test_malformed_packet_is_a_protocol_violation() -> None:
    seen: list[bytes] = []

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(publishes(0, 2) + b"\x30\x05\x00\x09abc")  # topic longer than the packet
        await writer.drain()
        seen.append(await read_packet(reader))

    async with fake_broker(script) as port:
        c = client(port)
        await c.connect()
        got = []
        with pytest.raises(ProtocolViolation, match="shorter than its topic"):
            async for batch in c.batches():
                got.extend(batch)
        assert [m.payload for m in got] == [b"0", b"1"]  # what came before is delivered
        assert not c.connected
        await asyncio.sleep(0.1)
        assert seen == [b"\xe0\x01\x81"]  # DISCONNECT 0x81 malformed packet


@pytest.mark.parametrize(
    ("packet", "match"),
    [
        (encode_publish(5, "big", b"x" * 2000, 1, 1), "exceeds the maximum of 1024"),
        (b"\x34\x06\x00\x01a\x00\x01\x00", "QoS 2"),
        (b"\x50\x02\x00\x01", "unexpected packet type 0x50"),
        (b"\x20\x03\x00\x00\x00", "a second CONNACK"),
    ],
)
async def test_other_violations(packet: bytes, match: str) -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(packet)
        await writer.drain()
        await asyncio.sleep(10)

    async with fake_broker(script) as port:
        c = client(port, max_packet_bytes=1024)
        await c.connect()
        with pytest.raises(ProtocolViolation, match=match):
            async for _ in c.batches():
                pass


async def test_disconnect_reason_is_named() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(publishes(0, 3) + b"\xe0\x01\x8e")
        await writer.drain()
        await asyncio.sleep(10)

    async with fake_broker(script) as port:
        c = client(port)
        await c.connect()
        got = []
        with pytest.raises(DisconnectedByBroker) as err:
            async for batch in c.batches():
                got.extend(batch)
        assert len(got) == 3
        assert (err.value.reason_code, err.value.reason) == (0x8E, "SESSION_TAKEN_OVER")
        assert str(err.value) == "disconnected by broker: 0x8E SESSION_TAKEN_OVER"


async def test_v5_refusal_is_named() -> None:
    connack = mqtt5.ConnAckPacket(reason_code=mqtt5.ConnAckReasonCode.NOT_AUTHORIZED, reason_str="no ACL").write()

    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async with fake_broker(script, connack=connack) as port:
        c = client(port)
        with pytest.raises(ConnectRefused) as err:
            await c.connect()
        assert (err.value.reason_code, err.value.reason) == (0x87, "NOT_AUTHORIZED")
        assert str(err.value) == "connection refused: 0x87 NOT_AUTHORIZED (no ACL)"
        assert not c.connected


async def test_no_connack_times_out() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async with fake_broker(script, connack=None) as port:
        c = client(port, connect_timeout_s=0.3)
        with pytest.raises(MqttTimeout, match="no CONNACK"):
            await c.connect()
        assert not c.connected


async def test_closed_before_connack() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pass

    async with fake_broker(script, connack=None) as port:
        with pytest.raises(ConnectionLost):
            await client(port).connect()


async def test_subscribe_refused_names_the_filters() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sub = await read_packet(reader)
        pid = sub[2:4]
        writer.write(b"\x90\x05" + pid + b"\x00\x01\x87")  # granted QoS 1, then NOT_AUTHORIZED
        await writer.drain()
        await asyncio.sleep(10)

    async with fake_broker(script) as port:
        c = client(port)
        await c.connect()
        with pytest.raises(SubscribeRefused) as err:
            await c.subscribe(["ok/#", "secret/#"])
        assert err.value.refused == {"secret/#": 0x87}
        assert c.connected
        await c.close()


async def test_no_suback_times_out() -> None:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(10)

    async with fake_broker(script) as port:
        c = client(port, connect_timeout_s=0.3)
        await c.connect()
        with pytest.raises(MqttTimeout, match="no SUBACK"):
            await c.subscribe(["a"])
        await c.close()
