"""API handlers without the database or broker: the app built on ApiServices
with the test city, a real hub and engine, and tokens held in memory."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from fastapi import FastAPI
from prometheus_client.registry import CollectorRegistry

from gpsd_server.api.auth import Principal
from gpsd_server.api.deps import ApiServices
from gpsd_server.api.http import create_app
from gpsd_server.api.web import content_security_policy, mount_web, tile_source
from gpsd_server.cityfolder import CityFolder, CityKeeper
from gpsd_server.core.engine import Engine
from gpsd_server.directory import VehicleDirectory
from gpsd_server.settings import Config, DatabaseSettings
from gpsd_server.sinks.hub import LiveHub, LivePosition
from gpsd_server.store.db import Database
from tests.fixtures import city as test_city
from tests.fixtures.services import free_port

TOKENS = {"v": Principal("viewer-1", "viewer"), "o": Principal("operator-1", "operator")}


class MemoryTokens:
    async def lookup(self, token: str) -> Principal | None:
        return TOKENS.get(token)

    def forget(self) -> None:
        pass

    def watch(self, token: str, ws: Any) -> None:
        pass

    async def check(self) -> None:
        pass


@dataclass
class Status:
    mqtt_connected: bool = True
    timescaledb: bool = True

    def stats(self) -> dict[str, Any]:
        return {"fixes_accepted": 7}

    def metrics(self) -> CollectorRegistry:
        return CollectorRegistry()


@pytest.fixture
async def services(tmp_path: Any) -> ApiServices:
    folder = tmp_path / "city"
    folder.mkdir()
    (folder / "city.geojson").write_text(test_city.collection(*test_city.city_features()))
    (folder / "vehicles.json").write_text(json.dumps(test_city.VEHICLES))
    engine = Engine(tz=test_city.TZ)
    directory = VehicleDirectory()
    keeper = CityKeeper(
        CityFolder(folder), engine.build_geometry, on_swap=[lambda d: engine.reload(d.city, d.geometry)]
    )
    data = await keeper.load()
    directory.use_city(data.city)
    hub = LiveHub()
    lon, lat = test_city.lonlat(1200, 0)
    hub.restore([LivePosition("PT-001", time.time(), lon, lat, 10.0, 0.0, "patrol", "湘A警001")])
    nowhere = DatabaseSettings(dsn=f"postgresql://postgres@127.0.0.1:{free_port()}/x", connect_timeout_s=1)
    return ApiServices(
        config=Config(), db=Database(nowhere), tokens=MemoryTokens(),  # type: ignore[arg-type]
        directory=directory, city=keeper, live=hub, presence=engine, status=Status(),
    )  # fmt: skip


@pytest.fixture
async def http(services: ApiServices) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers={"Authorization": "Bearer v"}
    ) as c:
        yield c


async def test_map_and_geofences_come_from_the_city_in_force(http: httpx.AsyncClient) -> None:
    m = (await http.get("/api/map")).json()
    assert m["timezone"] == "Asia/Shanghai" and m["moving_kmh"] == 5.0 and len(m["center"]) == 2
    features = (await http.get("/api/geofences")).json()["features"]
    assert {f["properties"]["id"] for f in features} >= {"CS1", "R1", "SZ", "G1"}


async def test_nearest_patrol_and_who_is_inside_now_read_the_live_state(http: httpx.AsyncClient) -> None:
    lon, lat = test_city.lonlat(1000, 0)
    r = (await http.get("/api/dispatch/nearest", params={"lon": lon, "lat": lat})).json()
    assert [v["id"] for v in r["vehicles"]] == ["PT-001"] and 150 < r["vehicles"][0]["distance_m"] < 250
    inside = (await http.get("/api/zones/SZ/inside")).json()
    assert inside == {"zone_id": "SZ", "name": "SZ", "now": True, "vehicles": []}
    assert (await http.get("/api/zones/nowhere/inside")).json() == {
        "error": "unknown zone 'nowhere'",
        "parameter": "zone_id",
    }


async def test_roles_are_enforced_and_bad_parameters_named(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/stats", headers={"Authorization": ""})).status_code == 401
    assert (await http.post("/api/alerts/x/ack")).status_code == 403  # viewer
    r = await http.post("/api/alerts/not-a-uuid/ack", headers={"Authorization": "Bearer o"})
    assert r.status_code == 400 and r.json()["parameter"] == "alert_id"
    r = await http.get("/api/dispatch/nearest", params={"lon": 500, "lat": 0})
    assert r.status_code == 400 and r.json()["parameter"] == "lon"


async def test_refusals_name_the_allowed_words_and_a_body_that_is_not_json(http: httpx.AsyncClient) -> None:
    """Found by a new-user walkthrough: a wrong format was refused with the raw
    regular expression, and a body that is not JSON named parameter "0" (the
    byte offset)."""
    r = await http.get("/api/vehicles/V1/track", params={"format": "kml"})
    assert r.status_code == 400 and r.json() == {"error": "must be one of geojson, gpx, csv (any case)",
                                                 "parameter": "format"}  # fmt: skip
    r = await http.post(
        "/api/alerts/ack", content=b"notjson", headers={"Authorization": "Bearer o", "Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["parameter"] == "body", r.text
    assert r.json()["error"].startswith("the body is not valid JSON"), r.text
    # Bodies the JSON parser itself gives up on (FastAPI answers its own 400
    # for them, which named no parameter; HTTP audit, 2026-12-06).
    for body in (b"[" * 1000 + b"]" * 1000, b'{"x": ' + b"9" * 5000 + b"}", b'{"note": "a\xff"}'):
        r = await http.post(
            "/api/alerts/ack", content=body, headers={"Authorization": "Bearer o", "Content-Type": "application/json"}
        )
        assert r.status_code == 400 and r.json()["parameter"] == "body", r.text
        assert r.json()["error"].startswith("the body is not valid JSON"), r.text
    r = await http.post(
        "/api/dispatch", json={"lon": 112.35, "lat": 28.57, "vehicle_id": "PT-001", "note": "a\x00b"},
        headers={"Authorization": "Bearer o"},
    )  # fmt: skip
    assert r.status_code == 400 and r.json()["parameter"] == "note", r.text


async def test_health_names_the_missing_database(http: httpx.AsyncClient) -> None:
    r = await http.get("/healthz")
    assert r.status_code == 503 and r.json()["database"] is False and r.json()["mqtt"] is True
    assert (await http.get("/api/stats")).json() == {"fixes_accepted": 7}


async def test_live_socket_sends_the_snapshot_and_answers_a_bad_subscription(services: ApiServices) -> None:
    config = uvicorn.Config(
        create_app(services), host="127.0.0.1", port=0, ws="websockets-sansio", lifespan="off", log_level="warning"
    )
    web = uvicorn.Server(config)
    serving = asyncio.create_task(web.serve())
    try:
        while not web.started:  # noqa: ASYNC110 - uvicorn offers no event for it
            await asyncio.sleep(0.01)
        port = web.servers[0].sockets[0].getsockname()[1]
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/live?token=v") as ws:
            snapshot = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "subscribe", "bbox": [1, 2]}))
            error = json.loads(await ws.recv())
            await ws.send('{"type": "subscribe", "bbox": [0, 0, ' + "9" * 400 + ", 1]}")  # past a double
            huge = json.loads(await ws.recv())
            await ws.send(json.dumps({"type": "subscribe", "classes": ["muck_truck"]}))
            narrowed = json.loads(await ws.recv())
    finally:
        web.should_exit = True
        await serving
    assert [v["vehicle_id"] for v in snapshot["vehicles"]] == ["PT-001"]
    assert error == {"type": "error", "error": "bbox must be [min_lon, min_lat, max_lon, max_lat]"}
    assert huge == error  # it closed the socket (OverflowError in the check)
    assert narrowed == {"type": "snapshot", "vehicles": []}


async def test_the_page_carries_security_headers(http: httpx.AsyncClient) -> None:
    page = await http.get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-eval" not in csp
    assert "script-src 'self' 'unsafe-inline'" not in csp  # the page has no inline script
    for r in (page, await http.get("/static/js/main.js"), await http.get("/api/map")):
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "no-referrer"
    assert "content-security-policy" not in (await http.get("/api/map")).headers  # the docs page needs its CDN
    assert b"<script>" not in page.content and b"onclick=" not in page.content


def test_the_basemap_is_allowed_by_the_policy() -> None:
    assert tile_source("") == ""
    assert tile_source("https://{s}.tile.openstreetmap.org/{z}/{x}/{y}.png") == "https://*.tile.openstreetmap.org"
    assert tile_source("http://t{s}.tianditu.gov.cn/vec_w/wmts?x={x}") == "http:"
    assert tile_source("https://tiles.city.local/{z}/{x}/{y}.png") == "https://tiles.city.local"
    assert "img-src 'self' data: blob: https://tiles.city.local" in content_security_policy(
        "https://tiles.city.local/{z}/{x}/{y}.png"
    )


@pytest.mark.parametrize("present", [True, False])
async def test_missing_static_files_are_a_404(tmp_path: Any, present: bool) -> None:
    vendor = tmp_path / "node_modules"
    if present:
        (vendor / "leaflet" / "dist").mkdir(parents=True)
    app = FastAPI()
    mount_web(app, vendor_dir=vendor)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        for path in ("/vendor/leaflet/dist/leaflet.js", "/vendor/x", "/static/nothing.js"):
            r = await c.get(path)
            assert r.status_code == 404, (path, r.status_code, r.text[:100])
        assert (await c.get("/")).status_code == 200
