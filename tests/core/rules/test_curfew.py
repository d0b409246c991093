"""Curfew: replay noisy fix sequences (σ ≈ 8 m, speed ± 1.5 km/h) and assert the exact events."""

from __future__ import annotations

import numpy as np

from tests.fixtures.city import NIGHT, NOON, Track, engine, run, summary

LOADED = {"loaded": True, "cover_closed": True}


def track(vehicle_id: str = "MT-001", t: float = NIGHT, seed: int = 7) -> Track:
    return Track(vehicle_id, t, np.random.default_rng(seed))


def test_curfew_outside_permit_hours_ends_after_a_long_stop() -> None:
    tr = track(t=NOON)
    fixes = list(tr.drive((300, 0), (2300, 0), 200, sensors=LOADED))
    fixes += tr.park((2300, 0), 40)  # a red light does not end it
    fixes += tr.drive((2300, 0), (2600, 0), 30)
    fixes += tr.park((2600, 0), 300)
    events = [e for e in run(engine(), fixes) if e.kind == "curfew"]
    assert summary(events) == [("curfew", "start", "curfew"), ("curfew", "end", "curfew")]
    assert events[0].ts == NOON + 60
    assert summary(run(engine(), list(track().drive((300, 0), (2300, 0), 200))), kinds={"curfew"}) == []
