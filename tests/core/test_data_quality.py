"""Evidence-grade data (issue 12): real, messy GPS through the filter stage and the
rules. Seeded noisy tracks; mileage is computed from the stored flags exactly as
the reports do (usable fixes only, late ones included, in fix-time order)."""

from __future__ import annotations

import numpy as np
import pytest
from msgspec.structs import replace

from gpsd_server.core.engine import Engine
from gpsd_server.core.history import UNUSABLE_FLAGS, track_stats
from gpsd_server.model import Event, Fix, FixFlag
from gpsd_server.settings import FilterSettings
from tests.fixtures import city as test_city_module
from tests.fixtures.city import NIGHT, NOON, TZ, Track, lonlat, run, summary

ALERTS = {"forbidden_zone", "overspeed", "route_deviation", "curfew", "illegal_dumping", "uncovered_load"}


def engine() -> Engine:
    return Engine(city=test_city_module.test_city(), tz=TZ)


def processed(eng: Engine, fixes: list[Fix], batch: int = 25) -> tuple[list[Fix], list[Event]]:
    """What the pipeline would store (flags decided, corrections applied) and the events."""
    stored: dict[tuple[str, float], Fix] = {}
    events: list[Event] = []
    for i in range(0, len(fixes), batch):
        part = fixes[i : i + batch]
        result = eng.process(part, now=part[-1].ts)
        for f in result.fixes:
            stored[(f.vehicle_id, f.ts)] = f
        for c in result.corrections:
            stored[(c.vehicle_id, c.ts)] = replace(stored[(c.vehicle_id, c.ts)], flags=c.flags)
        events += result.events
    return sorted(stored.values(), key=lambda f: f.ts), events


def km(fixes: list[Fix]) -> float:
    usable = [f for f in fixes if not f.flags & UNUSABLE_FLAGS and not f.flags & FixFlag.NOFIX]
    ts = np.array([f.ts for f in usable])
    lon, lat = np.array([f.lon for f in usable]), np.array([f.lat for f in usable])
    speed = np.array([f.speed_kmh if f.speed_kmh is not None else np.nan for f in usable])
    return track_stats(ts, lon, lat, speed, moving_kmh=5.0, gap_s=300.0).distance_km


def track(vehicle_id: str, t: float = NOON, seed: int = 11, sigma_m: float = 8.0) -> Track:
    return Track(vehicle_id, t, np.random.default_rng(seed), sigma_m=sigma_m)


# -- parked drift -------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_an_hour_parked_with_drift_accrues_almost_nothing_and_raises_nothing(seed: int) -> None:
    tr = Track("MT-001", NOON, np.random.default_rng(seed), sigma_m=12.0, speed_sigma=0.0)
    rng = np.random.default_rng(seed + 100)
    on_route = (2000, 20)  # parked beside its approved route, at noon, ignition off
    fixes = [replace(f, speed_kmh=float(rng.uniform(0, 2)), ignition=False) for f in tr.park(on_route, 3600)]
    stored, events = processed(engine(), fixes)
    assert km(stored) < 0.3  # the naive sum of the wander is several km
    assert km([replace(f, flags=0) for f in stored]) > 1.0  # (what it would be without the filter)
    assert [e for e in events if e.kind != "zone"] == []
    assert sum(1 for f in stored if f.flags & FixFlag.DRIFT) > 300


def test_drift_does_not_make_a_parked_truck_flap_across_a_zone_edge() -> None:
    tr = Track("PT-001", NIGHT, np.random.default_rng(5), sigma_m=12.0, speed_sigma=0.0)
    fixes = [replace(f, speed_kmh=0.5) for f in tr.park((4000, 1250), 3600)]  # on DW's west edge
    _, events = processed(engine(), fixes)
    assert [e.phase for e in events if e.key == "zone:DW"] in ([], ["start"])


# -- outliers ---------------------------------------------------------------------------


def test_one_multipath_fix_inside_a_prohibited_zone_raises_nothing_and_barely_changes_the_trip() -> None:
    tr = track("MT-001", t=NIGHT)  # P1 (muck trucks prohibited) lies 1-2 km north of the road
    fixes = list(tr.drive((300, 0), (4800, 0), 600))  # 27 km/h, inside the permit's hours
    clean_km = km(processed(engine(), fixes)[0])
    k = len(fixes) // 2
    x_mid = 300 + (4800 - 300) * k / len(fixes)
    lon, lat = lonlat(2500, 1500)  # 1.5 km off the road, inside P1
    noisy = [*fixes[:k], replace(fixes[k], lon=lon, lat=lat), *fixes[k + 1 :]]
    stored, events = processed(engine(), noisy)
    assert summary(events, kinds=ALERTS) == []
    assert stored[k].flags & FixFlag.JUMP and stored[k].flags & FixFlag.FILTERED
    assert abs(km(stored) - clean_km) / clean_km < 0.03
    assert km([replace(f, flags=0) for f in stored]) > clean_km + 2.5  # without the filter: +3 km
    assert 300 < x_mid < 4800


def test_two_multipath_fixes_in_a_row_inside_a_prohibited_zone_raise_nothing() -> None:
    """A burst of two bad fixes that agree with each other (the same reflection)
    looked like a real move while ``confirm_fixes`` was 2: a forbidden-zone alert
    1.5 km off the road, and +3 km of mileage. The default now waits for a third."""
    tr = track("MT-001", t=NIGHT)
    fixes = list(tr.drive((300, 0), (4800, 0), 600))
    clean_km = km(processed(engine(), fixes)[0])
    k = len(fixes) // 2
    burst = []
    for j in (0, 1):  # 1.5 km north of the road, inside P1, 30 m apart: consistent with each other
        lon, lat = lonlat(2500 + 30 * j, 1500)
        burst.append(replace(fixes[k + j], lon=lon, lat=lat))
    noisy = [*fixes[:k], *burst, *fixes[k + 2 :]]
    eng = engine()
    stored, events = processed(eng, noisy)
    assert summary(events, kinds=ALERTS) == []
    assert all(stored[k + j].flags & FixFlag.JUMP for j in (0, 1))
    assert abs(km(stored) - clean_km) / clean_km < 0.03
    assert eng.filter_counts.total["outlier_confirmed"] == 2 and eng.filter_counts.total["released"] == 0
    # The limit, as documented: a burst as long as confirm_fixes is taken for a real move.
    two = Engine(city=test_city_module.test_city(), tz=TZ, filter_settings=FilterSettings(confirm_fixes=2))
    assert summary(processed(two, noisy)[1], kinds=ALERTS) == [
        ("forbidden_zone", "start", "forbidden:P1"), ("forbidden_zone", "end", "forbidden:P1"),
    ]  # fmt: skip


def test_poor_hdop_and_too_few_satellites_are_outliers_with_their_reason() -> None:
    eng = engine()
    tr = track("PT-001")
    fixes = list(tr.drive((0, 500), (500, 500), 60))
    fixes[2] = replace(fixes[2], hdop=35.0)
    fixes[4] = replace(fixes[4], sats=2)
    stored, _ = processed(eng, fixes)
    assert stored[2].flags & FixFlag.FILTERED and stored[4].flags & FixFlag.FILTERED
    assert eng.filter_counts.total["outlier_hdop"] == 1 and eng.filter_counts.total["outlier_sats"] == 1


# -- real sudden moves are kept ----------------------------------------------------------


def test_a_truck_towed_2_km_with_its_terminal_asleep_is_a_real_move_not_an_outlier() -> None:
    eng = engine()
    tr = track("MT-001", seed=3)
    fixes = list(tr.park((300, 0), 120))
    tr.t += 20  # asleep for 20 s while towed 2 km: 360 km/h implied
    fixes += list(tr.park((2300, 0), 120))
    stored, _ = processed(eng, fixes, batch=5)
    after = [f for f in stored if f.ts > fixes[11].ts]
    assert all(not f.flags & FixFlag.JUMP for f in after), "the confirmed move must clear its jump flags"
    assert eng.filter_counts.total["released"] >= 1
    assert 1.8 < km(stored) < 2.3
    assert eng.zones_of("MT-001") == ("G1",) and eng.vehicles_in_zone("G1") == {"MT-001"}


def test_a_terminal_that_reports_every_5_minutes_is_not_filtered() -> None:
    tr = track("PT-001", seed=4)
    fixes = list(tr.drive((0, 500), (5000, 500), 3000, every=300.0))  # 6 km/h, 500 m between fixes
    stored, _ = processed(engine(), fixes)
    assert all(not f.flags & UNUSABLE_FLAGS for f in stored)
    assert km(stored) > 4.4


# -- blind-area backfill --------------------------------------------------------------------


def deviation_and_backfill(batch_backfill: int) -> tuple[Engine, list[Event], list[Fix]]:
    eng = engine()
    tr = Track("MT-001", NIGHT, np.random.default_rng(9), sigma_m=6.0)
    loaded = {"loaded": True, "cover_closed": True}
    before = list(tr.drive((300, 0), (1000, 0), 60, sensors=loaded))  # on route
    dark = list(tr.drive((1000, 0), (1000, 260), 60, sensors=loaded))  # leaves the corridor
    dark += tr.drive((1000, 260), (2000, 260), 120, sensors=loaded)  # 260 m off for 2 min
    dark += tr.drive((2000, 260), (2000, 0), 60, sensors=loaded)  # back
    after = list(tr.drive((2000, 0), (3000, 0), 90, sensors=loaded))  # live again, on route
    events = run(eng, before + after)
    assert summary(events, kinds={"route_deviation"}) == []  # live, nothing to see
    received = after[-1].ts + 30
    blind = [replace(f, flags=f.flags | FixFlag.BACKFILL, received_at=received) for f in dark]
    for i in range(0, len(blind), batch_backfill):
        events += eng.process(blind[i : i + batch_backfill], now=received).events
    return eng, events, blind


@pytest.mark.parametrize("pieces", [100, 7])
def test_a_deviation_that_exists_only_in_a_backfill_batch_is_raised_once_flagged_backfill(pieces: int) -> None:
    _, events, _ = deviation_and_backfill(pieces)
    dev = [e for e in events if e.kind == "route_deviation"]
    assert [e.phase for e in dev] == ["start", "end"], summary(events)
    start, end = dev
    assert start.key == end.key and start.key.startswith("route_deviation:P-001@backfill:")
    assert start.details["backfill"] is True and start.details["delay_s"] > 0
    assert 250 < end.details["max_distance_m"] < 290


def test_backfill_does_not_move_the_live_state_or_raise_live_alerts_again() -> None:
    eng, events, blind = deviation_and_backfill(100)
    assert eng.zones_of("MT-001") == ("G1",)
    again = eng.process(blind[:20], now=blind[-1].received_at + 5).events
    assert again == []  # the same backfill again: nothing new
    # The live fixes showed a 4-minute silence while moving: recorded as offline
    # (start at the last fix before, end at the first after), and it stays.
    assert [(e.kind, e.phase) for e in events if e.kind == "offline"] == [("offline", "start"), ("offline", "end")]


def test_backfilled_fixes_are_stored_usable_so_the_detour_counts_in_the_mileage() -> None:
    eng = engine()
    tr = Track("MT-001", NIGHT, np.random.default_rng(9), sigma_m=6.0)
    before = list(tr.drive((300, 0), (1000, 0), 60))
    dark = list(tr.drive((1000, 0), (1000, 260), 60))
    dark += tr.drive((1000, 260), (2000, 260), 120)
    dark += tr.drive((2000, 260), (2000, 0), 60)
    after = list(tr.drive((2000, 0), (3000, 0), 90))
    live, _ = processed(eng, before + after)
    late, _ = processed(eng, dark)
    assert all(f.flags & FixFlag.LATE for f in late)
    stored = sorted(live + late, key=lambda f: f.ts)
    assert 2.9 < km(stored) < 3.4  # 700 + 260 + 1000 + 260 + 1000 m; without the backfill: ~2.5


# -- alarms without a fix -----------------------------------------------------------------


def test_an_sos_without_a_fix_is_raised_at_the_last_known_position() -> None:
    eng = engine()
    tr = track("PT-001", seed=8)
    fixes = list(tr.drive((0, 500), (1000, 500), 120))
    last = fixes[-1]
    tunnel = Fix("PT-001", tr.t + 30, 0.0, 0.0, received_at=tr.t + 30, alarm=1, flags=int(FixFlag.NOFIX))
    _, events = processed(eng, [*fixes, tunnel])
    [sos] = [e for e in events if e.kind == "sos"]
    assert (sos.phase, sos.ts) == ("start", tunnel.ts)
    assert abs(sos.lon - last.lon) < 1e-6 and abs(sos.lat - last.lat) < 1e-6
    assert sos.details["position"] == "last_known"


def test_an_sos_before_any_fix_has_no_position_but_is_raised() -> None:
    tunnel = Fix("PT-001", NIGHT, 0.0, 0.0, received_at=NIGHT, alarm=1, flags=int(FixFlag.NOFIX))
    [sos] = [e for e in engine().process([tunnel], NIGHT).events if e.kind == "sos"]
    assert sos.lon != sos.lon and sos.details["position"] == "unknown"


# -- alerts that stand as evidence --------------------------------------------------------


def test_an_overspeed_in_a_speed_zone_names_the_zone_and_a_class_limit_says_so() -> None:
    tr = track("PT-001", t=NIGHT)
    fixes = list(tr.drive((900, 0), (1450, 0), 45, every=3))  # 44 km/h in SZ (30)
    fixes += tr.drive((1600, 0), (1700, 0), 30, every=3)
    start, end = [e for e in run(engine(), fixes) if e.kind == "overspeed"]
    assert start.zone_id == end.zone_id == "SZ"
    assert start.details["limit_kmh"] == 30 and start.details["limit_source"] == "zone"
    tr = track("MX-001", t=NIGHT)
    fixes = list(tr.drive((-900, 500), (-500, 500), 40, every=2))
    fixes += tr.drive((-500, 500), (600, 500), 60, every=2)  # 66 km/h, class limit 50
    fixes += tr.drive((600, 500), (900, 500), 30, every=2)
    [start, _] = [e for e in run(engine(), fixes) if e.kind == "overspeed"]
    assert start.zone_id is None and start.details["limit_source"] == "class"


def test_the_filter_can_be_switched_off() -> None:
    eng = Engine(city=test_city_module.test_city(), tz=TZ, filter_settings=FilterSettings(enabled=False))
    tr = Track("MT-001", NOON, np.random.default_rng(1), sigma_m=12.0, speed_sigma=0.0)
    stored, _ = processed(eng, [replace(f, speed_kmh=1.0) for f in tr.park((3000, 2500), 600)])
    assert all(f.flags == 0 for f in stored)


def test_late_fixes_outside_every_kept_gap_are_still_filtered() -> None:
    eng = Engine(city=test_city_module.test_city(), tz=TZ)
    tr = Track("MT-001", NOON, np.random.default_rng(2), sigma_m=12.0, speed_sigma=0.0)
    old = [replace(f, speed_kmh=1.0, ignition=False) for f in tr.park((2000, 20), 1800)]
    newer = Fix("MT-001", tr.t + 3600, *lonlat(2000, 20), received_at=tr.t + 3600, speed_kmh=0.0)
    eng.process([newer], now=newer.ts)  # the vehicle is known from later on (a restart, a long-past upload)
    stored, events = processed(eng, old)
    assert all(f.flags & FixFlag.LATE for f in stored) and events == []
    assert km(stored) < 0.15  # drift of the late stream left out too
