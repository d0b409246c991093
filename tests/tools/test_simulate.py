"""tools/sim: deterministic, normal driving breaks no rule, injections show up in the truth, noise as set."""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gpsd_server.core.decode.native import decode_native
from gpsd_server.errors import DecodeError
from gpsd_server.settings import IngestSettings
from tools.sim import city as city_mod
from tools.sim.clock import is_active, parse_time
from tools.sim.fleet import SPEED_LIMIT_KMH
from tools.sim.inject import ALERTING_KINDS
from tools.sim.motion import Drive
from tools.sim.simulation import Publication, SimConfig, Simulation

REPO = Path(__file__).resolve().parents[2]
DAY = parse_time("2025-06-02T10:00:00+08:00")  # a Monday: day permits open, centre closed
NIGHT = parse_time("2025-06-02T23:00:00+08:00")
SMALL = {"muck_truck": 40, "mixer_truck": 20, "patrol": 10, "other": 5}


@cache
def city() -> city_mod.City:
    return city_mod.load(REPO / "geofences")


def run(cfg: SimConfig) -> tuple[Simulation, list[Publication]]:
    sim = Simulation(city(), cfg)
    pubs: list[Publication] = []
    while not sim.done():
        pubs.extend(sim.advance())
    sim.close()
    return sim, pubs


@cache
def all_injected() -> tuple[Simulation, list[Publication]]:
    kinds = (*ALERTING_KINDS, "duplicate", "late", "malformed")
    return run(SimConfig(start=DAY, duration_s=900, seed=7, counts=SMALL, inject=kinds))


def fixes_of(pubs: list[Publication], vehicle_id: str) -> list[dict[str, Any]]:
    out = []
    for p in pubs:
        if p.topic == f"fleet/{vehicle_id}/fix":
            try:
                doc = json.loads(p.payload)
            except ValueError:
                continue
            items = doc if isinstance(doc, list) else [doc]
            out.extend(f for f in items if "ts" in f and abs(f["lat"]) <= 90)  # not the malformed ones
    return out


def test_same_seed_same_output_other_seed_other_output() -> None:
    cfg = SimConfig(start=DAY, duration_s=120, seed=3, counts=SMALL, inject=("overspeed", "malformed"))
    a, b = run(cfg)[1], run(cfg)[1]
    assert a == b and len(a) > 100
    c = run(SimConfig(start=DAY, duration_s=120, seed=4, counts=SMALL))[1]
    assert [p.payload for p in c] != [p.payload for p in a]


def test_every_kind_is_injected_on_its_vehicle_within_the_run() -> None:
    sim, _ = all_injected()
    found = {t["injected"] for t in sim.truth}
    assert found == {*ALERTING_KINDS, "duplicate", "late", "malformed"}, sim.warnings
    for t in sim.truth:
        inj = sim.injections[t["injection"] - 1]
        assert t["vehicle_id"] == inj.vehicle_id
        assert DAY <= parse_time(t["start"]) <= parse_time(t["end"]) <= DAY + 900
    kinds = [(t["injected"], t["kind"]) for t in sim.truth]
    assert ("forbidden_zone", "route_deviation") in kinds  # a truck in the centre has left its route too


def test_truth_times_match_the_published_fixes() -> None:
    sim, pubs = all_injected()
    for t in sim.truth:
        start, end = parse_time(t["start"]), parse_time(t["end"])
        fixes = fixes_of(pubs, t["vehicle_id"])
        inside = [f for f in fixes if start <= parse_time(f["ts"]) <= end]
        before = [f for f in fixes if parse_time(f["ts"]) < start - 30]
        kind = t["kind"]
        if kind == "overspeed":
            limit = t["detail"]["limit_kmh"]
            assert inside[0]["speed_kmh"] > limit and inside[-1]["speed_kmh"] > limit
            assert all(f["speed_kmh"] <= limit for f in before)
        elif kind == "power_cut":
            assert inside and all(f["alarm"] & (1 << 8) for f in inside)
            assert not any(f["alarm"] for f in before)
        elif kind == "body_lift":
            assert inside and all(f["sensors"]["lift"] and f["speed_kmh"] == 0 for f in inside)
        elif kind == "drum_ccw":
            assert inside and all(f["sensors"]["drum"] == "ccw" for f in inside)
        elif kind == "illegal_dumping":
            assert end - start >= 300 and all(f["speed_kmh"] == 0 and f["sensors"]["loaded"] for f in inside)
        elif kind == "uncovered_load":
            assert inside[0]["sensors"]["cover_closed"] is False and inside[0]["speed_kmh"] > 0
        elif kind == "offline":
            assert end - start >= 600
            assert [parse_time(f["ts"]) for f in inside] in ([start, end], [start])
        elif kind in ("curfew", "route_deviation", "forbidden_zone"):
            assert len(inside) >= 6


def test_payloads_pass_the_server_decoder_except_the_malformed_ones() -> None:
    sim, pubs = all_injected()
    malformed = {
        (t["vehicle_id"], parse_time(t["start"])): t["detail"]["reason"] for t in sim.truth if t["kind"] == "malformed"
    }
    rejected = {}
    for p in pubs:
        vid = p.topic.split("/")[1]
        for item in decode_native(vid, p.payload, now=p.ts, limits=IngestSettings()):
            if isinstance(item, DecodeError):
                rejected[(vid, p.ts)] = item.reason
    assert rejected == malformed


def test_normal_driving_breaks_no_rule() -> None:
    for start in (DAY, NIGHT):
        sim = Simulation(city(), SimConfig(start=start, duration_s=900, seed=11, counts=SMALL))
        check_compliance(sim)


def check_compliance(sim: Simulation) -> None:
    """A small oracle on the true state, every simulated second."""
    centre = sim.city.zones["prohibited-centre"]
    schools = sim.city.of_kind("speed_zone")
    stopped_since: dict[str, float] = {}
    moved: set[str] = set()
    while not sim.done():
        sim.advance()
        for v in sim.vehicles:
            speed = v.speed_kmh
            assert speed <= SPEED_LIMIT_KMH.get(v.cls, 50.0) + 1e-6, (v.id, speed)
            if speed > 30 and any(z.contains(v.xy) for z in schools):
                pytest.fail(f"{v.id} at {speed:.0f} km/h in a school zone")
            if speed > 0:
                moved.add(v.id)
            if v.cls != "muck_truck":
                continue
            permit = v.info["permits"][0]
            if speed > 0:
                assert is_active(sim.t, permit["hours"]), f"{v.id} moves outside its hours"
                if centre.contains(v.xy):
                    assert not is_active(sim.t, centre.props["schedule"]), f"{v.id} in the closed centre"
            if isinstance(v.activity, Drive):
                rid = permit["routes"][0]
                assert sim.city.route_lines[rid].distance(sim.point(v.xy)) < 1.0, f"{v.id} off its route"
            loaded_stop = speed == 0 and v.loaded and sim.city.site_at(v.xy) is None
            since = stopped_since.setdefault(v.id, sim.t) if loaded_stop else stopped_since.pop(v.id, None)
            assert since is None or sim.t - since < 300, f"{v.id} loaded and stopped outside a site for 5 min"
    assert len(moved) > len(sim.vehicles) / 3


def test_forbidden_zone_cannot_be_injected_when_the_centre_is_open() -> None:
    sim = Simulation(city(), SimConfig(start=NIGHT, duration_s=60, counts=SMALL, inject=("forbidden_zone", "curfew")))
    assert any("forbidden_zone" in w for w in sim.warnings)
    assert [i.kind for i in sim.injections] == ["curfew"]


@pytest.mark.parametrize("sigma", [8.0, 20.0])
def test_noise_has_the_configured_sigma(sigma: float) -> None:
    """Parked trucks stand still: their fixes scatter around the true point with σ per axis."""
    sim = Simulation(city(), SimConfig(start=DAY, duration_s=600, seed=5, sigma_m=sigma, counts=SMALL))
    errors: dict[str, list[tuple[float, float]]] = defaultdict(list)
    truth = {}
    while not sim.done():
        for p in sim.advance():
            vid = p.topic.split("/")[1]
            v = sim.by_id[vid]
            if v.cls == "muck_truck" and not v.ignition:
                doc = json.loads(p.payload)
                x, y = sim.city.frame.metric(doc["lon"], doc["lat"])
                truth.setdefault(vid, v.xy)
                errors[vid].append((x - v.xy[0], y - v.xy[1]))
    err = np.array([e for es in errors.values() for e in es])
    assert len(err) > 1000
    assert np.abs(err.mean(axis=0)).max() < sigma * 0.1
    assert err.std(axis=0) == pytest.approx([sigma, sigma], rel=0.06)
    assert math.isclose(float(np.median(np.hypot(*err.T))), sigma * math.sqrt(2 * math.log(2)), rel_tol=0.08)


def test_goto_drives_the_car_to_the_point_keeps_it_there_then_back_to_its_duties() -> None:
    from gpsd_server.core.geo import haversine_m
    from tools.simulate import parse_goto

    place = (112.3585, 28.5855)
    sim = Simulation(city(), SimConfig(start=DAY, duration_s=None, seed=11, counts={"patrol": 3}, sigma_m=0.0))
    metres = sim.goto("PC-002", *place, hold_s=120)
    assert metres > 100
    seen: list[tuple[float, float, float]] = []
    for _ in range(int(metres / 5) + 400):  # slower than 18 km/h on average would not get there
        for p in sim.advance():
            if p.topic == "fleet/PC-002/fix":
                doc = json.loads(p.payload)
                seen.append((parse_time(doc["ts"]), haversine_m(*place, doc["lon"], doc["lat"]), doc["speed_kmh"]))
    there = [s for s in seen if s[1] < 5 and s[2] == 0]
    assert there, "the car never got there"
    assert 100 <= there[-1][0] - there[0][0] <= 130  # stayed for the hold, stopped
    assert seen[-1][1] > 50  # and went on afterwards
    assert parse_goto("PC-001:112.35,28.57:60") == ("PC-001", 112.35, 28.57, 60.0)
    for bad in ("PC-001", "PC-001:112.35", "PC-001:500,28:1", ":1,2"):
        with pytest.raises(argparse.ArgumentTypeError, match="VEHICLE:LON,LAT"):
            parse_goto(bad)
