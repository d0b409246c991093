"""Geofence and vehicle-registry uploads: every bad upload is a 4xx naming the
parameter, the file, the item and the reason, and changes nothing; a good one
is written atomically and the engine uses it at once."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from gpsd_server.api import geofences
from gpsd_server.settings import GeofenceSettings
from tests.fixtures.server import RunningServer
from tests.fixtures.services import REPO
from tests.helpers import publish

SQUARE = [[[112.10, 28.80], [112.11, 28.80], [112.11, 28.81], [112.10, 28.81], [112.10, 28.80]]]
BOWTIE = [[[112.10, 28.80], [112.11, 28.81], [112.11, 28.80], [112.10, 28.81], [112.10, 28.80]]]


def all_routes(routes: list[Any]) -> list[Any]:
    out: list[Any] = []
    for r in routes:
        inner = getattr(r, "original_router", None)
        out.extend(all_routes(inner.routes) if inner is not None else [r])
    return out


def has_upload_routes(app: Any) -> bool:
    return any(str(getattr(r, "path", "")).startswith("/api/geofences/files") for r in all_routes(app.routes))


def feature(fid: str, kind: str = "prohibited", geometry: Any = None, **props: Any) -> dict[str, Any]:
    geometry = {"type": "Polygon", "coordinates": SQUARE} if geometry is None else geometry
    return {"type": "Feature", "properties": {"id": fid, "kind": kind, **props}, "geometry": geometry}


def collection(*features: dict[str, Any]) -> bytes:
    return json.dumps({"type": "FeatureCollection", "features": list(features)}).encode()


@pytest.fixture
def city_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "geofences"
    shutil.copytree(REPO / "geofences", folder)
    return folder


@pytest.fixture
def server_overrides(city_dir: Path) -> dict[str, str]:
    return {"GPSD_GEOFENCES__DIR": str(city_dir)}


@pytest.fixture
async def city(server: RunningServer) -> AsyncIterator[RunningServer]:
    """The server with the upload routes."""
    assert has_upload_routes(server.server.app)
    yield server


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


async def test_upload_routes_need_admin(city: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=city.http) as http:
        for method, url, role in [
            ("GET", "/api/geofences/files", None),
            ("PUT", "/api/geofences/files/zones.geojson", "operator"),
            ("DELETE", "/api/geofences/files/zones.geojson", "operator"),
            ("PUT", "/api/vehicles/registry", "operator"),
        ]:
            r = await http.request(method, url, content=b"{}")
            assert r.status_code == 401, (method, url)
            if role is not None:
                r = await http.request(method, url, content=b"{}", headers=city.headers(role))
                assert r.status_code == 403, (method, url)


async def test_list_files(city: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=city.http, headers=city.headers("viewer")) as http:
        r = await http.get("/api/geofences/files")
    assert r.status_code == 200
    names = [f["name"] for f in r.json()["files"]]
    assert names == ["areas.geojson", "points.geojson", "routes.geojson", "sites.geojson", "zones.geojson",
                     "vehicles.json"]  # fmt: skip
    assert all(f["bytes"] > 0 for f in r.json()["files"]) and r.json()["error"] is None


def _nested(depth: int) -> bytes:
    return b'{"type":"FeatureCollection","features":' + b"[" * depth + b"]" * depth + b"}"


def _line(n: int) -> dict[str, Any]:
    coords = [[112.0 + i * 1e-6, 28.5] for i in range(n)]
    return {"type": "LineString", "coordinates": coords}


MAX_FEATURE_VERTICES = GeofenceSettings().max_feature_vertices
# (name, body, status, parameter, error contains, item)
BAD_GEOFENCES: list[tuple[str, bytes, int, str, str, str | None]] = [
    ("x.json", collection(), 400, "name", "", None),
    ("Zones.geojson", collection(), 400, "name", "", None),
    ("new.geojson", b"", 400, "body", "required", None),
    ("new.geojson", b"{not json", 400, "body", "not valid JSON", None),
    ("new.geojson", b'{"type":"FeatureCollection","features":[NaN]}', 400, "body", "not valid JSON", None),
    ("new.geojson", _nested(100_000), 400, "body", "nested", None),
    ("new.geojson", _nested(100), 400, "body", "nested deeper", None),
    ("new.geojson", b" " * (geofences.MAX_BODY_BYTES + 1), 413, "body", "larger than", None),
    ("new.geojson", b"[1, 2]", 422, "body", "not a GeoJSON FeatureCollection", "(file)"),
    ("new.geojson", b'{"type":"FeatureCollection","features":{}}', 422, "body", "features must be a list", "(file)"),
    ("new.geojson", collection(*[{"type": "Feature"}] * (geofences.MAX_FEATURES + 1)), 413, "body",
     "more than 20000 features", "(file)"),
    ("new.geojson", collection(feature("huge", "route", _line(MAX_FEATURE_VERTICES + 1))), 413, "body",
     "coordinates in one geometry", "huge"),
    ("new.geojson", collection(feature("bowtie", geometry={"type": "Polygon", "coordinates": BOWTIE})), 422, "body",
     "invalid polygon: Self-intersection", "bowtie"),
    ("new.geojson", collection(feature("strs", geometry={"type": "Polygon", "coordinates": [[["a", "b"]]]})), 422,
     "body", "bad geometry", "strs"),
    ("new.geojson", collection(feature("far", geometry={"type": "Point", "coordinates": [500, 28]}, kind="camera")),
     422, "body", "WGS-84", "far"),
    ("new.geojson", collection(feature("pt", geometry={"type": "Point", "coordinates": [112, 28]})), 422, "body",
     "bad geometry type 'Point'", "pt"),
    ("new.geojson", collection(feature("k", kind="volcano")), 422, "body", "unknown kind 'volcano'", "k"),
    ("new.geojson", collection(feature("n", name=5)), 422, "body", "bad name", "n"),
    ("new.geojson", collection(feature("c", classes=["tank"])), 422, "body", "bad class 'tank'", "c"),
    ("new.geojson", collection(feature("s", schedule=[{"days": [9], "from": "08:00", "to": "09:00"}])), 422, "body",
     "bad schedule", "s"),
    ("new.geojson", collection(feature("p", parent="nowhere")), 422, "body", "unknown reference", "p"),
    ("new.geojson", collection({"type": "Feature", "properties": {}, "geometry": None}), 422, "body", "missing id",
     "#0"),
    ("new.geojson", collection(feature("d"), feature("d")), 422, "body", "duplicate id", "d"),
    # every permit names sites: an empty sites file breaks the registry
    ("sites.geojson", collection(), 422, "body", "unknown reference: no construction_site", None),
]  # fmt: skip


async def test_bad_geofence_uploads_are_refused_with_the_reason(city: RunningServer, city_dir: Path) -> None:
    before_files = snapshot(city_dir)
    before_city = city.server.city.current
    async with httpx.AsyncClient(base_url=city.http, headers=city.headers("admin"), timeout=30) as http:
        for name, body, status, parameter, error, item in BAD_GEOFENCES:
            r = await http.put(f"/api/geofences/files/{name}", content=body)
            what = (name, body[:80], r.text[:300])
            assert r.status_code == status, what
            detail = r.json()
            assert detail["parameter"] == parameter and error in detail["error"], what
            if item is not None:
                assert detail["item"] == item and detail["file"] == name, what
        # the file that breaks the registry is named as vehicles.json
        r = await http.put("/api/geofences/files/sites.geojson", content=collection())
        assert r.json()["file"] == "vehicles.json" and r.json()["item"].startswith("MT-")
        # an id already used by another file
        zone_id = json.loads((city_dir / "zones.geojson").read_bytes())["features"][0]["properties"]["id"]
        r = await http.put("/api/geofences/files/new.geojson", content=collection(feature(zone_id)))
        assert r.status_code == 422 and "duplicate id" in r.json()["error"]
        # removing a file the permits need, or one that is not there
        r = await http.delete("/api/geofences/files/routes.geojson")
        assert r.status_code == 422 and r.json()["parameter"] == "name"
        assert "unknown reference: no route" in r.json()["error"] and r.json()["file"] == "vehicles.json"
        r = await http.delete("/api/geofences/files/nothere.geojson")
        assert r.status_code == 404 and r.json()["parameter"] == "name"
    assert snapshot(city_dir) == before_files
    assert city.server.city.current is before_city  # the previous set stays in force


async def test_total_coordinate_limit(city: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(geofences, "MAX_FILE_COORDINATES", 1000)
    body = collection(*(feature(f"l{i}", "route", _line(300)) for i in range(4)))
    async with httpx.AsyncClient(base_url=city.http, headers=city.headers("admin")) as http:
        r = await http.put("/api/geofences/files/lines.geojson", content=body)
    assert r.status_code == 413 and r.json()["item"] == "l3" and "coordinates in the file" in r.json()["error"]


async def test_bad_vehicle_registry_is_refused(city: RunningServer, city_dir: Path) -> None:
    before = snapshot(city_dir)
    registry = json.loads((city_dir / "vehicles.json").read_bytes())
    first = registry["vehicles"][0]
    cases: list[tuple[Any, str, str]] = [
        ({"vehicles": {}}, 'expected {"vehicles": [...]}', "(file)"),
        ({"vehicles": [{"id": "V1", "class": "tank"}]}, "bad class 'tank'", "V1"),
        ({"vehicles": [{"id": "V1", "plate": 7}]}, "bad plate", "V1"),
        ({"vehicles": [{"id": "V1"}, {"id": "V1"}]}, "duplicate id", "V1"),
        ({"vehicles": [{**first, "permits": [{**first["permits"][0], "origin": "nowhere"}]}]},
         "unknown reference: no construction_site 'nowhere'", f"{first['id']}/{first['permits'][0]['id']}"),
        ({"vehicles": [{**first, "permits": [{**first["permits"][0], "hours": {"from": "25:00", "to": "01:00"}}]}]},
         "bad schedule", first["id"]),
        ({"vehicles": [{**first, "permits": [{**first["permits"][0], "valid_to": "tomorrow"}]}]},
         "bad date", first["id"]),
    ]  # fmt: skip
    async with httpx.AsyncClient(base_url=city.http, headers=city.headers("admin")) as http:
        for doc, error, item in cases:
            r = await http.put("/api/vehicles/registry", json=doc)
            assert r.status_code == 422, (doc, r.text)
            assert r.json()["parameter"] == "body" and error in r.json()["error"], r.text
            assert r.json()["file"] == "vehicles.json" and r.json()["item"] == item, r.text
        r = await http.put("/api/vehicles/registry", content=b"[")
        assert r.status_code == 400 and r.json()["parameter"] == "body"
    assert snapshot(city_dir) == before


async def test_good_upload_changes_the_city(city: RunningServer, city_dir: Path) -> None:
    zones_before = len(city.server.city.current.city.zones)
    vid = f"{city.prefix}-fz"
    topic = f"{city.prefix}/{vid}/fix"
    async with httpx.AsyncClient(base_url=city.http, headers=city.headers("admin")) as http:
        r = await http.put("/api/geofences/files/extra.geojson", content=collection(feature("no-go", name="No go")))
        assert r.status_code == 200, r.text
        assert r.json()["zones"] == zones_before + 1 and "extra.geojson" in r.json()["files"]
        assert (city_dir / "extra.geojson").read_bytes() == collection(feature("no-go", name="No go"))
        assert not [name for name in snapshot(city_dir) if name.endswith(".tmp")]
        listed = (await http.get("/api/geofences")).json()["features"]
        assert any(f["properties"]["id"] == "no-go" for f in listed)

        # the engine uses the new zone at once
        async with websockets.connect(city.ws_url()) as ws:
            await ws.recv()
            await ws.send(json.dumps({"type": "subscribe", "vehicles": [vid]}))
            await ws.recv()
            now = time.time()
            fixes = [json.dumps({"ts": now - 20 + i, "lon": 112.105, "lat": 28.805, "speed_kmh": 10}) for i in (0, 5)]
            await publish([(topic, f.encode()) for f in fixes])
            async with asyncio.timeout(10):
                while True:
                    msg = json.loads(await ws.recv())
                    if msg.get("type") == "alert" and msg.get("kind") == "forbidden_zone":
                        break
            assert msg["zone_id"] == "no-go"

        # a new registry is applied and synced into the database
        registry = json.loads((city_dir / "vehicles.json").read_bytes())
        registry["vehicles"].append({"id": vid, "class": "muck_truck", "plate": "湘A·00000"})
        r = await http.put("/api/vehicles/registry", json=registry)
        assert r.status_code == 200 and r.json()["vehicles"] == len(registry["vehicles"]), r.text
        vehicles = (await http.get("/api/geofences/files", headers=city.headers("viewer"))).json()["files"]
        assert "vehicles.json" in [f["name"] for f in vehicles]
        assert city.server.city.current.city.vehicle(vid) is not None

        r = await http.delete("/api/geofences/files/extra.geojson")
        assert r.status_code == 200 and r.json()["zones"] == zones_before
        assert not (city_dir / "extra.geojson").exists()
