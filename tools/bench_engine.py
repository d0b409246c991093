"""Engine benchmark: fixes/s through Engine.process versus a per-fix, per-zone loop.

Run: .venv/bin/python tools/bench_engine.py [--rounds N] [--seed S] [--case road|stress|both]

10,000 vehicles (5,000 permitted muck trucks with 1-2 routes each, 2,000
mixers, 1,500 patrol, 1,500 other), one fix each per 10 s round, against
about 1,000 and then 10,000 zones + 100 routes, in two cases:

- road fleet (representative): the demo city's make-up and zone density
  (area/district/grid tiles, grids 2.7 km, plus small sites and speed
  zones), grown to the zone count; vehicles drive straight roads at 30-40
  km/h with 8 m GPS noise, muck trucks along their permitted route.
- stress: random 12-vertex zones packed into 30 x 30 km, vehicles
  random-walking through them at 20-45 km/h (an event every 1-3 fixes).

The engine runs every rule; two warm-up rounds come before the timed ones.
The naive loop does only the geometry, the way many trackers do it: for each
fix, loop over every zone with a bounding-box pre-check then a point-in-
polygon test, and measure the distance to each of the vehicle's routes. It
runs in the same process on the first few thousand of the engine's own timed
fixes (given pre-projected coordinates, a favour); its fixes/s is measured on
that sample, not extrapolated from another run.
"""

from __future__ import annotations

import argparse
import gc
import time
from dataclasses import dataclass

import numpy as np
import shapely
from pyproj import Transformer

from gpsd_server.core.city import City, Permit, Route, Vehicle, Zone
from gpsd_server.core.engine import Engine
from gpsd_server.model import VEHICLE_CLASSES, Fix

CITY_M = 30_000.0
LON0, LAT0 = 112.35, 28.57
TO_XY = Transformer.from_crs(4326, 32649, always_xy=True)
TO_LONLAT = Transformer.from_crs(32649, 4326, always_xy=True)
X0, Y0 = TO_XY.transform(LON0, LAT0)
KINDS = ("area", "grid", "prohibited", "construction_site", "disposal_site", "plant", "speed_zone")


def to_lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = TO_LONLAT.transform(X0 + x, Y0 + y)
    return np.asarray(lon), np.asarray(lat)


def make_city(rng: np.random.Generator, n_zones: int, n_routes: int, n_vehicles: int) -> City:
    size = 900.0 * np.sqrt(1000.0 / n_zones)
    zones = []
    for i in range(n_zones):
        cx, cy = rng.uniform(0, CITY_M, 2)
        angles = np.sort(rng.uniform(0, 2 * np.pi, 12))
        r = rng.uniform(0.5, 1.0, 12) * size
        lon, lat = to_lonlat(cx + r * np.cos(angles), cy + r * np.sin(angles))
        kind = KINDS[i % len(KINDS)]
        zones.append(
            Zone(
                id=f"Z{i}",
                name=f"zone {i}",
                kind=kind,
                geometry=shapely.Polygon(np.column_stack([lon, lat])),
                classes=frozenset(VEHICLE_CLASSES),
                speed_limit_kmh=30.0 if kind == "speed_zone" else None,
            )
        )
    routes = []
    for i in range(n_routes):
        pts = np.cumsum(rng.normal(0, 600, (40, 2)), axis=0) + rng.uniform(5000, CITY_M - 5000, 2)
        lon, lat = to_lonlat(pts[:, 0], pts[:, 1])
        routes.append(Route(id=f"R{i}", name=f"route {i}", geometry=shapely.LineString(np.column_stack([lon, lat]))))
    return City(zones=tuple(zones), routes=tuple(routes), vehicles=fleet_vehicles(rng, zones, n_routes, n_vehicles))


def fleet_vehicles(rng: np.random.Generator, zones: list[Zone], n_routes: int, n_vehicles: int) -> dict[str, Vehicle]:
    """Half permitted muck trucks (1-2 routes each), 20 % mixers, 15 % patrol, 15 % other."""
    sites = [z.id for z in zones if z.kind == "construction_site"]
    dumps = [z.id for z in zones if z.kind == "disposal_site"]
    vehicles = {}
    for i in range(n_vehicles):
        vid = f"V{i:05d}"
        cls = (
            "muck_truck"
            if i < n_vehicles // 2
            else "mixer_truck"
            if i < 0.7 * n_vehicles
            else "patrol"
            if i < 0.85 * n_vehicles
            else "other"
        )
        permits: tuple[Permit, ...] = ()
        if cls == "muck_truck":
            chosen = tuple(f"R{r}" for r in rng.choice(n_routes, int(rng.integers(1, 3)), replace=False))
            permits = (Permit(f"P{i}", sites[i % len(sites)], dumps[i % len(dumps)], chosen),)
        vehicles[vid] = Vehicle(vid, cls, plate=f"湘A{i:05d}", permits=permits)
    return vehicles


class Fleet:
    """Every vehicle random-walks at 20-45 km/h; one fix per vehicle per round, 10 s apart."""

    def __init__(self, rng: np.random.Generator, ids: list[str]) -> None:
        self.rng, self.ids = rng, ids
        self.x = rng.uniform(0, CITY_M, len(ids))
        self.y = rng.uniform(0, CITY_M, len(ids))
        self.heading = rng.uniform(0, 2 * np.pi, len(ids))
        self.t = 1_709_560_800.0

    def round(self) -> tuple[list[Fix], np.ndarray, np.ndarray]:
        n = len(self.ids)
        speed = self.rng.uniform(20, 45, n)
        self.heading += self.rng.normal(0, 0.3, n)
        self.x = np.clip(self.x + np.cos(self.heading) * speed / 3.6 * 10, 0, CITY_M)
        self.y = np.clip(self.y + np.sin(self.heading) * speed / 3.6 * 10, 0, CITY_M)
        self.t += 10
        lon, lat = to_lonlat(self.x, self.y)
        fixes = [
            Fix(vid, self.t, lo, la, received_at=self.t, speed_kmh=s)
            for vid, lo, la, s in zip(self.ids, lon.tolist(), lat.tolist(), speed.tolist(), strict=True)
        ]
        return fixes, self.x + X0, self.y + Y0


class RoadFleet:
    """Vehicles drive straight roads at 30-40 km/h, 10 s fixes, GPS noise 8 m.

    Muck trucks shuttle along their first permitted route (on route, as a
    real hauler is); everyone else drives a straight road in a random
    direction, turning back at the edge of the city.
    """

    def __init__(self, rng: np.random.Generator, city: City, size: tuple[float, float]) -> None:
        self.rng, self.ids, (self.width, self.height) = rng, sorted(city.vehicles or {}), size
        vehicles = city.vehicles or {}
        lines = {r.id: TO_XY.transform(*np.asarray(r.geometry.coords).T) for r in city.routes}
        n = len(self.ids)
        self.path: list[tuple[np.ndarray, np.ndarray, np.ndarray] | None] = []
        for vid in self.ids:
            permits = vehicles[vid].permits
            if permits:
                x, y = lines[permits[0].routes[0]]
                along = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))])
                self.path.append((along, np.asarray(x) - X0, np.asarray(y) - Y0))
            else:
                self.path.append(None)
        self.s = rng.uniform(0, 20_000.0, n)  # distance travelled along the route
        self.x = rng.uniform(0, self.width, n)
        self.y = rng.uniform(0, self.height, n)
        self.heading = rng.uniform(0, 2 * np.pi, n)
        self.speed = rng.uniform(30, 40, n)
        self.t = 1_709_560_800.0

    def round(self) -> tuple[list[Fix], np.ndarray, np.ndarray]:
        n = len(self.ids)
        speed = np.clip(self.speed + self.rng.normal(0, 1.5, n), 0, None)
        step = speed / 3.6 * 10
        self.x += np.cos(self.heading) * step
        self.y += np.sin(self.heading) * step
        out = (self.x < 0) | (self.x > self.width) | (self.y < 0) | (self.y > self.height)
        self.heading[out] += np.pi
        self.x, self.y = np.clip(self.x, 0, self.width), np.clip(self.y, 0, self.height)
        self.s += step
        x, y = self.x.copy(), self.y.copy()
        for i, path in enumerate(self.path):
            if path is not None:
                along, px, py = path
                s = self.s[i] % (2 * along[-1])
                s = s if s <= along[-1] else 2 * along[-1] - s  # there and back
                x[i], y[i] = np.interp(s, along, px), np.interp(s, along, py)
        x += self.rng.normal(0, 8.0, n)
        y += self.rng.normal(0, 8.0, n)
        self.t += 10
        lon, lat = to_lonlat(x, y)
        fixes = [
            Fix(vid, self.t, lo, la, received_at=self.t, speed_kmh=s)
            for vid, lo, la, s in zip(self.ids, lon.tolist(), lat.tolist(), speed.tolist(), strict=True)
        ]
        return fixes, x + X0, y + Y0


def tile(x0: float, y0: float, w: float, h: float, per_side: int = 8) -> np.ndarray:
    """A rectangle with each side cut into ``per_side`` straight pieces (neighbours share edges)."""
    t = np.linspace(0, 1, per_side, endpoint=False)
    xs = np.concatenate([x0 + w * t, np.full(per_side, x0 + w), x0 + w * (1 - t), np.full(per_side, x0)])
    ys = np.concatenate([np.full(per_side, y0), y0 + h * t, np.full(per_side, y0 + h), y0 + h * (1 - t)])
    return np.column_stack([xs, ys])


def make_road_city(
    rng: np.random.Generator, n_zones: int, n_routes: int, n_vehicles: int
) -> tuple[City, tuple[float, float]]:
    """The demo city's make-up and density, grown to ``n_zones``: (city, (width, height) in metres).

    The demo city (tools/make_city.py) has 112 zones on a 12 km disk: 72
    area/district/grid tiles (grids about 2.7 km across, 32-80 vertices) and
    40 small sites and speed zones (200-350 m). Here: 64 % tiles (areas of 2
    districts of 6 grids of 2.7 km, every grid edge cut into 8 pieces), 36 %
    small zones, and the square grows so that the density stays the demo's.
    """
    n_small = int(0.36 * n_zones)
    n_areas = max(1, round((n_zones - n_small) / (1 + 2 + 12)))
    cols = max(1, round(np.sqrt(n_areas / 3)))  # an area is 6 x 2 grids (two districts of 3 x 2)
    grid_m = 2700.0
    side = cols * 6 * grid_m
    zones: list[Zone] = []

    def add(kind: str, ring: np.ndarray, speed_limit_kmh: float | None = None) -> None:
        lon, lat = to_lonlat(ring[:, 0], ring[:, 1])
        geometry = shapely.Polygon(np.column_stack([lon, lat]))
        zid = f"Z{len(zones)}"
        zones.append(Zone(zid, kind, kind, geometry, classes=ALL, speed_limit_kmh=speed_limit_kmh))

    for k in range(n_areas):
        ax, ay = (k % cols) * 6 * grid_m, (k // cols) * 2 * grid_m
        add("area", tile(ax, ay, 6 * grid_m, 2 * grid_m, 24))
        for d in range(2):
            add("district", tile(ax + d * 3 * grid_m, ay, 3 * grid_m, 2 * grid_m, 12))
            for g in range(6):
                add("grid", tile(ax + (d * 3 + g % 3) * grid_m, ay + (g // 3) * grid_m, grid_m, grid_m))
    height = (n_areas + cols - 1) // cols * 2 * grid_m
    small = ("construction_site",) * 20 + ("disposal_site",) * 4 + ("plant",) * 3 + ("speed_zone",) * 12
    for i in range(n_small):
        kind = small[i % len(small)]
        size = {"speed_zone": 265.0, "disposal_site": 346.0}.get(kind, 200.0)
        cx, cy = rng.uniform(0, side), rng.uniform(0, height)
        add(kind, tile(cx, cy, size, size, 1), speed_limit_kmh=30.0 if kind == "speed_zone" else None)
    routes = []
    for i in range(n_routes):
        start = rng.uniform(0, [side, height])
        heading = rng.uniform(0, 2 * np.pi)
        pts = start + np.outer(np.arange(40) * 500.0, [np.cos(heading), np.sin(heading)])
        pts = np.clip(pts, 0, [side, height])
        lon, lat = to_lonlat(pts[:, 0], pts[:, 1])
        routes.append(Route(id=f"R{i}", name=f"route {i}", geometry=shapely.LineString(np.column_stack([lon, lat]))))
    city = City(zones=tuple(zones), routes=tuple(routes), vehicles=fleet_vehicles(rng, zones, n_routes, n_vehicles))
    return city, (side, height)


ALL = frozenset(VEHICLE_CLASSES)


Round = tuple[list[Fix], np.ndarray, np.ndarray]


@dataclass
class Result:
    fixes: int
    events: int
    engine_rate: float  # fixes/s through Engine.process, every rule
    geometry_rate: float  # fixes/s of its geometry stage alone
    naive_rate: float  # fixes/s of the per-zone loop over the first `sample` of the same fixes
    sample: int


def bench(city: City, fleet: Fleet | RoadFleet, rounds: int, sample: int) -> Result:
    engine = Engine(city=city, epsg=32649)
    for _ in range(2):  # warm-up: every vehicle enters its zones, the caches fill
        fixes, _, _ = fleet.round()
        engine.process(fixes, now=fixes[0].ts)
    timed = [fleet.round() for _ in range(rounds)]
    # The pre-built batches and the city are long-lived: keep the cyclic GC
    # from rescanning them (the server must do the same after loading the city).
    gc.collect()
    gc.freeze()
    events = 0
    started = time.perf_counter()
    for batch, _, _ in timed:
        events += len(engine.process(batch, now=batch[0].ts).events)
    elapsed = time.perf_counter() - started
    geometry_s = time_geometry_stage(engine, [batch for batch, _, _ in timed])
    gc.unfreeze()
    n = sum(len(batch) for batch, _, _ in timed)
    naive_rate = bench_naive(city, timed, sample)
    return Result(n, events, n / elapsed, n / geometry_s, naive_rate, sample)


def time_geometry_stage(engine: Engine, batches: list[list[Fix]]) -> float:
    """The like-for-like part of the comparison: projection, zone hits, route
    distances, through the geometry's public ``locate`` (as the engine calls it
    once per batch); the per-vehicle inputs are gathered before the clock."""
    city = engine.city
    geometry = engine.build_geometry(city)
    corridors = geometry.corridors
    code = {c: i for i, c in enumerate(VEHICLE_CLASSES)}
    inputs = []
    for batch in batches:
        vehicles = [city.vehicle(f.vehicle_id) or Vehicle(f.vehicle_id) for f in batch]
        inputs.append((
            np.array([f.lon for f in batch]), np.array([f.lat for f in batch]),
            np.array([code[v.vehicle_class] for v in vehicles], dtype=np.intp),
            [corridors.permitted(v.permits) for v in vehicles],
        ))  # fmt: skip
    started = time.perf_counter()
    for lon, lat, codes, routes in inputs:
        geometry.locate(lon, lat, codes, routes)
    return time.perf_counter() - started


def bench_naive(city: City, timed: list[Round], sample: int) -> float:
    """Per fix: every zone, bbox first, then point-in-polygon; then each permitted route.

    Runs over the first ``sample`` fixes of the engine's own timed rounds,
    given their projected coordinates (a favour: no projection cost).
    """
    project = Transformer.from_crs(4326, 32649, always_xy=True)

    def metric(g: shapely.Geometry) -> shapely.Geometry:
        return shapely.transform(g, lambda c: np.column_stack(project.transform(c[:, 0], c[:, 1])))

    boxes = [(g.bounds, g, z.id) for g, z in ((metric(z.geometry), z) for z in city.zones)]
    lines = {r.id: metric(r.geometry) for r in city.routes}
    vehicles = city.vehicles or {}
    fixes = [f for batch, _, _ in timed for f in batch][:sample]
    xs = np.concatenate([x for _, x, _ in timed])[:sample].tolist()
    ys = np.concatenate([y for _, _, y in timed])[:sample].tolist()
    started = time.perf_counter()
    for fix, x, y in zip(fixes, xs, ys, strict=True):
        inside = []
        for (minx, miny, maxx, maxy), geom, zid in boxes:
            if minx <= x <= maxx and miny <= y <= maxy and shapely.contains_xy(geom, x, y):
                inside.append(zid)
        point = shapely.Point(x, y)
        for permit in vehicles[fix.vehicle_id].permits:
            [shapely.distance(lines[r], point) for r in permit.routes]
    return len(fixes) / (time.perf_counter() - started)


def report(title: str, n_zones: int, r: Result) -> None:
    per_k = 1000 * r.events / r.fixes
    print(f"{title}: {n_zones:,} zones + 100 routes, {r.fixes:,} fixes, {r.events:,} events ({per_k:.1f} per 1,000)")
    rows = (("engine, all rules (process):", r.engine_rate), ("engine, geometry stage only:", r.geometry_rate))
    for label, rate in rows:
        print(f"  {label:<31}{rate:>10,.0f} fixes/s  {rate / r.naive_rate:>5.0f}x naive")
    measured = f"measured in this run on the first {r.sample:,} of the same fixes"
    print(f"  {'naive per-zone bbox loop:':<31}{r.naive_rate:>10,.0f} fixes/s  ({measured})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds of 10,000 fixes (default 10)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--case", choices=("road", "stress", "both"), default="both")
    args = parser.parse_args()
    print("engine benchmark: 10,000 vehicles, one fix each per 10 s round, one core, fixes/s (higher is better)")
    for n_zones, sample in ((1000, 3000), (10_000, 500)):
        if args.case in ("road", "both"):
            city, size = make_road_city(np.random.default_rng(args.seed), n_zones, 100, 10_000)
            fleet: Fleet | RoadFleet = RoadFleet(np.random.default_rng(args.seed), city, size)
            report("road fleet (representative)", len(city.zones), bench(city, fleet, args.rounds, sample))
        if args.case in ("stress", "both"):
            city = make_city(np.random.default_rng(args.seed), n_zones, 100, 10_000)
            fleet = Fleet(np.random.default_rng(args.seed), sorted(city.vehicles or {}))
            report("stress (random walk, dense zones)", n_zones, bench(city, fleet, args.rounds, sample))


if __name__ == "__main__":
    main()
