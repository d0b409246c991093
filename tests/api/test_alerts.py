"""Engine events become alerts: in the table, on /ws/live, through the desk API."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import psycopg
import websockets

from tests.fixtures.server import RunningServer
from tests.helpers import publish, wait_for

POWER_CUT = 1 << 8


async def next_alert(ws: websockets.ClientConnection, phase: str, timeout: float = 10.0) -> dict[str, object]:
    async with asyncio.timeout(timeout):
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("type") == "alert" and msg.get("phase") == phase:
                return msg  # type: ignore[no-any-return]


async def test_power_cut_alert_lifecycle(server: RunningServer, db: psycopg.Connection[tuple[object, ...]]) -> None:
    now = time.time()
    vid = f"{server.prefix}-pc"
    topic = f"{server.prefix}/{vid}/fix"

    def fix(ts: float, alarm: int) -> bytes:
        return json.dumps({"ts": ts, "lon": 112.20, "lat": 28.70, "speed_kmh": 0, "alarm": alarm}).encode()

    async with websockets.connect(server.ws_url()) as ws:
        await ws.recv()  # snapshot
        await ws.send(json.dumps({"type": "subscribe", "vehicles": [vid]}))
        await ws.recv()
        await publish([(topic, fix(now - 30, 0)), (topic, fix(now - 20, POWER_CUT))])
        start = await next_alert(ws, "start")
        assert start["kind"] == "tampering" and start["severity"] == "critical"
        assert start["vehicle_id"] == vid and start["details"]["alarm"] == "main_power_cut"  # type: ignore[index]

        def stored() -> tuple[object, ...] | None:
            return db.execute(
                "SELECT id::text, kind, state, ended_ts FROM alerts WHERE vehicle_id = %s", (vid,)
            ).fetchone()

        await wait_for(lambda: stored() is not None, what="the alert row")
        assert stored() == (start["id"], "tampering", "open", None)
        number_row = db.execute("SELECT number FROM alerts WHERE id = %s", (start["id"],)).fetchone()
        assert number_row is not None and number_row[0]
        number = str(number_row[0])

        async with httpx.AsyncClient(base_url=server.http) as http:
            # One alert by its id or by the number the desk shows (what an operator reads out).
            for ref in (start["id"], number, str(start["id"]).upper()):
                r = await http.get(f"/api/alerts/{ref}", headers=server.headers("viewer"))
                assert r.status_code == 200, r.text
                assert (r.json()["id"], r.json()["number"], r.json()["state"]) == (start["id"], number, "open")
            for ref, status in (("20000101-0001", 404), ("00000000-0000-0000-0000-000000000000", 404), ("42", 400)):
                r = await http.get(f"/api/alerts/{ref}", headers=server.headers("viewer"))
                assert r.status_code == status and r.json()["parameter"] == "alert_id", r.text
            r = await http.post(f"/api/alerts/{number}/ack", headers=server.headers("viewer"))
            assert r.status_code == 403
            r = await http.post(f"/api/alerts/{number}/ack", headers=server.headers("operator"))
            assert r.status_code == 200 and r.json()["state"] == "acked" and r.json()["id"] == start["id"]
            assert r.json()["acked_by"].startswith("operator-")
            r = await http.post(f"/api/alerts/{start['id']}/ack", headers=server.headers("operator"))
            assert r.status_code == 409 and r.json()["parameter"] == "alert_id"
            listed = await http.get("/api/alerts", params={"vehicle_id": vid}, headers=server.headers())
            assert [a["id"] for a in listed.json()["alerts"]] == [start["id"]]

            # The bit clears: the condition ends, the row keeps the operator's state.
            await publish([(topic, fix(now - 10, 0))])
            end = await next_alert(ws, "end")
            assert end["id"] == start["id"]
            await wait_for(lambda: (s := stored()) is not None and s[3] is not None, what="ended_ts")
            assert stored()[2] == "acked"  # type: ignore[index]

            r = await http.post(
                f"/api/alerts/{start['id']}/close", json={"comment": "技防: 已核实"}, headers=server.headers("operator")
            )
            assert r.status_code == 200 and r.json()["state"] == "closed" and r.json()["comment"] == "技防: 已核实"
            r = await http.post("/api/alerts/not-a-uuid/ack", headers=server.headers("operator"))
            assert r.status_code == 400 and r.json()["parameter"] == "alert_id"

    # Re-publishing the same fixes (a redelivery) raises nothing twice.
    await publish([(topic, fix(now - 20, POWER_CUT))])
    await asyncio.sleep(0.5)
    row = db.execute("SELECT count(*) FROM alerts WHERE vehicle_id = %s", (vid,)).fetchone()
    assert row == (1,)
