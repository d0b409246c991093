"""A 12319 case sent to the patrol car's JT/T 808 terminal as a 0x8300 text
through the terminal command queue, and the terminal's acknowledgement in the
case's audit trail; the car's arrival at the place, reported by that terminal."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.server import RunningServer
from tests.fixtures.services import REPO
from tests.helpers import wait_for
from tools.jt808_terminal import SimulatedTerminal, location

CAR, PHONE = "PC-011", "013100000011"
PLACE = (112.2005, 28.4505)


@pytest.fixture
def server_overrides(unique: str, tmp_path: Path, own_database: str) -> dict[str, str]:
    folder = tmp_path / "geofences"
    shutil.copytree(REPO / "geofences", folder)
    registry = json.loads((folder / "vehicles.json").read_text(encoding="utf-8"))
    for v in registry["vehicles"]:
        if v["id"] == CAR:
            v["terminal"] = PHONE
    (folder / "vehicles.json").write_text(json.dumps(registry, ensure_ascii=False), encoding="utf-8")
    return {
        "GPSD_DATABASE__DSN": own_database,  # its patrol cars' positions are no other test's business
        "GPSD_GEOFENCES__DIR": str(folder),
        "GPSD_JT808__ENABLED": "true",
        "GPSD_JT808__HOST": "127.0.0.1",
        "GPSD_JT808__PORT": "0",
        "GPSD_JT808__TOPIC_PREFIX": f"t{unique}-808",
        "GPSD_JT808__COMMAND_POLL_S": "0.1",
        "GPSD_CASES__SYNC_S": "0.1",
        "GPSD_CASES__ARRIVE_STOP_S": "20",
    }


async def trail(http: httpx.AsyncClient, cid: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = (await http.get(f"/api/cases/{cid}")).json()["events"]
    return events


async def test_the_case_goes_to_the_terminal_and_its_acknowledgement_into_the_trail(server: RunningServer) -> None:
    srv = server.server
    await wait_for(lambda: srv.gateway._server is not None)
    car = SimulatedTerminal(PHONE)
    await car.connect("127.0.0.1", srv.gateway.port)
    try:
        await car.authenticate(await car.register(plate="湘A·P011"))
        await car.report(location(time.time() - 1, PLACE[0] + 0.003, PLACE[1], speed_kmh=30))  # ~290 m east
        await wait_for(lambda: CAR in srv.hub.positions, what="the car on the live map")
        async with httpx.AsyncClient(base_url=server.http, headers=server.headers("operator")) as http:
            body = {"category": "illegal_posters", "priority": "urgent", "description": "电线杆上小广告",
                    "address": "东门菜场", "lon": PLACE[0], "lat": PLACE[1]}  # fmt: skip
            case = (await http.post("/api/cases", json=body)).json()
            r = await http.post(f"/api/cases/{case['id']}/dispatch", json={"vehicle_id": CAR})
            assert r.status_code == 200 and r.json()["command"]["status"] == "queued", r.text
            assert r.json()["event"]["data"]["terminal"] is True
            header, text = await car.next_command(timeout_s=10)
            shown = text.text  # type: ignore[attr-defined]
            assert case["number"] in shown and "紧急" in shown and "东门菜场" in shown and "分钟内到场" in shown

            async def kinds() -> list[str]:
                return [e["kind"] for e in await trail(http, case["id"])]

            await wait_for_async(lambda: kinds(), lambda k: "terminal_sent" in k)
            await car.acknowledge(header)
            await wait_for_async(lambda: kinds(), lambda k: "terminal_acknowledged" in k)
            events = await trail(http, case["id"])
            ack = next(e for e in events if e["kind"] == "terminal_acknowledged")
            assert ack["by"] == "terminal" and ack["data"]["command_id"] == r.json()["command"]["id"]
            full = (await http.get(f"/api/cases/{case['id']}")).json()
            assert full["case"]["command"]["status"] == "acknowledged" and full["audit"]["intact"] is True

            # The terminal's own positions mark the arrival (30 s later, stopped beside the place).
            t = time.time() + 30
            for k in range(3):
                await car.report(location(t + 12 * k, PLACE[0] + 0.0003, PLACE[1], speed_kmh=0))
            await wait_for_async(lambda: kinds(), lambda k: "arrived" in k)
            assert (await http.get(f"/api/cases/{case['id']}")).json()["case"]["arrival_source"] == "gps"
    finally:
        await car.close()


async def wait_for_async(get: Any, done: Any, timeout_s: float = 15.0) -> None:
    import asyncio

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done(await get()):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")
