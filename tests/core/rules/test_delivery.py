"""Mixer delivery overtime: replay noisy fix sequences (σ ≈ 8 m, speed ± 1.5 km/h) and assert the exact events."""

from __future__ import annotations

import numpy as np

from tests.fixtures.city import NIGHT, Track, engine, run, summary

LOADED = {"loaded": True, "cover_closed": True}


def track(vehicle_id: str = "MT-001", t: float = NIGHT, seed: int = 7) -> Track:
    return Track(vehicle_id, t, np.random.default_rng(seed))


def test_mixer_delivery_overtime() -> None:
    tr = track("MX-001")
    fixes = list(tr.park((100, -2900), 60))  # in the plant
    fixes += tr.drive((100, -2700), (100, -1000), 5700, every=30)  # 95 min to get near the site
    fixes += tr.drive((-200, -500), (-200, 0), 60, every=10)  # into CS1
    events = [e for e in run(engine(), fixes) if e.kind == "delivery_overtime"]
    assert summary(events) == [
        ("delivery_overtime", "start", "delivery_overtime"),
        ("delivery_overtime", "end", "delivery_overtime"),
    ]
    assert events[1].details["duration_s"] > 5400
