"""Places: where an alert happened, in the city's own words, for many points at once."""

from __future__ import annotations

import asyncio
import math
import random
from pathlib import Path

import numpy as np
import pytest
import shapely

from gpsd_server.cityfolder import CityData, CityFolder, CityKeeper
from gpsd_server.core.engine import Engine
from gpsd_server.core.places import SEPARATOR, SITE_KINDS, Places

DEMO = Path(__file__).resolve().parents[2] / "geofences"


@pytest.fixture(scope="module")
def demo() -> CityData:
    engine = Engine(tz="Asia/Shanghai")
    return asyncio.run(CityKeeper(CityFolder(DEMO), engine.build_geometry).load())


def one_by_one(data: CityData, lon: float, lat: float, road_within_m: float = 300.0) -> str | None:
    """The description spelt out from the city's zones and roads, one shape at a time."""
    if not (math.isfinite(lon) and math.isfinite(lat)):
        return None
    p = shapely.Point(lon, lat)
    zones = data.city.zones
    districts = [z for z in zones if z.kind == "district"] or [z for z in zones if z.kind == "area"]
    parts = [z.name for z in districts if z.geometry.contains(p)][:1]
    parts += [z.name for z in zones if z.kind == "grid" and z.geometry.contains(p)][:1]
    sites = [z.name for z in zones if z.kind in SITE_KINDS and z.geometry.contains(p)]
    if sites:
        parts.append(f"{sites[0]}内")
    else:
        projection = data.geometry.projection
        x, y = projection.to_xy(np.array([lon]), np.array([lat]))
        here = shapely.Point(float(x[0]), float(y[0]))
        near = [(projection.geometry(r.geometry).distance(here), r.name) for r in data.city.roads]
        near = [(d, name) for d, name in near if d <= road_within_m]
        if near:
            d, name = min(near, key=lambda t: t[0])
            parts.append(f"{name}附近 ({round(d)} m)")
    return SEPARATOR.join(parts) or None


def test_many_points_are_described_as_each_alone(demo: CityData) -> None:
    places = demo.places
    assert isinstance(places, Places)
    rng = random.Random(5)
    bounds = np.array([z.geometry.bounds for z in demo.city.zones])
    x0, y0 = bounds[:, 0].min(), bounds[:, 1].min()
    x1, y1 = bounds[:, 2].max(), bounds[:, 3].max()
    points = [(rng.uniform(x0, x1), rng.uniform(y0, y1)) for _ in range(600)]
    # Points inside every site too (the random ones rarely are), and no position at all.
    points += [tuple(z.geometry.representative_point().coords[0]) for z in demo.city.zones if z.kind in SITE_KINDS]
    points += [(math.nan, math.nan), (112.3, math.nan)]
    got = places.describe_many([p[0] for p in points], [p[1] for p in points])
    want = [one_by_one(demo, *p) for p in points]
    assert got == want
    # The mix the check covers: inside sites, near roads, in no layer at all.
    assert sum("内" in (s or "") for s in want) >= 10
    assert sum("附近" in (s or "") for s in want) >= 50
    assert sum(s is None for s in want) >= 3
    assert places.describe(*points[-2]) is None and places.describe(*points[0]) == want[0]
    assert places.describe_many([], []) == []
