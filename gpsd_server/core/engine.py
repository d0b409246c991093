"""The engine: ordered stages over batches of fixes, per-vehicle state.

``Engine.process(fixes, now)`` takes decoded fixes (any vehicles, arrival
order) and returns the same fixes with their flags set plus the events they
caused. One vehicle's fixes are processed in fix-time order; a fix older than
the vehicle's last processed fix is marked late: stored, but it moves no
state. Fixes flagged INVALID, JUMP or FILTERED keep the vehicle online and
carry its alarm bits, but do not drive the position rules.

A batch costs a handful of array calls (one projection, one STRtree query,
one ``contains_xy``, one ``distance``) and then a short Python loop that runs
the vehicle's stages -- in the order of :data:`STAGES` -- on each fix.
A fix that matches the vehicle's recorded rest (same zones, under every
limit, same alarm bits and sensors; see :mod:`~gpsd_server.core.rules.quiet`)
runs only the stages that change with every fix: the same events, less work.
``process`` never looks at ``now``: splitting a sequence into batches of any
size gives the same events. Only :meth:`Engine.tick` uses the clock it is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from gpsd_server.core import restore
from gpsd_server.core.city import City, Vehicle
from gpsd_server.core.geo import CityGeometry, Located, Projection, city_centre
from gpsd_server.core.rules import offline
from gpsd_server.core.rules.alarms import AlarmState, alarm_mask, terminal_alarms
from gpsd_server.core.rules.base import Episode, Events, FixContext
from gpsd_server.core.rules.cover import uncovered_load
from gpsd_server.core.rules.curfew import curfew
from gpsd_server.core.rules.delivery import DeliveryState, delivery_overtime
from gpsd_server.core.rules.dumping import StopState, body_lift, drum_reverse, loaded_stop
from gpsd_server.core.rules.quiet import ALWAYS_RUN, Rest, at_rest, still_at_rest
from gpsd_server.core.rules.route import route_deviation
from gpsd_server.core.rules.speed import overspeed
from gpsd_server.core.rules.zones import ForbiddenState, ZoneState, forbidden_zone, zone_presence
from gpsd_server.core.settings import RuleSettings
from gpsd_server.model import VEHICLE_CLASSES, Event, Fix, FixFlag

Rule = Callable[[Any, Fix, FixContext], tuple[Any, Events]]
# Plain ints: IntFlag arithmetic runs in Python and shows up per fix.
_LATE = int(FixFlag.LATE)
_NOT_FOR_RULES = int(FixFlag.INVALID | FixFlag.JUMP | FixFlag.FILTERED)
_CLASS_CODE = {c: i for i, c in enumerate(VEHICLE_CLASSES)}


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    rule: Rule
    new_state: Callable[[], Any]
    applies: Callable[[Vehicle], bool]


def _always(v: Vehicle) -> bool:
    return True


def _permitted(v: Vehicle) -> bool:
    return bool(v.permits)


def _muck(v: Vehicle) -> bool:
    return v.vehicle_class == "muck_truck"


def _mixer(v: Vehicle) -> bool:
    return v.vehicle_class == "mixer_truck"


# The order matters: zone presence fills ctx.confirmed/entered/exited for the rest.
STAGES: tuple[Stage, ...] = (
    Stage("zones", zone_presence, ZoneState, _always),
    Stage("forbidden_zone", forbidden_zone, ForbiddenState, _always),
    Stage("overspeed", overspeed, Episode, _always),
    Stage("route_deviation", route_deviation, Episode, _permitted),
    Stage("curfew", curfew, Episode, _permitted),
    Stage("loaded_stop", loaded_stop, StopState, _muck),
    Stage("body_lift", body_lift, StopState, _muck),
    Stage("uncovered_load", uncovered_load, Episode, _muck),
    Stage("drum_reverse", drum_reverse, StopState, _mixer),
    Stage("delivery_overtime", delivery_overtime, DeliveryState, _mixer),
)
# Stages that need no position: they also run for INVALID/JUMP/FILTERED fixes.
POSITION_FREE: tuple[Stage, ...] = (Stage("terminal_alarms", terminal_alarms, AlarmState, _always),)
_POSITION_FREE_RULES = tuple((s.name, s.rule) for s in POSITION_FREE)


@dataclass(slots=True)
class VehicleState:
    """What the engine remembers about one vehicle."""

    vehicle: Vehicle
    stages: tuple[Stage, ...] = ()
    rules: tuple[tuple[str, Rule], ...] = ()  # (state name, rule) of the stages, for the hot loop
    busy_rules: tuple[tuple[str, Rule], ...] = ()  # the ones a fix at rest still runs (quiet.ALWAYS_RUN)
    states: dict[str, Any] = field(default_factory=dict)
    link: offline.LinkState = field(default_factory=offline.LinkState)
    last_ts: float | None = None  # last processed (non-late) fix
    last_x: float = math.nan  # last usable position, projected
    last_y: float = math.nan
    route_index: tuple[int, ...] = ()  # corridor indices of every permitted route
    pending_restore: restore.PendingRestore | None = None
    rest: Rest | None = None  # set when the skippable stages are at rest (the fast path)


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
        """``fast_path=False`` runs every stage on every fix (tests compare the two)."""
        self.settings = settings or RuleSettings()
        self.fast_path = fast_path
        self._alarm_mask = alarm_mask(self.settings.alarm_bits)
        self.tz: tzinfo = ZoneInfo(tz) if isinstance(tz, str) else tz
        self._projection = None if epsg is None else Projection(epsg)
        self._vehicles: dict[str, VehicleState] = {}
        self._members: dict[str, set[str]] = {}  # zone id -> vehicle ids inside
        self.reload(city or City())

    # -- configuration ---------------------------------------------------

    def reload(self, city: City) -> None:
        """Swap in a new City; vehicle states, and the projection, carry over."""
        if self._projection is None:
            centre = city_centre(city)
            if centre is not None:
                self._projection = Projection.near(*centre)
        self.city = city
        self._zones = {z.id: z for z in city.zones}
        self._corridor_m = {r.id: r.corridor_m for r in city.routes}
        self._geometry = None if self._projection is None else self._build_geometry(self._projection)
        for vehicle_id, vs in self._vehicles.items():
            self._configure(vs, self._vehicle(vehicle_id))

    def _build_geometry(self, projection: Projection) -> CityGeometry:
        return CityGeometry(self.city, projection, self.settings.zone_exit_band_m)

    def _vehicle(self, vehicle_id: str) -> Vehicle:
        return self.city.vehicle(vehicle_id) or Vehicle(vehicle_id)

    def _configure(self, vs: VehicleState, vehicle: Vehicle) -> None:
        vs.vehicle = vehicle
        vs.stages = tuple(s for s in STAGES if s.applies(vehicle)) + POSITION_FREE
        vs.rules = tuple((s.name, s.rule) for s in vs.stages)
        vs.busy_rules = tuple((s.name, s.rule) for s in vs.stages if s.name in ALWAYS_RUN)
        vs.rest = None  # zone kinds and limits may have changed
        for stage in vs.stages:
            if stage.name not in vs.states:
                vs.states[stage.name] = stage.new_state()
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
        if self._projection is None:  # no geometry in the city: project near the fleet
            self._projection = Projection.near(usable[0][0].lon, usable[0][0].lat)
            self._geometry = self._build_geometry(self._projection)
        assert self._geometry is not None
        lon = np.fromiter((f.lon for f, _ in usable), dtype=np.float64, count=len(usable))
        lat = np.fromiter((f.lat for f, _ in usable), dtype=np.float64, count=len(usable))
        codes = np.fromiter((_CLASS_CODE[vs.vehicle.vehicle_class] for _, vs in usable), np.intp, len(usable))
        return self._geometry.locate(lon, lat, codes, [vs.route_index for _, vs in usable])

    def _run(self, vs: VehicleState, fix: Fix, located: Located | None, j: int) -> list[Event]:
        settings = self.settings
        if located is None:
            x = y = math.nan
            moving = False
        else:
            x, y = located.x[j], located.y[j]
            if fix.speed_kmh is not None:
                moving = fix.speed_kmh >= settings.moving_kmh
            else:  # no speed reported: moved further than GPS noise since the last fix
                moving = math.hypot(x - vs.last_x, y - vs.last_y) > settings.stop_radius_m
            vs.last_x, vs.last_y = x, y
        events = offline.on_fix(vs.link, fix, settings, position_ok=located is not None, moving=moving)
        states = vs.states
        rest = vs.rest
        if located is None:
            rules = _POSITION_FREE_RULES
        elif rest is not None and still_at_rest(
            rest, fix, located.near[j], located.inside[j], moving, self._alarm_mask, states["terminal_alarms"].bits
        ):
            rules = vs.busy_rules
            if not rules:  # nothing to run: not even a context to build
                return self._reconcile(vs, fix, events)
        else:
            rules = vs.rules
        ctx = FixContext(fix, x, y, moving, vs.vehicle, settings, self._zones, self.tz, corridors=self._corridor_m)
        if located is not None:
            ctx.near, ctx.inside, ctx.route_dist = located.near[j], located.inside[j], located.route_dist[j]
            ctx.confirmed = states["zones"].inside  # as zone presence would set it, run or skipped
        for name, rule in rules:
            states[name], produced = rule(states[name], fix, ctx)
            if produced:
                events.extend(produced)
        if ctx.entered or ctx.exited:
            self._update_members(fix.vehicle_id, ctx.entered, ctx.exited)
        if rules is vs.rules and self.fast_path:
            vs.rest = at_rest(states, ctx)
        return self._reconcile(vs, fix, events)

    def _reconcile(self, vs: VehicleState, fix: Fix, events: list[Event]) -> list[Event]:
        settings = self.settings
        if vs.pending_restore is not None:
            events, vs.pending_restore = restore.reconcile(vs.pending_restore, fix, events, settings.restore_grace_s)
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
        return () if vs is None else tuple(vs.states["zones"].inside)

    def seed(self, vehicle_id: str, last_ts: float) -> None:
        """Restore a vehicle's last processed fix time (after a restart)."""
        vs = self._state(vehicle_id)
        vs.last_ts = vs.link.last_ts = last_ts

    def restore(self, vehicle_id: str, last_fix: Fix | None, open_keys: Iterable[str] = ()) -> None:
        """Rebuild a vehicle after a restart from its last stored fix and open alert keys.

        The last fix sets the late cut-off and the offline clock. Open keys are
        the ``Event.key`` of alerts still open in the store: a start the rules
        raise again for one of them is swallowed (the alert is already open),
        and any not raised again within ``restore_grace_s`` of fix time is
        closed with an end event whose details say ``restored: true``.
        """
        vs = self._state(vehicle_id)
        if last_fix is not None:
            vs.last_ts = vs.link.last_ts = last_fix.ts
            vs.link.lon, vs.link.lat = last_fix.lon, last_fix.lat
            vs.link.moving = (last_fix.speed_kmh or 0.0) >= self.settings.moving_kmh
        keys = set(open_keys)
        if offline.KEY in keys:
            vs.link.offline = True  # the next fix closes it
            keys.discard(offline.KEY)
        vs.pending_restore = restore.PendingRestore(keys) if keys else None
