"""Curfew: a permitted vehicle moving outside every permit's hours.

Starts after ``curfew_min_s`` of moving outside the hours; ends once the
vehicle has been stopped, or inside its hours, for ``curfew_end_s`` (so a red
light does not end it). A permit without ``hours`` allows any time.
"""

from __future__ import annotations

from gpsd_server.core.rules.base import NO_EVENTS, Episode, Events, FixContext
from gpsd_server.model import Fix


def curfew(state: Episode, fix: Fix, ctx: FixContext) -> tuple[Episode, Events]:
    permits = ctx.permits()
    if not permits and not state.active:
        return state, NO_EVENTS
    allowed = not permits or any(p.hours is None or p.hours.active(ctx.local()) for p in permits)
    on = ctx.moving and not allowed
    off = allowed or not ctx.moving
    settings = ctx.settings
    phase = state.step(fix.ts, on, off, settings.curfew_min_s, settings.curfew_end_s)
    if phase == "start":
        return state, (ctx.event("curfew", "start", "curfew", "warning", permits=[p.id for p in permits]),)
    if phase == "end":
        event = ctx.event(
            "curfew", "end", "curfew", "warning", duration_s=state.duration_s, started_at=state.started_at
        )
        return state, (event,)
    return state, NO_EVENTS
