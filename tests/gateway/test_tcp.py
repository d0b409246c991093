"""The JT/T 808 TCP gateway over real sockets on 127.0.0.1, port 0.

A simulated terminal (tools/jt808_terminal.py) registers, authenticates and
reports; what the gateway publishes must decode, through the same decoder as
EMQX's JSON, to the fixes the terminal sent.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiomqtt
import pytest

from gpsd_server.core.decode.jt808 import decode_jt808
from gpsd_server.core.decode.topics import TopicRouter
from gpsd_server.core.jt808 import downlink as dl
from gpsd_server.core.jt808 import frame as jt808
from gpsd_server.core.jt808.session import Ack
from gpsd_server.gateway.tcp import Jt808Gateway, MqttPublisher
from gpsd_server.model import Fix, FixFlag
from gpsd_server.settings import IngestSettings, Jt808Settings
from tests.fixtures.services import MQTT_PORT
from tools.jt808_terminal import SimulatedTerminal, TerminalError, location

SOS = 1 << 0
POWER_CUT = 1 << 8
BROKER = ("127.0.0.1", MQTT_PORT)


@dataclass
class Recorder:
    """An in-memory publish callback."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    fail: bool = False

    async def __call__(self, topic: str, payload: bytes) -> None:
        if self.fail:
            raise ConnectionError("broker away")
        self.messages.append((topic, payload))

    def fixes(self, now: float) -> list[Fix]:
        out: list[Fix] = []
        for topic, payload in self.messages:
            phone = _phone(topic)
            assert phone is not None, topic
            for r in decode_jt808(phone, payload, now=now, limits=IngestSettings(), terminals={}, auto_register=True):
                assert isinstance(r, Fix), r
                out.append(r)
        return out


@pytest.fixture
async def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def gateway(recorder: Recorder) -> AsyncIterator[Jt808Gateway]:
    settings = Jt808Settings(auth_code="city-808", max_bad_frames=5, idle_timeout_s=5)
    gw = Jt808Gateway(recorder, settings)
    await gw.start("127.0.0.1", 0)
    yield gw
    await gw.close()


async def connected(gw: Jt808Gateway, phone: str, edition: jt808.Edition = 2013) -> SimulatedTerminal:
    terminal = SimulatedTerminal(phone, edition=edition, timeout_s=3)
    await terminal.connect("127.0.0.1", gw.port)
    return terminal


@pytest.mark.parametrize("edition", [2013, 2019])
async def test_terminal_registers_authenticates_and_reports_an_alarm(
    gateway: Jt808Gateway, recorder: Recorder, edition: jt808.Edition
) -> None:
    now = time.time()
    async with await connected(gateway, "13800138000", edition) as terminal:
        code = await terminal.register(plate="粤B12345")
        assert code == "city-808"
        await terminal.authenticate(code)
        await terminal.heartbeat()
        await terminal.report(
            location(now - 2, 114.0579, 22.5431, speed_kmh=35.5, alarm=SOS, mileage_km=1234.5, sats=9)
        )
        await terminal.report_batch([location(now - 600, 114.05, 22.54), location(now - 590, 114.051, 22.541)])
    fixes = recorder.fixes(now)
    assert [f.vehicle_id for f in fixes] == ["T13800138000"] * 3
    live, *backfill = fixes
    assert (live.lon, live.lat, live.speed_kmh, live.alarm) == (114.0579, 22.5431, 35.5, SOS)
    assert (live.mileage_km, live.sats, live.ts) == (1234.5, 9, float(int(now - 2)))
    assert all(f.flags & FixFlag.BACKFILL for f in backfill)
    assert gateway.counters["location"] == 1 and gateway.counters["location_batch"] == 1
    topics = {topic for topic, _ in recorder.messages}
    phone = "013800138000" if edition == 2013 else "00000000013800138000"
    assert topics == {f"jt808/{phone}/{phone}/up"}  # EMQX's topic: the phone as the header writes it
    assert {json.loads(p)["header"]["msg_id"] for _, p in recorder.messages} == {0x0200, 0x0704}


async def test_positions_before_authentication_are_refused(gateway: Jt808Gateway, recorder: Recorder) -> None:
    async with await connected(gateway, "13800000001") as terminal:
        with pytest.raises(TerminalError, match="refused"):
            await terminal.report(location(time.time(), 114.0, 22.5))
        with pytest.raises(TerminalError, match="refused"):
            await terminal.authenticate("wrong-code")
    assert recorder.messages == []  # nothing of a stranger reaches the broker
    assert gateway.counters["dropped_unauthenticated"] == 1 and gateway.counters["dropped_auth_failed"] == 1


async def test_publish_failure_tells_the_terminal_to_keep_its_data(gateway: Jt808Gateway, recorder: Recorder) -> None:
    async with await connected(gateway, "13800000002") as terminal:
        await terminal.authenticate("city-808")
        recorder.fail = True
        with pytest.raises(TerminalError, match="result=1"):
            await terminal.report(location(time.time(), 114.0, 22.5))
    assert gateway.counters["publish_failed"] >= 1


async def test_bad_frames_do_not_disturb_other_terminals(gateway: Jt808Gateway, recorder: Recorder) -> None:
    now = time.time()
    async with await connected(gateway, "13800000003") as noisy, await connected(gateway, "13800000004") as good:
        await noisy.authenticate("city-808")
        await good.authenticate("city-808")
        bad_sum = bytearray(jt808.encode_frame(noisy.header(jt808.HEARTBEAT)))
        bad_sum[-2] ^= 0x55
        await noisy.send_raw(bytes(bad_sum))
        await noisy.send_raw(b"\x7e\x01\x7d\x09\x7e")  # bad escape: dropped
        await noisy.send_raw(b"\x7e" + b"\x00" * 5000)  # oversize, never closed
        answer = await noisy.answer_to(bad_sum_sn(bytes(bad_sum)))
        assert answer.result == 2  # type: ignore[union-attr]
        await good.report(location(now, 114.1, 22.6, alarm=POWER_CUT))
        await noisy.heartbeat()  # the noisy terminal's connection still works
    assert [f.alarm for f in recorder.fixes(now)] == [POWER_CUT]
    assert gateway.counters["dropped_bad_checksum"] == 1
    assert gateway.counters["dropped_bad_escape"] == 1
    assert gateway.counters["dropped_oversize"] == 1


def _phone(topic: str, prefix: str = "jt808") -> str | None:
    route = TopicRouter(jt808=prefix).route(topic)
    return route.key if route is not None and route.path == "jt808" else None


def bad_sum_sn(frame: bytes) -> int:
    error = jt808.decode_frame(frame[1:-1])
    assert isinstance(error, jt808.FrameError) and error.header is not None
    return error.header.msg_sn


async def test_too_many_bad_frames_close_that_connection_only(gateway: Jt808Gateway) -> None:
    async with await connected(gateway, "13800000005") as noisy, await connected(gateway, "13800000006") as good:
        await noisy.send_raw(b"\x7e\x7d\x09\x7e" * 10)
        with pytest.raises(TerminalError, match="closed"):
            await noisy.heartbeat()
        await good.heartbeat()
    assert gateway.counters["closed_bad_frames"] == 1


async def test_idle_connection_is_closed_after_authentication(recorder: Recorder) -> None:
    gw = Jt808Gateway(recorder, Jt808Settings(auth_code="", idle_timeout_s=0.3))
    await gw.start("127.0.0.1", 0)
    try:
        async with await connected(gw, "13800000008") as terminal:
            await terminal.authenticate("x")
            async with asyncio.timeout(3):
                with pytest.raises(TerminalError, match="closed"):
                    await terminal.answer_to(99)  # nothing comes but the hang-up
        assert gw.counters["closed_idle_timeout"] == 1
        await asyncio.sleep(0.05)
        assert gw.connections == 0
    finally:
        await gw.close()


async def test_connection_limit(recorder: Recorder) -> None:
    gw = Jt808Gateway(recorder, Jt808Settings(max_connections=1))
    await gw.start("127.0.0.1", 0)
    try:
        async with await connected(gw, "13800000007") as first:
            await first.heartbeat()
            reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
            async with asyncio.timeout(3):
                assert await reader.read() == b""
            writer.close()
            await first.heartbeat()
        assert gw.counters["refused_total_limit"] == 1
    finally:
        await gw.close()


async def test_a_command_goes_out_on_the_terminals_connection_and_its_answer_comes_back(recorder: Recorder) -> None:
    acks: list[tuple[str, str, Ack]] = []
    gone: list[tuple[str, str]] = []
    gw = Jt808Gateway(
        recorder, Jt808Settings(auth_code=""), on_ack=lambda *a: acks.append(a), on_disconnect=lambda *a: gone.append(a)
    )
    await gw.start("127.0.0.1", 0)
    try:
        assert await gw.send("13800000009", dl.TextMessage("hello")) is None  # not connected
        async with await connected(gw, "13800000009", 2019) as terminal:
            await terminal.authenticate("x")
            assert gw.online("0000000013800000009")
            sent = await gw.send("13800000009", dl.TextMessage("前往东门"))
            assert sent is not None
            header, command = await terminal.next_command()
            assert command == dl.TextMessage("前往东门") and header.msg_sn == sent[0]
            await terminal.acknowledge(header)
            await terminal.heartbeat()  # the answer has been read by now
        await asyncio.sleep(0.05)
    finally:
        await gw.close()
    assert acks == [("13800000009", sent[1], Ack(dl.TEXT_MESSAGE, sent[0], 0))]
    assert gone == [("13800000009", sent[1])]
    assert gw.counters["commands_sent"] == 1 and gw.counters["commands_acked"] == 1


async def broker_reachable() -> bool:
    try:
        async with asyncio.timeout(1):
            _, writer = await asyncio.open_connection(*BROKER)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def test_mqtt_round_trip_through_the_broker(services: None) -> None:
    # The `services` fixture starts the project's broker when it is not running.
    assert await broker_reachable(), f"no MQTT broker on {BROKER[0]}:{BROKER[1]}"
    prefix = f"test-jt808-{uuid.uuid4().hex[:8]}"
    publisher = MqttPublisher(*BROKER, client_id=f"{prefix}-gw")
    settings = Jt808Settings(auth_code="", topic_prefix=prefix)
    gw = Jt808Gateway(publisher.publish, settings)
    now = time.time()
    async with aiomqtt.Client(*BROKER, identifier=f"{prefix}-sub") as sub, asyncio.TaskGroup() as tasks:
        await sub.subscribe(f"{prefix}/+/+/up", qos=1)
        runner = tasks.create_task(publisher.run())
        await gw.start("127.0.0.1", 0)
        try:
            async with asyncio.timeout(5):
                await publisher.connected.wait()
            async with await connected(gw, "13812345678", 2019) as terminal:
                await terminal.authenticate("any")
                await terminal.report(location(now, 114.06, 22.55, alarm=SOS))
            got: list[Fix] = []
            async with asyncio.timeout(5):
                async for message in sub.messages:
                    phone = _phone(str(message.topic), prefix)
                    assert phone is not None and isinstance(message.payload, bytes)
                    results = decode_jt808(
                        phone, message.payload, now=now, limits=IngestSettings(), terminals={"13812345678": "V-MQTT"}
                    )
                    got += [r for r in results if isinstance(r, Fix)]
                    if got:
                        break
        finally:
            await gw.close()
            runner.cancel()
    assert [(f.vehicle_id, f.alarm, f.lon, f.lat) for f in got] == [("V-MQTT", SOS, 114.06, 22.55)]
