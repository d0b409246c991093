"""Generate the demo city in ``geofences/`` (deterministic for a given seed).

A synthetic city around 112.35 E, 28.57 N: 30 radial main roads meet in the
centre, a ring road crosses them at 3 km; 5 areas (片) split into 9 districts
and 58 grids tile a 12 km disk; the centre inside the ring is closed to muck
trucks 07:00-19:00. Construction sites, disposal sites and concrete plants sit
at the outer ends of the radial roads, so every approved route runs along
roads: radial in, ring, radial out (a few night-only routes cross the centre
on purpose: they must *not* alert, the zone is closed only by day).

Everything is laid out in metres on a plane centred on the city (UTM 49N,
EPSG:32649, the server's metric CRS) and converted to WGS-84 once; shared
vertices (road junctions, tile borders) are computed once, so they stay
identical after rounding to 6 decimals.

Output (re-running with the same flags gives byte-identical files):
  geofences/areas.geojson      area, district, grid
  geofences/zones.geojson      prohibited, speed_zone
  geofences/sites.geojson      construction_site, disposal_site, plant
  geofences/routes.geojson     route (approved muck-truck routes)
  geofences/points.geojson     camera, info_point
  geofences/network/roads.geojson  roads (kind "road") and traffic lights
      (kind "traffic_light"): the simulator's road network, not geofences;
      the geofence loader reads only geofences/*.geojson.
  geofences/vehicles.json      the fleet with permits

Usage: python tools/make_city.py [--out geofences] [--seed 808] [--muck 120]
       [--mixers 80] [--patrol 60] [--other 40] [--check]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import shapely
from pyproj import Transformer
from shapely.geometry import LinearRing, LineString, Point, Polygon, shape
from shapely.geometry.polygon import orient

CENTRE_LON, CENTRE_LAT = 112.35, 28.57
METRIC_CRS = "EPSG:32649"
DECIMALS = 6

N_RADIALS = 30
RING_R = 3000.0  # ring road radius
PROHIBITED_R = 2600.0  # inside the ring, with a margin wider than the 50 m corridor
CITY_R = 12000.0  # areas, districts and grids tile this disk
LIGHT_RADII = (1500.0, 3000.0, 4500.0, 6000.0, 7500.0, 9000.0, 10500.0)
ROAD_STEP = 500.0  # radial road vertex spacing
RING_SUBDIVISIONS = 5  # ring vertices per gap between radials
AREA_NAMES = ("资阳片", "会龙片", "赫山片", "龙岭片", "高新片")
DISTRICT_NAMES = ("资江区", "会龙区", "梓山区", "龙光区", "桃花区", "银城区", "清溪区", "鹅羊区", "碧云区")
# Districts per area (5 areas -> 9 districts) and grids per district (-> 58).
DISTRICTS_PER_AREA = (2, 2, 2, 2, 1)
GRIDS_PER_DISTRICT = (7, 7, 6, 6, 6, 6, 7, 7, 6)
GRID_BANDS = (0.0, RING_R, 7000.0, CITY_R)  # radial bands a district is cut into
N_CONSTRUCTION, N_DISPOSAL, N_PLANTS = 20, 4, 3
N_SCHOOLS, N_CAMERAS, N_INFO_POINTS = 12, 38, 118
N_CENTRE_CROSSING_SITES = 3  # sites that also get a night-only route through the centre
NIGHT_WINDOWS = ({"from": "21:00", "to": "06:00"}, {"from": "20:00", "to": "06:00"}, {"from": "22:00", "to": "05:30"})
DAY_WINDOW = {"from": "09:00", "to": "17:00"}
DAY_PERMIT_SHARE = 0.25
SITE_NAMES = (
    "梓山湖",
    "龙洲",
    "桃花仑",
    "会龙山",
    "银城",
    "清溪",
    "鹅羊山",
    "碧云峰",
    "资江",
    "三里桥",
    "秀峰",
    "金山",
    "迎宾",
    "康富",
    "桥北",
    "大码头",
    "新桥河",
    "沧水铺",
    "泥江口",
    "兰溪",
)
MUCK_COMPANIES = tuple(
    f"益阳{n}渣土运输有限公司" for n in ("顺达", "宏远", "鑫盛", "恒通", "兴旺", "捷运", "安顺", "路通")
)
OTHER_COMPANIES = ("益阳市政工程处", "益阳市环卫处", "益阳园林绿化处")

Xy = tuple[float, float]


# --------------------------------------------------------------------- geometry


class Frame:
    """Metres east/north of the city centre <-> WGS-84, rounded for output."""

    def __init__(self) -> None:
        to_metric = Transformer.from_crs("EPSG:4326", METRIC_CRS, always_xy=True)
        self._to_wgs = Transformer.from_crs(METRIC_CRS, "EPSG:4326", always_xy=True)
        self.cx, self.cy = to_metric.transform(CENTRE_LON, CENTRE_LAT)

    def lonlat(self, xy: Xy) -> list[float]:
        lon, lat = self._to_wgs.transform(self.cx + xy[0], self.cy + xy[1])
        return [round(lon, DECIMALS), round(lat, DECIMALS)]

    def line(self, pts: Iterable[Xy]) -> list[list[float]]:
        return [self.lonlat(p) for p in pts]


def polar(r: float, deg: float) -> Xy:
    a = math.radians(deg)
    return (r * math.cos(a), r * math.sin(a))


def arc(r: float, a0: float, a1: float, step_deg: float = 1.0) -> list[Xy]:
    """Points on a circle from a0 to a1 degrees (counter-clockwise), ends included."""
    n = max(1, math.ceil(abs(a1 - a0) / step_deg))
    return [polar(r, a0 + (a1 - a0) * i / n) for i in range(n + 1)]


def circle(centre: Xy, r: float, n: int = 36) -> list[Xy]:
    pts = [
        (centre[0] + r * math.cos(2 * math.pi * i / n), centre[1] + r * math.sin(2 * math.pi * i / n)) for i in range(n)
    ]
    return [*pts, pts[0]]


def sector(r0: float, r1: float, a0: float, a1: float) -> list[Xy]:
    """Closed ring of an annular sector (a wedge when r0 == 0), counter-clockwise.

    The straight sides carry a vertex at every band radius in between, so an
    area's border has exactly the vertices of the grids along it (a straight
    line in metres is not quite straight in degrees).
    """
    between = [r for r in GRID_BANDS if r0 < r < r1]
    down = [polar(r, a1) for r in reversed(between)]
    up = [polar(r, a0) for r in between]
    inner = [(0.0, 0.0)] if r0 == 0 else arc(r0, a1, a0)
    ring = arc(r1, a0, a1) + down + inner + up
    return [*ring, ring[0]]


def rectangle(centre: Xy, heading_deg: float, length: float, width: float) -> list[Xy]:
    ux, uy = math.cos(math.radians(heading_deg)), math.sin(math.radians(heading_deg))
    vx, vy = -uy, ux
    corners = [(sl * length / 2, sw * width / 2) for sl, sw in ((-1, -1), (1, -1), (1, 1), (-1, 1))]
    pts = [(centre[0] + a * ux + b * vx, centre[1] + a * uy + b * vy) for a, b in corners]
    return [*pts, pts[0]]


def polygon_geometry(frame: Frame, ring: Sequence[Xy]) -> dict[str, Any]:
    coords = frame.line(ring)
    poly = orient(Polygon(coords), 1.0)  # GeoJSON wants counter-clockwise exteriors
    return {"type": "Polygon", "coordinates": [[list(c) for c in poly.exterior.coords]]}


def feature(geometry: dict[str, Any], **props: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": {k: v for k, v in props.items() if v is not None}}


# ------------------------------------------------------------------ the layout


@dataclass
class Radial:
    index: int
    angle: float  # degrees, counter-clockwise from east
    length: float
    facility: str | None = None  # id of the site/plant at its outer end

    def at(self, r: float) -> Xy:
        return polar(r, self.angle)

    def vertices(self) -> list[Xy]:
        """Centre -> outer end; a vertex every ROAD_STEP (so every light and the ring junction is one)."""
        radii = [i * ROAD_STEP for i in range(int(self.length // ROAD_STEP) + 1)]
        if self.length - radii[-1] > 1.0:
            radii.append(self.length)
        return [self.at(r) for r in radii]

    def end(self) -> Xy:
        return self.at(self.length)


@dataclass
class Layout:
    radials: list[Radial]
    ring: list[Xy]  # closed ring road, junction with radial i at index i * RING_SUBDIVISIONS
    facilities: dict[str, tuple[str, Radial]] = field(default_factory=dict)  # id -> (kind, radial)


def make_layout(rng: random.Random) -> Layout:
    radials = [Radial(i, 90.0 - i * 360.0 / N_RADIALS + rng.uniform(-2.0, 2.0), 0.0) for i in range(N_RADIALS)]
    ring: list[Xy] = []
    for i, rad in enumerate(radials):
        nxt = radials[(i + 1) % N_RADIALS]
        a0, a1 = rad.angle, nxt.angle
        if a1 > a0:  # radials go clockwise; unwrap the angle
            a1 -= 360.0
        ring.extend(polar(RING_R, a0 + (a1 - a0) * k / RING_SUBDIVISIONS) for k in range(RING_SUBDIVISIONS))
    ring.append(ring[0])
    layout = Layout(radials, ring)
    assign_facilities(layout, rng)
    return layout


def assign_facilities(layout: Layout, rng: random.Random) -> None:
    """Disposal sites spread round the city, plants between them, sites on the rest."""
    disposal_at = [round(k * N_RADIALS / N_DISPOSAL) + 2 for k in range(N_DISPOSAL)]
    plant_at = [round(k * N_RADIALS / N_PLANTS) + 6 for k in range(N_PLANTS)]
    free = [i for i in range(N_RADIALS) if i not in disposal_at and i not in plant_at]
    construction_at = sorted(rng.sample(free, N_CONSTRUCTION))
    for k, i in enumerate(disposal_at):
        place(layout, i, f"ds-{k + 1}", "disposal_site", rng.uniform(14000, 15000))
    for k, i in enumerate(plant_at):
        place(layout, i, f"plant-{k + 1}", "plant", rng.uniform(10000, 12500))
    for k, i in enumerate(construction_at):
        place(layout, i, f"cs-{k + 1:02d}", "construction_site", rng.uniform(8500, 11500))
    for rad in layout.radials:
        if rad.facility is None:
            rad.length = rng.uniform(8000, 12000)


def place(layout: Layout, radial_index: int, fid: str, kind: str, length: float) -> None:
    rad = layout.radials[radial_index]
    rad.length, rad.facility = length, fid
    layout.facilities[fid] = (kind, rad)


# -------------------------------------------------------------- the features


def admin_features(frame: Frame) -> list[dict[str, Any]]:
    """Areas (sectors of 72 deg), their districts, and the districts' grids."""
    out: list[dict[str, Any]] = []
    area_span = 360.0 / len(DISTRICTS_PER_AREA)
    district_no, grid_no = 0, 0
    for a, n_districts in enumerate(DISTRICTS_PER_AREA):
        a0 = 90.0 - area_span / 2 + a * area_span
        area_id = f"area-{a + 1}"
        out.append(
            feature(
                polygon_geometry(frame, sector(0, CITY_R, a0, a0 + area_span)),
                id=area_id,
                name=AREA_NAMES[a],
                kind="area",
            )
        )
        span = area_span / n_districts
        for d in range(n_districts):
            d0 = a0 + d * span
            district_id = f"district-{district_no + 1}"
            out.append(
                feature(
                    polygon_geometry(frame, sector(0, CITY_R, d0, d0 + span)),
                    id=district_id,
                    name=DISTRICT_NAMES[district_no],
                    kind="district",
                    parent=area_id,
                )
            )
            for r0, r1, g0, g1 in grid_cells(GRIDS_PER_DISTRICT[district_no], d0, span):
                grid_no += 1
                out.append(
                    feature(
                        polygon_geometry(frame, sector(r0, r1, g0, g1)),
                        id=f"grid-{grid_no:02d}",
                        name=f"第{grid_no}网格",
                        kind="grid",
                        parent=district_id,
                    )
                )
            district_no += 1
    return out


def grid_cells(n: int, a0: float, span: float) -> list[tuple[float, float, float, float]]:
    """Cut a district into n cells: radial bands, each split into equal angles."""
    splits = {6: (1, 2, 3), 7: (1, 3, 3)}[n] if span < 50 else {6: (2, 2, 2), 7: (2, 2, 3)}[n]
    cells = []
    for (r0, r1), k in zip(itertools.pairwise(GRID_BANDS), splits, strict=True):
        cells.extend((r0, r1, a0 + span * j / k, a0 + span * (j + 1) / k) for j in range(k))
    return cells


def zone_features(frame: Frame, layout: Layout, rng: random.Random) -> list[dict[str, Any]]:
    out = [
        feature(
            polygon_geometry(frame, circle((0.0, 0.0), PROHIBITED_R, 72)),
            id="prohibited-centre",
            name="中心城区渣土车禁行区",
            kind="prohibited",
            classes=["muck_truck"],
            schedule={"from": "07:00", "to": "19:00"},
        )
    ]
    for k, (centre, _radial) in enumerate(school_spots(layout, rng)):
        out.append(
            feature(
                polygon_geometry(frame, circle(centre, 150.0)),
                id=f"school-{k + 1:02d}",
                name=f"第{k + 1}学校限速区",
                kind="speed_zone",
                speed_limit_kmh=30,
                schedule={"days": [1, 2, 3, 4, 5], "from": "07:00", "to": "18:00"},
            )
        )
    return out


def school_spots(layout: Layout, rng: random.Random) -> list[tuple[Xy, Radial]]:
    """Schools on radial roads, a third inside the centre, clear of lights, the ring and sites."""
    radials = rng.sample(layout.radials, N_SCHOOLS)
    spots = []
    for k, rad in enumerate(radials):
        r = rng.choice((1000.0, 2250.0)) if k < N_SCHOOLS // 3 else rng.choice((3750.0, 5250.0, 6750.0, 8250.0))
        spots.append((rad.at(r), rad))
    return spots


def site_features(frame: Frame, layout: Layout) -> list[dict[str, Any]]:
    sizes = {"construction_site": (240.0, 180.0), "disposal_site": (400.0, 300.0), "plant": (200.0, 160.0)}
    out = []
    for fid, (kind, rad) in sorted(layout.facilities.items()):
        length, width = sizes[kind]
        n = int(fid.split("-")[1])
        name = {
            "construction_site": f"{SITE_NAMES[n - 1]}项目工地",
            "disposal_site": f"第{n}消纳场",
            "plant": f"第{n}混凝土搅拌站",
        }[kind]
        dwell = 300 if kind == "construction_site" else None
        out.append(
            feature(
                polygon_geometry(frame, rectangle(rad.end(), rad.angle, length, width)),
                id=fid,
                name=name,
                kind=kind,
                dwell_s=dwell,
            )
        )
    return out


def road_features(frame: Frame, layout: Layout) -> list[dict[str, Any]]:
    out = [
        feature(
            {"type": "LineString", "coordinates": frame.line(layout.ring)},
            id="road-ring",
            name="环城路",
            kind="road",
            speed_limit_kmh=50,
        )
    ]
    for rad in layout.radials:
        out.append(
            feature(
                {"type": "LineString", "coordinates": frame.line(rad.vertices())},
                id=f"road-r{rad.index + 1:02d}",
                name=f"辐射{rad.index + 1}路",
                kind="road",
                speed_limit_kmh=50,
            )
        )
    k = 0
    for rad in layout.radials:
        for r in LIGHT_RADII:
            if r < rad.length - 600:
                k += 1
                out.append(
                    feature(
                        {"type": "Point", "coordinates": frame.lonlat(rad.at(r))},
                        id=f"light-{k:03d}",
                        name=f"信号灯{k}",
                        kind="traffic_light",
                    )
                )
    return out


def point_features(
    frame: Frame, layout: Layout, admin: list[dict[str, Any]], rng: random.Random
) -> list[dict[str, Any]]:
    """Cameras at ring junctions and along radials; info points inside every grid."""
    out = []
    cam_spots = [layout.ring[i * RING_SUBDIVISIONS] for i in range(0, N_RADIALS, 2)]
    while len(cam_spots) < N_CAMERAS:
        rad = rng.choice(layout.radials)
        cam_spots.append(rad.at(rng.uniform(500, rad.length - 500)))
    districts = [f for f in admin if f["properties"]["kind"] == "district"]
    for k, xy in enumerate(cam_spots):
        out.append(
            feature(
                {"type": "Point", "coordinates": frame.lonlat(xy)},
                id=f"cam-{k + 1:02d}",
                name=f"监控点{k + 1}",
                kind="camera",
                parent=enclosing(frame, xy, districts),
            )
        )
    grids = [f for f in admin if f["properties"]["kind"] == "grid"]
    metric_grids = [metric_polygon(frame, g) for g in grids]
    for k in range(N_INFO_POINTS):
        g = k % len(grids)
        xy = random_point_in(metric_grids[g], rng)
        out.append(
            feature(
                {"type": "Point", "coordinates": frame.lonlat(xy)},
                id=f"ip-{k + 1:03d}",
                name=f"信息采集点{k + 1}",
                kind="info_point",
                parent=grids[g]["properties"]["parent"],
            )
        )
    return out


def metric_polygon(frame: Frame, feat: dict[str, Any]) -> Polygon:
    to_metric = Transformer.from_crs("EPSG:4326", METRIC_CRS, always_xy=True)
    ring = [to_metric.transform(lon, lat) for lon, lat in feat["geometry"]["coordinates"][0]]
    return Polygon([(x - frame.cx, y - frame.cy) for x, y in ring])


def random_point_in(poly: Polygon, rng: random.Random) -> Xy:
    minx, miny, maxx, maxy = poly.bounds
    inner = poly.buffer(-30)  # keep points off the borders so rounding cannot move them out
    while True:
        xy = (rng.uniform(minx, maxx), rng.uniform(miny, maxy))
        if inner.contains(Point(xy)):
            return xy


def enclosing(frame: Frame, xy: Xy, zones: list[dict[str, Any]]) -> str | None:
    pt = Point(frame.lonlat(xy))
    return next((z["properties"]["id"] for z in zones if shape(z["geometry"]).contains(pt)), None)


# ------------------------------------------------------------------ routes


def route_path(layout: Layout, origin: Radial, destination: Radial, via_centre: bool) -> list[Xy]:
    """Origin site -> radial in -> ring (shorter way) or centre -> radial out -> destination."""
    inward = list(reversed(origin.vertices()))
    outward = destination.vertices()
    if via_centre:
        return inward[:-1] + outward  # both pass the shared centre vertex
    ring_r = int(RING_R // ROAD_STEP)  # index of the ring junction on a radial
    inward = inward[: len(inward) - ring_r]  # site .. junction
    outward = outward[ring_r + 1 :]  # after junction .. site
    n = len(layout.ring) - 1
    i, j = origin.index * RING_SUBDIVISIONS, destination.index * RING_SUBDIVISIONS
    clockwise = (j - i) % n  # ring indices grow clockwise (radials are numbered clockwise)
    step = 1 if clockwise <= n - clockwise else -1
    arc_pts = [layout.ring[(i + step * k) % n] for k in range(1, (clockwise if step == 1 else n - clockwise))]
    return inward + arc_pts + [layout.ring[j]] + outward


def angular_gap(a: float, b: float) -> float:
    return abs((a - b + 180.0) % 360.0 - 180.0)


@dataclass(frozen=True)
class RouteSpec:
    id: str
    origin: str
    destination: str
    via_centre: bool


def plan_routes(layout: Layout, rng: random.Random) -> dict[str, list[RouteSpec]]:
    """Per construction site: the ring route to the nearest disposal site, and for a few
    sites a night-only route through the centre to the farthest one."""
    sites = sorted(f for f, (k, _) in layout.facilities.items() if k == "construction_site")
    disposals = sorted(f for f, (k, _) in layout.facilities.items() if k == "disposal_site")
    crossing = set(rng.sample(sites, N_CENTRE_CROSSING_SITES))
    plans: dict[str, list[RouteSpec]] = {}
    for cs in sites:
        angle = layout.facilities[cs][1].angle
        by_gap = sorted(disposals, key=lambda d: angular_gap(angle, layout.facilities[d][1].angle))
        plans[cs] = [RouteSpec(f"route-{cs}-{by_gap[0]}", cs, by_gap[0], False)]
        if cs in crossing:
            plans[cs].append(RouteSpec(f"route-{cs}-{by_gap[-1]}-centre", cs, by_gap[-1], True))
    return plans


def route_features(frame: Frame, layout: Layout, plans: dict[str, list[RouteSpec]]) -> list[dict[str, Any]]:
    out = []
    for specs in plans.values():
        for spec in specs:
            pts = route_path(
                layout, layout.facilities[spec.origin][1], layout.facilities[spec.destination][1], spec.via_centre
            )
            via = "经中心区（夜间）" if spec.via_centre else "经环城路"
            out.append(
                feature(
                    {"type": "LineString", "coordinates": frame.line(pts)},
                    id=spec.id,
                    name=f"{spec.origin}→{spec.destination} {via}核准路线",
                    kind="route",
                    corridor_m=50,
                )
            )
    return out


# -------------------------------------------------------------------- fleet


@dataclass(frozen=True)
class FleetMix:
    muck: int = 120
    mixers: int = 80
    patrol: int = 60
    other: int = 40
    terminal_share: float = 0.5  # muck trucks and mixers with a JT/T 808 terminal phone
    owntracks_share: float = 0.34  # patrol cars that also run OwnTracks on an officer's phone
    plate_prefix: str = "湘A"


def make_fleet(mix: FleetMix, plans: dict[str, list[RouteSpec]], rng: random.Random) -> list[dict[str, Any]]:
    """Vehicles in a fixed order. The simulator derives duties from that order:
    mixer i belongs to plant-(i mod 3 + 1), patrol car i to district-(i mod 9 + 1)."""
    plates = unique_plates(mix.muck + mix.mixers + mix.patrol + mix.other, mix.plate_prefix, rng)
    phones = iter(unique_numbers(mix.muck + mix.mixers, rng))
    out: list[dict[str, Any]] = []
    sites = sorted(plans)
    for i in range(mix.muck):
        v = {"id": f"MT-{i + 1:03d}", "class": "muck_truck", "company": MUCK_COMPANIES[i % len(MUCK_COMPANIES)]}
        v["permits"] = [muck_permit(i, plans[sites[i % len(sites)]], rng)]
        out.append(with_terminal(v, phones, mix.terminal_share, rng))
    for i in range(mix.mixers):
        v = {"id": f"MX-{i + 1:03d}", "class": "mixer_truck", "company": f"益阳第{i % N_PLANTS + 1}混凝土有限公司"}
        out.append(with_terminal(v, phones, mix.terminal_share, rng))
    for i in range(mix.patrol):
        v = {"id": f"PC-{i + 1:03d}", "class": "patrol", "company": f"益阳市城管执法局{DISTRICT_NAMES[i % 9]}中队"}
        if rng.random() < mix.owntracks_share:
            v["owntracks"] = f"pc{i + 1:03d}/phone"
        out.append(v)
    for i in range(mix.other):
        out.append({"id": f"OT-{i + 1:03d}", "class": "other", "company": OTHER_COMPANIES[i % len(OTHER_COMPANIES)]})
    for v, plate in zip(out, plates, strict=True):
        v["plate"] = plate
    return out


def muck_permit(i: int, specs: list[RouteSpec], rng: random.Random) -> dict[str, Any]:
    day = rng.random() < DAY_PERMIT_SHARE
    # Night trucks of a crossing site alternate between the two routes; day trucks never cross.
    spec = specs[1] if (not day and len(specs) > 1 and i % 2) else specs[0]
    hours = DAY_WINDOW if day else rng.choice(NIGHT_WINDOWS)
    return {
        "id": f"P-{i + 1:04d}",
        "origin": spec.origin,
        "destination": spec.destination,
        "routes": [spec.id],
        "hours": dict(hours),
        "valid_from": "2025-01-01",
        "valid_to": "2030-12-31",
    }


def with_terminal(v: dict[str, Any], phones: Iterator[str], share: float, rng: random.Random) -> dict[str, Any]:
    phone = next(phones)  # drawn for every vehicle so the share does not shift later numbers
    if rng.random() < share:
        v["terminal"] = phone
    return v


def unique_plates(n: int, prefix: str, rng: random.Random) -> list[str]:
    letters = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I or O on Chinese plates
    seen: set[str] = set()
    while len(seen) < n:
        seen.add(f"{prefix}·{rng.choice(letters)}{rng.randrange(10000):04d}")
    plates = sorted(seen)
    rng.shuffle(plates)
    return plates


def unique_numbers(n: int, rng: random.Random) -> list[str]:
    seen: dict[str, None] = {}
    while len(seen) < n:
        seen[f"0{rng.choice((13, 15, 18))}{rng.randrange(10**9):09d}"] = None
    return list(seen)


# ------------------------------------------------------------------- output


def dump_collection(features: list[dict[str, Any]]) -> str:
    """One feature per line: valid GeoJSON that diffs well."""
    body = ",\n".join(dumps(f) for f in features)
    return '{"type": "FeatureCollection", "features": [\n' + body + "\n]}\n"


def dump_vehicles(vehicles: list[dict[str, Any]]) -> str:
    return '{"vehicles": [\n' + ",\n".join(dumps(v) for v in vehicles) + "\n]}\n"


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))


def build(seed: int, mix: FleetMix) -> dict[str, str]:
    """All output files as text, keyed by path relative to the output folder."""
    rng = random.Random(seed)
    frame = Frame()
    layout = make_layout(rng)
    admin = admin_features(frame)
    plans = plan_routes(layout, rng)
    files = {
        "areas.geojson": admin,
        "zones.geojson": zone_features(frame, layout, rng),
        "sites.geojson": site_features(frame, layout),
        "routes.geojson": route_features(frame, layout, plans),
        "points.geojson": point_features(frame, layout, admin, rng),
        "network/roads.geojson": road_features(frame, layout),
    }
    out = {name: dump_collection(feats) for name, feats in files.items()}
    out["vehicles.json"] = dump_vehicles(make_fleet(mix, plans, rng))
    return out


# ---------------------------------------------------------------- checks


def check(files: dict[str, str]) -> list[str]:
    """Problems with generated files (empty = fine): ids, geometry, routes and permits."""
    problems: list[str] = []
    feats = {n: json.loads(t)["features"] for n, t in files.items() if n.endswith(".geojson")}
    ids: set[str] = set()
    by_id: dict[str, dict[str, Any]] = {}
    for name, fs in feats.items():
        for f in fs:
            fid = f["properties"]["id"]
            if fid in ids:
                problems.append(f"{name}: duplicate id {fid}")
            ids.add(fid)
            by_id[fid] = f
            geom = shape(f["geometry"])
            if not geom.is_valid:
                problems.append(f"{name}: {fid}: invalid geometry: {shapely.is_valid_reason(geom)}")
            if f["geometry"]["type"] == "Polygon" and not LinearRing(f["geometry"]["coordinates"][0]).is_ccw:
                problems.append(f"{name}: {fid}: exterior ring is not counter-clockwise")
    problems += check_routes_and_permits(json.loads(files["vehicles.json"])["vehicles"], by_id)
    return problems


def check_routes_and_permits(vehicles: list[dict[str, Any]], by_id: dict[str, dict[str, Any]]) -> list[str]:
    problems = []
    centre = shape(by_id["prohibited-centre"]["geometry"])
    for v in vehicles:
        for p in v.get("permits", []):
            origin, dest = shape(by_id[p["origin"]]["geometry"]), shape(by_id[p["destination"]]["geometry"])
            for rid in p["routes"]:
                coords = by_id[rid]["geometry"]["coordinates"]
                if not (origin.contains(Point(coords[0])) and dest.contains(Point(coords[-1]))):
                    problems.append(f"{v['id']}: {rid} does not run from {p['origin']} to {p['destination']}")
                if p["hours"] == DAY_WINDOW and LineString(coords).intersects(centre):
                    problems.append(f"{v['id']}: day permit route {rid} crosses the prohibited centre")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "geofences")
    ap.add_argument("--seed", type=int, default=808)
    ap.add_argument("--muck", type=int, default=FleetMix.muck, help="muck trucks")
    ap.add_argument("--mixers", type=int, default=FleetMix.mixers, help="concrete mixer trucks")
    ap.add_argument("--patrol", type=int, default=FleetMix.patrol, help="patrol (enforcement) cars")
    ap.add_argument("--other", type=int, default=FleetMix.other, help="other vehicles")
    ap.add_argument("--terminal-share", type=float, default=FleetMix.terminal_share)
    ap.add_argument("--owntracks-share", type=float, default=FleetMix.owntracks_share)
    ap.add_argument("--plate-prefix", default=FleetMix.plate_prefix)
    ap.add_argument("--check", action="store_true", help="only compare with the files on disk; exit 1 if they differ")
    args = ap.parse_args(argv)
    mix = FleetMix(
        args.muck, args.mixers, args.patrol, args.other, args.terminal_share, args.owntracks_share, args.plate_prefix
    )
    files = build(args.seed, mix)
    problems = check(files)
    for p in problems:
        print(f"make_city: {p}", file=sys.stderr)
    if problems:
        return 1
    if args.check:
        stale = [n for n, t in files.items() if not (args.out / n).is_file() or (args.out / n).read_text("utf-8") != t]
        for n in stale:
            print(f"make_city: {args.out / n} is not up to date", file=sys.stderr)
        return 1 if stale else 0
    for name, text in files.items():
        path = args.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    print(f"make_city: wrote {len(files)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
