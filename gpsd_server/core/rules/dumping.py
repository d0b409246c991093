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

from gpsd_server.core.rules.base import NO_EVENTS, SITE_KINDS, Events, FixContext
from gpsd_server.model import Event, Fix

_CONSTRUCTION = frozenset({"construction_site"})


@dataclass(slots=True)
class StopState:
    anchor_x: float = math.nan  # where the current stop began (projected metres)
    anchor_y: float = math.nan
    since: float | None = None  # first fix of the suspicious run, if any
    raised: bool = False
    lift: bool = False
    drum: bool = False


def _event(ctx: FixContext, phase: str, what: str, **details: object) -> Event:
    key = f"illegal_dumping:{what}"
    if phase == "start":
        return ctx.event("illegal_dumping", "start", key, "critical", extra=details)
    return ctx.event("illegal_dumping", "end", key, "critical", extra=details)


def loaded_stop(state: StopState, fix: Fix, ctx: FixContext) -> tuple[StopState, Events]:
    settings = ctx.settings
    moved = math.hypot(ctx.x - state.anchor_x, ctx.y - state.anchor_y)  # nan for no anchor
    if state.raised:
        if not moved <= settings.stop_radius_m + settings.stop_exit_band_m:
            since = state.since
            state.raised, state.since = False, None
            state.anchor_x, state.anchor_y = ctx.x, ctx.y
            event = _event(ctx, "end", "stop", duration_s=fix.ts - (since or fix.ts), unloaded=ctx.loaded() is False)
            return state, (event,)
        return state, NO_EVENTS
    if not moved <= settings.stop_radius_m:
        state.anchor_x, state.anchor_y, state.since = ctx.x, ctx.y, None
    if ctx.near_kind(SITE_KINDS):
        state.since = None
    elif state.since is None:
        if ctx.loaded():
            state.since = fix.ts
    elif fix.ts - state.since >= settings.stop_min_s:
        state.raised = True
        return state, (_event(ctx, "start", "stop", stopped_since=state.since, loaded=ctx.loaded()),)
    return state, NO_EVENTS


def body_lift(state: StopState, fix: Fix, ctx: FixContext) -> tuple[StopState, Events]:
    lift = None if fix.sensors is None else fix.sensors.lift
    if lift is None or lift == state.lift:
        return state, NO_EVENTS
    if lift and ctx.near_kind(SITE_KINDS):
        return state, NO_EVENTS
    state.lift = lift
    return state, (_event(ctx, "start" if lift else "end", "lift"),)


def drum_reverse(state: StopState, fix: Fix, ctx: FixContext) -> tuple[StopState, Events]:
    drum = None if fix.sensors is None else fix.sensors.drum
    if drum is None:
        return state, NO_EVENTS
    unloading = drum == "ccw"
    if unloading == state.drum or (unloading and ctx.near_kind(_CONSTRUCTION)):
        return state, NO_EVENTS
    state.drum = unloading
    return state, (_event(ctx, "start" if unloading else "end", "drum", drum=drum),)
