"""Terminals as they exist: a JT/T 808 terminal over TCP through the built-in
gateway, an OwnTracks phone over the real broker, and one track sent three
ways ending up as the same stored fixes."""

from __future__ import annotations

import asyncio
import json
import time

import psycopg
import pytest
import websockets

from tests.fixtures.server import RunningServer
from tests.helpers import publish, wait_for
from tools.jt808_terminal import SimulatedTerminal, location

# From geofences/vehicles.json (the demo city's registry).
JT808_VEHICLE, JT808_PHONE = "MT-006", "013884205223"
OWNTRACKS_VEHICLE, OWNTRACKS_DEVICE = "PC-005", "pc005/phone"
POWER_CUT = 1 << 8


@pytest.fixture
def server_overrides(unique: str) -> dict[str, str]:
    return {
        "GPSD_JT808__ENABLED": "true",
        "GPSD_JT808__HOST": "127.0.0.1",
        "GPSD_JT808__PORT": "0",
        "GPSD_JT808__TOPIC_PREFIX": f"t{unique}-808",
        "GPSD_OWNTRACKS__TOPIC_PREFIX": f"t{unique}-ot",
    }


def track(t0: float) -> list[dict[str, float]]:
    """A short drive with whole-second times and values every format can carry exactly."""
    return [
        {"ts": t0 + 10 * i, "lon": round(112.300000 + 0.000731 * i, 6), "lat": round(28.550000 + 0.000217 * i, 6),
         "speed_kmh": float(20 + i % 7), "heading": float((70 + 3 * i) % 360)}
        for i in range(30)
    ]  # fmt: skip


def stored(db: psycopg.Connection[tuple[object, ...]], vehicle: str, t0: float, t1: float) -> list[tuple[object, ...]]:
    return db.execute(
        "SELECT extract(epoch FROM ts)::float8, round(lon::numeric, 6)::float8, round(lat::numeric, 6)::float8,"
        " round(speed_kmh::numeric, 1)::float8, round(heading::numeric)::float8"
        " FROM fixes WHERE vehicle_id = %s AND ts >= to_timestamp(%s) AND ts <= to_timestamp(%s) ORDER BY ts",
        (vehicle, t0, t1),
    ).fetchall()


async def gateway_port(server: RunningServer) -> int:
    await wait_for(lambda: server.server.gateway is not None and server.server.gateway._server is not None)
    return int(server.server.gateway.port)


async def test_one_track_three_ways(server: RunningServer, db: psycopg.Connection[tuple[object, ...]]) -> None:
    t0 = float(int(time.time()) - 900)
    points = track(t0)
    native = f"{server.prefix}-native"
    await publish([(f"{server.prefix}/{native}/fix", json.dumps(points).encode())])

    ot_prefix = server.server.cfg.owntracks.topic_prefix
    await publish(
        [
            (
                f"{ot_prefix}/{OWNTRACKS_DEVICE}",
                json.dumps(
                    {"_type": "location", "tid": "p5", "tst": int(p["ts"]), "lat": p["lat"], "lon": p["lon"],
                     "vel": int(p["speed_kmh"]), "cog": int(p["heading"]), "acc": 8, "batt": 80}
                ).encode(),
            )
            for p in points
        ]
    )  # fmt: skip

    async with SimulatedTerminal(JT808_PHONE) as term:
        await term.connect("127.0.0.1", await gateway_port(server))
        await term.authenticate(await term.register())
        for p in points:
            await term.report(location(p["ts"], p["lon"], p["lat"], speed_kmh=p["speed_kmh"], heading=p["heading"]))

    t1 = t0 + 10 * (len(points) - 1)
    for vehicle in (native, OWNTRACKS_VEHICLE, JT808_VEHICLE):
        await wait_for(lambda v=vehicle: len(stored(db, v, t0, t1)) == len(points), what=f"{vehicle}'s track")
    expected = stored(db, native, t0, t1)
    assert [r[0] for r in expected] == [p["ts"] for p in points]
    assert stored(db, JT808_VEHICLE, t0, t1) == expected
    assert stored(db, OWNTRACKS_VEHICLE, t0, t1) == expected
    sources = db.execute(
        "SELECT vehicle_id, source FROM fixes WHERE vehicle_id IN (%s, %s, %s) AND ts >= to_timestamp(%s)"
        " GROUP BY 1, 2 ORDER BY 1",
        (native, OWNTRACKS_VEHICLE, JT808_VEHICLE, t0),
    ).fetchall()
    assert sorted(sources) == sorted([(JT808_VEHICLE, "jt808"), (OWNTRACKS_VEHICLE, "owntracks"), (native, "native")])


async def test_jt808_terminal_alarm_reaches_database_and_websocket(
    server: RunningServer, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    now = float(int(time.time()))
    async with websockets.connect(server.ws_url()) as ws:
        await ws.recv()  # snapshot
        await ws.send(json.dumps({"type": "subscribe", "vehicles": [JT808_VEHICLE]}))
        await ws.recv()
        async with SimulatedTerminal(JT808_PHONE, edition=2019) as term:
            await term.connect("127.0.0.1", await gateway_port(server))
            await term.authenticate(await term.register())
            await term.heartbeat()
            await term.report(location(now - 20, 112.31, 28.56, speed_kmh=0))
            await term.report(location(now - 10, 112.31, 28.56, speed_kmh=0, alarm=POWER_CUT))
        async with asyncio.timeout(10):
            while True:
                msg = json.loads(await ws.recv())
                if msg["type"] == "alert" and msg["phase"] == "start" and msg["kind"] == "tampering":
                    break
    assert msg["kind"] == "tampering" and msg["vehicle_id"] == JT808_VEHICLE
    assert msg["plate"] and msg["class"] == "muck_truck"
    await wait_for(
        lambda: (
            db.execute(
                "SELECT count(*) FROM alerts WHERE id = %s AND vehicle_id = %s", (msg["id"], JT808_VEHICLE)
            ).fetchone()
            == (1,)
        ),
        what="the alert row",
    )
    row = db.execute(
        "SELECT alarm, source FROM fixes WHERE vehicle_id = %s AND ts = to_timestamp(%s)", (JT808_VEHICLE, now - 10)
    ).fetchone()
    assert row == (POWER_CUT, "jt808")
    counted = server.server.gateway.counters  # outcomes are counted for /metrics
    assert counted["register"] >= 1 and counted["authenticate"] >= 1 and counted["location"] >= 1


async def test_unknown_terminal_is_rejected_with_a_reason(server: RunningServer) -> None:
    async with SimulatedTerminal("013999999999") as term:
        await term.connect("127.0.0.1", await gateway_port(server))
        await term.authenticate(await term.register())
        await term.report(location(time.time() - 5, 112.31, 28.56))
    rejects = server.server.pipeline.rejects.total
    await wait_for(lambda: rejects["unknown_terminal"] >= 1, what="unknown_terminal counted")
