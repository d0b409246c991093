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
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from gpsd_server.core.city import City, Vehicle
from gpsd_server.core.geo import CityGeometry, Located, Projection, city_centre
from gpsd_server.core.rules import RULES, offline, presence
from gpsd_server.core.rules.base import Events, FixContext, OpenAlert, RestoreContext, Rule, make_event
from gpsd_server.model import VEHICLE_CLASSES, Event, Fix, FixFlag, Sensors
from gpsd_server.settings import RuleSettings

# Plain ints: IntFlag arithmetic runs in Python and shows up per fix.
_LATE = int(FixFlag.LATE)
_NOT_FOR_RULES = int(FixFlag.INVALID | FixFlag.JUMP | FixFlag.FILTERED)
_CLASS_CODE = {c: i for i, c in enumerate(VEHICLE_CLASSES)}
Step = Callable[[Any, FixContext], Events]


@dataclass(frozen=True, slots=True)
class Rest:
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


@dataclass(slots=True)
class VehicleState:
    """What the engine remembers about one vehicle."""

    vehicle: Vehicle
    states: dict[str, Any] = field(default_factory=dict)  # rule name -> its state (kept across reloads)
    rules: tuple[tuple[Step, Any], ...] = ()  # (rule.step, state) of the applicable rules, in order
    busy: tuple[tuple[Step, Any], ...] = ()  # the always_run ones (the fast path)
    free: tuple[tuple[Step, Any], ...] = ()  # the position-free ones (fixes without a usable position)
    skippable: tuple[tuple[Rule[Any], Any], ...] = ()  # asked at_rest after a full run
    presence: presence.PresenceState = field(default_factory=presence.PresenceState)
    link: offline.LinkState = field(default_factory=offline.LinkState)
    last_ts: float | None = None  # last processed (non-late) fix
    last_x: float = math.nan  # last usable position, projected
    last_y: float = math.nan
    route_index: tuple[int, ...] = ()  # corridor indices of every permitted route
    rest: Rest | None = None  # set when the skippable rules are at rest (the fast path)
    stale: list[OpenAlert] = field(default_factory=list)  # restored alerts no rule owns: ended at the next fix


@dataclass(frozen=True, slots=True)
class EngineResult:
    fixes: list[Fix]
    events: list[Event] = field(default_factory=list)


class Engine:
    """Stateful, pure: no I/O, no clock. The driver owns the only instance."""

    def __init__(
        self,
        *,
        city: City | None = None,
        settings: RuleSettings | None = None,
        tz: str | tzinfo = "Asia/Shanghai",
        epsg: int | None = None,
        fast_path: bool = True,
    ) -> None:
        """``fast_path=False`` runs every rule on every fix (tests compare the two)."""
        self.settings = settings or RuleSettings()
        self.fast_path = fast_path
        self.tz: tzinfo = ZoneInfo(tz) if isinstance(tz, str) else tz
        self._projection = None if epsg is None else Projection(epsg)
        self._vehicles: dict[str, VehicleState] = {}
        self._members: dict[str, set[str]] = {}  # zone id -> vehicle ids inside
        self.reload(city or City())

    # -- configuration ---------------------------------------------------

    def reload(self, city: City, geometry: CityGeometry | None = None) -> None:
        """Swap in a new City (and its geometry, if built elsewhere, e.g. off the
        event loop); vehicle states and the projection carry over."""
        if geometry is not None:
            self._projection = geometry.projection
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

    def build_geometry(self, city: City, projection: Projection | None = None) -> CityGeometry:
        """The projected city (slow for big cities: the driver calls it in a thread)."""
        projection = projection or self._projection or Projection.near(*(city_centre(city) or (112.5, 28.5)))
        return CityGeometry(city, projection, self.settings.zone_exit_band_m)

    @property
    def projection(self) -> Projection | None:
        return self._projection

    def _vehicle(self, vehicle_id: str) -> Vehicle:
        return self.city.vehicle(vehicle_id) or Vehicle(vehicle_id)

    def _configure(self, vs: VehicleState, vehicle: Vehicle) -> None:
        vs.vehicle = vehicle
        applicable = [r for r in RULES if r.applies(vehicle)]
        for rule in applicable:
            if rule.name not in vs.states:
                vs.states[rule.name] = rule.new_state()
        bound = [(r, vs.states[r.name]) for r in applicable]
        vs.rules = tuple((r.step, s) for r, s in bound)
        vs.busy = tuple((r.step, s) for r, s in bound if r.always_run)
        vs.free = tuple((r.step, s) for r, s in bound if r.position_free)
        vs.skippable = tuple((r, s) for r, s in bound if not r.always_run)
        vs.rest = None  # zone kinds and limits may have changed
        index = self._geometry.corridors.index if self._geometry is not None else {}
        vs.route_index = tuple(sorted({index[r] for p in vehicle.permits for r in p.routes if r in index}))

    def _state(self, vehicle_id: str) -> VehicleState:
        vs = self._vehicles.get(vehicle_id)
        if vs is None:
            vs = self._vehicles[vehicle_id] = VehicleState(self._vehicle(vehicle_id))
            self._configure(vs, vs.vehicle)
        return vs

    # -- the batch ---------------------------------------------------------

    def process(self, fixes: Sequence[Fix], now: float) -> EngineResult:
        out = list(fixes)
        live: list[tuple[Fix, VehicleState, bool]] = []
        # Within one batch, sort each vehicle's fixes by time so a batch that
        # arrives shuffled behaves like the same fixes arriving one by one.
        for i in sorted(range(len(fixes)), key=lambda i: (fixes[i].vehicle_id, fixes[i].ts)):
            fix = fixes[i]
            vs = self._state(fix.vehicle_id)
            if fix.flags & _LATE or (vs.last_ts is not None and fix.ts < vs.last_ts):
                out[i] = replace(fix, flags=fix.flags | _LATE)
                continue
            vs.last_ts = fix.ts
            live.append((fix, vs, not fix.flags & _NOT_FOR_RULES))
        events: list[Event] = []
        located = self._locate([(f, vs) for f, vs, usable in live if usable])
        j = 0
        for fix, vs, usable in live:
            if usable:
                events += self._run(vs, fix, located, j)
                j += 1
            else:
                events += self._run(vs, fix, None, 0)
        return EngineResult(fixes=out, events=events)

    def _locate(self, usable: list[tuple[Fix, VehicleState]]) -> Located | None:
        if not usable:
            return None
        if self._geometry is None:  # no geometry in the city: project near the fleet
            self._projection = self._projection or Projection.near(usable[0][0].lon, usable[0][0].lat)
            self._geometry = self.build_geometry(self.city, self._projection)
        lon = np.fromiter((f.lon for f, _ in usable), dtype=np.float64, count=len(usable))
        lat = np.fromiter((f.lat for f, _ in usable), dtype=np.float64, count=len(usable))
        codes = np.fromiter((_CLASS_CODE[vs.vehicle.vehicle_class] for _, vs in usable), np.intp, len(usable))
        return self._geometry.locate(lon, lat, codes, [vs.route_index for _, vs in usable])

    def _run(self, vs: VehicleState, fix: Fix, located: Located | None, j: int) -> list[Event]:
        settings = self.settings
        if located is None:
            events = offline.on_fix(vs.link, fix, settings, position_ok=False, moving=False)
            ctx = FixContext(fix, math.nan, math.nan, False, vs.vehicle, settings, self._zones, self.tz)
            for step, state in vs.free:
                if produced := step(state, ctx):
                    events.extend(produced)
            return self._close_stale(vs, fix, events)
        x, y = located.x[j], located.y[j]
        if fix.speed_kmh is not None:
            moving = fix.speed_kmh >= settings.moving_kmh
        else:  # no speed reported: moved further than GPS noise since the last fix
            moving = math.hypot(x - vs.last_x, y - vs.last_y) > settings.stop_radius_m
        vs.last_x, vs.last_y = x, y
        events = offline.on_fix(vs.link, fix, settings, position_ok=True, moving=moving)
        near, inside = located.near[j], located.inside[j]
        rest = vs.rest
        if rest is not None and rest.matches(fix, near, inside, moving):
            rules, seen = vs.busy, presence.UNCHANGED
        else:
            rules = vs.rules
            seen = presence.step(vs.presence, fix, near, inside, self._zones)
            events.extend(seen.events)
        if rules:
            ctx = FixContext(
                fix, x, y, moving, vs.vehicle, settings, self._zones, self.tz, self._corridor_m,
                near, inside, located.route_dist[j], vs.presence.inside, seen.entered, seen.exited,
            )  # fmt: skip
            for step, state in rules:
                if produced := step(state, ctx):
                    events.extend(produced)
            if rules is vs.rules and self.fast_path:
                vs.rest = self._at_rest(vs, ctx)
        if seen.entered or seen.exited:
            self._update_members(fix.vehicle_id, seen.entered, seen.exited)
        return self._close_stale(vs, fix, events)

    def _at_rest(self, vs: VehicleState, ctx: FixContext) -> Rest | None:
        if not presence.idle(vs.presence, ctx.near, ctx.inside):
            return None
        ceiling = math.inf
        for rule, state in vs.skippable:
            limit = rule.at_rest(state, ctx)
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
            vs.stale = []
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
                vs.stale.append(alert)
            else:
                owner.restore(vs.states[owner.name], alert, ctx)
        vs.rest = None

    def _to_xy(self, lon: float, lat: float) -> tuple[float, float]:
        if self._projection is None:
            self._projection = Projection.near(lon, lat)
        x, y = self._projection.to_xy(np.array([lon]), np.array([lat]))
        return float(x[0]), float(y[0])
