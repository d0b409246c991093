"""Curfew: a permitted vehicle moving outside every permit's hours.

Starts after ``curfew_min_s`` of moving outside the hours; ends once the
vehicle has been stopped, or inside its hours, for ``curfew_end_s`` (so a red
light does not end it). A permit without ``hours`` allows any time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpsd_server.core.city import Permit, Vehicle
from gpsd_server.core.rules.base import NO_EVENTS, Episode, Events, FixContext, OpenAlert, RestoreContext, Rule

KEY = "curfew"


@dataclass(slots=True)
class CurfewState:
    episode: Episode = field(default_factory=Episode)


class Curfew(Rule[CurfewState]):
    name = "curfew"
    keys = (KEY,)
    always_run = True  # permit hours change with the fix time

    def applies(self, vehicle: Vehicle) -> bool:
        return bool(vehicle.permits)

    def new_state(self) -> CurfewState:
        return CurfewState()

    def step(self, state: CurfewState, ctx: FixContext) -> Events:
        permits = ctx.permits()
        episode = state.episode
        if not permits and not episode.active:
            return NO_EVENTS
        allowed = not permits or _allowed(permits, ctx)
        on = ctx.moving and not allowed
        off = allowed or not ctx.moving
        settings = ctx.settings
        phase = episode.step(ctx.fix.ts, on, off, settings.curfew_min_s, settings.curfew_end_s)
        if phase == "start":
            return (ctx.event(KEY, "start", KEY, "warning", permits=[p.id for p in permits]),)
        if phase == "end":
            return (
                ctx.event(KEY, "end", KEY, "warning", duration_s=episode.duration_s, started_at=episode.started_at),
            )
        return NO_EVENTS

    def restore(self, state: CurfewState, alert: OpenAlert, ctx: RestoreContext) -> None:
        state.episode.resume(alert.ts)


def _allowed(permits: tuple[Permit, ...], ctx: FixContext) -> bool:
    for p in permits:
        if ctx.in_hours(p.hours):
            return True
    return False


RULE = Curfew()
