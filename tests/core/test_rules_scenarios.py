"""Scenario tests: replay noisy fix sequences (σ ≈ 8 m, speed ± 1.5 km/h) and assert the exact events."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gpsd_server.core.rules.alarms import ALARM_NAMES
from gpsd_server.model import FixFlag
from tests.core.fixtures.rules_city import NIGHT, NOON, Track, engine, run, summary

LOADED = {"loaded": True, "cover_closed": True}


def track(vehicle_id: str = "MT-001", t: float = NIGHT, seed: int = 7) -> Track:
    return Track(vehicle_id, t, np.random.default_rng(seed))


# -- route deviation ---------------------------------------------------------


def test_driving_35m_beside_a_50m_corridor_for_10_minutes_raises_no_deviation() -> None:
    tr = track()
    fixes = list(tr.drive((300, 35), (3300, 35), 600, every=5, sensors=LOADED))
    events = run(engine(), fixes)
    assert summary(events, kinds={"route_deviation"}) == []


def test_deviation_starts_after_a_minute_off_route_and_ends_with_max_distance() -> None:
    tr = track()
    fixes = list(tr.drive((300, 0), (1000, 0), 60, sensors=LOADED))  # on route
    fixes += tr.drive((1000, 150), (2000, 150), 120, sensors=LOADED)  # 150 m off for 2 min
    fixes += tr.drive((2000, 0), (2600, 0), 60, sensors=LOADED)  # back on route
    events = [e for e in run(engine(), fixes) if e.kind == "route_deviation"]
    assert summary(events) == [
        ("route_deviation", "start", "route_deviation:P-001"),
        ("route_deviation", "end", "route_deviation:P-001"),
    ]
    start, end = events
    assert start.ts == NIGHT + 60 + 60 and start.route_id == "R1"
    assert end.ts == NIGHT + 180
    assert end.details["duration_s"] == 120
    assert 150 < end.details["max_distance_m"] < 180


def test_a_30_second_excursion_raises_no_deviation() -> None:
    tr = track()
    fixes = list(tr.drive((300, 0), (1000, 0), 60))
    fixes += tr.drive((1000, 150), (1300, 150), 30)
    fixes += tr.drive((1300, 0), (2000, 0), 60)
    assert summary(run(engine(), fixes), kinds={"route_deviation"}) == []


def test_time_inside_the_origin_site_does_not_count_as_deviation() -> None:
    tr = track()
    fixes = list(tr.park((-200, 0), 900, sensors={"loaded": False}))  # loading in the site, 200 m off the route
    assert summary(run(engine(), fixes), kinds={"route_deviation", "illegal_dumping"}) == []


# -- overspeed ---------------------------------------------------------------


def test_a_5_second_speed_blip_raises_no_overspeed() -> None:
    tr = track("MX-001")
    fixes = list(tr.drive((300, 500), (700, 500), 40, every=1))  # 36 km/h, limit 50
    fixes += [replace(f, speed_kmh=70.0) for f in tr.drive((700, 500), (750, 500), 5, every=1)]
    fixes += tr.drive((750, 500), (1100, 500), 35, every=1)
    assert summary(run(engine(), fixes), kinds={"overspeed"}) == []


def test_overspeed_starts_after_min_duration_and_ends_with_peak_and_duration() -> None:
    tr = track("MX-001")
    fixes = list(tr.drive((-900, 500), (-500, 500), 40, every=2))  # 36 km/h
    fixes += tr.drive((-500, 500), (600, 500), 60, every=2)  # 66 km/h for a minute
    fixes += tr.drive((600, 500), (900, 500), 30, every=2)  # 36 km/h
    events = [e for e in run(engine(), fixes) if e.kind == "overspeed"]
    assert summary(events) == [("overspeed", "start", "overspeed"), ("overspeed", "end", "overspeed")]
    start, end = events
    assert start.ts == NIGHT + 40 + 16 and start.details["limit_kmh"] == 50
    assert end.ts == NIGHT + 100 and end.details["duration_s"] == 60
    assert 66 < end.details["peak_kmh"] < 72


def test_speed_zone_limit_beats_the_class_limit() -> None:
    tr = track("PT-001")
    fixes = list(tr.drive((900, 0), (1450, 0), 45, every=3))  # 44 km/h; the zone allows 30
    fixes += tr.drive((1600, 0), (1700, 0), 30, every=3)  # 12 km/h outside
    events = [e for e in run(engine(), fixes) if e.kind == "overspeed"]
    assert summary(events) == [("overspeed", "start", "overspeed"), ("overspeed", "end", "overspeed")]
    assert events[0].details["limit_kmh"] == 30


# -- zones -------------------------------------------------------------------


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


# -- curfew, dumping, cover --------------------------------------------------


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


# -- offline, alarms, mixer delivery -------------------------------------------


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


# -- late fixes, restart -------------------------------------------------------


def test_late_fixes_are_flagged_and_move_no_state() -> None:
    eng = engine()
    tr = track("PT-001")
    fixes = list(tr.drive((1100, 0), (1300, 0), 30))
    run(eng, fixes)
    late = replace(fixes[0], ts=fixes[0].ts - 100, lon=fixes[0].lon + 0.1)
    result = eng.process([late], now=tr.t)
    assert result.fixes[0].flags & FixFlag.LATE and result.events == []
    assert eng.vehicles_in_zone("SZ") == {"PT-001"}


def test_restore_swallows_a_repeated_start_and_closes_what_did_not_come_back() -> None:
    eng = engine()
    tr = track("PT-001")
    eng.restore("PT-001", None, ["zone:SZ", "zone:G1", "overspeed", "alarm:sos"])
    events = run(eng, list(tr.drive((1100, 0), (1300, 0), 150)))
    assert summary(events) == [
        ("sos", "end", "alarm:sos"),
        ("overspeed", "end", "overspeed"),
    ]
    assert all(e.details == {"restored": True} for e in events)
