"""The fast path (fixes at rest skip most stages) gives exactly the events and state of the full path."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from gpsd_server.core.city import load_city
from gpsd_server.core.engine import Engine, Rest
from gpsd_server.core.geo import Projection
from gpsd_server.model import Fix, FixFlag
from tests.fixtures import city as rules_city
from tests.fixtures.city import NIGHT, TZ, Track, engine, run

# Places in the test city (metres): sites, route, speed zone and its edge, the
# prohibited zones, the dwell zone and its exit band, the plant, open grid, outside.
PLACES = (
    (-200, 0),
    (600, 0),
    (2500, 150),
    (1250, 0),
    (1010, 0),
    (985, 0),
    (2500, 1500),
    (2500, -1500),
    (4250, 1250),
    (4010, 1250),
    (3985, 1250),
    (5200, 0),
    (100, -2900),
    (100, -3100),
    (3000, 2500),
    (7000, 0),
)
SENSORS: tuple[dict[str, Any] | None, ...] = (
    None,
    {"loaded": True, "cover_closed": True},
    {"loaded": True, "cover_closed": False},
    {"loaded": False, "cover_closed": True, "lift": False},
    {"loaded": True, "lift": True},
    {"drum": "ccw"},
    {"drum": "cw"},
    {"loaded": True},
)
VEHICLES = ("MT-001", "MX-001", "PT-001", "XX-999")


def cycle(values: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Any]]:
    """A few values a leg cycles through, fix by fix (one value: steady)."""
    return st.lists(values, min_size=1, max_size=3)


# A leg: a place, how many fixes there and how far apart, and what each fix
# reports, cycling. Repeating the previous leg's place is likely, so that the
# vehicle rests in one zone set while speed, sensors or alarms change.
leg = st.tuples(
    st.one_of(st.just(-1), st.integers(0, len(PLACES) - 1)),  # -1: same place as the last leg
    st.integers(1, 30),
    st.sampled_from((1.0, 5.0, 10.0, 30.0, 200.0, 700.0)),
    cycle(st.sampled_from((None, 0.0, 3.0, 20.0, 28.0, 35.0, 45.0, 55.0, 95.0))),  # speed
    cycle(st.integers(0, len(SENSORS) - 1)),
    cycle(st.sampled_from((0, 0, 1, 1 | 32, 2, 1 << 13))),  # alarm DWORD (bit 13 is not watched)
    cycle(st.sampled_from((0, 0, 0x300))),  # status: load bits
    cycle(st.sampled_from((0, 0, 0, int(FixFlag.INVALID)))),
)


# Local start times just before P2's 07:00-09:00 schedule and the permit's 20:00-06:00 hours change.
STARTS = (NIGHT - 3600 * 15 - 300, NIGHT - 3600 * 13 - 300, NIGHT - 3600 * 2 - 300, NIGHT + 3600 * 8 - 300)


def fixes_for(vehicle_id: str, legs: list[tuple[Any, ...]], seed: int, start: float = STARTS[0]) -> list[Fix]:
    tr = Track(vehicle_id, start, np.random.default_rng(seed), sigma_m=8.0, speed_sigma=0.0)
    fixes, place = [], 0
    for where, count, every, speeds, sensors, alarms, statuses, flags in legs:
        place = place if where < 0 else where
        x, y = PLACES[place]
        for i in range(count):
            fixes.append(
                tr.fix(
                    x,
                    y,
                    speeds[i % len(speeds)],
                    sensors=SENSORS[sensors[i % len(sensors)]],
                    alarm=alarms[i % len(alarms)],
                    status=statuses[i % len(statuses)],
                    flags=flags[i % len(flags)],
                )
            )
            tr.t += every
    return fixes


def snapshot(eng: Engine, vehicle_id: str) -> dict[str, Any]:
    """Every stage state of the vehicle, comparable (sets sorted, nan as None)."""

    def plain(value: Any) -> Any:
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, (set, frozenset)):
            return sorted(value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return value

    vs = eng._vehicles[vehicle_id]
    return {"presence": plain(vs.presence), "link": plain(vs.link), **{n: plain(s) for n, s in vs.states.items()}}


def steady(place: int, count: int, every: float, speed: float | None, sensors: int = 0) -> tuple[Any, ...]:
    return (place, count, every, [speed], [sensors], [0], [0], [0])


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(VEHICLES),
    st.lists(leg, min_size=1, max_size=12),
    st.integers(0, 2**32 - 1),
    st.integers(1, 50),
    st.sampled_from(STARTS),
)
# Resting in P2 (patrol only, 07:00-09:00) while its schedule begins.
@example("PT-001", [steady(7, 20, 30.0, 20.0)], 1, 7, STARTS[0])
# A mixer leaves the plant, then rests in the open grid past delivery_max_s.
@example("MX-001", [steady(12, 3, 10.0, 20.0), steady(13, 12, 600.0, 20.0)], 1, 5, STARTS[0])
# Loaded with the cover open: resting while stopped, then moving in the same place.
@example("MT-001", [steady(14, 3, 10.0, 3.0, 2), steady(-1, 10, 10.0, 20.0, 2)], 1, 4, STARTS[2])
def test_fast_path_and_full_path_give_identical_events_and_state(
    vehicle_id: str, legs: list[tuple[Any, ...]], seed: int, batch: int, start: float
) -> None:
    fixes = fixes_for(vehicle_id, legs, seed, start)
    fast, full = engine(), Engine(city=rules_city.test_city(), tz=TZ, fast_path=False)
    assert run(fast, fixes, batch) == run(full, fixes, batch)
    assert snapshot(fast, vehicle_id) == snapshot(full, vehicle_id)
    assert fast.zones_of(vehicle_id) == full.zones_of(vehicle_id)
    for zone_id in ("CS1", "SZ", "P1", "P2", "DW", "DS1", "PL", "G1"):
        assert fast.vehicles_in_zone(zone_id) == full.vehicles_in_zone(zone_id)


@pytest.mark.parametrize("vehicle_id", VEHICLES)
def test_a_steady_drive_takes_the_fast_path(vehicle_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    taken = []
    matches = Rest.matches

    def counting(*args: Any) -> bool:
        result = matches(*args)
        taken.append(result)
        return result

    monkeypatch.setattr(Rest, "matches", counting)
    tr = Track(vehicle_id, NIGHT, np.random.default_rng(3))
    fixes = list(tr.drive((300, 0), (800, 0), 60, every=1, sensors={"loaded": True, "cover_closed": True}))
    run(engine(), fixes, batch=7)
    assert sum(taken) >= len(fixes) - 3


def test_a_forgotten_vehicle_is_judged_afresh_and_leaves_its_zones() -> None:
    """A worker gave the vehicle's partition away: no state, no presence, no tick."""
    from gpsd_server.core.rules import offline

    engine = Engine()
    engine.restore("V1", Fix("V1", 1000.0, 112.3, 28.5, speed_kmh=10.0))
    assert engine.knows("V1")
    engine.forget(["V1", "never-seen"])
    assert not engine.knows("V1")
    assert [e for e in engine.tick(1000.0 + 86400) if e.key == offline.KEY] == []


def test_a_new_projection_carries_anchors_and_held_suspects_over() -> None:
    """The city's geometry arrives after fixes were projected near the fleet in
    another UTM zone (a first load that failed): the vehicle's filter anchor and
    a suspect held across the swap are moved to the new projection, so the next
    fix is no jump and the released suspect lands in the zone it is in."""
    city = rules_city.test_city()

    def fixes() -> list[Fix]:
        track = Track("MT-001", NIGHT, np.random.default_rng(5), sigma_m=0.0, speed_sigma=0.0)
        out = list(track.drive((0, 0), (1000, 0), 100))  # along the route
        out.append(track.fix(2500, 1500, 30.0))  # 2.1 km in 10 s: held as a suspect ...
        track.t += 10
        out += list(track.drive((2510, 1500), (2800, 1500), 100))  # ... then confirmed: a real move, into P1
        return out

    track = fixes()
    split = 11  # the swap comes right after the suspect
    reference = Engine(city=city, tz=TZ, epsg=32649)
    want = [e for f in (track[:split], track[split:]) for e in reference.process(f, f[-1].ts).events]
    swapped = Engine(city=city, tz=TZ, epsg=32650)  # the fleet's projection, 6 degrees off
    got = swapped.process(track[:split], track[split - 1].ts).events
    assert swapped.projection is not None and swapped.projection.epsg == 32650
    swapped.reload(city, swapped.build_geometry(city, Projection(32649)))
    result = swapped.process(track[split:], track[-1].ts)
    got += result.events
    assert [(e.kind, e.phase, e.key, e.ts) for e in got] == [(e.kind, e.phase, e.key, e.ts) for e in want]
    assert ("forbidden_zone", "start") in {(e.kind, e.phase) for e in got}
    assert not any(f.flags & FixFlag.JUMP for f in result.fixes)


def _city_without(*zone_ids: str) -> Any:
    features = [f for f in rules_city.city_features() if f["properties"]["id"] not in zone_ids]
    vehicles = ("vehicles.json", json.dumps(rules_city.VEHICLES))
    return load_city([("city.geojson", rules_city.collection(*features))], vehicles)


@pytest.mark.parametrize("batch", [1, 5])
def test_a_zone_removed_while_vehicles_are_parked_in_it(batch: int) -> None:
    """An operator deletes the geofence file of a zone that vehicles stand in:
    a parked vehicle's next fixes reuse the place it stopped at, whose zones
    were those of the city before (the server died on the lookup of the
    removed zone's speed limit, 2026-12-06). They are judged in the city now
    in force: the vehicle leaves the zone that is gone, and a zone added
    around it is entered without the vehicle moving."""
    eng = engine()
    track = Track("MT-001", NIGHT, np.random.default_rng(7), sigma_m=8.0)
    before = list(track.drive((600, 0), (1250, 0), 60)) + list(track.park((1250, 0), 120))
    entered = [e for e in run(eng, before, batch) if e.kind == "zone" and e.zone_id == "SZ"]
    assert [(e.phase, e.zone_id) for e in entered] == [("start", "SZ")]
    eng.reload(_city_without("SZ"))
    left = [e for e in run(eng, list(track.park((1250, 0), 120)), batch) if e.kind == "zone" and e.zone_id == "SZ"]
    assert [(e.phase, e.zone_id) for e in left] == [("end", "SZ")]
    eng.reload(rules_city.test_city())  # SZ is back, around the parked vehicle
    back = [e for e in run(eng, list(track.park((1250, 0), 120)), batch) if e.kind == "zone" and e.zone_id == "SZ"]
    assert [(e.phase, e.zone_id) for e in back] == [("start", "SZ")]
