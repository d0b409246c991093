"""Uncovered load: loaded, moving and the cover reported open.

Starts after ``uncovered_min_s``; ends when the cover is reported closed or
the truck reported empty. Stopping alone does not end it (a truck waiting
at a light is still uncovered).
"""

from __future__ import annotations

from gpsd_server.core.rules.base import NO_EVENTS, Episode, Events, FixContext
from gpsd_server.model import Fix


def uncovered_load(state: Episode, fix: Fix, ctx: FixContext) -> tuple[Episode, Events]:
    sensors = fix.sensors
    if sensors is None or (sensors.cover_closed is None and not state.active):
        return state, NO_EVENTS
    loaded = ctx.loaded()
    on = bool(loaded) and ctx.moving and sensors.cover_closed is False
    off = sensors.cover_closed is True or loaded is False
    phase = state.step(fix.ts, on, off, ctx.settings.uncovered_min_s, 0.0)
    if phase == "start":
        return state, (ctx.event("uncovered_load", "start", "uncovered_load", "warning"),)
    if phase == "end":
        event = ctx.event(
            "uncovered_load",
            "end",
            "uncovered_load",
            "warning",
            duration_s=state.duration_s,
            started_at=state.started_at,
        )
        return state, (event,)
    return state, NO_EVENTS
