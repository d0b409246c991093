"""Suspected illegal dumping: replay noisy fix sequences (σ ≈ 8 m, speed ± 1.5 km/h) and assert the exact events."""

from __future__ import annotations

import numpy as np

from tests.fixtures.city import NIGHT, Track, engine, run, summary

LOADED = {"loaded": True, "cover_closed": True}


def track(vehicle_id: str = "MT-001", t: float = NIGHT, seed: int = 7) -> Track:
    return Track(vehicle_id, t, np.random.default_rng(seed))


def test_loaded_stop_outside_sites_is_suspected_dumping() -> None:
    tr = track()
    fixes = list(tr.drive((300, 0), (2000, 0), 150, sensors=LOADED))
    fixes += tr.park((2000, 20), 400, every=15, sensors=LOADED)
    fixes += tr.drive((2000, 0), (3000, 0), 90, sensors={"loaded": False, "cover_closed": True})
    events = [e for e in run(engine(), fixes) if e.kind == "illegal_dumping"]
    assert summary(events) == [
        ("illegal_dumping", "start", "illegal_dumping:stop"),
        ("illegal_dumping", "end", "illegal_dumping:stop"),
    ]
    assert events[0].severity == "critical" and events[1].details["unloaded"] is True


def test_loaded_stop_at_the_disposal_site_is_not_dumping() -> None:
    tr = track()
    fixes = list(tr.park((5200, 0), 900, sensors=LOADED))
    assert summary(run(engine(), fixes), kinds={"illegal_dumping"}) == []


def test_body_lift_outside_a_site_and_inside_one() -> None:
    tr = track()
    fixes = list(tr.park((2000, 0), 30, sensors={"lift": False}))
    fixes += tr.park((2000, 0), 30, sensors={"lift": True})
    fixes += tr.park((2000, 0), 30, sensors={"lift": False})
    fixes += tr.park((5200, 0), 30, sensors={"lift": True})
    events = run(engine(), fixes)
    assert summary(events, kinds={"illegal_dumping"}) == [
        ("illegal_dumping", "start", "illegal_dumping:lift"),
        ("illegal_dumping", "end", "illegal_dumping:lift"),
    ]


def test_mixer_drum_reverse_outside_a_construction_site() -> None:
    tr = track("MX-001")
    fixes = list(tr.park((-200, 0), 60, sensors={"drum": "ccw"}))  # unloading on site: fine
    fixes += tr.park((2000, 500), 60, sensors={"drum": "ccw"})
    fixes += tr.park((2000, 500), 30, sensors={"drum": "cw"})
    events = run(engine(), fixes)
    assert summary(events, kinds={"illegal_dumping"}) == [
        ("illegal_dumping", "start", "illegal_dumping:drum"),
        ("illegal_dumping", "end", "illegal_dumping:drum"),
    ]
