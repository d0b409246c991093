"""Injected violations and their ground truth.

An ``Injection`` waits until its vehicle is in a state where the violation
makes sense (a loaded truck on the open road, a truck on the ring road while
the centre is closed, ...), then changes what the vehicle does: a detour, a
stop, a speed or sensor override on a stretch of road, a silence or alarm on
the wire. On every fix it is asked which violations the vehicle is committing
right now; the first and last such fix time make the ground-truth interval.
Truth is measured on the true (noise-free) state, so it says what happened,
not what a rule engine may conclude from noisy fixes.

Violation kinds (``KINDS``) are the simulator's own names; tools/truth_compare.py
maps them to the server's alert kinds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from shapely.geometry import Point

from . import clock
from .city import City
from .fleet import SPEED_LIMIT_KMH, Planner, Vehicle
from .geo import Xy
from .motion import Drive, Hold, Stay, Stretch


class Simulation(Protocol):
    """What an injection needs of the running simulation (simulation.py drives the injections)."""

    city: City
    planner: Planner

    def point(self, xy: Xy) -> Point: ...


DRIVING_KINDS = (
    "route_deviation",
    "forbidden_zone",
    "overspeed",
    "curfew",
    "illegal_dumping",
    "body_lift",
    "uncovered_load",
    "drum_ccw",
)
WIRE_KINDS = ("offline", "power_cut", "duplicate", "late", "malformed")
KINDS = DRIVING_KINDS + WIRE_KINDS
ALERTING_KINDS = KINDS[:10]  # duplicate, late and malformed fixes are rejected or stored, never alerted

DETOUR_OFFSET_M, DETOUR_LENGTH_M = 250.0, 1200.0
DUMP_STOP_S, LIFT_STOP_S, DRUM_STOP_S = 390.0, 180.0, 150.0
OVERSPEED_BY_KMH, STRETCH_M = 15.0, 1500.0
POWER_CUT_S = 60.0
LATE_HELD_FIXES = 3


@dataclass
class Injection:
    id: int
    kind: str
    due: float
    vehicle_id: str | None = None
    applied_at: float | None = None
    finished: bool = False
    state: dict[str, Any] = field(default_factory=dict)
    truth: dict[str, list[float]] = field(default_factory=dict)  # kind -> [start, end]
    detail: dict[str, Any] = field(default_factory=dict)

    def record(self, kind: str, ts: float) -> None:
        span = self.truth.setdefault(kind, [ts, ts])
        span[0], span[1] = min(span[0], ts), max(span[1], ts)


@dataclass(frozen=True)
class Kind:
    classes: tuple[str, ...]
    qualifies: Callable[[Simulation, Vehicle, float], bool]
    apply: Callable[[Simulation, Injection, Vehicle, float], None]
    violations: Callable[[Simulation, Injection, Vehicle, float], list[str]]
    done: Callable[[Simulation, Injection, Vehicle, float], bool]


# ------------------------------------------------------------------ helpers


def on_open_road(sim: Simulation, v: Vehicle, ahead: float, *, loaded: bool | None = None, clear: float = 0.0) -> bool:
    """Driving, well away from both ends of the path, out of sites, no school zone in the next ``clear`` m."""
    d = v.activity
    if not isinstance(d, Drive) or d.active_hold() or d.holds or d.stretches or d.s < 400:
        return False
    if d.path.length - d.s < ahead or (loaded is not None and bool(d.sensors.get("loaded")) != loaded):
        return False
    if sim.city.site_at(v.xy) is not None:
        return False
    return not any(s0 < d.s + clear and s1 > d.s - 50 for s0, s1, _ in d.slow)


def permit_route(v: Vehicle) -> str:
    return str(v.info["permits"][0]["routes"][0])


def route_drive(v: Vehicle) -> Drive | None:
    d = v.activity
    return d if isinstance(d, Drive) and permit_route(v) in d.label else None


def detour_done(inj: Injection, v: Vehicle) -> bool:
    return v.activity is not inj.state["drive"] or inj.state["drive"].s > inj.state["end_s"] + 100


def prohibited(sim: Simulation) -> Any:
    return sim.city.zones["prohibited-centre"]


def centre_closed(sim: Simulation, t: float) -> bool:
    return clock.is_active(t, prohibited(sim).props.get("schedule"))


def offset(p: Xy, heading_deg: float, forward: float, left: float) -> Xy:
    h = math.radians(heading_deg)
    tx, ty = math.sin(h), math.cos(h)  # compass heading -> unit vector
    return (p[0] + tx * forward - ty * left, p[1] + ty * forward + tx * left)


# ------------------------------------------------------------ route deviation


def deviation_qualifies(sim: Simulation, v: Vehicle, t: float) -> bool:
    d = route_drive(v)
    if d is None or not on_open_road(sim, v, DETOUR_LENGTH_M + 800, clear=DETOUR_LENGTH_M + 300):
        return False
    turn = d.path.heading_at(d.s + 30) - d.path.heading_at(d.s + 30 + DETOUR_LENGTH_M)
    straight = abs((turn + 180.0) % 360.0 - 180.0) < 1.0
    return straight and not prohibited(sim).polygon.buffer(600).contains(sim.point(v.xy))


def deviation_apply(sim: Simulation, inj: Injection, v: Vehicle, t: float) -> None:
    d = v.activity
    assert isinstance(d, Drive)
    s0 = d.s + 30
    p0, h = d.path.point_at(s0), d.path.heading_at(s0)
    side = 1 if inj.id % 2 else -1
    detour = [offset(p0, h, 200, side * DETOUR_OFFSET_M), offset(p0, h, DETOUR_LENGTH_M - 200, side * DETOUR_OFFSET_M)]
    sim.planner.reroute(d, d.path.splice(s0, detour, s0 + DETOUR_LENGTH_M))
    inj.state.update(drive=d, end_s=s0 + DETOUR_LENGTH_M + 200)
    inj.detail["route_id"] = permit_route(v)


def off_route(sim: Simulation, v: Vehicle) -> bool:
    rid = permit_route(v)
    return float(sim.city.route_lines[rid].distance(sim.point(v.xy))) > sim.city.corridor_m[rid]


def deviation_violations(sim: Simulation, inj: Injection, v: Vehicle, t: float) -> list[str]:
    return ["route_deviation"] if v.activity is inj.state["drive"] and off_route(sim, v) else []


# ------------------------------------------------------------- forbidden zone


def ring_point(sim: Simulation, xy: Xy) -> bool:
    c = prohibited(sim).polygon.centroid
    return abs(math.dist(xy, (c.x, c.y)) - 3000.0) < 40.0


def forbidden_qualifies(sim: Simulation, v: Vehicle, t: float) -> bool:
    d = route_drive(v)
    if d is None or not centre_closed(sim, t) or not clock.is_active(t, v.info["permits"][0]["hours"]):
        return False
    return ring_point(sim, d.path.point_at(d.s + 30)) and ring_point(sim, d.path.point_at(d.s + 330))


def forbidden_apply(sim: Simulation, inj: Injection, v: Vehicle, t: float) -> None:
    d = v.activity
    assert isinstance(d, Drive)
    s0 = d.s + 30
    p0 = d.path.point_at(s0)
    c = prohibited(sim).polygon.centroid
    inward = (c.x + (p0[0] - c.x) * 0.63, c.y + (p0[1] - c.y) * 0.63)  # r = 1900 m, 700 m inside
    sim.planner.reroute(d, d.path.splice(s0, [inward], s0 + 250))
    inj.state.update(drive=d, end_s=s0 + 2400)
    inj.detail.update(zone_id="prohibited-centre", route_id=permit_route(v))


def forbidden_violations(sim: Simulation, inj: Injection, v: Vehicle, t: float) -> list[str]:
    if v.activity is not inj.state["drive"]:
        return []
    out = ["route_deviation"] if off_route(sim, v) else []  # a truck in the centre has left its route too
    if prohibited(sim).contains(v.xy) and centre_closed(sim, t):
        out.append("forbidden_zone")
    return out


# ------------------------------------------------------------------ overspeed


def overspeed_qualifies(sim: Simulation, v: Vehicle, t: float) -> bool:
    return on_open_road(sim, v, STRETCH_M + 600, clear=STRETCH_M + 200)


def overspeed_apply(sim: Simulation, inj: Injection, v: Vehicle, t: float) -> None:
    d = v.activity
    assert isinstance(d, Drive)
    limit = SPEED_LIMIT_KMH[v.cls]
    d.stretches.append(Stretch(d.s, d.s + STRETCH_M, speed_kmh=limit + OVERSPEED_BY_KMH))
    inj.state.update(drive=d, end_s=d.s + STRETCH_M)
    inj.detail["limit_kmh"] = limit


def overspeed_violations(sim: Simulation, inj: Injection, v: Vehicle, t: float) -> list[str]:
    return ["overspeed"] if v.speed_kmh > SPEED_LIMIT_KMH[v.cls] else []


# --------------------------------------------------------------------- curfew


def curfew_qualifies(sim: Simulation, v: Vehicle, t: float) -> bool:
    permit = v.info["permits"][0]
    if not isinstance(v.activity, Stay) or v.activity.label != "parked" or clock.is_active(t, permit["hours"]):
        return False
    if not sim.city.zones[permit["origin"]].contains(v.xy):
        return False
    crosses = sim.city.route_lines[permit_route(v)].intersects(prohibited(sim).polygon)
    return not (crosses and centre_closed(sim, t))


def curfew_apply(sim: Simulation, inj: Injection, v: Vehicle, t: float) -> None:
    v.loaded = True  # loaded earlier and leaves now, before its window opens
    drive = sim.planner.muck_drive(v, outbound=True)
    v.activity, v.plan = drive, []
    inj.state["drive"] = drive
    inj.detail["hours"] = v.info["permits"][0]["hours"]


def curfew_violations(sim: Simulation, inj: Injection, v: Vehicle, t: float) -> list[str]:
    active = v.activity is inj.state["drive"] and not clock.is_active(t, v.info["permits"][0]["hours"])
    return ["curfew"] if active else []


# ------------------------------------------------------- stops off the site


def stop_qualifies(loaded: bool) -> Callable[[Simulation, Vehicle, float], bool]:
    def qualifies(sim: Simulation, v: Vehicle, t: float) -> bool:
        return on_open_road(sim, v, 800, loaded=loaded, clear=300)

    return qualifies


def stop_apply(duration: float, phases: list[tuple[float, float, dict[str, Any]]], after: dict[str, Any]) -> Any:
    def apply(sim: Simulation, inj: Injection, v: Vehicle, t: float) -> None:
        d = v.activity
        assert isinstance(d, Drive)
        hold = Hold(d.s + 80, duration, phases=phases, after=after)
        d.holds.append(hold)
        inj.state.update(drive=d, hold=hold)

    return apply


def stop_violations(kind: str, when: Callable[[dict[str, Any]], bool]) -> Any:
    def violations(sim: Simulation, inj: Injection, v: Vehicle, t: float) -> list[str]:
        hold: Hold = inj.state["hold"]
        active = hold.arrived_at is not None and not hold.done and when(hold.sensors(t))
        return [kind] if active else []

    return violations


def stop_done(sim: Simulation, inj: Injection, v: Vehicle, t: float) -> bool:
    return bool(inj.state["hold"].done) or v.activity is not inj.state["drive"]


# ---------------------------------------------------------- uncovered load


def uncovered_apply(sim: Simulation, inj: Injection, v: Vehicle, t: float) -> None:
    d = v.activity
    assert isinstance(d, Drive)
    d.stretches.append(Stretch(d.s, d.s + STRETCH_M, sensors={"cover_closed": False}))
    inj.state.update(drive=d, end_s=d.s + STRETCH_M)


def uncovered_violations(sim: Simulation, inj: Injection, v: Vehicle, t: float) -> list[str]:
    sensors = v.sensors(t)
    moving = v.speed_kmh > 0.5
    return ["uncovered_load"] if moving and sensors.get("loaded") and sensors.get("cover_closed") is False else []


# ------------------------------------------------------------ wire-level kinds
# offline, power_cut, duplicate, late and malformed change what is published,
# not how the vehicle moves: the simulation applies them when it publishes.


def always(sim: Simulation, v: Vehicle, t: float) -> bool:
    return True


def wire_apply(sim: Simulation, inj: Injection, v: Vehicle, t: float) -> None:
    inj.state["from"] = t


def no_violations(sim: Simulation, inj: Injection, v: Vehicle, t: float) -> list[str]:
    return []


def wire_done(sim: Simulation, inj: Injection, v: Vehicle, t: float) -> bool:
    return bool(inj.state.get("done"))


MUCK = ("muck_truck",)
SPEC: dict[str, Kind] = {
    "route_deviation": Kind(
        MUCK, deviation_qualifies, deviation_apply, deviation_violations, lambda s, i, v, t: detour_done(i, v)
    ),
    "forbidden_zone": Kind(
        MUCK, forbidden_qualifies, forbidden_apply, forbidden_violations, lambda s, i, v, t: detour_done(i, v)
    ),
    "overspeed": Kind(
        ("muck_truck", "mixer_truck"),
        overspeed_qualifies,
        overspeed_apply,
        overspeed_violations,
        lambda s, i, v, t: detour_done(i, v),
    ),
    "curfew": Kind(
        MUCK, curfew_qualifies, curfew_apply, curfew_violations, lambda s, i, v, t: v.activity is not i.state["drive"]
    ),
    "illegal_dumping": Kind(
        MUCK,
        stop_qualifies(True),
        stop_apply(DUMP_STOP_S, [], {}),
        stop_violations("illegal_dumping", lambda s: True),
        stop_done,
    ),
    "body_lift": Kind(
        MUCK,
        stop_qualifies(True),
        stop_apply(LIFT_STOP_S, [(45.0, 135.0, {"lift": True, "cover_closed": False})], {"loaded": False}),
        stop_violations("body_lift", lambda s: bool(s.get("lift"))),
        stop_done,
    ),
    "drum_ccw": Kind(
        ("mixer_truck",),
        stop_qualifies(True),
        stop_apply(DRUM_STOP_S, [(20.0, 130.0, {"drum": "ccw"})], {}),
        stop_violations("drum_ccw", lambda s: s.get("drum") == "ccw"),
        stop_done,
    ),
    "uncovered_load": Kind(
        MUCK,
        lambda s, v, t: on_open_road(s, v, STRETCH_M + 300, loaded=True),
        uncovered_apply,
        uncovered_violations,
        lambda s, i, v, t: detour_done(i, v),
    ),
}
ANY = ("muck_truck", "mixer_truck", "patrol", "other")
for _kind in WIRE_KINDS:
    SPEC[_kind] = Kind(ANY, always, wire_apply, no_violations, wire_done)
