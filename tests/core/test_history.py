"""Pure track maths: simplification, stops, trips, statistics, zone visits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Point, Polygon, box

from gpsd_server.core.history import (
    find_stops,
    find_trips,
    simplify_indices,
    step_lengths_m,
    track_stats,
    zone_visits,
)


def test_simplify_keeps_corners_and_drops_collinear_points() -> None:
    x = np.array([0.0, 10, 20, 30, 30, 30, 30])
    y = np.array([0.0, 0.4, -0.3, 0, 10, 20, 30])
    assert simplify_indices(x, y, 1.0).tolist() == [0, 3, 6]
    assert simplify_indices(x, y, 0.35).tolist() == [0, 1, 2, 3, 6]
    assert simplify_indices(x[:2], y[:2], 5.0).tolist() == [0, 1]


def test_simplify_handles_a_closed_loop() -> None:
    x = np.array([0.0, 100, 100, 0, 0])
    y = np.array([0.0, 0, 100, 100, 0])
    assert simplify_indices(x, y, 1.0).tolist() == [0, 1, 2, 3, 4]


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.integers(-(10**4), 10**4), st.integers(-(10**4), 10**4)), min_size=3, max_size=60),
    st.floats(0.1, 500),
)
def test_simplify_stays_within_tolerance(points: list[tuple[int, int]], tol: float) -> None:
    """Every dropped point lies within the tolerance of the kept polyline."""
    from shapely.geometry import LineString, Point

    x, y = np.array([p[0] for p in points], dtype=float), np.array([p[1] for p in points], dtype=float)
    keep = simplify_indices(x, y, tol)
    assert keep[0] == 0 and keep[-1] == len(x) - 1 and np.all(np.diff(keep) > 0)
    if len(keep) >= 2 and len(set(zip(x[keep].tolist(), y[keep].tolist(), strict=True))) >= 2:
        line = LineString(np.column_stack([x[keep], y[keep]]))
        assert max(line.distance(Point(px, py)) for px, py in points) <= tol * 1.0001 + 1e-6


def _reference_douglas_peucker(x: np.ndarray, y: np.ndarray, tol: float) -> list[int]:
    """The textbook recursion, point by point (distance to the segment; a zero-length
    chord measures from its anchor)."""

    def dist(i: int, a: int, b: int) -> float:
        dx, dy, px, py = x[b] - x[a], y[b] - y[a], x[i] - x[a], y[i] - y[a]
        length2 = dx * dx + dy * dy
        t = min(max((px * dx + py * dy) / length2, 0.0), 1.0) if length2 > 0 else 0.0
        return float(np.hypot(px - t * dx, py - t * dy))

    keep = {0, len(x) - 1}
    stack = [(0, len(x) - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        far = max(range(a + 1, b), key=lambda i: dist(i, a, b))
        if dist(far, a, b) > tol:
            keep.add(far)
            stack += [(a, far), (far, b)]
    return sorted(keep)


@pytest.mark.parametrize("seed", range(40))
def test_simplify_keeps_what_the_textbook_recursion_keeps(seed: int) -> None:
    """Noisy drives, wanderings and stop-and-go (no two points equally far:
    real-valued noise), every tolerance from GPS noise to a city block."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 500))
    step = rng.normal(0, 10, (n, 2)) * (rng.random((n, 1)) < 0.7)  # parked 30 % of the time
    x, y = np.cumsum(step[:, 0]) + rng.normal(0, 0.5, n), np.cumsum(step[:, 1]) + rng.normal(0, 0.5, n)
    for tol in (0.5, 3.0, 10.0, 50.0, 300.0):
        assert simplify_indices(x, y, tol).tolist() == _reference_douglas_peucker(x, y, tol), (seed, tol)


def test_step_lengths_match_a_degree_of_latitude() -> None:
    d = step_lengths_m(np.array([112.0, 112.0]), np.array([28.0, 29.0]))
    assert d[0] == pytest.approx(111_195, rel=1e-3)


def stop_go_stop() -> tuple[np.ndarray, ...]:
    """10 min still at x=0, 100 s driving 10 m/s to x=1000, 10 min still there."""
    ts = np.arange(0, 1400, 10, dtype=float)
    x = np.clip((ts - 600) * 10.0, 0, 1000)
    y = np.zeros_like(ts)
    speed = np.where((ts >= 600) & (ts < 700), 36.0, 0.0)
    lon, lat = 112.0 + x / 97_900, np.full_like(ts, 28.6)
    return ts, x, y, speed, lon, lat


def test_stops_and_the_trip_between_them() -> None:
    ts, x, y, speed, lon, lat = stop_go_stop()
    stops = find_stops(ts, x, y, lon, lat, radius_m=50, min_s=300)
    assert [(s.start_ts, s.end_ts) for s in stops] == [(0, 600), (700, 1390)]
    trips = find_trips(ts, lon, lat, speed, stops, moving_kmh=5, gap_s=300)
    assert len(trips) == 1 and (trips[0].from_stop, trips[0].to_stop) == (0, 1)
    assert trips[0].stats.distance_km == pytest.approx(1.0, rel=0.01) and trips[0].stats.driving_s == 100
    assert find_stops(ts, x, y, lon, lat, radius_m=50, min_s=1000) == []


def test_stats_skip_gaps_and_nan_speeds() -> None:
    ts = np.array([0.0, 10, 20, 1000])
    speed = np.array([30.0, np.nan, 30, 30])
    lon, lat = np.array([112.0, 112.001, 112.002, 112.003]), np.full(4, 28.6)
    s = track_stats(ts, lon, lat, speed, moving_kmh=5, gap_s=300)
    assert s.driving_s == 10 and s.max_speed_kmh == 30 and s.fixes == 4


def test_zone_visits_count_time_inside_per_vehicle() -> None:
    zones = [box(0, 0, 1, 1), box(5, 5, 6, 6)]
    ts = np.array([0.0, 10, 20, 30, 1000])
    lon, lat = np.array([0.5, 0.5, 0.5, 2, 0.5]), np.array([0.5, 0.5, 0.5, 2, 0.5])
    visits = zone_visits(zones, [("a", ts, lon, lat), ("b", ts[:2], lon[:2], lat[:2])], gap_s=300)
    assert (visits[0].first_ts, visits[0].last_ts, visits[0].inside_s) == (0, 1000, 30)
    assert visits[0].vehicles == {"a", "b"} and visits[1].fixes == 0


def _visits_one_track_at_a_time(
    zones: list[Polygon], tracks: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]], gap_s: float
) -> list[tuple[float | None, float | None, float, int, set[str]]]:
    """The plain reading of the rule (the implementation before it was vectorised):
    per track, the points in each zone, the steps with both ends inside."""
    out = []
    for zone in zones:
        first = last = None
        inside_s, fixes, vehicles = 0.0, 0, set()
        for vehicle_id, ts, lon, lat in tracks:
            inside = np.array([zone.intersects(Point(x, y)) for x, y in zip(lon, lat, strict=True)], dtype=bool)
            if not inside.any():
                continue
            dt = np.diff(ts)
            inside_s += float(dt[inside[1:] & inside[:-1] & (dt <= gap_s)].sum())
            t = ts[inside]
            first = float(t.min()) if first is None else min(first, float(t.min()))
            last = float(t.max()) if last is None else max(last, float(t.max()))
            fixes += len(t)
            vehicles.add(vehicle_id)
        out.append((first, last, inside_s, fixes, vehicles))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_zone_visits_equal_the_plain_reading_on_random_tracks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    zones: list[Polygon] = [box(0, 0, 1, 1), box(0.5, 0.5, 2, 2), Polygon([(3, 0), (4, 2), (2, 2)])]
    zones += [box(x, y, x + w, y + w) for x, y, w in rng.uniform(0, 3, (4, 3))]
    tracks = []
    for v in range(int(rng.integers(0, 6))):
        n = int(rng.integers(0, 40))
        ts = np.cumsum(rng.choice([5.0, 10.0, 400.0], n, p=[0.5, 0.4, 0.1]))
        lon = np.round(rng.uniform(-0.5, 4.5, n) * 2) / 2  # on a half-unit grid: many points on boundaries
        lat = np.round(rng.uniform(-0.5, 2.5, n) * 2) / 2
        tracks.append((f"v{v}", ts, lon, lat))
    got = zone_visits(zones, tracks, gap_s=300)
    want = _visits_one_track_at_a_time(zones, tracks, 300)
    for g, (first, last, inside_s, fixes, vehicles) in zip(got, want, strict=True):
        assert (g.first_ts, g.last_ts, g.fixes, g.vehicles) == (first, last, fixes, vehicles)
        assert g.inside_s == pytest.approx(inside_s)
