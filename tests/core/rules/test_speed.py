"""Overspeed: replay noisy fix sequences (σ ≈ 8 m, speed ± 1.5 km/h) and assert the exact events."""

from __future__ import annotations

import numpy as np
from msgspec.structs import replace

from tests.fixtures.city import NIGHT, Track, engine, run, summary

LOADED = {"loaded": True, "cover_closed": True}


def track(vehicle_id: str = "MT-001", t: float = NIGHT, seed: int = 7) -> Track:
    return Track(vehicle_id, t, np.random.default_rng(seed))


def test_a_5_second_speed_blip_raises_no_overspeed() -> None:
    tr = track("MX-001")
    fixes = list(tr.drive((300, 500), (700, 500), 40, every=1))  # 36 km/h, limit 50
    fixes += [replace(f, speed_kmh=70.0) for f in tr.drive((700, 500), (750, 500), 5, every=1)]
    fixes += tr.drive((750, 500), (1100, 500), 35, every=1)
    assert summary(run(engine(), fixes), kinds={"overspeed"}) == []


def test_overspeed_starts_after_min_duration_and_ends_with_peak_and_duration() -> None:
    tr = track("MX-001")
    fixes = list(tr.drive((-900, 500), (-500, 500), 40, every=2))  # 36 km/h
    fixes += tr.drive((-500, 500), (600, 500), 60, every=2)  # 66 km/h for a minute
    fixes += tr.drive((600, 500), (900, 500), 30, every=2)  # 36 km/h
    events = [e for e in run(engine(), fixes) if e.kind == "overspeed"]
    assert summary(events) == [("overspeed", "start", "overspeed"), ("overspeed", "end", "overspeed")]
    start, end = events
    assert start.ts == NIGHT + 40 + 16 and start.details["limit_kmh"] == 50
    assert end.ts == NIGHT + 100 and end.details["duration_s"] == 60
    assert 66 < end.details["peak_kmh"] < 72


def test_speed_zone_limit_beats_the_class_limit() -> None:
    tr = track("PT-001")
    fixes = list(tr.drive((900, 0), (1450, 0), 45, every=3))  # 44 km/h; the zone allows 30
    fixes += tr.drive((1600, 0), (1700, 0), 30, every=3)  # 12 km/h outside
    events = [e for e in run(engine(), fixes) if e.kind == "overspeed"]
    assert summary(events) == [("overspeed", "start", "overspeed"), ("overspeed", "end", "overspeed")]
    assert events[0].details["limit_kmh"] == 30
