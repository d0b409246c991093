"""Overspeed: above the lowest applicable limit for a minimum time.

The limit is the lowest ``speed_limit_kmh`` of the zones strictly containing
the fix (whose schedule is active), else the class limit, else the default.
Starts after ``overspeed_min_s`` above the limit, ends below the limit minus
``overspeed_band_kmh``; the end event carries ``peak_kmh`` and ``duration_s``.
Only the terminal's reported speed drives it: a speed derived from two noisy
positions would raise false alerts.
"""

from __future__ import annotations

from gpsd_server.core.rules.base import NO_EVENTS, Episode, Events, FixContext
from gpsd_server.model import Fix


def speed_limit_kmh(ctx: FixContext) -> float:
    limit = ctx.settings.class_speed_limit_kmh(ctx.vehicle.vehicle_class)
    zones = ctx.zones
    for zid in ctx.inside:
        zone = zones[zid]
        zone_limit = zone.speed_limit_kmh
        if zone_limit is None or zone_limit >= limit:
            continue
        if zone.schedule is None or zone.schedule.active(ctx.local()):
            limit = zone_limit
    return limit


def overspeed(state: Episode, fix: Fix, ctx: FixContext) -> tuple[Episode, Events]:
    speed = fix.speed_kmh
    if speed is None:
        return state, NO_EVENTS
    settings = ctx.settings
    limit = speed_limit_kmh(ctx)
    on = speed > limit
    if on and not state.active and state.on_since is None:
        state.peak = 0.0
    if on or state.active:
        state.peak = max(state.peak, speed)
    phase = state.step(fix.ts, on, speed < limit - settings.overspeed_band_kmh, settings.overspeed_min_s, 0.0)
    if phase == "start":
        state.ref = str(limit)
        event = ctx.event("overspeed", "start", "overspeed", "warning", limit_kmh=limit, speed_kmh=speed)
        return state, (event,)
    if phase == "end":
        event = ctx.event(
            "overspeed",
            "end",
            "overspeed",
            "warning",
            limit_kmh=float(state.ref or limit),
            peak_kmh=state.peak,
            duration_s=state.duration_s,
            started_at=state.started_at,
        )
        return state, (event,)
    return state, NO_EVENTS
