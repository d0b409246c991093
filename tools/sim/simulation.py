"""The simulation loop: vehicles step once per simulated second; fixes come out
every report interval as publications (topic, payload); injected violations
are turned into ground truth. Pure: the caller owns the clock and the broker.
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from shapely.geometry import Point

from . import clock
from .city import City
from .fleet import CRUISE_KMH, Planner, Vehicle
from .geo import Path, Xy
from .inject import ALERTING_KINDS, SPEC, Injection
from .motion import Drive, Linger, Stay
from .payload import ALARM_POWER_CUT, FixRecord, encode, jt808, malformed, native, owntracks, status_word

CLASSES = ("muck_truck", "mixer_truck", "patrol", "other")
# Kinds for which the chosen vehicle starts on the open road, loaded, so the violation comes soon.
PREPARED_KINDS = (
    "route_deviation",
    "forbidden_zone",
    "overspeed",
    "illegal_dumping",
    "body_lift",
    "uncovered_load",
    "drum_ccw",
)
LATE_HELD = 3


@dataclass(frozen=True)
class Publication:
    topic: str
    payload: bytes
    ts: float  # simulated time it is published at


@dataclass(frozen=True)
class SimConfig:
    start: float
    duration_s: float | None = 900.0  # None: run until stopped
    seed: int = 808
    interval_s: int = 10
    sigma_m: float = 8.0
    counts: dict[str, int] | None = None  # vehicles per class (first N of vehicles.json); None: all
    inject: tuple[str, ...] = ()  # one injection of each listed kind, early in the run
    inject_rate_per_h: float = 0.0  # further injections, fleet-wide, at random times
    rate_kinds: tuple[str, ...] = ALERTING_KINDS
    topic_prefix: str = "fleet"
    owntracks_prefix: str = "owntracks"
    jt808_prefix: str = "jt808"
    owntracks_share: float = 0.0  # of the vehicles that have an OwnTracks id
    jt808_share: float = 0.0  # of the vehicles that have a terminal phone
    offline_s: float = 660.0


@dataclass
class WireState:
    protocol: str = "native"
    serial: int = 0
    last_sent: float | None = None
    held: list[dict[str, Any]] = field(default_factory=list)


class Simulation:
    def __init__(self, city: City, cfg: SimConfig) -> None:
        self.city, self.cfg = city, cfg
        self.planner = Planner(city)
        self.t = float(int(cfg.start))
        self.end = None if cfg.duration_s is None else self.t + cfg.duration_s
        self._rng = random.Random(f"{cfg.seed}:inject")
        self.vehicles = self._make_vehicles()
        self.by_id = {v.id: v for v in self.vehicles}
        self.wire = {v.id: WireState(self._protocol(v)) for v in self.vehicles}
        self.injections: list[Injection] = []
        self.truth: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self._next_rate_due = self._draw_rate_due(self.t)
        self._plan_explicit_injections()
        for v in self.vehicles:
            self._warm_start(v)

    # --------------------------------------------------------------- set-up
    def _make_vehicles(self) -> list[Vehicle]:
        seen: dict[str, int] = dict.fromkeys(CLASSES, 0)
        out = []
        for info in self.city.vehicles:
            cls = info["class"]
            seen[cls] += 1
            if self.cfg.counts is not None and seen[cls] > self.cfg.counts.get(cls, 0):
                continue
            rng = random.Random(f"{self.cfg.seed}:{info['id']}")
            lo, hi = CRUISE_KMH[cls]
            v = Vehicle(info["id"], cls, info, rng, rng.uniform(lo, hi), rng.randrange(self.cfg.interval_s))
            v.home = self._home(cls, seen[cls] - 1)
            out.append(v)
        return out

    def _home(self, cls: str, index: int) -> str | None:
        """Duties follow the order in vehicles.json (see tools/make_city.py)."""
        if cls == "mixer_truck":
            plants = sorted(z.id for z in self.city.of_kind("plant"))
            return plants[index % len(plants)]
        if cls == "patrol":
            districts = sorted(z.id for z in self.city.of_kind("district"))
            return districts[index % len(districts)]
        return None

    def _protocol(self, v: Vehicle) -> str:
        draw = random.Random(f"{self.cfg.seed}:wire:{v.id}").random()
        if "owntracks" in v.info and draw < self.cfg.owntracks_share:
            return "owntracks"
        if "terminal" in v.info and draw < self.cfg.jt808_share:
            return "jt808"
        return "native"

    def _warm_start(self, v: Vehicle) -> None:
        """Put a vehicle somewhere plausible in its day, or where its injection can happen soon."""
        inj = next((i for i in self.injections if i.vehicle_id == v.id), None)
        if v.cls == "muck_truck":
            self._warm_muck(v, inj.kind if inj else None)
        elif v.cls == "mixer_truck":
            self._warm_mixer(v, forced=inj is not None and inj.kind in PREPARED_KINDS)
        else:
            self._warm_wanderer(v)
        if isinstance(v.activity, Drive):
            v.xy, v.heading = v.activity.path.point_at(v.activity.s), v.activity.path.heading_at(v.activity.s)
            v.activity.v = v.activity.cruise_kmh / 3.6 * 0.8

    def _warm_muck(self, v: Vehicle, kind: str | None) -> None:
        v.xy = self.planner.route(v, True)[0].start  # in the origin site
        if kind in PREPARED_KINDS:  # eligible: its window is open for another hour
            v.loaded = True
            drive = self.planner.muck_drive(v, outbound=True)
            drive.s = self._ring_entry(drive) - 450 if kind == "forbidden_zone" else 420.0
            v.activity = drive
            return
        plan = self.planner.muck_next(v, self.t)
        parked = isinstance(plan[0], Stay) and plan[0].label == "parked"
        if kind is None and not parked:
            self._warm_muck_random(v)
        else:
            v.activity, v.plan = plan[0], plan[1:]

    def _warm_muck_random(self, v: Vehicle) -> None:
        r = v.rng.random()
        if r < 0.2:
            plan = self.planner.muck_next(v, self.t)
            v.activity, v.plan = plan[0], plan[1:]
            return
        outbound = r < 0.6
        v.loaded = outbound
        drive = self.planner.muck_drive(v, outbound=outbound)
        drive.s = v.rng.uniform(0.05, 0.9) * drive.path.length
        v.activity = drive

    def _ring_entry(self, d: Drive) -> float:
        c = self.city.zones["prohibited-centre"].polygon.centroid
        for s in np.arange(0.0, d.path.length, 20.0):
            if math.dist(d.path.point_at(float(s)), (c.x, c.y)) < 3020:
                return float(s)
        return 420.0

    def _warm_mixer(self, v: Vehicle, *, forced: bool) -> None:
        v.xy = self.city.zones[v.home].polygon.centroid.coords[0]
        load, go = self.planner.mixer_next(v, self.t)  # not loaded yet: load, then drive to a site
        if not forced and v.rng.random() < 0.3:
            v.activity, v.plan = load, [go]
            return
        assert isinstance(go, Drive)
        v.loaded = True
        go.s = 420.0 if forced else v.rng.uniform(0.05, 0.9) * go.path.length
        v.activity = go

    def _warm_wanderer(self, v: Vehicle) -> None:
        road = self.city.road
        home = self.city.zones.get(v.home) if v.home else None
        junctions = sorted(
            k for k in road.nodes if road.is_junction(k) and (home is None or home.contains(road.nodes[k]))
        )
        junctions = junctions or sorted(k for k in road.nodes if road.is_junction(k))
        v.last_node = junctions[v.rng.randrange(len(junctions))]
        v.xy = road.nodes[v.last_node]
        plan = self.planner.wander_next(v, self.t)
        drive = plan[-1]
        assert isinstance(drive, Drive)
        drive.s = v.rng.uniform(0.0, 0.8) * drive.path.length
        v.activity = drive

    # ---------------------------------------------------------- injections
    def _plan_explicit_injections(self) -> None:
        """One injection per listed kind, each on its own vehicle, due a minute or two into the run."""
        used: set[str] = set()
        for k, kind in enumerate(self.cfg.inject):
            candidates = [v for v in self.vehicles if v.id not in used and self._eligible(kind, v, self.t)]
            if not candidates:
                self.warnings.append(f"cannot inject {kind} at {clock.rfc3339(self.t)}: no eligible vehicle")
                continue
            v = candidates[self._rng.randrange(len(candidates))]
            used.add(v.id)
            self.injections.append(Injection(len(self.injections) + 1, kind, self.t + 60 + 5 * k, v.id))

    def _eligible(self, kind: str, v: Vehicle, t: float) -> bool:
        """Can this vehicle be prepared at the start so the violation happens soon?"""
        spec = SPEC[kind]
        if v.cls not in spec.classes or self.wire[v.id].protocol != "native":
            return False
        if v.cls != "muck_truck" or kind in ("offline", "power_cut", "duplicate", "late", "malformed"):
            return True
        permit = v.info["permits"][0]
        route = self.city.route_lines[permit["routes"][0]]
        crosses = route.intersects(self.city.zones["prohibited-centre"].polygon)
        span = clock.active_span(t, permit["hours"])
        closed = clock.is_active(t, self.city.zones["prohibited-centre"].props.get("schedule"))
        if kind == "curfew":
            return span is None and not (crosses and closed)
        if span is None or span[1] - t < 3600:
            return False
        if kind == "forbidden_zone":  # needs the centre closed now, and a route that keeps out of it
            return closed and not crosses
        return not (crosses and closed)

    def _draw_rate_due(self, t: float) -> float | None:
        rate = self.cfg.inject_rate_per_h
        return t + self._rng.expovariate(rate / 3600.0) if rate > 0 else None

    def _rate_injections(self, t: float) -> None:
        if self._next_rate_due is None or t < self._next_rate_due:
            return
        kind = self.cfg.rate_kinds[self._rng.randrange(len(self.cfg.rate_kinds))]
        busy = {i.vehicle_id for i in self.injections if not i.finished}
        candidates = [
            v
            for v in self.vehicles
            if v.id not in busy
            and v.cls in SPEC[kind].classes
            and self.wire[v.id].protocol == "native"
            and SPEC[kind].qualifies(self, v, t)
        ]
        if candidates:
            v = candidates[self._rng.randrange(len(candidates))]
            self.injections.append(Injection(len(self.injections) + 1, kind, t, v.id))
        self._next_rate_due = self._draw_rate_due(t)

    def _try_apply(self, v: Vehicle, t: float) -> None:
        for inj in self.injections:
            if inj.vehicle_id == v.id and inj.applied_at is None and t >= inj.due:
                spec = SPEC[inj.kind]
                if spec.qualifies(self, v, t):
                    spec.apply(self, inj, v, t)
                    inj.applied_at = t

    def goto(self, vehicle_id: str, lon: float, lat: float, *, hold_s: float = 600.0) -> float:
        """Send a vehicle to a point now (a 12319 dispatch): along the roads to
        the junction nearest the point, the last stretch straight, a stay of
        ``hold_s`` there (engine on, stopped), back to the road, then its usual
        duties. Returns the drive's length in metres."""
        v = self.by_id[vehicle_id]
        road = self.city.road
        target = self.city.frame.metric(lon, lat)
        start, end = road.nearest_node(v.xy), road.nearest_node(target)
        path = Path([v.xy, *road.shortest(start, end), target])
        speed = v.activity.v if isinstance(v.activity, Drive) else 0.0
        drive = self.planner.drive_for_path(path, v.cruise_kmh)
        drive.label, drive.v = "to case", speed
        back = self.planner.drive_for_path(Path([target, road.nodes[end]]), v.cruise_kmh)
        back.label = "back to the road"
        v.activity = drive
        v.plan = [Linger(-1.0, label="on case", duration=hold_s), back]
        v.last_node, v.prev_node = end, None
        return path.length

    def point(self, xy: Xy) -> Point:
        return Point(xy)

    # ---------------------------------------------------------------- loop
    def done(self) -> bool:
        return self.end is not None and self.t >= self.end

    def advance(self) -> list[Publication]:
        """One simulated second: move everything, publish the fixes that are due."""
        t = self.t + 1.0
        self._rate_injections(t)
        for v in self.vehicles:
            self._step(v, t)
            self._try_apply(v, t)
        self.t = t
        due = [v for v in self.vehicles if (int(t) - v.phase_s) % self.cfg.interval_s == 0]
        pubs = self._publish(due, t) if due else []
        self._close_finished(t)
        return pubs

    def _step(self, v: Vehicle, t: float) -> None:
        for _ in range(4):  # an activity may end at once (a stay already over): take the next
            act = v.activity
            if act is not None and not (act.finished if isinstance(act, Drive) else act.finished_at(t)):
                break
            if act is not None:
                v.loaded = bool(act.final_sensors().get("loaded", v.loaded))
            if not v.plan:
                v.plan = self._next_plan(v, t)
            v.activity = v.plan.pop(0)
            if isinstance(v.activity, Drive):
                v.activity.s, v.activity.v = 0.0, 0.0
        if isinstance(v.activity, Drive):
            d = v.activity
            d.step(t, 1.0)
            v.xy = d.path.point_at(d.s)
            if d.v > 0.1:
                v.heading = d.path.heading_at(d.s)

    def _next_plan(self, v: Vehicle, t: float) -> list[Any]:
        if v.cls == "muck_truck":
            return self.planner.muck_next(v, t)
        if v.cls == "mixer_truck":
            return self.planner.mixer_next(v, t)
        return self.planner.wander_next(v, t)

    # ------------------------------------------------------------- publish
    def _publish(self, due: list[Vehicle], t: float) -> list[Publication]:
        xs = np.array([v.xy[0] for v in due])
        ys = np.array([v.xy[1] for v in due])
        noise = np.array([[v.rng.gauss(0.0, self.cfg.sigma_m), v.rng.gauss(0.0, self.cfg.sigma_m)] for v in due])
        lon, lat = self.city.frame.lonlat_many(xs + noise[:, 0], ys + noise[:, 1])
        out: list[Publication] = []
        for i, v in enumerate(due):
            fix = self._record(v, t, float(lon[i]), float(lat[i]))
            out.extend(self._wire(v, fix, t))
        return out

    def _record(self, v: Vehicle, t: float, lon: float, lat: float) -> FixRecord:
        sensors = v.sensors(t) if v.cls in ("muck_truck", "mixer_truck") else None
        alarm = 0
        for inj in self._active(v):
            for kind in SPEC[inj.kind].violations(self, inj, v, t):
                inj.record(kind, t)
            if inj.kind == "power_cut" and t < inj.state["from"] + 60:
                alarm |= ALARM_POWER_CUT
                inj.record("power_cut", t)
        loaded = sensors.get("loaded") if sensors and v.cls == "muck_truck" else None
        return FixRecord(
            v.id,
            t,
            lon,
            lat,
            v.speed_kmh,
            v.heading,
            45.0 + v.rng.gauss(0, 3),
            v.rng.randint(9, 16),
            round(v.rng.uniform(0.7, 1.6), 1),
            v.ignition,
            alarm,
            status_word(v.ignition, loaded),
            sensors,
        )

    def _active(self, v: Vehicle) -> Iterable[Injection]:
        return [i for i in self.injections if i.vehicle_id == v.id and i.applied_at is not None and not i.finished]

    def _wire(self, v: Vehicle, fix: FixRecord, t: float) -> list[Publication]:
        """Encode one fix, applying the wire-level injections (silence, duplicate, late, malformed)."""
        ws = self.wire[v.id]
        out: list[Publication] = []
        for inj in self._active(v):
            if inj.kind == "offline":
                if t < inj.state["from"] + self.cfg.offline_s:
                    if "silent_since" not in inj.state:
                        inj.state["silent_since"] = ws.last_sent if ws.last_sent is not None else t
                    return []
                inj.record("offline", inj.state["silent_since"])
                inj.record("offline", t)
                inj.state["done"] = True
            elif inj.kind == "power_cut" and t >= inj.state["from"] + 60:
                inj.state["done"] = True
        topic, body = self._encode(v, fix, ws)
        ws.last_sent = t
        late = next((i for i in self._active(v) if i.kind == "late"), None)
        if late is not None and len(ws.held) < LATE_HELD:
            ws.held.append(body)
            late.record("late", t)
            return out
        out.append(Publication(topic, encode(body), t))
        for inj in self._active(v):
            if inj.kind == "duplicate":
                out.append(Publication(topic, encode(body), t))
                inj.record("duplicate", t)
                inj.state["done"] = True
            elif inj.kind == "late" and len(ws.held) >= LATE_HELD:
                out.append(Publication(topic, encode(ws.held), t))  # a backfill batch, older than the fix before it
                ws.held = []
                inj.state["done"] = True
            elif inj.kind == "malformed":
                reason, payload = malformed(inj.id, fix)
                out.append(Publication(topic, payload, t))
                inj.detail["reason"] = reason
                inj.record("malformed", t)
                inj.state["done"] = True
        return out

    def _encode(self, v: Vehicle, fix: FixRecord, ws: WireState) -> tuple[str, Any]:
        if ws.protocol == "owntracks":
            return f"{self.cfg.owntracks_prefix}/{v.info['owntracks']}", owntracks(fix, v.info["owntracks"])
        if ws.protocol == "jt808":
            ws.serial += 1
            phone = v.info["terminal"]
            return f"{self.cfg.jt808_prefix}/{phone}/{phone}/up", jt808(fix, phone, ws.serial)
        return f"{self.cfg.topic_prefix}/{v.id}/fix", native(fix)

    # --------------------------------------------------------------- truth
    def _close_finished(self, t: float) -> None:
        for inj in self.injections:
            if inj.applied_at is None or inj.finished:
                continue
            v = self.by_id[inj.vehicle_id]  # type: ignore[index]
            if SPEC[inj.kind].done(self, inj, v, t):
                inj.finished = True
                self.truth.extend(truth_lines(inj))

    def close(self) -> list[dict[str, Any]]:
        """End of run: write what the unfinished injections did so far; report those that never happened."""
        lines = []
        for inj in self.injections:
            if inj.finished:
                continue
            if inj.kind == "offline" and "silent_since" in inj.state:
                inj.record("offline", inj.state["silent_since"])
                inj.record("offline", self.t)
            inj.finished = True
            if inj.applied_at is None or not inj.truth:
                self.warnings.append(f"injection {inj.id} {inj.kind} on {inj.vehicle_id} did not happen")
            lines.extend(truth_lines(inj))
        self.truth.extend(lines)
        return lines


def truth_lines(inj: Injection) -> list[dict[str, Any]]:
    return [
        {
            "vehicle_id": inj.vehicle_id,
            "kind": kind,
            "start": clock.rfc3339(a),
            "end": clock.rfc3339(b),
            "injection": inj.id,
            "injected": inj.kind,
            **({"detail": inj.detail} if inj.detail else {}),
        }
        for kind, (a, b) in sorted(inj.truth.items())
    ]


def warn(msg: str) -> None:
    print(f"simulate: {msg}", file=sys.stderr)
