"""After a restart the engine rebuilds, from the last stored fix and the alerts
still open, the state that decides each end event: nothing is raised twice,
no end is missed, and a new episode after the restart is a new alert."""

from __future__ import annotations

import numpy as np
from msgspec.structs import replace

from gpsd_server.core.rules.base import OpenAlert
from gpsd_server.model import FixFlag
from tests.fixtures.city import NIGHT, Track, engine, lonlat, run, summary


def track(vehicle_id: str = "PT-001", t: float = NIGHT, seed: int = 7) -> Track:
    return Track(vehicle_id, t, np.random.default_rng(seed))


def opened(key: str, kind: str, t: float, at: tuple[float, float] = (1200, 0), **more: object) -> OpenAlert:
    lon, lat = lonlat(*at)
    severity = (
        "critical" if kind in ("sos", "tampering", "illegal_dumping") else "info" if kind == "zone" else "warning"
    )
    return OpenAlert(key, kind, severity, t, lon, lat, **more)  # type: ignore[arg-type]


def test_late_fixes_are_flagged_and_move_no_state() -> None:
    eng = engine()
    tr = track()
    fixes = list(tr.drive((1100, 0), (1300, 0), 30))
    run(eng, fixes)
    late = replace(fixes[0], ts=fixes[0].ts - 100, lon=fixes[0].lon + 0.1)
    result = eng.process([late], now=tr.t)
    assert result.fixes[0].flags & FixFlag.LATE and result.events == []
    assert eng.vehicles_in_zone("SZ") == {"PT-001"}


def test_open_alerts_come_back_as_state_so_nothing_is_raised_twice_and_ends_are_kept() -> None:
    eng = engine()
    t0 = NIGHT - 600
    eng.restore(
        "PT-001",
        None,
        [
            opened("zone:SZ", "zone", t0, zone_id="SZ"),
            opened("zone:G1", "zone", t0, zone_id="G1"),
            opened("overspeed", "overspeed", t0, zone_id="SZ", details={"limit_kmh": 30, "speed_kmh": 44.0}),
            opened("alarm:sos", "sos", t0),
        ],
    )
    assert eng.vehicles_in_zone("SZ") == {"PT-001"}
    events = run(eng, list(track().drive((1100, 0), (1300, 0), 150)))  # 4.8 km/h inside SZ, SOS bit clear
    assert summary(events) == [("overspeed", "end", "overspeed"), ("sos", "end", "alarm:sos")]
    speed_end, _ = events
    assert speed_end.zone_id == "SZ" and speed_end.details["limit_kmh"] == 30
    assert speed_end.details["started_at"] == t0 and speed_end.details["peak_kmh"] >= 44.0


def test_an_alarm_set_before_the_restart_cleared_and_set_again_is_two_alerts() -> None:
    eng = engine()
    eng.restore("MT-001", None, [opened("alarm:sos", "sos", NIGHT - 60, at=(300, 0))])
    tr = track("MT-001")
    fixes = list(tr.park((300, 0), 30, alarm=1)) + list(tr.park((300, 0), 30)) + list(tr.park((300, 0), 30, alarm=1))
    events = [e for e in run(eng, fixes) if e.key == "alarm:sos"]
    assert [(e.phase, e.ts) for e in events] == [("end", fixes[3].ts), ("start", fixes[6].ts)]


def test_an_open_alert_no_rule_owns_any_more_is_ended_at_the_next_fix() -> None:
    eng = engine()
    eng.restore("PT-001", None, [opened("zone:GONE", "zone", NIGHT - 60, zone_id="GONE")])
    events = [e for e in run(eng, list(track().park((3000, 2500), 20))) if e.key == "zone:GONE"]
    assert summary(events) == [("zone", "end", "zone:GONE")]
    assert events[0].details == {"restored": True}


def test_restore_sets_the_late_cut_off_and_the_offline_clock() -> None:
    eng = engine()
    last = next(track().park((0, 500), 10))
    eng.restore("PT-001", last, [opened("offline", "offline", last.ts)])
    earlier = replace(last, ts=last.ts - 5)
    assert eng.process([earlier], now=last.ts).fixes[0].flags & FixFlag.LATE
    later = replace(last, ts=last.ts + 30)
    [online] = [e for e in eng.process([later], now=later.ts).events if e.key == "offline"]
    assert (online.kind, online.phase) == ("offline", "end")
