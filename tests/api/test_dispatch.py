"""12319 dispatch: nearest online patrol cars, recording a dispatch, nearest cameras."""

from __future__ import annotations

import json
import time

import httpx

from tests.fixtures.server import RunningServer
from tests.helpers import publish, wait_for


async def test_nearest_patrol_and_record(server: RunningServer) -> None:
    now = time.time()
    # PC-001.. are patrol cars in the demo city's registry (geofences/vehicles.json).
    spots = {"PC-001": (112.3500, 28.5700), "PC-002": (112.3600, 28.5700), "PC-003": (112.3300, 28.5700)}
    await publish(
        [
            (f"{server.prefix}/{vid}/fix", json.dumps({"ts": now, "lon": lon, "lat": lat}).encode())
            for vid, (lon, lat) in spots.items()
        ]
        + [(f"{server.prefix}/MT-001/fix", json.dumps({"ts": now, "lon": 112.3501, "lat": 28.5701}).encode())]
    )
    hub = server.server.hub
    await wait_for(lambda: all(v in hub.positions for v in spots), what="patrol positions")
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers("operator")) as http:
        r = await http.get("/api/dispatch/nearest", params={"lon": 112.351, "lat": 28.5701, "limit": 2})
        cars = r.json()["vehicles"]
        assert [c["id"] for c in cars] == ["PC-001", "PC-002"]  # the muck truck is not offered
        assert 90 < cars[0]["distance_m"] < 110 and cars[0]["eta_min"] > 0

        r = await http.post(
            "/api/dispatch", json={"lon": 112.351, "lat": 28.5701, "vehicle_id": "PC-001", "note": "占道"}
        )
        assert r.status_code == 201 and r.json()["vehicle_id"] == "PC-001"
        r = await http.post("/api/dispatch", json={"lon": 112.351, "lat": 28.5701, "vehicle_id": "MT-001"})
        assert r.status_code == 404 and r.json()["parameter"] == "vehicle_id"
        r = await http.post("/api/dispatch", json={"lon": 500, "lat": 28.5701, "vehicle_id": "PC-001"})
        assert r.status_code == 400 and r.json()["parameter"] == "lon"
        r = await http.post(
            "/api/dispatch",
            json={"lon": 112.351, "lat": 28.57, "vehicle_id": "PC-001"},
            headers=server.headers("viewer"),
        )
        assert r.status_code == 403
        listed = (await http.get("/api/dispatch")).json()["dispatches"]
        assert listed[0]["vehicle_id"] == "PC-001" and listed[0]["note"] == "占道"

        cams = (await http.get("/api/cameras/nearest", params={"lon": 112.35, "lat": 28.57})).json()["cameras"]
        assert len(cams) == 3 and cams[0]["distance_m"] <= cams[1]["distance_m"] <= cams[2]["distance_m"]
