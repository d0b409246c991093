"""Vertex budgets per feature and per city: an upload over either is refused
413 naming the file and the feature; a folder over them is not loaded and the
city in force stays."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpsd_server.cityfolder import CityFolder, VertexBudget, feature_vertices
from gpsd_server.errors import DataError
from tests.api.test_geofences import collection, feature
from tests.fixtures.server import RunningServer
from tests.fixtures.services import REPO


def demo_vertices() -> tuple[int, int]:
    """The demo city's vertices in all, and in its largest feature."""
    files = sorted(CityFolder(REPO / "geofences").geofence_files().items())
    largest = max(n for _, text in files for _, n in feature_vertices(json.loads(text)))
    return VertexBudget(10**9, 10**9).check(files), largest


TOTAL, LARGEST = demo_vertices()
PER_FEATURE = LARGEST + 1  # the demo city fits
PER_CITY = TOTAL + 2 * PER_FEATURE + 5  # room for two more large features, not three


def ring(n: int, lon: float = 112.10, lat: float = 28.80) -> dict[str, Any]:
    """A valid polygon of ``n`` positions (the last repeats the first)."""
    pts = [[lon + 0.01 * math.cos(2 * math.pi * i / (n - 1)), lat + 0.01 * math.sin(2 * math.pi * i / (n - 1))]
           for i in range(n - 1)]  # fmt: skip
    return {"type": "Polygon", "coordinates": [[*pts, pts[0]]]}


@pytest.fixture
def city_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "geofences"
    shutil.copytree(REPO / "geofences", folder)
    return folder


@pytest.fixture
def server_overrides(city_dir: Path) -> dict[str, str]:
    return {
        "GPSD_GEOFENCES__DIR": str(city_dir),
        "GPSD_GEOFENCES__MAX_FEATURE_VERTICES": str(PER_FEATURE),
        "GPSD_GEOFENCES__MAX_CITY_VERTICES": str(PER_CITY),
    }


def test_the_budget_names_the_file_and_the_feature() -> None:
    budget = VertexBudget(per_feature=10, per_city=25)
    small = collection(feature("a", geometry=ring(8)), feature("b", geometry=ring(8)))
    assert budget.check([("one.geojson", small)]) == 16
    with pytest.raises(DataError) as exc:
        budget.check([("one.geojson", small), ("two.geojson", collection(feature("c", geometry=ring(11))))])
    assert (exc.value.file, exc.value.item) == ("two.geojson", "c") and "max_feature_vertices" in exc.value.reason
    with pytest.raises(DataError) as exc:
        budget.check([("one.geojson", small), ("two.geojson", collection(feature("d", geometry=ring(10))))])
    assert (exc.value.file, exc.value.item) == ("two.geojson", "d") and "max_city_vertices" in exc.value.reason


async def test_uploads_over_a_budget_are_refused(server: RunningServer, city_dir: Path) -> None:
    before = server.server.city.current
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers("admin"), timeout=60) as http:
        dense = collection(feature("D1", geometry=ring(PER_FEATURE + 1)))
        r = await http.put("/api/geofences/files/dense.geojson", content=dense)
        assert r.status_code == 413 and (r.json()["file"], r.json()["item"]) == ("dense.geojson", "D1"), r.text
        many = collection(*(feature(f"M{i}", geometry=ring(PER_FEATURE, lat=28.80 + 0.03 * i)) for i in range(4)))
        r = await http.put("/api/geofences/files/many.geojson", content=many)
        assert r.status_code == 413 and r.json()["item"] == "M2" and "max_city_vertices" in r.json()["error"], r.text
        fits = collection(feature("F1", geometry=ring(PER_FEATURE)))
        r = await http.put("/api/geofences/files/fits.geojson", content=fits)
        assert r.status_code == 200, r.text
        # a file over the budget put in the folder by hand: the reload is refused, the city stays
        (city_dir / "byhand.geojson").write_bytes(collection(feature("H1", geometry=ring(PER_FEATURE + 20))))
        current = server.server.city.current
        r = await http.post("/api/geofences/reload")
        assert r.status_code == 422 and "byhand.geojson: H1" in r.json()["error"], r.text
    assert server.server.city.current is current and current is not before
