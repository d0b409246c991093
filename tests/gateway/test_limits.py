"""The gateway under attack and starvation, over real sockets on loopback, in
seconds: a 0x7e flood (closed, and the event loop and a real terminal keep
their latency), connections that never authenticate or trickle bytes
(closed at their deadline), reassembly buffers held only for authenticated
terminals, and errors logged once per interval.

The measured figures are printed (``pytest -s``) for the README."""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gpsd_server.core.jt808 import frame as jt808
from gpsd_server.core.jt808.frame import Header
from gpsd_server.gateway.guard import EventLog, connection_budget
from gpsd_server.gateway.tcp import Jt808Gateway
from gpsd_server.settings import Jt808Settings
from tests.gateway.test_tcp import Recorder
from tests.helpers import wait_for
from tools.jt808_terminal import SimulatedTerminal, TerminalError, location

FLOODER = Path(__file__).with_name("flood.py")


class LoopLag:
    """How late a 5 ms sleep wakes up: the event loop's responsiveness."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(0.005)
            self.samples.append(time.perf_counter() - t0 - 0.005)

    def __enter__(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    def p(self, q: float) -> float:
        return quantile(self.samples, q)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@pytest.fixture
async def recorder() -> Recorder:
    return Recorder()


async def gateway_with(recorder: Recorder, **settings: object) -> Jt808Gateway:
    gw = Jt808Gateway(recorder, Jt808Settings(**({"auth_code": ""} | settings)))  # type: ignore[arg-type]
    await gw.start("127.0.0.1", 0)
    return gw


@pytest.fixture
async def gateway(recorder: Recorder) -> AsyncIterator[Jt808Gateway]:
    gw = await gateway_with(recorder, auth_timeout_s=2.0, idle_timeout_s=30.0)
    yield gw
    await gw.close()


async def test_a_0x7e_flood_is_closed_and_starves_nobody(gateway: Jt808Gateway) -> None:
    terminal = SimulatedTerminal("13800000100", timeout_s=5)
    await terminal.connect("127.0.0.1", gateway.port, local_addr="127.0.0.2")
    await terminal.authenticate("x")
    quiet: list[float] = []
    for _ in range(20):
        t0 = time.perf_counter()
        await terminal.heartbeat()
        quiet.append(time.perf_counter() - t0)
    flooder = await asyncio.create_subprocess_exec(
        sys.executable, str(FLOODER), "127.0.0.1", str(gateway.port), "3", "4", stdout=asyncio.subprocess.PIPE
    )
    rtts: list[float] = []
    with LoopLag() as lag:
        await asyncio.sleep(0.3)  # the flood is on
        t_end = time.monotonic() + 2.5
        while time.monotonic() < t_end:
            t0 = time.perf_counter()
            await terminal.heartbeat()
            rtts.append(time.perf_counter() - t0)
            await asyncio.sleep(0.01)
        out, _ = await flooder.communicate()
    await terminal.report(location(time.time(), 114.0, 22.5))  # still served
    await terminal.close()
    sent = json.loads(out)
    closed = gateway.counters["closed_garbage"]
    print(
        f"\n0x7e flood: {sent['bytes'] / 1e6:.0f} MB over {sent['connections']} connections in 3 s,"
        f" {closed} closed at the garbage cap; terminal round trip p50 {statistics.median(rtts) * 1e3:.1f} ms"
        f" p99 {quantile(rtts, 0.99) * 1e3:.1f} ms (quiet p50 {statistics.median(quiet) * 1e3:.1f} ms);"
        f" event loop lag p50 {lag.p(0.5) * 1e3:.1f} ms p99 {lag.p(0.99) * 1e3:.1f} ms"
        f" max {max(lag.samples) * 1e3:.1f} ms"
    )
    assert closed >= 4 and sent["connections"] >= 4  # every flooding connection was hung up on
    assert len(rtts) > 50
    assert quantile(rtts, 0.99) < 0.3, "a real terminal's round trip stays low"
    assert lag.p(0.99) < 0.15, "the event loop is never held by the flood (before: seconds)"
    await wait_for(lambda: gateway.connections == 0, timeout=3, what="every connection gone")


async def test_connections_that_never_authenticate_are_closed_at_the_deadline(recorder: Recorder) -> None:
    gw = await gateway_with(recorder, auth_timeout_s=1.0)
    try:
        silent = [await asyncio.open_connection("127.0.0.1", gw.port) for _ in range(20)]
        # Valid heartbeats, never an authentication: they do not buy time.
        chatty = SimulatedTerminal("13800000101")
        await chatty.connect("127.0.0.1", gw.port)
        t0 = time.monotonic()
        with pytest.raises(TerminalError, match="closed"):
            while True:
                await chatty.heartbeat()
                await asyncio.sleep(0.1)
        chatty_closed = time.monotonic() - t0
        await chatty.close()
        async with asyncio.timeout(3):
            for reader, writer in silent:
                assert await reader.read() == b""
                writer.close()
        elapsed = time.monotonic() - t0
        print(
            f"\nnever-authenticating: 21 connections closed after {chatty_closed:.2f} s / {elapsed:.2f} s"
            " (deadline 1 s)"
        )
        assert 0.8 < chatty_closed < 1.8
        assert gw.counters["closed_auth_timeout"] == 21
        await asyncio.sleep(0.05)
        assert gw.connections == 0
    finally:
        await gw.close()


async def test_trickled_bytes_do_not_keep_an_authenticated_connection_open(recorder: Recorder) -> None:
    gw = await gateway_with(recorder, idle_timeout_s=1.0)
    try:
        terminal = SimulatedTerminal("13800000102")
        await terminal.connect("127.0.0.1", gw.port)
        await terminal.authenticate("x")
        t0 = time.monotonic()
        with pytest.raises((TerminalError, ConnectionError)):
            for _ in range(100):  # one byte of noise every 50 ms: never a valid frame
                await terminal.send_raw(b"\x7e" if _ % 2 else b"\x00")
                await asyncio.sleep(0.05)
            await terminal.heartbeat()
        held = time.monotonic() - t0
        print(f"\ntrickle: closed after {held:.2f} s (idle timeout 1 s, a byte every 50 ms)")
        await terminal.close()
        assert held < 2.5
        assert gw.counters["closed_idle_timeout"] == 1
    finally:
        await gw.close()


async def test_reassembly_buffers_only_for_authenticated_terminals_and_bounded(recorder: Recorder) -> None:
    gw = await gateway_with(recorder, auth_code="secret", max_reassembly_bytes=4096)
    try:
        packet = b"\x00" * 1000
        strangers = []
        for i in range(50):
            t = SimulatedTerminal(f"138000002{i:02d}")
            await t.connect("127.0.0.1", gw.port)
            strangers.append(t)
            for n in range(4):  # first packets of messages that never complete
                await t.send_raw(
                    jt808.encode_frame(Header(0x0704, t.phone, 10 * n + 1, frag_total=9, frag_sn=1), packet)
                )
        member = SimulatedTerminal("13800000103")
        await member.connect("127.0.0.1", gw.port)
        await member.authenticate("secret")
        for n in range(20):
            await member.send_raw(
                jt808.encode_frame(Header(0x0704, member.phone, 10 * n + 1, frag_total=9, frag_sn=1), packet)
            )
        await member.heartbeat()
        await asyncio.sleep(0.1)
        held = [c.session.reassembly_bytes for c in gw._connections.values()]
        assert max(held) <= 4096 and sum(held) <= 4096
        assert gw.counters["dropped_unauthenticated"] == 200
        assert gw.counters["dropped_oversize"] >= 1
        for t in [*strangers, member]:
            await t.close()
    finally:
        await gw.close()


def test_connection_budget_stays_well_under_the_descriptor_limit() -> None:
    settings = Jt808Settings(max_connections=20000, fd_reserve=256)
    assert connection_budget(settings, 1024) == 768  # a quarter kept for HTTP, the database, the broker
    assert connection_budget(settings, 4096) == 3072
    assert connection_budget(settings, 1_048_576) == 20000
    assert connection_budget(Jt808Settings(max_connections=100, fd_reserve=900), 1000) == 100


def test_errors_are_logged_once_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = [0.0]
    events = EventLog(logging.getLogger("test.jt808"), 10.0, clock=lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="test.jt808"):
        for i in range(8000):
            clock[0] = i / 1000  # 8000 events in 8 s
            events.event("dropped bad_checksum", f"13800{i % 7:06d}", "0x01 != 0x02")
        clock[0] = 10.5
        events.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("jt808 dropped bad_checksum: 1 (13800000000)")
    assert lines[1].startswith("jt808 dropped bad_checksum: 7999 in the last 10 s (13800000001, ")
