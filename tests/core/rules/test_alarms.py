"""Terminal alarm bits: replay noisy fix sequences (σ ≈ 8 m, speed ± 1.5 km/h) and assert the exact events."""

from __future__ import annotations

import numpy as np
from msgspec.structs import replace

from gpsd_server.core.rules.alarms import ALARM_NAMES
from gpsd_server.model import FixFlag
from tests.fixtures.city import NIGHT, Track, engine, run, summary

LOADED = {"loaded": True, "cover_closed": True}


def track(vehicle_id: str = "MT-001", t: float = NIGHT, seed: int = 7) -> Track:
    return Track(vehicle_id, t, np.random.default_rng(seed))


def test_alarm_bits_are_deduplicated_while_set() -> None:
    tr = track("MT-001")
    sos_and_power = 1 | 1 << 8
    fixes = list(tr.park((300, 0), 30, alarm=sos_and_power))
    fixes += tr.park((300, 0), 30, alarm=1 << 8)
    fixes += tr.park((300, 0), 30, alarm=1 << 1)  # terminal overspeed: left to the server's rule
    events = [e for e in run(engine(), fixes) if e.key.startswith("alarm:")]
    assert [(e.kind, e.phase, e.key, e.severity) for e in events] == [
        ("sos", "start", "alarm:sos", "critical"),
        ("tampering", "start", "alarm:main_power_cut", "critical"),
        ("sos", "end", "alarm:sos", "critical"),
        ("tampering", "end", "alarm:main_power_cut", "critical"),
    ]
    assert ALARM_NAMES[5] == "antenna_disconnected"


def test_alarm_on_an_invalid_position_still_counts_but_moves_no_geometry() -> None:
    tr = track("PT-001")
    fixes = [replace(f, flags=FixFlag.INVALID) for f in tr.park((1200, 0), 30, alarm=1)]
    events = run(engine(), fixes)
    assert summary(events) == [("sos", "start", "alarm:sos")]
