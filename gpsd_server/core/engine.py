"""The engine: ordered stages over batches of fixes, per-vehicle state.

``Engine.process(fixes, now)`` takes decoded fixes (any vehicles, arrival
order) and returns the same fixes with their flags set plus the events they
caused. One vehicle's fixes are processed in fix-time order; a fix older than
the vehicle's last processed fix is marked late: stored, but it moves no
state. Fixes flagged INVALID, JUMP or FILTERED keep the vehicle online and
run the position-free rules (alarms), not the position rules.

Per fix the stages are: the link clock (offline/online), zone presence (the
pre-stage), then the rules of :data:`gpsd_server.core.rules.RULES` that apply
to the vehicle, each with a read-only :class:`FixContext`.

A batch costs a handful of array calls (one projection, one STRtree query,
one ``contains_xy``, one ``distance``) and then a short Python loop. A fix
that matches the vehicle's recorded rest (see :class:`Rest` and
``Rule.at_rest``) runs only the ``always_run`` rules: the same events, less
work. ``process`` never looks at ``now``: splitting a sequence into batches
of any size gives the same events. Only :meth:`Engine.tick` uses the clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import numpy as np
from msgspec.structs import replace

from gpsd_server.core import backfill, filters
from gpsd_server.core.city import City, Vehicle
from gpsd_server.core.geo import CityGeometry, Located, Projection, city_centre
from gpsd_server.core.rules import RULES, offline, presence
from gpsd_server.core.rules.base import Events, FixContext, OpenAlert, RestoreContext, Rule, make_event
from gpsd_server.model import VEHICLE_CLASSES, Event, Fix, FixFlag, Sensors
from gpsd_server.settings import FilterSettings, RuleSettings

# Plain ints: IntFlag arithmetic runs in Python and shows up per fix.
_LATE = int(FixFlag.LATE)
_NOFIX = int(FixFlag.NOFIX)
_NOT_FOR_RULES = int(FixFlag.INVALID | FixFlag.JUMP | FixFlag.FILTERED | FixFlag.NOFIX)
# How a step's position reaches the rules: its own (located with the batch),
# where the vehicle stands (drift), where it was last (the end of a gap), or none.
_OWN, _PARKED, _KNOWN, _FREE = 0, 1, 2, 3
_CLASS_CODE = {c: i for i, c in enumerate(VEHICLE_CLASSES)}
Step = Callable[[Any, FixContext], Events]


class Rest(msgspec.Struct, frozen=True, gc=False):
    """The inputs of the last full fix after which every skippable rule was at rest.

    A later fix with equal zones, sensors (and ``moving`` when sensors are
    reported), status word and a speed at or below ``ceiling`` runs only the
    ``always_run`` rules (see ``Rule.at_rest``).
    """

    near: tuple[str, ...]
    inside: tuple[str, ...]
    ceiling: float
    sensors: Sensors | None
    moving: bool
    status: int

    def matches(self, fix: Fix, near: tuple[str, ...], inside: tuple[str, ...], moving: bool) -> bool:
        if inside != self.inside or near != self.near or fix.status != self.status:
            return False
        speed = fix.speed_kmh
        if speed is not None and speed > self.ceiling:
            return False
        sensors = fix.sensors
        if sensors is None:
            return self.sensors is None
        return sensors == self.sensors and moving == self.moving


@dataclass(frozen=True, slots=True)
class Plan:
    """The applicable rules of one kind of vehicle, shared by every vehicle of that kind.

    A vehicle keeps only its rules' states (``VehicleState.slots``, in the order
    of ``rules``); the (step, slot) pairs are built once per kind of vehicle, not
    once per vehicle: at 10,000 vehicles that is most of a kilobyte each.
    """

    rules: tuple[Rule[Any], ...] = ()
    steps: tuple[tuple[Step, int], ...] = ()  # (rule.step, slot) of every applicable rule, in order
    busy: tuple[tuple[Step, int], ...] = ()  # the always_run ones (the fast path)
    free: tuple[tuple[Step, int], ...] = ()  # the position-free ones (fixes without a usable position)
    skippable: tuple[tuple[Rule[Any], int], ...] = ()  # asked at_rest after a full run

    @classmethod
    def of(cls, rules: tuple[Rule[Any], ...]) -> Plan:
        slot = list(enumerate(rules))
        return cls(
            rules,
            tuple((r.step, k) for k, r in slot),
            tuple((r.step, k) for k, r in slot if r.always_run),
            tuple((r.step, k) for k, r in slot if r.position_free),
            tuple((r, k) for k, r in slot if not r.always_run),
        )

    def states(self, slots: tuple[Any, ...]) -> dict[str, Any]:
        return {r.name: state for r, state in zip(self.rules, slots, strict=True)}


_NO_PLAN = Plan()


@dataclass(slots=True)
class VehicleState:
    """What the engine remembers about one vehicle (kept small: a city tracks tens of thousands)."""

    vehicle: Vehicle
    plan: Plan = _NO_PLAN
    slots: tuple[Any, ...] = ()  # the state of each rule of the plan, in its order
    presence: presence.PresenceState = field(default_factory=presence.PresenceState)
    link: offline.LinkState = field(default_factory=offline.LinkState)
    last_ts: float | None = None  # last processed (non-late) fix
    last_x: float = math.nan  # last usable position, projected
    last_y: float = math.nan
    route_index: tuple[int, ...] = ()  # corridor indices of every permitted route
    rest: Rest | None = None  # set when the skippable rules are at rest (the fast path)
    stale: tuple[OpenAlert, ...] = ()  # restored alerts no rule owns: ended at the next fix
    filter: filters.FilterState = field(default_factory=filters.FilterState)
    where: backfill.Where | None = None  # the last position the rules saw (the parked one while drifting)
    gaps: tuple[backfill.Gap, ...] = ()  # kept for blind-area backfill, oldest first
    late_filter: filters.FilterState | None = None  # late fixes outside gaps (made when first needed)

    @property
    def states(self) -> dict[str, Any]:
        """Rule name -> its state."""
        return self.plan.states(self.slots)


@dataclass(slots=True)
class _Step:
    """One fix on its way to the rules, as the filter stage decided."""

    fix: Fix
    vs: VehicleState
    mode: int
    x: float = math.nan
    y: float = math.nan
    link: bool = True  # a sign of life for the offline clock (not for fixes run again)
    gap_filter: filters.FilterState | None = None  # ends a gap: the filter state before it
    gap_start: float = 0.0
    j: int = -1  # index into the batch's Located (own steps)


class Correction(msgspec.Struct, frozen=True, gc=False):
    """A stored fix whose flags changed after the fact (a suspect jump that was a real move)."""

    vehicle_id: str
    ts: float
    flags: int


@dataclass(frozen=True, slots=True)
class EngineResult:
    fixes: list[Fix]
    events: list[Event] = field(default_factory=list)
    corrections: list[Correction] = field(default_factory=list)


class Engine:
    """Stateful, pure: no I/O, no clock. The driver owns the only instance."""

    def __init__(
        self,
        *,
        city: City | None = None,
        settings: RuleSettings | None = None,
        filter_settings: FilterSettings | None = None,
        tz: str | tzinfo = "Asia/Shanghai",
        epsg: int | None = None,
        fast_path: bool = True,
    ) -> None:
        """``fast_path=False`` runs every rule on every fix (tests compare the two)."""
        self.settings = settings or RuleSettings()
        self.filters = filter_settings or FilterSettings()
        self.filter_counts = filters.Counts()
        self.fast_path = fast_path
        self.tz: tzinfo = ZoneInfo(tz) if isinstance(tz, str) else tz
        self._projection = None if epsg is None else Projection(epsg)
        self._vehicles: dict[str, VehicleState] = {}
        self._members: dict[str, set[str]] = {}  # zone id -> vehicle ids inside
        self._plans: dict[tuple[str, ...], Plan] = {}
        self.reload(city or City())

    # -- configuration ---------------------------------------------------

    def reload(self, city: City, geometry: CityGeometry | None = None) -> None:
        """Swap in a new City (and its geometry, if built elsewhere, e.g. off the
        event loop); vehicle states and the projection carry over."""
        if geometry is not None:
            old, self._projection = self._projection, geometry.projection
            if old is not None and old.epsg != geometry.projection.epsg:
                self._reproject(old, geometry.projection)
        elif self._projection is None:
            centre = city_centre(city)
            if centre is not None:
                self._projection = Projection.near(*centre)
        self.city = city
        self._zones = {z.id: z for z in city.zones}
        self._corridor_m = {r.id: r.corridor_m for r in city.routes}
        if geometry is None and self._projection is not None:
            geometry = self.build_geometry(city, self._projection)
        self._geometry = geometry
        for vehicle_id, vs in self._vehicles.items():
            self._configure(vs, self._vehicle(vehicle_id))
        self._relocate()

    def _relocate(self) -> None:
        """Every vehicle's last place in the city now in force.

        A parked vehicle's next fixes reuse the place it stopped at (its zones
        and route distances): left from the city before, they named a zone an
        operator had just deleted, and the speed rule's look-up of it ended the
        server (2026-12-06); a zone added around a parked vehicle went unseen
        until it moved. One batch locate for the fleet: ~50 ms for 10,000
        vehicles among 1,000 zones and 100 routes (2026-12-06; a reload's
        geometry build, done before, ~240 ms more)."""
        placed = [(vs, vs.where) for vs in self._vehicles.values() if vs.where is not None]
        geometry = self._geometry
        if not placed or geometry is None:
            for vs, w in placed:
                vs.where = replace(w, near=(), inside=(), route_dist={})
            return
        n = len(placed)
        x = np.fromiter((w.x for _, w in placed), dtype=np.float64, count=n)
        y = np.fromiter((w.y for _, w in placed), dtype=np.float64, count=n)
        codes = np.fromiter((_CLASS_CODE[vs.vehicle.vehicle_class] for vs, _ in placed), np.intp, n)
        located = geometry.locate_xy(x, y, codes, [vs.route_index for vs, _ in placed])
        for j, (vs, w) in enumerate(placed):
            vs.where = replace(w, near=located.near[j], inside=located.inside[j], route_dist=located.route_dist[j])

    def _reproject(self, old: Projection, new: Projection) -> None:
        """Carry every vehicle's projected positions over to a new projection.

        It changes when a city's geometry arrives after fixes were projected
        near the fleet (a first load that failed or was empty): UTM zones 6°
        apart put the same point hundreds of kilometres apart, so a filter
        anchor or a held suspect left in the old one would make the next fix a
        jump, or locate a released suspect in the wrong zones. Kept blind-area
        gaps are dropped (their late fixes are then judged by the filter only)."""
        for vs in self._vehicles.values():
            for f in (vs.filter, vs.late_filter):
                if f is None:
                    continue
                if f.anchor is not None:
                    x, y = _moved(old, new, f.anchor.x, f.anchor.y)
                    f.anchor = replace(f.anchor, x=x, y=y)
                for s in f.suspects:
                    s.x, s.y = self._to_xy(s.fix.lon, s.fix.lat)
            if not math.isnan(vs.last_x):
                vs.last_x, vs.last_y = _moved(old, new, vs.last_x, vs.last_y)
            if vs.where is not None:
                x, y = self._to_xy(vs.where.lon, vs.where.lat)
                vs.where = replace(vs.where, x=x, y=y)
            vs.gaps = ()

    def build_geometry(self, city: City, projection: Projection | None = None) -> CityGeometry:
        """The projected city (slow for big cities: the driver calls it in a thread)."""
        projection = projection or self._projection or Projection.near(*(city_centre(city) or (112.5, 28.5)))
        return CityGeometry(city, projection, self.settings.zone_exit_band_m)

    @property
    def projection(self) -> Projection | None:
        return self._projection

    def _vehicle(self, vehicle_id: str) -> Vehicle:
        return self.city.vehicle(vehicle_id) or Vehicle(vehicle_id)

    def _configure(self, vs: VehicleState, vehicle: Vehicle, states: dict[str, Any] | None = None) -> None:
        """Bind the vehicle to the plan of its rules; a rule that still applies keeps its
        state (from ``states`` when given), a rule that no longer applies drops it."""
        vs.vehicle = vehicle
        applicable = tuple(r for r in RULES if r.applies(vehicle))
        names = tuple(r.name for r in applicable)
        plan = self._plans.get(names)
        if plan is None:
            plan = self._plans[names] = Plan.of(applicable)
        old = vs.states if states is None else states
        slots = []
        for rule in applicable:
            state = old.get(rule.name)
            slots.append(rule.new_state() if state is None else state)
        vs.plan, vs.slots = plan, tuple(slots)
        vs.rest = None  # zone kinds and limits may have changed
        geometry = self._geometry
        vs.route_index = geometry.corridors.permitted(vehicle.permits) if geometry is not None else ()

    def _state(self, vehicle_id: str) -> VehicleState:
        vs = self._vehicles.get(vehicle_id)
        if vs is None:
            vs = self._vehicles[vehicle_id] = VehicleState(self._vehicle(vehicle_id))
            self._configure(vs, vs.vehicle)
        return vs

    # -- the batch ---------------------------------------------------------

    def process(self, fixes: Sequence[Fix], now: float) -> EngineResult:
        out = list(fixes)
        live: list[tuple[int, VehicleState, float | None]] = []  # (index, vehicle, start of the gap it ends)
        late: dict[str, list[int]] = {}
        # Within one batch, sort each vehicle's fixes by time so a batch that
        # arrives shuffled behaves like the same fixes arriving one by one.
        keys = [(f.vehicle_id, f.ts) for f in fixes]
        known = self._vehicles
        for i in sorted(range(len(fixes)), key=keys.__getitem__):
            fix = fixes[i]
            vs = known.get(fix.vehicle_id) or self._state(fix.vehicle_id)
            if fix.flags & _LATE or (vs.last_ts is not None and fix.ts < vs.last_ts):
                out[i] = replace(fix, flags=fix.flags | _LATE)
                late.setdefault(fix.vehicle_id, []).append(i)
                continue
            gap = vs.last_ts if vs.last_ts is not None and fix.ts - vs.last_ts > self.settings.backfill_gap_s else None
            vs.last_ts = fix.ts
            live.append((i, vs, gap))
        steps, corrections = self._filter(out, live)
        events: list[Event] = []
        located = self._locate(steps)
        for step in steps:
            events += self._run(step.vs, step, located)
        for vehicle_id, indices in late.items():
            events += self._backfill(self._vehicles[vehicle_id], out, indices, now)
        return EngineResult(fixes=out, events=events, corrections=corrections)

    def _filter(
        self, out: list[Fix], live: list[tuple[int, VehicleState, float | None]]
    ) -> tuple[list[_Step], list[Correction]]:
        """Classify the batch's live fixes (the filter stage) into the steps the rules run."""
        fs = self.filters
        at: dict[tuple[str, float], int] | None = None  # (vehicle, ts) -> index in out, made at the first release
        xs, ys = self._project_lists([i for i, _, _ in live if not out[i].flags & _NOT_FOR_RULES], out)
        k = 0  # the next projected position: the candidates are in the order of live
        steps: list[_Step] = []
        corrections: list[Correction] = []
        for i, vs, gap in live:
            fix = out[i]
            kept = vs.filter.copy() if gap is not None and self.settings.backfill_gaps_kept else None
            start = gap or 0.0
            if fix.flags & _NOT_FOR_RULES:  # no position, or one the terminal says is unusable
                steps.append(_Step(fix, vs, _FREE, gap_filter=kept, gap_start=start))
                continue
            x, y = xs[k], ys[k]
            k += 1
            verdict = filters.classify(vs.filter, fix, x, y, vs.vehicle.vehicle_class, fs)
            self.filter_counts.add(verdict)
            if verdict.kind == "release":
                if at is None:  # the last of equal (vehicle, ts) wins, as in time order
                    at = {(f.vehicle_id, f.ts): j for j, f in enumerate(out)}
                for s in verdict.released:
                    flags = s.fix.flags & ~filters.JUMP
                    corrections.append(Correction(s.fix.vehicle_id, s.fix.ts, flags))
                    if (j := at.get((s.fix.vehicle_id, s.fix.ts))) is not None:
                        out[j] = replace(out[j], flags=flags)
                    steps.append(_Step(replace(s.fix, flags=flags), vs, _OWN, s.x, s.y, link=False))
            elif verdict.flags:
                fix = out[i] = replace(fix, flags=fix.flags | verdict.flags)
            mode = _PARKED if verdict.kind == "drift" else _FREE if verdict.kind == "outlier" else _OWN
            steps.append(_Step(fix, vs, mode, x, y, True, kept, start))
        return steps, corrections

    def _project(self, indices: list[int], fixes: list[Fix]) -> dict[int, tuple[float, float]]:
        xs, ys = self._project_lists(indices, fixes)
        return dict(zip(indices, zip(xs, ys, strict=True), strict=True))

    def _project_lists(self, indices: list[int], fixes: list[Fix]) -> tuple[list[float], list[float]]:
        """x and y of ``fixes[i]`` for each of ``indices``, in that order (the live
        batch walks them in step: no dict of pairs per fix, 5 % of the engine's time)."""
        if not indices:
            return [], []
        if self._projection is None:  # no geometry in the city: project near the fleet
            self._projection = Projection.near(fixes[indices[0]].lon, fixes[indices[0]].lat)
        pick = [fixes[i] for i in indices]
        lon = np.fromiter([f.lon for f in pick], dtype=np.float64, count=len(pick))
        lat = np.fromiter([f.lat for f in pick], dtype=np.float64, count=len(pick))
        x, y = self._projection.to_xy(lon, lat)
        return x.tolist(), y.tolist()

    def _locate(self, steps: list[_Step]) -> Located | None:
        own = [s for s in steps if s.mode == _OWN]
        if not own:
            return None
        if self._geometry is None:
            self._projection = self._projection or Projection.near(own[0].fix.lon, own[0].fix.lat)
            self._geometry = self.build_geometry(self.city, self._projection)
        for j, s in enumerate(own):
            s.j = j
        # Projected once, by the filter (the same projection as the geometry's).
        x = np.fromiter((s.x for s in own), dtype=np.float64, count=len(own))
        y = np.fromiter((s.y for s in own), dtype=np.float64, count=len(own))
        codes = np.fromiter((_CLASS_CODE[s.vs.vehicle.vehicle_class] for s in own), np.intp, len(own))
        return self._geometry.locate_xy(x, y, codes, [s.vs.route_index for s in own])

    def _run(self, vs: VehicleState, step: _Step, located: Located | None, *, live: bool = True) -> list[Event]:
        if step.gap_filter is not None and live:
            self._open_gap(vs, step)
        if step.mode == _FREE or (step.mode != _OWN and vs.where is None):
            return self._run_free(vs, step, live=live)
        settings = self.settings
        fix = step.fix
        if step.mode == _OWN:
            assert located is not None
            j = step.j
            w = backfill.Where(
                located.x[j], located.y[j], fix.lon, fix.lat, located.near[j], located.inside[j], located.route_dist[j]
            )
            vs.where = w
            if fix.speed_kmh is not None:
                moving = fix.speed_kmh >= settings.moving_kmh
            else:  # no speed reported: moved further than GPS noise since the last fix
                moving = math.hypot(w.x - vs.last_x, w.y - vs.last_y) > settings.stop_radius_m
            vs.last_x, vs.last_y = w.x, w.y
        else:  # parked (the rules see the vehicle where it stopped, time passing) or where it was last
            assert vs.where is not None
            w = vs.where
            fix = replace(fix, lon=w.lon, lat=w.lat)
            moving = step.mode == _KNOWN and fix.speed_kmh is not None and fix.speed_kmh >= settings.moving_kmh
        if live and step.gap_filter is not None and vs.gaps:
            vs.gaps[-1].end_where = w
        events = offline.on_fix(vs.link, fix, settings, position_ok=True, moving=moving) if step.link else []
        near, inside = w.near, w.inside
        rest, plan, slots = vs.rest, vs.plan, vs.slots
        if rest is not None and rest.matches(fix, near, inside, moving):
            rules, seen = plan.busy, presence.UNCHANGED
        else:
            rules = plan.steps
            seen = presence.step(vs.presence, fix, near, inside, self._zones)
            events.extend(seen.events)
        if rules:
            ctx = FixContext(
                fix, w.x, w.y, moving, vs.vehicle, settings, self._zones, self.tz, self._corridor_m,
                near, inside, w.route_dist, vs.presence.inside, seen.entered, seen.exited,
            )  # fmt: skip
            for rule_step, k in rules:
                if produced := rule_step(slots[k], ctx):
                    events.extend(produced)
            if rules is plan.steps and self.fast_path:
                vs.rest = self._at_rest(vs, ctx)
        if live and (seen.entered or seen.exited):
            self._update_members(fix.vehicle_id, seen.entered, seen.exited)
        return self._close_stale(vs, fix, events) if vs.stale else events

    def _run_free(self, vs: VehicleState, step: _Step, *, live: bool) -> list[Event]:
        """A fix without a usable position: a sign of life, and the alarm rules
        at the vehicle's last known position (marked as such)."""
        fix = step.fix
        nofix = bool(fix.flags & _NOFIX)
        if nofix:
            known = vs.where
            lon, lat = (known.lon, known.lat) if known is not None else (math.nan, math.nan)
            fix = replace(fix, lon=lon, lat=lat)
        events = offline.on_fix(vs.link, fix, self.settings, position_ok=False, moving=False) if step.link else []
        ctx = FixContext(fix, math.nan, math.nan, False, vs.vehicle, self.settings, self._zones, self.tz)
        slots = vs.slots
        for rule_step, k in vs.plan.free:
            if produced := rule_step(slots[k], ctx):
                if nofix:
                    for e in produced:
                        e.details["position"] = "last_known" if vs.where is not None else "unknown"
                events.extend(produced)
        return self._close_stale(vs, fix, events) if vs.stale else events

    def _open_gap(self, vs: VehicleState, step: _Step) -> None:
        assert step.gap_filter is not None
        # Only the states that differ from a fresh one: at a gap most rules are idle.
        changed = {r.name: st for r, st in zip(vs.plan.rules, vs.slots, strict=True) if st != r.new_state()}
        gap = backfill.snapshot(step.gap_start, step.fix, changed, vs.presence, step.gap_filter, vs.where)
        window = self.settings.backfill_window_s
        kept = (*vs.gaps, gap)[-self.settings.backfill_gaps_kept :]
        vs.gaps = tuple(g for g in kept if step.fix.ts - g.end.ts <= window)

    def _backfill(self, vs: VehicleState, out: list[Fix], indices: list[int], now: float) -> list[Event]:
        """Run late fixes that fall into a kept gap through the rules (see core/backfill.py);
        the others through the filter only, so drift and outliers stay out of tracks and mileage."""
        events: list[Event] = []
        judged: set[int] = set()
        for gap in vs.gaps:
            mine = [i for i in indices if gap.holds(out[i].ts)]
            if not mine or gap.end_where is None:
                continue
            judged.update(mine)
            late = gap.late = gap.late or {}
            for i in mine:
                late.setdefault(out[i].ts, out[i])
            run = self._gap_state(vs, gap)
            fs = self.filters
            pending = sorted(late.values(), key=lambda f: f.ts)
            xy = self._project(list(range(len(pending))), pending)
            steps = []
            for k, fix in enumerate(pending):
                if k not in xy or fix.flags & _NOT_FOR_RULES:
                    steps.append(_Step(fix, run, _FREE, link=False))
                    continue
                verdict = filters.classify(run.filter, fix, *xy[k], vs.vehicle.vehicle_class, fs)
                for s in verdict.released:
                    steps.append(_Step(s.fix, run, _OWN, s.x, s.y, link=False))
                if verdict.flags:
                    for i in mine:
                        if out[i].ts == fix.ts:
                            out[i] = replace(out[i], flags=out[i].flags | verdict.flags)
                mode = _PARKED if verdict.kind == "drift" else _FREE if verdict.kind == "outlier" else _OWN
                steps.append(_Step(fix, run, mode, *xy[k], link=False))
            located = self._locate(steps)
            during = [e for s in steps for e in self._run(run, s, located, live=False)]
            end = gap.end_where
            run.where, run.rest = end, None
            at_end = self._run(run, _Step(gap.end, run, _KNOWN, link=False), None, live=False)
            events += [backfill.mark(e, gap, now) for e in backfill.keep(gap, during, at_end)]
        self._filter_late(vs, out, [i for i in indices if i not in judged])
        return events

    def _filter_late(self, vs: VehicleState, out: list[Fix], indices: list[int]) -> None:
        """Late fixes outside every kept gap (a restart lost the gap, or older than the
        window): no rule judges them, but the filter does, along the late stream itself."""
        usable = [i for i in sorted(indices, key=lambda i: out[i].ts) if not out[i].flags & _NOT_FOR_RULES]
        xy = self._project(usable, out)
        for i in usable:
            fix = out[i]
            state = vs.late_filter
            if state is None or (state.anchor is not None and fix.ts < state.seen_ts):
                state = vs.late_filter = filters.FilterState()  # new, or out of order within the late stream
            verdict = filters.classify(state, fix, *xy[i], vs.vehicle.vehicle_class, self.filters)
            if verdict.flags:
                out[i] = replace(fix, flags=fix.flags | verdict.flags)

    def _gap_state(self, vs: VehicleState, gap: backfill.Gap) -> VehicleState:
        """A private copy of the vehicle as it was when the gap began: the live state stays untouched."""
        states, presence_state, filter_state = gap.unpack()
        run = VehicleState(vs.vehicle, presence=presence_state, filter=filter_state, where=gap.where)
        if gap.where is not None:
            run.last_x, run.last_y = gap.where.x, gap.where.y
        self._configure(run, vs.vehicle, states)
        return run

    def _at_rest(self, vs: VehicleState, ctx: FixContext) -> Rest | None:
        if not presence.idle(vs.presence, ctx.near, ctx.inside):
            return None
        ceiling = math.inf
        slots = vs.slots
        for rule, k in vs.plan.skippable:
            limit = rule.at_rest(slots[k], ctx)
            if limit is None:
                return None
            ceiling = min(ceiling, limit)
        fix = ctx.fix
        return Rest(ctx.near, ctx.inside, ceiling, fix.sensors, ctx.moving, fix.status)

    def _close_stale(self, vs: VehicleState, fix: Fix, events: list[Event]) -> list[Event]:
        if vs.stale:
            for alert in vs.stale:
                events.append(
                    make_event(fix, alert.kind, "end", alert.key, alert.severity, zone_id=alert.zone_id,
                               route_id=alert.route_id, details={"restored": True})
                )  # fmt: skip
            vs.stale = ()
        return events

    def _update_members(self, vehicle_id: str, entered: tuple[str, ...], exited: tuple[str, ...]) -> None:
        for zid in exited:
            self._members.get(zid, set()).discard(vehicle_id)
        for zid in entered:
            self._members.setdefault(zid, set()).add(vehicle_id)

    # -- time, queries, restart ----------------------------------------------

    def tick(self, now: float) -> list[Event]:
        """Time-driven checks (offline); called by the driver periodically."""
        events: list[Event] = []
        for vehicle_id, vs in self._vehicles.items():
            events += offline.on_tick(vehicle_id, vs.link, now, self.settings)
        return events

    def vehicles_in_zone(self, zone_id: str) -> frozenset[str]:
        """Vehicles whose presence in the zone is confirmed (after dwell) right now."""
        return frozenset(self._members.get(zone_id, ()))

    def zones_of(self, vehicle_id: str) -> tuple[str, ...]:
        vs = self._vehicles.get(vehicle_id)
        return () if vs is None else tuple(vs.presence.inside)

    def restore(self, vehicle_id: str, last_fix: Fix | None, open_alerts: Iterable[OpenAlert] = ()) -> None:
        """Rebuild a vehicle after a restart from its last stored fix and its open alerts.

        The last fix sets the late cut-off and the offline clock. Each open
        alert is handed to the rule that owns its key, which rebuilds the
        state that decides its end (an open episode with its start figures,
        the zones the vehicle is in, the alarm bits that are set); so the
        rules neither raise it again nor miss its end. An open alert no
        applicable rule owns (its zone or permit was removed) is ended at the
        vehicle's next fix with ``restored: true``.
        """
        vs = self._state(vehicle_id)
        if last_fix is not None:
            vs.last_ts = last_fix.ts
            # The filter judges the next fix against the last stored one: an
            # outlier right after a restart is still an outlier.
            x, y = self._to_xy(last_fix.lon, last_fix.lat)
            vs.filter.anchor = filters.Place(x, y, last_fix.ts)
            vs.filter.seen_ts = last_fix.ts
        alerts = list(open_alerts)
        offline.restore(vs.link, last_fix, self.settings, offline=any(a.key == offline.KEY for a in alerts))
        to_xy = self._to_xy
        ctx = RestoreContext(self.settings, to_xy)
        applicable = {r.name: r for r in RULES if r.applies(vs.vehicle)}
        for alert in alerts:
            if alert.key == offline.KEY:
                continue
            if alert.key.startswith(presence.PREFIX) and alert.key.removeprefix(presence.PREFIX) in self._zones:
                presence.restore(vs.presence, alert)
                self._update_members(vehicle_id, (alert.key.removeprefix(presence.PREFIX),), ())
                continue
            owner = next((r for r in applicable.values() if r.owns(alert.key)), None)
            if owner is None:
                vs.stale = (*vs.stale, alert)
            else:
                owner.restore(vs.slots[vs.plan.rules.index(owner)], alert, ctx)
        vs.rest = None

    def knows(self, vehicle_id: str) -> bool:
        return vehicle_id in self._vehicles

    def forget(self, vehicle_ids: Iterable[str]) -> None:
        """Drop vehicles another owner now judges (an ingest worker gave their
        partition back): no tick, no presence, a restore at their next fix."""
        for vehicle_id in vehicle_ids:
            if self._vehicles.pop(vehicle_id, None) is not None:
                for members in self._members.values():
                    members.discard(vehicle_id)

    def _to_xy(self, lon: float, lat: float) -> tuple[float, float]:
        if self._projection is None:
            self._projection = Projection.near(lon, lat)
        x, y = self._projection.to_xy(np.array([lon]), np.array([lat]))
        return float(x[0]), float(y[0])


def _moved(old: Projection, new: Projection, x: float, y: float) -> tuple[float, float]:
    lon, lat = old.to_lonlat(np.array([x]), np.array([y]))
    nx, ny = new.to_xy(lon, lat)
    return float(nx[0]), float(ny[0])
