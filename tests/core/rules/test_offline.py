"""Offline and online: replay noisy fix sequences (σ ≈ 8 m, speed ± 1.5 km/h) and assert the exact events."""

from __future__ import annotations

import numpy as np

from tests.fixtures.city import NIGHT, Track, engine, run

LOADED = {"loaded": True, "cover_closed": True}


def track(vehicle_id: str = "MT-001", t: float = NIGHT, seed: int = 7) -> Track:
    return Track(vehicle_id, t, np.random.default_rng(seed))


def test_offline_by_tick_then_online() -> None:
    eng = engine()
    tr = track("PT-001")
    run(eng, list(tr.park((0, 500), 60)))  # parked: 600 s threshold
    assert eng.tick(NIGHT + 50 + 500) == []
    [off] = eng.tick(NIGHT + 50 + 601)
    assert (off.kind, off.phase, off.ts) == ("offline", "start", NIGHT + 50)
    assert eng.tick(NIGHT + 2000) == []
    tr.t = NIGHT + 3000
    [on] = [e for e in run(eng, list(tr.park((0, 500), 10))) if e.kind == "offline"]
    assert (on.phase, on.severity, on.ts, on.details["gap_s"]) == ("end", "info", NIGHT + 3000, 2950)


def test_a_gap_in_the_fixes_records_offline_with_its_start_and_end() -> None:
    tr = track("PT-001")
    fixes = list(tr.drive((0, 500), (500, 500), 60))  # moving: 120 s threshold
    tr.t += 200
    fixes += tr.drive((800, 500), (900, 500), 20)
    events = [e for e in run(engine(), fixes) if e.kind == "offline"]
    assert [(e.phase, e.ts) for e in events] == [("start", NIGHT + 50), ("end", NIGHT + 260)]


def test_a_restored_vehicle_keeps_its_last_receipt_time() -> None:
    """Found by the scale-out test: a worker that took a vehicle over restored it
    from a fix an hour old by fix time but received a second ago; its first
    fixes there were redeliveries (late, no sign of life), and the next tick
    declared it offline. The receipt time of the stored fix counts as at start."""
    from gpsd_server.model import Fix

    eng = engine()
    received = NIGHT + 3600
    eng.restore("PT-001", Fix("PT-001", NIGHT, 112.35, 28.57, received_at=received, speed_kmh=0.0))
    assert eng.tick(received + 1) == []
    [off] = eng.tick(received + 601)
    assert (off.kind, off.ts) == ("offline", NIGHT)
    eng.restore("PT-002", Fix("PT-002", NIGHT, 112.35, 28.57, speed_kmh=0.0))  # receipt unknown: the fix time
    assert [e.vehicle_id for e in eng.tick(received + 1)] == ["PT-002"]
