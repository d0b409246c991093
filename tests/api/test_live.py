"""/ws/live and the HTTP API against a real server, broker and database."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import websockets

from tests.fixtures.server import RunningServer
from tests.helpers import publish, wait_for, ws_messages

flatten = ws_messages  # the messages a frame carries


async def recv_json(
    ws: websockets.ClientConnection, timeout: float = 10.0, skip: tuple[str, ...] = ("alert", "zone")
) -> dict[str, object]:
    """The first message of the next frame that is not a ``skip`` one (the demo
    city's rules may raise zone alerts for the test positions)."""
    while True:
        for msg in flatten(json.loads(await asyncio.wait_for(ws.recv(), timeout))):
            if msg.get("type") not in skip:
                return msg


async def test_live_snapshot_then_positions(server: RunningServer) -> None:
    now = time.time()
    a, b = f"{server.prefix}-a", f"{server.prefix}-b"
    # Steps a vehicle can drive (~1.4 km a minute): an impossible jump would be held as an outlier.
    await publish([(f"{server.prefix}/{a}/fix", json.dumps({"ts": now - 120, "lon": 112.3, "lat": 28.5}).encode())])
    await wait_for(lambda: a in server.server.hub.positions, what="first position in the hub")

    async with websockets.connect(server.ws_url()) as ws:
        snap = await recv_json(ws)
        assert snap["type"] == "snapshot"
        assert a in {v["vehicle_id"] for v in snap["vehicles"]}  # type: ignore[attr-defined]

        await publish(
            [
                (
                    f"{server.prefix}/{a}/fix",
                    json.dumps(
                        {"ts": now - 60, "lon": 112.31, "lat": 28.51, "speed_kmh": 42.5, "heading": 90}
                    ).encode(),
                )
            ]
        )
        msg = await recv_json(ws)
        assert msg["type"] == "position" and msg["vehicle_id"] == a
        assert msg["lon"] == 112.31 and msg["lat"] == 28.51 and msg["speed"] == 42.5
        assert msg["heading"] == 90 and msg["status"] == "moving"

        # Narrow to vehicle b only: a new snapshot, then only b's positions.
        await ws.send(json.dumps({"type": "subscribe", "vehicles": [b]}))
        snap = await recv_json(ws)
        assert snap == {"type": "snapshot", "vehicles": []}
        await publish(
            [
                (f"{server.prefix}/{a}/fix", json.dumps({"ts": now + 1, "lon": 112.32, "lat": 28.5}).encode()),
                (f"{server.prefix}/{b}/fix", json.dumps({"ts": now + 1, "lon": 112.33, "lat": 28.5}).encode()),
            ]
        )
        msg = await recv_json(ws)
        assert msg["vehicle_id"] == b

        await ws.send(json.dumps({"type": "subscribe", "bbox": [1, 2, 0, 0]}))
        err = await recv_json(ws)
        assert err["type"] == "error" and "bbox" in str(err["error"])


async def test_http_vehicles_and_track(server: RunningServer) -> None:
    now = time.time()
    vid = f"{server.prefix}-h"
    payload = json.dumps(
        [{"ts": now - 60 + i * 10, "lon": 112.3 + i * 1e-3, "lat": 28.5, "speed_kmh": 30} for i in range(6)]
    )
    await publish([(f"{server.prefix}/{vid}/fix", payload.encode())])
    writer = server.server.writer
    await wait_for(lambda: writer.stats.rows_inserted >= 6 and writer.queued_rows == 0, what="6 stored fixes")
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers()) as http:
        r = await http.get("/healthz")
        assert r.status_code == 200 and r.json()["database"] is True and r.json()["mqtt"] is True

        r = await http.get("/api/vehicles")
        mine = [v for v in r.json()["vehicles"] if v["id"] == vid]
        assert len(mine) == 1 and abs(mine[0]["lon"] - 112.305) < 1e-9

        r = await http.get(f"/api/vehicles/{vid}/track", params={"start": str(now - 3600), "end": str(now + 60)})
        assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
        geo = r.json()
        assert geo["type"] == "FeatureCollection"
        line = geo["features"][0]
        assert line["geometry"]["type"] == "LineString" and len(line["geometry"]["coordinates"]) == 6
        assert [f["geometry"]["type"] for f in geo["features"][1:]] == ["Point"] * 6

        for params, name in (
            ({"start": "yesterday"}, "start"),
            ({"start": str(now), "end": str(now - 10)}, "start"),
            ({"start": "2026-01-01T00:00:00"}, "start"),
            ({"start": str(now - 90 * 86400), "end": str(now)}, "end"),
        ):
            r = await http.get(f"/api/vehicles/{vid}/track", params=params)
            assert r.status_code == 400, params
            assert r.json()["parameter"] == name

        r = await http.get("/api/vehicles/nobody-here/track")
        assert r.status_code == 404 and r.json()["parameter"] == "vehicle_id"

        r = await http.get("/metrics")
        assert "gpsd_fixes_accepted_total" in r.text and "gpsd_ws_clients" in r.text


async def test_websocket_needs_a_token(server: RunningServer) -> None:
    url = server.http.replace("http://", "ws://") + "/ws/live"
    for bad in (url, url + "?token=nope"):
        try:
            async with websockets.connect(bad) as ws:
                await ws.recv()
        except (websockets.InvalidStatus, websockets.ConnectionClosed):
            continue
        raise AssertionError(f"{bad} was accepted")


async def test_the_lean_form_of_positions_and_no_zone_records(server: RunningServer) -> None:
    """``?positions=rows&zones=false``, as the page connects: positions as rows,
    alerts as always; a bad value closes the socket naming the parameter."""
    now = time.time()
    a = f"{server.prefix}-rows"
    async with websockets.connect(server.ws_url() + "&positions=rows&zones=false") as ws:
        snap = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert snap["type"] == "snapshot"
        fix = {"ts": now - 30, "lon": 112.31, "lat": 28.51, "speed_kmh": 42.46, "heading": 90.4}
        await publish([(f"{server.prefix}/{a}/fix", json.dumps(fix).encode())])
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert frame["type"] != "zone"
            if frame["type"] == "rows":
                break
        assert frame["fields"] == ["vehicle_id", "ts", "lon", "lat", "speed", "heading", "class"]
        rows = [dict(zip(frame["fields"], r, strict=True)) for r in frame["rows"]]
        assert {"vehicle_id": a, "ts": fix["ts"], "lon": 112.31, "lat": 28.51, "speed": 42.5, "heading": 90.0,
                "class": "other"} in rows  # fmt: skip
    for query, parameter in (("&positions=csv", "positions"), ("&zones=maybe", "zones")):
        async with websockets.connect(server.ws_url() + query) as ws:
            try:
                await asyncio.wait_for(ws.recv(), 10)
                raise AssertionError("not closed")
            except websockets.ConnectionClosed as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 1008 and parameter in closed.rcvd.reason
