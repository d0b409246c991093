"""Track maths for history: simplification, stops and trips, statistics,
patrol coverage. Pure: arrays in, values out; no I/O and no clock.

Times are epoch seconds (float arrays), positions WGS-84 degrees; metric work
takes coordinates already projected to metres (``core.geo.Projection``).
Distances along a track use the same small-step equirectangular formula as
the SQL mileage report (``store.history``), so a trip list and the daily
report agree to the metre.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from gpsd_server.core.geo import EARTH_RADIUS_M, FloatArray, IntArray
from gpsd_server.model import FixFlag

# Fix flags that keep a fix out of tracks and statistics: invalid, jump,
# filtered (outliers), drift (parked wander). Late fixes (blind-area backfill)
# count: they are where the vehicle was.
UNUSABLE_FLAGS = int(FixFlag.INVALID | FixFlag.JUMP | FixFlag.FILTERED | FixFlag.DRIFT)


# -- distances and statistics --------------------------------------------------


def step_lengths_m(lon: FloatArray, lat: FloatArray) -> FloatArray:
    """Metres between consecutive fixes (n - 1 values); exact enough for 10 s steps."""
    if len(lon) < 2:
        return np.zeros(0, dtype=np.float64)
    mid = np.radians((lat[1:] + lat[:-1]) / 2.0)
    dx = np.radians(np.diff(lon)) * np.cos(mid)
    dy = np.radians(np.diff(lat))
    return np.asarray(EARTH_RADIUS_M * np.hypot(dx, dy), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class TrackStats:
    distance_km: float
    driving_s: float
    max_speed_kmh: float
    fixes: int

    def json(self) -> dict[str, float | int]:
        return {
            "distance_km": round(self.distance_km, 3),
            "driving_s": round(self.driving_s, 1),
            "max_speed_kmh": round(self.max_speed_kmh, 1),
            "fixes": self.fixes,
        }


def driving_steps(ts: FloatArray, speed: FloatArray, *, moving_kmh: float, gap_s: float) -> FloatArray:
    """Seconds of each step (n - 1 values) that count as driving: the step starts
    moving and is not a silence longer than ``gap_s``."""
    if len(ts) < 2:
        return np.zeros(0, dtype=np.float64)
    dt = np.diff(ts)
    moving = np.nan_to_num(speed[:-1], nan=0.0) >= moving_kmh
    return np.where(moving & (dt <= gap_s), dt, 0.0)


def track_stats(
    ts: FloatArray, lon: FloatArray, lat: FloatArray, speed: FloatArray, *, moving_kmh: float, gap_s: float
) -> TrackStats:
    """Distance, driving time and top speed of one vehicle's usable fixes, in time order."""
    top = float(np.nanmax(speed)) if len(speed) and not np.all(np.isnan(speed)) else 0.0
    return TrackStats(
        distance_km=float(step_lengths_m(lon, lat).sum()) / 1000.0,
        driving_s=float(driving_steps(ts, speed, moving_kmh=moving_kmh, gap_s=gap_s).sum()),
        max_speed_kmh=top,
        fixes=len(ts),
    )


# -- simplification --------------------------------------------------------------


def simplify_indices(x: FloatArray, y: FloatArray, tolerance_m: float) -> IntArray:
    """Indices kept by Douglas–Peucker at ``tolerance_m`` on projected points.

    Returns indices (not coordinates) so each kept point keeps its time, speed
    and flags. GEOS does the simplification (``shapely.simplify`` without
    topology preservation: Douglas–Peucker, distances to the segment, not the
    infinite line, so a vehicle that drives past the end and comes back keeps
    its turning point; a closed loop measures from the anchor). It keeps
    original vertices only, Z included: each point carries its index as Z,
    and the kept Z values are the indices. A vehicle-day of 8,640 noisy fixes:
    43 ms in a numpy loop, 1 ms here (2026-12-04). Where two points are
    equally far within floating-point noise the one kept may differ from
    another implementation's; the result is within the tolerance either way.
    """
    n = len(x)
    if n <= 2:
        return np.arange(n, dtype=np.intp)
    line = shapely.linestrings(x, y, np.arange(n, dtype=np.float64))
    kept = shapely.get_coordinates(shapely.simplify(line, tolerance_m, preserve_topology=False), include_z=True)
    if len(kept) < 2:  # GEOS never drops an end of a line; keep them if it ever does
        return np.array([0, n - 1], dtype=np.intp)
    return np.asarray(kept[:, 2], dtype=np.intp)


# -- stops and trips ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stop:
    first: int  # index of the first fix of the stop
    last: int  # index of the last fix
    start_ts: float
    end_ts: float
    lon: float  # mean position
    lat: float

    @property
    def duration_s(self) -> float:
        return self.end_ts - self.start_ts


@dataclass(frozen=True, slots=True)
class Trip:
    first: int
    last: int
    start_ts: float
    end_ts: float
    stats: TrackStats
    from_stop: int | None = None  # index into the stop list
    to_stop: int | None = None


def find_stops(
    ts: FloatArray, x: FloatArray, y: FloatArray, lon: FloatArray, lat: FloatArray, *, radius_m: float, min_s: float
) -> list[Stop]:
    """Stay points: runs of fixes within ``radius_m`` of the run's first fix
    lasting at least ``min_s``. A gap in reception inside the radius is still a
    stop (a truck parked with its terminal asleep has stopped)."""
    stops: list[Stop] = []
    n = len(ts)
    r2 = radius_m * radius_m
    i = 0
    while i < n:
        j = i + 1
        # Grow the run in blocks so a long stop costs numpy work, not a Python step per fix.
        while j < n:
            block = slice(j, min(n, j + 256))
            far = np.flatnonzero((x[block] - x[i]) ** 2 + (y[block] - y[i]) ** 2 > r2)
            if len(far):
                j = block.start + int(far[0])
                break
            j = block.stop
        if ts[j - 1] - ts[i] >= min_s:
            stops.append(Stop(i, j - 1, float(ts[i]), float(ts[j - 1]), float(lon[i:j].mean()), float(lat[i:j].mean())))
            i = j
        else:
            i += 1
    return stops


def find_trips(
    ts: FloatArray,
    lon: FloatArray,
    lat: FloatArray,
    speed: FloatArray,
    stops: Sequence[Stop],
    *,
    moving_kmh: float,
    gap_s: float,
    min_distance_m: float = 0.0,
) -> list[Trip]:
    """The movements between stops (and before the first / after the last)."""
    bounds: list[tuple[int, int, int | None, int | None]] = []
    prev_end, prev_stop = 0, None
    for k, s in enumerate(stops):
        bounds.append((prev_end, s.first, prev_stop, k))
        prev_end, prev_stop = s.last, k
    bounds.append((prev_end, len(ts) - 1, prev_stop, None))
    trips = []
    for a, b, from_stop, to_stop in bounds:
        if b <= a:
            continue
        part = slice(a, b + 1)
        stats = track_stats(ts[part], lon[part], lat[part], speed[part], moving_kmh=moving_kmh, gap_s=gap_s)
        if stats.distance_km * 1000.0 <= min_distance_m or stats.driving_s == 0.0:
            continue
        trips.append(Trip(a, b, float(ts[a]), float(ts[b]), stats, from_stop, to_stop))
    return trips


# -- zones: presence and coverage ------------------------------------------------------


@dataclass(slots=True)
class Visit:
    """One zone's record over a window: who came, when, for how long."""

    first_ts: float | None = None
    last_ts: float | None = None
    inside_s: float = 0.0  # vehicle-seconds: two cars for a minute count two minutes
    fixes: int = 0
    vehicles: set[str] = field(default_factory=set)

    def add(self, vehicle_id: str, ts: FloatArray, inside_s: float) -> None:
        if not len(ts):
            return
        first, last = float(ts.min()), float(ts.max())
        self.first_ts = first if self.first_ts is None else min(self.first_ts, first)
        self.last_ts = last if self.last_ts is None else max(self.last_ts, last)
        self.inside_s += inside_s
        self.fixes += len(ts)
        self.vehicles.add(vehicle_id)


def zone_visits(
    zones: Sequence[BaseGeometry],
    tracks: Sequence[tuple[str, FloatArray, FloatArray, FloatArray]],
    *,
    gap_s: float,
) -> list[Visit]:
    """For each zone (lon/lat polygons), the visits of ``(vehicle, ts, lon, lat)`` tracks.

    Time inside counts each step whose both ends are inside, up to ``gap_s``,
    so a long reception gap is not taken as time spent inside.

    All tracks are tested at once, zone by zone: the points inside a zone's
    bounding box (a numpy mask) against the zone itself (``intersects_xy``,
    so a point on the boundary is inside). Patrol coverage asks this of 60
    cars' day (518,400 fixes) and 58 grids: one spatial-index query per car
    and a Python loop per grid visited took 0.5-1.1 s of the report.
    """
    visits = [Visit() for _ in zones]
    kept = [t for t in tracks if len(t[1])]
    if not zones or not kept:
        return visits
    ts = np.concatenate([np.asarray(t[1], dtype=np.float64) for t in kept])
    lon = np.concatenate([np.asarray(t[2], dtype=np.float64) for t in kept])
    lat = np.concatenate([np.asarray(t[3], dtype=np.float64) for t in kept])
    sizes = np.fromiter((len(t[1]) for t in kept), dtype=np.intp, count=len(kept))
    starts = np.concatenate(([0], np.cumsum(sizes)))
    owner = np.repeat(np.arange(len(kept)), sizes)  # which track each point is of
    dt = np.diff(ts)
    step_ok = (dt <= gap_s) & (owner[1:] == owner[:-1])  # a step within one track, not across a gap
    step_dt = np.where(step_ok, dt, 0.0)
    shapes = np.asarray(zones, dtype=object)
    bounds = shapely.bounds(shapes)
    # Prepared copies (preparing the city's own would change shared objects
    # another thread may be using): a point test then costs a fraction.
    shapes = shapely.from_wkb(shapely.to_wkb(shapes))
    shapely.prepare(shapes)
    for z, zone in enumerate(shapes.tolist()):
        x0, y0, x1, y1 = bounds[z]
        candidates = np.flatnonzero((lon >= x0) & (lon <= x1) & (lat >= y0) & (lat <= y1))
        if not len(candidates):
            continue
        hits = candidates[shapely.intersects_xy(zone, lon[candidates], lat[candidates])]
        if not len(hits):
            continue
        inside = np.zeros(len(ts), dtype=bool)
        inside[hits] = True
        both = inside[1:] & inside[:-1]
        seconds = np.where(both, step_dt, 0.0)
        for k in np.unique(owner[hits]).tolist():
            a, b = int(starts[k]), int(starts[k + 1])
            visits[z].add(kept[k][0], ts[a:b][inside[a:b]], float(seconds[a : b - 1].sum()))
    return visits


def zones_at(zone_ids: Sequence[str], zones: Sequence[BaseGeometry], lon: float, lat: float) -> list[str]:
    """Ids of the zones containing a point (lon/lat)."""
    if not zones:
        return []
    hit = shapely.contains_xy(np.asarray(zones, dtype=object), lon, lat)
    return [zid for zid, h in zip(zone_ids, np.asarray(hit).tolist(), strict=True) if h]
