"""Suspected illegal dumping (critical), three ways:

- ``illegal_dumping:stop``: a muck truck that was loaded when it stopped
  stays within ``stop_radius_m`` of where it stopped for ``stop_min_s``,
  outside (and beyond the exit band of) every construction or disposal
  site. Ends when it moves beyond ``stop_radius_m + stop_exit_band_m``; the
  end event says whether it left unloaded.
- ``illegal_dumping:lift``: body lift raised outside every site.
- ``illegal_dumping:drum``: a mixer's drum turning ``ccw`` (unloading)
  outside every construction site.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from gpsd_server.core.city import Vehicle
from gpsd_server.core.rules.base import (
    NO_CONSTRAINT,
    NO_EVENTS,
    SITE_KINDS,
    Events,
    FixContext,
    OpenAlert,
    RestoreContext,
    Rule,
)
from gpsd_server.model import Event

KIND = "illegal_dumping"
_CONSTRUCTION = frozenset({"construction_site"})


def _event(ctx: FixContext, phase: str, what: str, **details: Any) -> Event:
    key = f"{KIND}:{what}"
    # ``sign``: what gave it away (a stop off site, the tipper lifted, the drum reversing).
    return ctx.event(KIND, "start" if phase == "start" else "end", key, "critical", sign=what, **details)


@dataclass(slots=True)
class StopState:
    anchor_x: float = math.nan  # where the current stop began (projected metres)
    anchor_y: float = math.nan
    since: float | None = None  # first fix of the suspicious run, if any
    raised: bool = False


class LoadedStop(Rule[StopState]):
    name = "loaded_stop"
    keys = (f"{KIND}:stop",)
    always_run = True  # the distance from the stop's anchor changes with every fix

    def applies(self, vehicle: Vehicle) -> bool:
        return vehicle.vehicle_class == "muck_truck"

    def new_state(self) -> StopState:
        return StopState()

    def step(self, state: StopState, ctx: FixContext) -> Events:
        settings = ctx.settings
        ts = ctx.fix.ts
        moved = math.hypot(ctx.x - state.anchor_x, ctx.y - state.anchor_y)  # nan for no anchor
        if state.raised:
            if not moved <= settings.stop_radius_m + settings.stop_exit_band_m:
                since = state.since
                state.raised, state.since = False, None
                state.anchor_x, state.anchor_y = ctx.x, ctx.y
                return (_event(ctx, "end", "stop", duration_s=ts - (since or ts), unloaded=ctx.loaded() is False),)
            return NO_EVENTS
        if not moved <= settings.stop_radius_m:
            state.anchor_x, state.anchor_y, state.since = ctx.x, ctx.y, None
        if ctx.near_kind(SITE_KINDS):
            state.since = None
        elif state.since is None:
            if ctx.loaded():
                state.since = ts
        elif ts - state.since >= settings.stop_min_s:
            state.raised = True
            return (_event(ctx, "start", "stop", stopped_since=state.since, loaded=ctx.loaded()),)
        return NO_EVENTS

    def restore(self, state: StopState, alert: OpenAlert, ctx: RestoreContext) -> None:
        state.raised = True
        state.since = alert.number("stopped_since", alert.ts)
        state.anchor_x, state.anchor_y = ctx.to_xy(alert.lon, alert.lat)


@dataclass(slots=True)
class SensorState:
    on: bool = False  # the lift raised / the drum unloading, as alerted


class BodyLift(Rule[SensorState]):
    name = "body_lift"
    keys = (f"{KIND}:lift",)

    def applies(self, vehicle: Vehicle) -> bool:
        return vehicle.vehicle_class == "muck_truck"

    def new_state(self) -> SensorState:
        return SensorState()

    def step(self, state: SensorState, ctx: FixContext) -> Events:
        sensors = ctx.fix.sensors
        lift = None if sensors is None else sensors.lift
        if lift is None or lift == state.on:
            return NO_EVENTS
        if lift and ctx.near_kind(SITE_KINDS):
            return NO_EVENTS
        state.on = lift
        return (_event(ctx, "start" if lift else "end", "lift"),)

    def at_rest(self, state: SensorState, ctx: FixContext) -> float | None:
        # Having just run on these sensors and zones, an equal reading is a no-op.
        return NO_CONSTRAINT

    def restore(self, state: SensorState, alert: OpenAlert, ctx: RestoreContext) -> None:
        state.on = True


class DrumReverse(Rule[SensorState]):
    name = "drum_reverse"
    keys = (f"{KIND}:drum",)

    def applies(self, vehicle: Vehicle) -> bool:
        return vehicle.vehicle_class == "mixer_truck"

    def new_state(self) -> SensorState:
        return SensorState()

    def step(self, state: SensorState, ctx: FixContext) -> Events:
        sensors = ctx.fix.sensors
        drum = None if sensors is None else sensors.drum
        if drum is None:
            return NO_EVENTS
        unloading = drum == "ccw"
        if unloading == state.on or (unloading and ctx.near_kind(_CONSTRUCTION)):
            return NO_EVENTS
        state.on = unloading
        return (_event(ctx, "start" if unloading else "end", "drum", drum=drum),)

    def at_rest(self, state: SensorState, ctx: FixContext) -> float | None:
        return NO_CONSTRAINT

    def restore(self, state: SensorState, alert: OpenAlert, ctx: RestoreContext) -> None:
        state.on = True


LOADED_STOP = LoadedStop()
BODY_LIFT = BodyLift()
DRUM_REVERSE = DrumReverse()
