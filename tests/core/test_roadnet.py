"""Road-aware ETA and addresses typed by operators, on small cities in metres."""

from __future__ import annotations

import pytest
from shapely.geometry import LineString

from gpsd_server.core.city import City, Road
from gpsd_server.core.gazetteer import Gazetteer
from gpsd_server.core.geo import Projection, haversine_m
from gpsd_server.core.roadnet import RoadNetwork
from tests.fixtures.city import lonlat
from tests.fixtures.city import test_city as small_city

PROJ = Projection(32649)
SPEEDS = {"road_speed_kmh": 36.0, "city_speed_kmh": 18.0, "road_factor": 1.0, "snap_max_m": 150.0}


def road(rid: str, *xy: tuple[float, float], limit: float | None = None, name: str | None = None) -> Road:
    return Road(rid, name or rid, LineString([lonlat(x, y) for x, y in xy]), limit)


# Two banks of a river 400 m apart, one bridge at x = 3000.
RIVER = [
    road("south", (-1000, 0), (0, 0), (1500, 0), (3000, 0)),
    road("north", (-1000, 400), (0, 400), (3000, 400)),
    road("bridge", (3000, 0), (3000, 400)),
]


def test_the_nearest_car_by_road_is_not_the_nearest_in_a_straight_line() -> None:
    net = RoadNetwork(RIVER, PROJ)
    assert net.size == (4, 3)  # the roads' ends are the junctions; the bridge joins two of them
    case = lonlat(0, 0)
    across, along = lonlat(0, 400), lonlat(1500, 0)
    legs = net.legs(case, [across, along], paths=2, **SPEEDS)
    assert [leg.method for leg in legs] == ["road", "road"]
    assert legs[0].route_m == pytest.approx(3000 + 400 + 3000, abs=2)  # over the bridge
    assert legs[1].route_m == pytest.approx(1500, abs=2)
    assert legs[1].eta_s == pytest.approx(150, abs=1)  # 36 km/h = 10 m/s
    assert legs[1].eta_s < legs[0].eta_s
    path = legs[0].path
    assert haversine_m(*path[0], *across) < 1 and haversine_m(*path[-1], *case) < 1
    assert max(haversine_m(*p, *lonlat(3000, 200)) for p in path) > 0  # the path crosses the bridge
    assert min(haversine_m(*p, *lonlat(3000, 200)) for p in path) < 210


def test_speed_limits_make_time_not_distance_decide() -> None:
    slow_short = road("lane", (0, 0), (1000, 0), limit=10.0)
    fast_long = road("ring", (0, 0), (0, 600), (1000, 600), (1000, 0), limit=80.0)
    net = RoadNetwork([slow_short, fast_long], PROJ)
    (leg,) = net.legs(lonlat(0, 0), [lonlat(1000, 0)], **SPEEDS)
    assert leg.route_m == pytest.approx(2200, abs=2)  # 2.2 km at 36 km/h beats 1 km at 10 km/h
    assert leg.eta_s == pytest.approx(220, abs=1)


def test_on_the_same_road_and_off_the_network() -> None:
    net = RoadNetwork(RIVER, PROJ)
    same, far = lonlat(200, 0), lonlat(200, -1000)  # 1 km south of every road
    legs = net.legs(lonlat(100, 20), [same, far], **SPEEDS)
    assert legs[0].method == "road" and legs[0].route_m == pytest.approx(100 + 20, abs=2)
    assert legs[1].method == "straight" and legs[1].route_m == pytest.approx(1020, abs=5)
    assert legs[1].eta_s == pytest.approx(legs[1].route_m / 5.0, rel=1e-6)  # 18 km/h
    empty = RoadNetwork([], PROJ)
    assert empty.empty and [leg.method for leg in empty.legs(lonlat(0, 0), [same], **SPEEDS)] == ["straight"]


def test_addresses_are_found_by_name_crossing_and_coordinates() -> None:
    city = small_city()
    roads = (road("r1", (-500, 0), (500, 0), name="环城路"), road("r2", (0, -500), (0, 500), name="辐射3路"))
    g = Gazetteer(City(zones=city.zones, markers=city.markers, roads=roads))
    crossing = g.search("环城路与辐射3路路口")
    assert crossing[0].kind == "crossing" and haversine_m(crossing[0].lon, crossing[0].lat, *lonlat(0, 0)) < 1
    assert g.search("辐射3路/环城路")[0].kind == "crossing"
    assert [h.id for h in g.search("CS1")] == ["CS1"]
    assert g.search("112.351, 28.571")[0].kind == "coordinates"
    assert [h.kind for h in g.search("环城")] == ["road"]
    assert g.search("   ") == [] and g.search("nowhere") == []
