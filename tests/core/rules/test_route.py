"""Route deviation: replay noisy fix sequences (σ ≈ 8 m, speed ± 1.5 km/h) and assert the exact events."""

from __future__ import annotations

import numpy as np

from tests.fixtures.city import NIGHT, Track, engine, run, summary

LOADED = {"loaded": True, "cover_closed": True}


def track(vehicle_id: str = "MT-001", t: float = NIGHT, seed: int = 7) -> Track:
    return Track(vehicle_id, t, np.random.default_rng(seed))


def test_driving_35m_beside_a_50m_corridor_for_10_minutes_raises_no_deviation() -> None:
    tr = track()
    fixes = list(tr.drive((300, 35), (3300, 35), 600, every=5, sensors=LOADED))
    events = run(engine(), fixes)
    assert summary(events, kinds={"route_deviation"}) == []


def test_deviation_starts_after_a_minute_off_route_and_ends_with_max_distance() -> None:
    tr = track()
    fixes = list(tr.drive((300, 0), (1000, 0), 60, sensors=LOADED))  # on route
    fixes += tr.drive((1000, 150), (2000, 150), 120, sensors=LOADED)  # 150 m off for 2 min
    fixes += tr.drive((2000, 0), (2600, 0), 60, sensors=LOADED)  # back on route
    events = [e for e in run(engine(), fixes) if e.kind == "route_deviation"]
    assert summary(events) == [
        ("route_deviation", "start", "route_deviation:P-001"),
        ("route_deviation", "end", "route_deviation:P-001"),
    ]
    start, end = events
    assert start.ts == NIGHT + 60 + 60 and start.route_id == "R1"
    assert end.ts == NIGHT + 180
    assert end.details["duration_s"] == 120
    assert 150 < end.details["max_distance_m"] < 180


def test_a_30_second_excursion_raises_no_deviation() -> None:
    tr = track()
    fixes = list(tr.drive((300, 0), (1000, 0), 60))
    fixes += tr.drive((1000, 150), (1300, 150), 30)
    fixes += tr.drive((1300, 0), (2000, 0), 60)
    assert summary(run(engine(), fixes), kinds={"route_deviation"}) == []


def test_time_inside_the_origin_site_does_not_count_as_deviation() -> None:
    tr = track()
    fixes = list(tr.park((-200, 0), 900, sensors={"loaded": False}))  # loading in the site, 200 m off the route
    assert summary(run(engine(), fixes), kinds={"route_deviation", "illegal_dumping"}) == []
