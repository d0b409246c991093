"""Forbidden zones: replay noisy fix sequences (σ ≈ 8 m, speed ± 1.5 km/h) and assert the exact events."""

from __future__ import annotations

import numpy as np
import pytest

from tests.fixtures.city import NIGHT, NOON, Track, engine, run, summary

LOADED = {"loaded": True, "cover_closed": True}


def track(vehicle_id: str = "MT-001", t: float = NIGHT, seed: int = 7) -> Track:
    return Track(vehicle_id, t, np.random.default_rng(seed))


def test_forbidden_zone_applies_to_its_class_only() -> None:
    eng = engine()
    for vid in ("MT-001", "MX-001"):
        fixes = list(track(vid).drive((2500, 500), (2500, 2500), 200))
        events = [e for e in run(eng, fixes) if e.kind == "forbidden_zone"]
        expected = [("forbidden_zone", "start", "forbidden:P1"), ("forbidden_zone", "end", "forbidden:P1")]
        assert summary(events) == (expected if vid == "MT-001" else [])


@pytest.mark.parametrize(("t0", "expected"), [(NIGHT, 0), (NOON - 4.5 * 3600, 2)])  # 22:00 vs 07:30
def test_forbidden_zone_follows_its_schedule(t0: float, expected: int) -> None:
    fixes = list(track("PT-001", t=t0).drive((2500, -500), (2500, -2500), 200))
    assert len([e for e in run(engine(), fixes) if e.kind == "forbidden_zone"]) == expected
