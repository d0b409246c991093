"""tools/make_city.py: deterministic, the required counts, valid geometry, routes and permits that fit."""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import Point, shape
from shapely.ops import unary_union

from tools import make_city

REPO = Path(__file__).resolve().parents[2]


@cache
def files() -> dict[str, str]:
    return make_city.build(808, make_city.FleetMix())


def features(name: str | None = None) -> list[dict[str, Any]]:
    names = [name] if name else [n for n in files() if n.endswith(".geojson") and "/" not in n]
    return [f for n in names for f in json.loads(files()[n])["features"]]


def test_same_seed_same_bytes_and_committed_files_are_current() -> None:
    assert make_city.build(808, make_city.FleetMix()) == files()
    for name, text in files().items():
        assert (REPO / "geofences" / name).read_text("utf-8") == text, (
            f"geofences/{name} is stale: run tools/make_city.py"
        )


def test_other_seed_other_city() -> None:
    assert make_city.build(809, make_city.FleetMix())["routes.geojson"] != files()["routes.geojson"]


def test_counts() -> None:
    kinds = Counter(f["properties"]["kind"] for f in features())
    assert kinds == {"area": 5, "district": 9, "grid": 58, "prohibited": 1, "speed_zone": 12,
                     "construction_site": 20, "disposal_site": 4, "plant": 3, "camera": 38, "info_point": 118,
                     "route": kinds["route"]}  # fmt: skip
    roads = [f for f in features("network/roads.geojson") if f["properties"]["kind"] == "road"]
    assert len(roads) == 31  # 30 radials and the ring


def test_all_geometry_valid_ccw_and_ids_unique() -> None:
    assert make_city.check(files()) == []


def test_areas_districts_and_grids_tile_the_city() -> None:
    by_kind: dict[str, list[Any]] = {}
    by_id = {f["properties"]["id"]: f for f in features()}
    for f in features():
        by_kind.setdefault(f["properties"]["kind"], []).append(shape(f["geometry"]))
    area = unary_union(by_kind["area"]).area
    for kind in ("district", "grid"):
        assert sum(g.area for g in by_kind[kind]) == pytest.approx(area, rel=1e-6)
        assert unary_union(by_kind[kind]).area == pytest.approx(area, rel=1e-6)
    for f in features():
        parent = f["properties"].get("parent")
        if parent and f["properties"]["kind"] in ("district", "grid"):
            assert shape(by_id[parent]["geometry"]).buffer(1e-6).contains(shape(f["geometry"]))


def test_prohibited_centre_and_school_zones() -> None:
    zones = {f["properties"]["id"]: f["properties"] for f in features("zones.geojson")}
    centre = zones["prohibited-centre"]
    assert centre["classes"] == ["muck_truck"] and centre["schedule"] == {"from": "07:00", "to": "19:00"}
    schools = [z for z in zones.values() if z["kind"] == "speed_zone"]
    assert all(z["speed_limit_kmh"] == 30 for z in schools)


def test_routes_run_from_origin_to_destination_and_permits_reference_them() -> None:
    by_id = {f["properties"]["id"]: f for f in features()}
    vehicles = json.loads(files()["vehicles.json"])["vehicles"]
    muck = [v for v in vehicles if v["class"] == "muck_truck"]
    assert len(muck) == 120 and all(v["permits"] for v in muck)
    nights = 0
    for v in muck:
        for p in v["permits"]:
            assert by_id[p["origin"]]["properties"]["kind"] == "construction_site"
            assert by_id[p["destination"]]["properties"]["kind"] == "disposal_site"
            for rid in p["routes"]:
                coords = by_id[rid]["geometry"]["coordinates"]
                assert shape(by_id[p["origin"]]["geometry"]).contains(Point(coords[0]))
                assert shape(by_id[p["destination"]]["geometry"]).contains(Point(coords[-1]))
            nights += p["hours"]["to"] <= p["hours"]["from"]
    assert nights > len(muck) / 2, "most permits must include the night"


def test_routes_follow_roads() -> None:
    road_vertices = {tuple(c) for f in features("network/roads.geojson") if f["geometry"]["type"] == "LineString"
                     for c in f["geometry"]["coordinates"]}  # fmt: skip
    for f in features("routes.geojson"):
        assert all(tuple(c) in road_vertices for c in f["geometry"]["coordinates"]), f["properties"]["id"]


def test_fleet_mix_is_configurable() -> None:
    out = make_city.build(808, make_city.FleetMix(muck=7, mixers=5, patrol=3, other=2))
    vehicles = json.loads(out["vehicles.json"])["vehicles"]
    assert Counter(v["class"] for v in vehicles) == {"muck_truck": 7, "mixer_truck": 5, "patrol": 3, "other": 2}
    assert len({v["plate"] for v in vehicles}) == len(vehicles)
    assert all(len(v["terminal"]) == 12 and v["terminal"].isdigit() for v in vehicles if "terminal" in v)


def test_rule_engine_loader_accepts_the_city() -> None:
    from gpsd_server.core import city

    folder = REPO / "geofences"
    geofences = [(p.name, p.read_text("utf-8")) for p in sorted(folder.glob("*.geojson"))]
    loaded = city.load_city(geofences, ("vehicles.json", (folder / "vehicles.json").read_text("utf-8")))
    kinds = Counter(z.kind for z in loaded.zones)
    assert (kinds["area"], kinds["district"], kinds["grid"]) == (5, 9, 58)
    assert loaded.routes and loaded.vehicles
