"""Property tests: noise inside a hysteresis band never flaps a rule; batching never changes events."""

from __future__ import annotations

from collections import defaultdict
from functools import cache

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from gpsd_server.model import Event, Fix
from tests.fixtures.city import NIGHT, Track, engine, run

BAND = settings(max_examples=40, deadline=None)


def phases(events: list[Event], key: str) -> list[str]:
    return [e.phase for e in events if e.key == key]


@BAND
@given(st.lists(st.floats(75.5, 110.0), min_size=1, max_size=120), st.integers(0, 2**32 - 1))
def test_speed_above_limit_minus_band_never_ends_an_overspeed(speeds: list[float], seed: int) -> None:
    tr = Track("PT-001", NIGHT, np.random.default_rng(seed), speed_sigma=0)  # default limit 80, band 5
    fixes = [replace(f, speed_kmh=95.0) for f in tr.park((-500, 500), 30, every=5)]  # starts it
    fixes += [
        replace(f, speed_kmh=s) for f, s in zip(tr.park((-500, 500), 5 * len(speeds), every=5), speeds, strict=False)
    ]
    assert phases(run(engine(), fixes), "overspeed") == ["start"]


@BAND
@given(st.lists(st.floats(0.0, 45.0), min_size=10, max_size=120), st.integers(0, 2**32 - 1))
def test_inside_the_corridor_never_starts_a_deviation(offsets: list[float], seed: int) -> None:
    tr = Track("MT-001", NIGHT, np.random.default_rng(seed), sigma_m=0)
    fixes = []
    for i, d in enumerate(offsets):
        fixes.append(tr.fix(300 + 10 * i, d, 20.0))
        tr.t += 10
    assert phases(run(engine(), fixes), "route_deviation:P-001") == []


@BAND
@given(st.lists(st.floats(36.0, 120.0), min_size=1, max_size=120), st.integers(0, 2**32 - 1))
def test_outside_corridor_minus_band_never_ends_a_deviation(offsets: list[float], seed: int) -> None:
    tr = Track("MT-001", NIGHT, np.random.default_rng(seed), sigma_m=0)  # corridor 50, band 15
    fixes = list(tr.drive((300, 100), (900, 100), 90))  # 100 m off for 90 s: starts
    for i, d in enumerate(offsets):
        fixes.append(tr.fix(900 + 10 * i, d, 20.0))
        tr.t += 10
    assert phases(run(engine(), fixes), "route_deviation:P-001") == ["start"]


@BAND
@given(st.lists(st.floats(-200.0, 29.0), min_size=1, max_size=120), st.integers(0, 2**32 - 1))
def test_wandering_inside_the_exit_band_never_leaves_a_zone(outside_m: list[float], seed: int) -> None:
    tr = Track("PT-001", NIGHT, np.random.default_rng(seed), sigma_m=0)  # DW's west edge is x = 4000
    fixes = list(tr.park((4100, 1250), 70))  # dwell 60 s: enters
    for o in outside_m:
        fixes.append(tr.fix(4000 - o, 1250, 0.0))
        tr.t += 10
    assert phases(run(engine(), fixes), "zone:DW") == ["start"]


@cache
def busy_morning() -> tuple[Fix, ...]:
    """Four vehicles, most rules firing, interleaved in arrival order."""
    rng = np.random.default_rng(42)
    loaded = {"loaded": True, "cover_closed": True}
    muck = Track("MT-001", NIGHT, rng)
    fixes = list(muck.drive((300, 0), (1000, 0), 60, sensors=loaded))
    fixes += muck.drive((1000, 150), (2000, 150), 120, sensors={"loaded": True, "cover_closed": False})
    fixes += muck.park((2000, 20), 400, every=15, sensors=loaded)
    fixes += muck.drive((2000, 0), (5200, 0), 300, sensors={"loaded": False, "cover_closed": True, "lift": False})
    patrol = Track("PT-001", NIGHT, rng)
    fixes += patrol.drive((900, 0), (1450, 0), 45, every=3)
    fixes += patrol.drive((3900, 1250), (4200, 1250), 60)
    patrol.t += 400
    fixes += patrol.park((4200, 1250), 120, alarm=1)
    mixer = Track("MX-001", NIGHT, rng)
    fixes += mixer.drive((-500, 500), (600, 500), 60, every=2)
    fixes += mixer.park((2000, 500), 60, sensors={"drum": "ccw"})
    fixes += mixer.park((2000, 500), 60, sensors={"drum": "cw"})
    other = Track("XX-999", NIGHT, rng)
    fixes += other.drive((2500, 500), (2500, 2500), 200)
    return tuple(sorted(fixes, key=lambda f: f.ts))


def per_vehicle(events: list[Event]) -> dict[str, list[tuple[str, str, str, float]]]:
    out: dict[str, list[tuple[str, str, str, float]]] = defaultdict(list)
    for e in events:
        out[e.vehicle_id].append((e.kind, e.phase, e.key, e.ts))
    return dict(out)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 200), min_size=1, max_size=40))
def test_splitting_into_batches_gives_the_same_events(sizes: list[int]) -> None:
    fixes = list(busy_morning())
    whole = per_vehicle(run(engine(), fixes))
    assert len(whole) == 4 and sum(map(len, whole.values())) > 20
    eng, events, i, k = engine(), [], 0, 0
    while i < len(fixes):
        size = sizes[k % len(sizes)]
        events += eng.process(fixes[i : i + size], now=0.0).events
        i, k = i + size, k + 1
    assert per_vehicle(events) == whole
