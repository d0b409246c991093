"""What every rule gets: the fix context, the debounced episode, event helpers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import tzinfo
from types import MappingProxyType
from typing import Any

from gpsd_server.core.city import Permit, Vehicle, Zone
from gpsd_server.core.schedule import LocalTime, local_time
from gpsd_server.core.settings import RuleSettings
from gpsd_server.model import Event, Fix, Phase, Severity

Events = tuple[Event, ...]
NO_EVENTS: Events = ()
SITE_KINDS = frozenset({"construction_site", "disposal_site"})

# Shared empty defaults: a context is built per fix, so it must not allocate.
_EMPTY: Mapping[str, Any] = MappingProxyType({})

# JT/T 808 status bits 8-9: load state 00 empty (or not reported), 01 half, 11 full.
_LOAD_BITS = 0x300


class FixContext:
    """One fix as the rules see it (built by the engine per fix, so kept allocation-free)."""

    __slots__ = (
        "_local",
        "confirmed",
        "corridors",
        "entered",
        "exited",
        "fix",
        "inside",
        "moving",
        "near",
        "route_dist",
        "settings",
        "tz",
        "vehicle",
        "x",
        "y",
        "zones",
    )

    def __init__(
        self,
        fix: Fix,
        x: float,
        y: float,
        moving: bool,
        vehicle: Vehicle,
        settings: RuleSettings,
        zones: Mapping[str, Zone],
        tz: tzinfo,
        corridors: Mapping[str, float | None] = _EMPTY,
    ) -> None:
        self.fix = fix
        self.x, self.y = x, y  # projected metres (nan when the position is unusable)
        self.moving = moving
        self.vehicle = vehicle
        self.settings = settings
        self.zones = zones  # every zone of the city by id
        self.tz = tz
        self.corridors = corridors  # route id -> corridor_m (None: settings default)
        self.near: tuple[str, ...] = ()  # zones within the exit band (a superset of inside)
        self.inside: tuple[str, ...] = ()  # zones strictly containing the fix
        self.route_dist: Mapping[str, float] = _EMPTY  # route id -> metres, permitted routes only
        self.confirmed: Mapping[str, float] = _EMPTY  # zones the vehicle is in (set by zone presence)
        self.entered: tuple[str, ...] = ()  # zones confirmed at this fix
        self.exited: tuple[str, ...] = ()
        self._local: LocalTime | None = None

    def local(self) -> LocalTime:
        if self._local is None:
            self._local = local_time(self.fix.ts, self.tz)
        return self._local

    def permits(self) -> tuple[Permit, ...]:
        """The vehicle's permits valid on the fix's local date."""
        permits = self.vehicle.permits
        if all(p.valid_from is None and p.valid_to is None for p in permits):
            return permits  # no dates to check (and no clock arithmetic needed)
        day = self.local().day
        return tuple(p for p in self.vehicle.permits if p.valid_on(day))

    def corridor_m(self, route_id: str) -> float:
        corridor = self.corridors.get(route_id)
        return self.settings.corridor_m if corridor is None else corridor

    def near_kind(self, kinds: frozenset[str]) -> bool:
        zones = self.zones
        return any(zones[z].kind in kinds for z in self.near if z in zones)

    def loaded(self) -> bool | None:
        sensors = self.fix.sensors
        if sensors is not None and sensors.loaded is not None:
            return sensors.loaded
        return True if self.fix.status & _LOAD_BITS else None

    def event(
        self,
        kind: str,
        phase: Phase,
        key: str,
        severity: Severity,
        *,
        zone_id: str | None = None,
        route_id: str | None = None,
        extra: Mapping[str, Any] | None = None,
        **details: Any,
    ) -> Event:
        if extra:
            details.update(extra)
        fix = self.fix
        return Event(
            kind=kind,
            phase=phase,
            vehicle_id=fix.vehicle_id,
            ts=fix.ts,
            lon=fix.lon,
            lat=fix.lat,
            key=key,
            severity=severity,
            zone_id=zone_id,
            route_id=route_id,
            details=details,
        )


@dataclass(slots=True)
class Episode:
    """A condition debounced in fix time, with hysteresis supplied by the caller.

    ``on`` and ``off`` are separate tests (e.g. speed > limit, speed < limit
    minus a band); a fix that is neither keeps the current state, which is
    what stops noise inside the band from flapping. ``peak`` is free for the
    rule to track a maximum over the episode.
    """

    active: bool = False
    on_since: float | None = None  # first fix of the current run of "on" fixes
    off_since: float | None = None  # first fix of the current run of "off" fixes
    started_at: float = 0.0
    peak: float = 0.0
    key: str = ""
    ref: str | None = None  # the zone/route/permit the episode is about

    def step(self, ts: float, on: bool, off: bool, start_after: float, end_after: float) -> Phase | None:
        """Advance by one fix; return ``start``/``end`` when the episode changes."""
        if not self.active:
            if not on:
                self.on_since = None
                return None
            if self.on_since is None:
                self.on_since = ts
            if ts - self.on_since < start_after:
                return None
            self.active, self.started_at, self.off_since = True, self.on_since, None
            return "start"
        if not off:
            self.off_since = None
            return None
        if self.off_since is None:
            self.off_since = ts
        if ts - self.off_since < end_after:
            return None
        self.active, self.on_since = False, None
        return "end"

    @property
    def duration_s(self) -> float:
        """Length of the episode that just ended: first on-fix to first off-fix."""
        return (self.off_since or self.started_at) - self.started_at
