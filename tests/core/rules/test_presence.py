"""Zone presence (the pre-stage): replay noisy fix sequences (σ ≈ 8 m, speed ± 1.5 km/h) and assert the exact events."""

from __future__ import annotations

import numpy as np

from tests.fixtures.city import NIGHT, Track, engine, run, summary

LOADED = {"loaded": True, "cover_closed": True}


def track(vehicle_id: str = "MT-001", t: float = NIGHT, seed: int = 7) -> Track:
    return Track(vehicle_id, t, np.random.default_rng(seed))


def test_zone_enter_waits_for_dwell_and_exit_needs_the_band() -> None:
    tr = track("PT-001")
    fixes = list(tr.drive((3900, 1250), (4200, 1250), 60))  # crosses into DW at ~20 s
    fixes += tr.park((4200, 1250), 120)
    fixes += tr.drive((4200, 1250), (4200, 2000), 60)
    events = [e for e in run(engine(), fixes) if e.key == "zone:DW"]
    assert summary(events) == [("zone", "start", "zone:DW"), ("zone", "end", "zone:DW")]
    enter, _ = events
    assert enter.ts - enter.details["entered_at"] >= 60
    assert enter.details["entered_at"] in (NIGHT + 20, NIGHT + 30)


def test_parked_on_a_zone_boundary_does_not_flap() -> None:
    tr = track("PT-001")
    fixes = list(tr.park((4000, 1250), 1800))  # on DW's west edge, σ 8 m
    events = [e for e in run(engine(), fixes) if e.key == "zone:DW"]
    assert [e.phase for e in events] in ([], ["start"])


def test_who_is_inside_a_zone_now() -> None:
    eng = engine()
    run(eng, list(track("PT-001").drive((1100, 0), (1300, 0), 30)))
    run(eng, list(track("MX-001").drive((-2000, 0), (-1500, 0), 30)))
    assert eng.vehicles_in_zone("SZ") == {"PT-001"}
    assert eng.vehicles_in_zone("G1") == {"PT-001"}
    assert set(eng.zones_of("PT-001")) == {"SZ", "G1"}
