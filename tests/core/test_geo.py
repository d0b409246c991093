"""The batch geometry against a point-by-point check with shapely."""

from __future__ import annotations

import random

import numpy as np
import shapely

from gpsd_server.core.geo import CityGeometry, Projection
from gpsd_server.model import VEHICLE_CLASSES
from tests.fixtures import city as fixture


def test_batch_zones_and_route_distances_equal_a_point_by_point_check() -> None:
    city = fixture.test_city()
    band = 30.0
    geo = CityGeometry(city, Projection(32649), band)
    rng = random.Random(3)
    pts = [fixture.lonlat(rng.uniform(-1500, 6500), rng.uniform(-4500, 3500)) for _ in range(3000)]
    pts += [fixture.lonlat(-1000 + d, 0) for d in (-band - 1, -band + 1, -1, 1)]  # both sides of the band and the edge
    lon, lat = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    codes = np.array([rng.randrange(len(VEHICLE_CLASSES)) for _ in pts], dtype=np.intp)
    all_routes = list(range(len(city.routes)))
    routes = [all_routes[: rng.randrange(len(all_routes) + 1)] for _ in pts]
    got = geo.locate(lon, lat, codes, routes)
    x, y = geo.projection.to_xy(lon, lat)
    assert got == geo.locate_xy(x, y, codes, routes)
    shapes = {z.id: geo.projection.geometry(z.geometry) for z in city.zones}
    lines = {r.id: geo.projection.geometry(r.geometry) for r in city.routes}
    for i in range(len(pts)):
        point = shapely.Point(x[i], y[i])
        cls = VEHICLE_CLASSES[codes[i]]
        seen = [z for z in city.zones if not z.classes or cls in z.classes]
        near = {z.id for z in seen if shapes[z.id].distance(point) <= band * 1.0001}
        # Mitre-grown corners reach a little further than the band: allow what lies within √2 of it.
        maybe = {z.id for z in seen if shapes[z.id].distance(point) <= band * 1.42}
        assert near <= set(got.near[i]) <= maybe, i
        assert set(got.inside[i]) == {z for z in got.near[i] if shapes[z].contains(point)}, i
        assert [z for z in got.near[i] if z in got.inside[i]] == list(got.inside[i])  # the same order
        want = {city.routes[r].id: lines[city.routes[r].id].distance(point) for r in routes[i]}
        assert got.route_dist[i].keys() == want.keys()
        assert all(abs(got.route_dist[i][k] - want[k]) < 1e-6 for k in want), i
