"""Uncovered load: replay noisy fix sequences (σ ≈ 8 m, speed ± 1.5 km/h) and assert the exact events."""

from __future__ import annotations

import numpy as np

from tests.fixtures.city import NIGHT, Track, engine, run, summary

LOADED = {"loaded": True, "cover_closed": True}


def track(vehicle_id: str = "MT-001", t: float = NIGHT, seed: int = 7) -> Track:
    return Track(vehicle_id, t, np.random.default_rng(seed))


def test_uncovered_load_needs_loaded_moving_and_cover_open() -> None:
    tr = track()
    fixes = list(tr.drive((300, 0), (800, 0), 60, sensors={"loaded": True, "cover_closed": False}))
    fixes += tr.drive((800, 0), (1300, 0), 60, sensors=LOADED)
    fixes += tr.drive((1300, 0), (1800, 0), 60, sensors={"loaded": False, "cover_closed": False})
    events = [e for e in run(engine(), fixes) if e.kind == "uncovered_load"]
    assert summary(events) == [
        ("uncovered_load", "start", "uncovered_load"),
        ("uncovered_load", "end", "uncovered_load"),
    ]
    assert events[0].ts == NIGHT + 30 and events[1].ts == NIGHT + 60
