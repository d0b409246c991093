"""Engine benchmark: fixes/s through Engine.process versus a per-fix, per-zone loop.

Run: .venv/bin/python tools/bench_engine.py [--rounds N] [--seed S]

A synthetic city of 30 x 30 km around 112.35 E 28.57 N with random
12-vertex zones (1,000 zones + 100 routes, then 10,000 zones + 100 routes with
zones shrunk so the city is covered about as densely), and 10,000 vehicles
(5,000 permitted muck trucks with 1-2 routes each, 2,000 mixers, 1,500
patrol, 1,500 other) each sending one fix per round. The engine runs every
rule; the timed rounds follow one warm-up round.

The naive loop does only the geometry, the way many trackers do it: for each
fix, loop over every zone with a bounding-box pre-check then a point-in-
polygon test, and measure the distance to each of the vehicle's routes. It is
given pre-projected coordinates (a favour) and timed on a subset of fixes,
then extrapolated per fix: the full run would take many minutes.
"""

from __future__ import annotations

import argparse
import gc
import time

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
    return City(zones=tuple(zones), routes=tuple(routes), vehicles=vehicles)


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


def bench_engine(city: City, rounds: int, seed: int) -> tuple[float, float, int]:
    """(fixes/s through process with all rules, fixes/s of its geometry stage alone, events)."""
    engine = Engine(city=city, epsg=32649)
    fleet = Fleet(np.random.default_rng(seed), sorted(city.vehicles or {}))
    engine.process(fleet.round()[0], now=fleet.t)  # warm-up: every vehicle enters its zones
    batches = [fleet.round()[0] for _ in range(rounds)]
    # The pre-built batches and the city are long-lived: keep the cyclic GC
    # from rescanning them (the server can do the same after loading).
    gc.collect()
    gc.freeze()
    events = 0
    started = time.perf_counter()
    for batch in batches:
        events += len(engine.process(batch, now=batch[0].ts).events)
    elapsed = time.perf_counter() - started
    geometry_s = time_geometry_stage(engine, batches)
    gc.unfreeze()
    n = sum(map(len, batches))
    return n / elapsed, n / geometry_s, events


def time_geometry_stage(engine: Engine, batches: list[list[Fix]]) -> float:
    """The like-for-like part of the comparison: projection, zone hits, route distances."""
    started = time.perf_counter()
    for batch in batches:
        engine._locate([(f, engine._state(f.vehicle_id)) for f in batch])
    return time.perf_counter() - started


def bench_naive(city: City, sample: int, seed: int) -> float:
    """Per fix: every zone, bbox first, then point-in-polygon; then each permitted route."""
    project = Transformer.from_crs(4326, 32649, always_xy=True)

    def metric(g: shapely.Geometry) -> shapely.Geometry:
        return shapely.transform(g, lambda c: np.column_stack(project.transform(c[:, 0], c[:, 1])))

    zones = [(metric(z.geometry), z) for z in city.zones]
    boxes = [(g.bounds, g, z.id) for g, z in zones]
    lines = {r.id: metric(r.geometry) for r in city.routes}
    vehicles = city.vehicles or {}
    fleet = Fleet(np.random.default_rng(seed), sorted(vehicles))
    fixes, xs, ys = fleet.round()
    fixes, xs, ys = fixes[:sample], xs[:sample].tolist(), ys[:sample].tolist()
    started = time.perf_counter()
    for fix, x, y in zip(fixes, xs, ys, strict=True):
        inside = []
        for (minx, miny, maxx, maxy), geom, zid in boxes:
            if minx <= x <= maxx and miny <= y <= maxy and shapely.contains_xy(geom, x, y):
                inside.append(zid)
        point = shapely.Point(x, y)
        for permit in vehicles[fix.vehicle_id].permits:
            [shapely.distance(lines[r], point) for r in permit.routes]
    return sample / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds of 10,000 fixes (default 10)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print("engine benchmark: 10,000 vehicles, one core, fixes/s (higher is better)")
    for n_zones, sample in ((1000, 3000), (10_000, 500)):
        city = make_city(np.random.default_rng(args.seed), n_zones, 100, 10_000)
        engine_rate, geometry_rate, events = bench_engine(city, args.rounds, args.seed)
        naive_rate = bench_naive(city, sample, args.seed)
        print(f"{n_zones:,} zones + 100 routes, {args.rounds * 10_000:,} fixes, {events:,} events")
        print(
            f"  engine, all rules (process):   {engine_rate:>10,.0f} fixes/s  {engine_rate / naive_rate:>5.0f}x naive"
        )
        print(
            f"  engine, geometry stage only:   {geometry_rate:>10,.0f} fixes/s"
            f"  {geometry_rate / naive_rate:>5.0f}x naive"
        )
        print(
            f"  naive per-zone bbox loop:      {naive_rate:>10,.0f} fixes/s"
            f"  (geometry only; {sample:,} fixes, extrapolated)"
        )


if __name__ == "__main__":
    main()
