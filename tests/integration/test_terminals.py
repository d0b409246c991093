"""Terminals as they exist: JT/T 808 terminals over TCP through the built-in
gateway (2011, 2013 and 2019 registers, commands and 12319 dispatch back to
them, their health through the API), an OwnTracks phone over the real
broker, and one track sent three ways ending up as the same stored fixes."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import websockets

from gpsd_server.core.jt808 import downlink as dl
from gpsd_server.core.jt808 import messages as m
from gpsd_server.core.jt808.frame import Edition
from tests.fixtures.server import RunningServer
from tests.fixtures.services import REPO
from tests.helpers import publish, wait_for
from tools.jt808_terminal import SimulatedTerminal, location

# From geofences/vehicles.json (the demo city's registry).
JT808_VEHICLE, JT808_PHONE = "MT-006", "013884205223"
OWNTRACKS_VEHICLE, OWNTRACKS_DEVICE = "PC-005", "pc005/phone"
POWER_CUT = 1 << 8
# Patrol cars given JT/T 808 terminals in this test's copy of the city: one
# per edition of the standard (2011 registers with the 2013 header).
PATROLS: dict[str, tuple[str, Edition, bool]] = {
    "PC-001": ("013100000001", 2013, True),
    "PC-002": ("013100000002", 2013, False),
    "PC-003": ("013100000003", 2019, False),
}


@pytest.fixture
def server_overrides(unique: str, tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "geofences"
    shutil.copytree(REPO / "geofences", folder)
    registry = json.loads((folder / "vehicles.json").read_text(encoding="utf-8"))
    vehicles = registry if isinstance(registry, list) else registry.get("vehicles", registry)
    for v in vehicles if isinstance(vehicles, list) else vehicles.values():
        if v["id"] in PATROLS:
            v["terminal"] = PATROLS[v["id"]][0]
    (folder / "vehicles.json").write_text(json.dumps(registry, ensure_ascii=False), encoding="utf-8")
    return {
        "GPSD_GEOFENCES__DIR": str(folder),
        "GPSD_JT808__ENABLED": "true",
        "GPSD_JT808__HOST": "127.0.0.1",
        "GPSD_JT808__PORT": "0",
        "GPSD_JT808__TOPIC_PREFIX": f"t{unique}-808",
        "GPSD_JT808__COMMAND_POLL_S": "0.1",
        "GPSD_JT808__HEALTH_FLUSH_S": "0.1",
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


async def terminals(http: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    rows = (await http.get("/api/terminals")).json()["terminals"]
    return {row["vehicle_id"] or row["phone"]: row for row in rows}


async def command_status(http: httpx.AsyncClient, command_id: int, *wanted: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def reached() -> bool:
        found.update((await http.get(f"/api/commands/{command_id}")).json())
        return found["status"] in wanted

    deadline = time.monotonic() + 15
    while not await reached():
        assert time.monotonic() < deadline, f"command {command_id} stayed {found.get('status')}"
        await asyncio.sleep(0.05)
    return found


async def test_registers_of_every_edition_dispatch_and_commands_with_acknowledgements(
    server: RunningServer, db: psycopg.Connection[tuple[object, ...]]
) -> None:
    port = await gateway_port(server)
    now = time.time()
    cars: dict[str, SimulatedTerminal] = {}
    try:
        for i, (vid, (phone, edition, old)) in enumerate(PATROLS.items()):
            car = cars[vid] = SimulatedTerminal(phone, edition=edition)
            await car.connect("127.0.0.1", port)
            code = await car.register(plate=f"湘A·P00{i}", layout_2011=old)
            await car.authenticate(code)
            await car.report(location(now - 5, 112.35 + i * 0.001, 28.57, speed_kmh=12, sats=9))
        hub = server.server.hub
        await wait_for(lambda: all(v in hub.positions for v in PATROLS), what="the patrol cars on the live map")
        async with httpx.AsyncClient(base_url=server.http, headers=server.headers("operator")) as http:
            await wait_for_api(http, lambda seen: all(seen[v]["status"] == "online" for v in PATROLS))
            seen = await terminals(http)
            assert [seen[v]["edition"] for v in PATROLS] == [2013, 2013, 2019]
            assert seen["PC-001"]["tolerated"] == {"register_2011": 1}  # read, answered 0x8100, counted
            assert seen["PC-002"]["state"] == "authenticated" and seen["PC-002"]["terminal_plate"] == "湘A·P001"

            # 12319: the case goes to the chosen car's screen; its 0x0001 comes back through the API.
            r = await http.post(
                "/api/dispatch",
                json={"lon": 112.352, "lat": 28.5702, "vehicle_id": "PC-002", "note": "占道经营", "place": "东门"},
            )
            assert r.status_code == 201, r.text
            dispatch = r.json()
            assert dispatch["terminal"] is True and dispatch["command"]["status"] == "queued"
            header, text = await cars["PC-002"].next_command(timeout_s=10)
            assert isinstance(text, dl.TextMessage)
            assert "占道经营" in text.text and "东门" in text.text and f"#{dispatch['id']}" in text.text
            assert (await command_status(http, dispatch["command"]["id"], "sent", "acknowledged"))["transport"] == "tcp"
            await cars["PC-002"].acknowledge(header)
            done = await command_status(http, dispatch["command"]["id"], "acknowledged")
            assert (done["result"], done["dispatch_id"], done["msg_id"]) == (0, dispatch["id"], dl.TEXT_MESSAGE)
            listed = (await http.get("/api/dispatch")).json()["dispatches"]
            assert listed[0]["command"]["status"] == "acknowledged"

            # Position query (answered 0x0201, which is also a fix) and reporting intervals.
            r = await http.post("/api/terminals/PC-003/commands", json={"kind": "position_query"})
            assert r.status_code == 201, r.text
            query = r.json()
            header, _ = await cars["PC-003"].next_command(timeout_s=10)
            await cars["PC-003"].acknowledge(header, position=location(now - 1, 112.3601, 28.5711))
            assert (await command_status(http, query["id"], "acknowledged"))["result"] == 0
            await wait_for(
                lambda: db.execute(
                    "SELECT count(*) FROM fixes WHERE vehicle_id = 'PC-003' AND ts = to_timestamp(%s)", (int(now - 1),)
                ).fetchone() == (1,),
                what="the answered position stored",
            )  # fmt: skip
            intervals = {"kind": "report_interval", "interval_s": 10, "sleep_interval_s": 60}
            r = await http.post("/api/terminals/PC-001/commands", json=intervals)
            interval = r.json()
            header, _ = await cars["PC-001"].next_command(timeout_s=10)
            await cars["PC-001"].acknowledge(header)
            assert (await command_status(http, interval["id"], "acknowledged"))["kind"] == "report_interval"
            assert cars["PC-001"].params == {0x0029: 10, 0x0027: 60}

            # A command for a car that is away waits for it, across the reconnect.
            await cars["PC-001"].close()
            await wait_for_api(http, lambda seen: seen["PC-001"]["status"] == "offline")
            r = await http.post("/api/terminals/PC-001/commands", json={"kind": "text", "text": "回队"})
            waiting = r.json()
            await asyncio.sleep(0.5)
            assert (await http.get(f"/api/commands/{waiting['id']}")).json()["status"] == "queued"
            back = cars["PC-001"] = SimulatedTerminal(PATROLS["PC-001"][0])
            await back.connect("127.0.0.1", port)
            await back.authenticate(await back.register(layout_2011=True))
            header, text = await back.next_command(timeout_s=10)
            assert text == dl.TextMessage("回队")
            await back.acknowledge(header)
            assert (await command_status(http, waiting["id"], "acknowledged"))["attempts"] == 1
            history = (await http.get("/api/terminals/PC-001/commands")).json()["commands"]
            assert [c["status"] for c in history] == ["acknowledged", "acknowledged"]
            refused = await http.post("/api/terminals/PC-004/commands", json={"kind": "text", "text": "x"})
            assert refused.status_code == 404 and refused.json()["parameter"] == "vehicle_id"
            bad = await http.post("/api/terminals/PC-002/commands", json={"kind": "report_interval"})
            assert bad.status_code == 400 and bad.json()["parameter"] == "interval_s"
            viewer = await http.post(
                "/api/terminals/PC-002/commands", json={"kind": "position_query"}, headers=server.headers("viewer")
            )
            assert viewer.status_code == 403
    finally:
        for car in cars.values():
            await car.close()


async def wait_for_api(http: httpx.AsyncClient, predicate: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        seen = await terminals(http)
        if predicate(seen):
            return
        ours = {k: (v["status"], v["state"]) for k, v in seen.items() if k in PATROLS or not v["registered"]}
        assert time.monotonic() < deadline, f"terminals never got there: {ours}"
        await asyncio.sleep(0.05)


async def test_unknown_terminal_is_refused_and_shown_with_the_reason(server: RunningServer) -> None:
    async with SimulatedTerminal("013999999999") as term:
        await term.connect("127.0.0.1", await gateway_port(server))
        answer = await term.request(m.Register(44, 300, "GPSD", "X", "1", 2, "粤B1"))
        assert answer == dl.RegisterResponse(0, 4)  # 0x8100 result 4: no such terminal in the database
    assert server.server.gateway.counters["dropped_unknown_terminal"] == 1
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers("viewer")) as http:
        await wait_for_api(http, lambda seen: "13999999999" in seen)
        row = (await terminals(http))["13999999999"]
    assert (row["status"], row["registered"], row["drops"]) == ("refused", False, {"unknown_terminal": 1})
    assert row["state"] == "unknown_terminal" and row["last_drop"] == "unknown_terminal"
