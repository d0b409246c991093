"""Descriptor exhaustion through the JT/T 808 gateway, against a whole server
(real PostgreSQL and Mosquitto): hundreds of connections from one address
are refused at the per-address limit, more from other addresses at the
total limit, each refusal counted on /metrics and logged once per interval,
while a terminal already connected keeps reporting, a new terminal from
another network still gets in, HTTP answers and MQTT ingest stores fixes.

The measured figures are printed (``pytest -s``)."""

from __future__ import annotations

import asyncio
import json
import logging
import statistics
import time
from typing import Any

import httpx
import psycopg
import pytest

from tests.fixtures.server import RunningServer
from tests.helpers import publish, wait_for
from tools.jt808_terminal import SimulatedTerminal, TerminalError, location

PER_ADDRESS, TOTAL = 40, 120
ATTACK = 300
REGISTERED = ("MT-006", "013884205223")  # geofences/vehicles.json
NEWCOMER = ("MT-002", "013005591696")


@pytest.fixture
def server_overrides(unique: str) -> dict[str, str]:
    return {
        "GPSD_JT808__ENABLED": "true",
        "GPSD_JT808__HOST": "127.0.0.1",
        "GPSD_JT808__PORT": "0",
        "GPSD_JT808__TOPIC_PREFIX": f"t{unique}-808",
        "GPSD_JT808__MAX_CONNECTIONS": str(TOTAL),
        "GPSD_JT808__MAX_CONNECTIONS_PER_ADDRESS": str(PER_ADDRESS),
        "GPSD_JT808__ERROR_LOG_INTERVAL_S": "30",
    }


def seen(gateway: Any) -> int:
    c = gateway.counters
    return int(c["connections"] + c["refused_address_limit"] + c["refused_total_limit"])


async def open_many(gateway: Any, n: int, local: str) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """``n`` connections from ``local``, 50 at a time: beyond the listen
    backlog the kernel, not the gateway, turns connections away, and the
    client cannot tell which."""
    out: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    for i in range(0, n, 50):
        first = seen(gateway)
        batch = min(50, n - i)
        out += await asyncio.gather(
            *(asyncio.open_connection("127.0.0.1", gateway.port, local_addr=(local, 0)) for _ in range(batch))
        )
        await wait_for(lambda f=first, b=batch: seen(gateway) >= f + b, what="the gateway taking the connections")
    return out


async def hung_up(conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> int:
    """How many of these connections the gateway has closed."""

    async def closed(reader: asyncio.StreamReader) -> bool:
        try:
            async with asyncio.timeout(0.2):
                return await reader.read(1) == b""
        except TimeoutError:
            return False  # held open (silent, within its authentication deadline)

    return sum(await asyncio.gather(*(closed(r) for r, _ in conns)))


async def healthz_ms(http: httpx.AsyncClient, n: int = 20) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = await http.get("/healthz")
        assert r.status_code == 200, r.text
        out.append((time.perf_counter() - t0) * 1e3)
    return out


async def test_connection_flood_is_refused_while_everything_else_keeps_working(
    server: RunningServer, db: psycopg.Connection[tuple[object, ...]], caplog: pytest.LogCaptureFixture
) -> None:
    gateway = server.server.gateway
    await wait_for(lambda: gateway._server is not None)
    port = gateway.port
    assert gateway.max_connections == TOTAL  # well under RLIMIT_NOFILE, checked at start
    now = time.time()
    truck = SimulatedTerminal(REGISTERED[1])
    await truck.connect("127.0.0.1", port, local_addr="127.0.0.2")
    await truck.authenticate(await truck.register())
    await truck.report(location(now - 30, 112.31, 28.56))
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers()) as http:
        before = await healthz_ms(http)
        with caplog.at_level(logging.WARNING, logger="gpsd_server.gateway.tcp"):
            t0 = time.monotonic()
            from_one = await open_many(gateway, ATTACK, "127.0.0.1")
            others = [c for i in range(4) for c in await open_many(gateway, 30, f"127.0.0.{10 + i}")]
            attack_s = time.monotonic() - t0
            held_one = gateway._addresses.open["127.0.0.1"]
            refused_one, refused_total = await hung_up(from_one), await hung_up(others)
            during = await healthz_ms(http)
            vehicles = await http.get("/api/vehicles")
            assert vehicles.status_code == 200
            # The truck already connected keeps reporting; a new one from elsewhere gets in.
            for i in range(5):
                await truck.report(location(now - 20 + i, 112.31 + i * 1e-4, 28.56))
            newcomer = SimulatedTerminal(NEWCOMER[1])
            await newcomer.connect("127.0.0.1", port, local_addr="127.0.0.3")
            refused_newcomer = False
            try:
                await newcomer.authenticate(await newcomer.register())
                await newcomer.report(location(now - 10, 112.32, 28.57))
            except (ConnectionError, TerminalError):  # at the total limit the newcomer is refused too
                refused_newcomer = True
            await newcomer.close()
            # Ingest over MQTT is unaffected.
            native = f"{server.prefix}-fd"
            await publish(
                [(f"{server.prefix}/{native}/fix", json.dumps({"ts": now - 5, "lon": 112.3, "lat": 28.5}).encode())]
            )
            await wait_for(
                lambda: db.execute("SELECT count(*) FROM fixes WHERE vehicle_id = %s", (native,)).fetchone() == (1,),
                what="the native fix stored during the attack",
            )
            await wait_for(
                lambda: db.execute(
                    "SELECT count(*) FROM fixes WHERE vehicle_id = %s AND ts >= to_timestamp(%s)",
                    (REGISTERED[0], now - 21),
                ).fetchone() == (5,),
                what="the connected truck's fixes",
            )  # fmt: skip
            metrics = (await http.get("/metrics")).text
        refusal_lines = [r for r in caplog.records if "refused" in r.getMessage()]
    for _, writer in [*from_one, *others]:
        writer.close()
    await truck.close()
    counters = gateway.counters
    print(
        f"\n[gateway fd exhaustion] {ATTACK} connections from one address: {held_one} held (limit {PER_ADDRESS}),"
        f" {refused_one} refused; 120 more from 4 addresses: {refused_total} refused at the total limit {TOTAL};"
        f" {attack_s:.1f} s; /healthz p50 {statistics.median(before):.1f} ms before,"
        f" {statistics.median(during):.1f} ms (max {max(during):.1f}) during; {len(refusal_lines)} log lines for"
        f" {counters['refused_address_limit'] + counters['refused_total_limit']} refusals"
    )
    assert held_one == PER_ADDRESS and refused_one == ATTACK - PER_ADDRESS
    assert counters["refused_address_limit"] == ATTACK - PER_ADDRESS
    # 40 + 1 (the truck) + 4 x 30: the total limit of 120 turns away the rest.
    assert refused_total == 4 * 30 - (TOTAL - PER_ADDRESS - 1)
    assert counters["refused_total_limit"] == refused_total + int(refused_newcomer)
    assert 'gpsd_jt808_gateway_events_total{reason="refused_address_limit"} 260.0' in metrics
    assert len(refusal_lines) <= 4, [r.getMessage() for r in refusal_lines]  # once per reason per interval
    assert max(during) < 1000 and statistics.median(during) < 100
