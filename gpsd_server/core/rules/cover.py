"""Uncovered load: loaded, moving and the cover reported open.

Starts after ``uncovered_min_s``; ends when the cover is reported closed or
the truck reported empty. Stopping alone does not end it (a truck waiting
at a light is still uncovered).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpsd_server.core.city import Vehicle
from gpsd_server.core.rules.base import (
    NO_CONSTRAINT,
    NO_EVENTS,
    Episode,
    Events,
    FixContext,
    OpenAlert,
    RestoreContext,
    Rule,
)

KEY = "uncovered_load"


@dataclass(slots=True)
class CoverState:
    episode: Episode = field(default_factory=Episode)


class UncoveredLoad(Rule[CoverState]):
    name = "uncovered_load"
    keys = (KEY,)

    def applies(self, vehicle: Vehicle) -> bool:
        return vehicle.vehicle_class == "muck_truck"

    def new_state(self) -> CoverState:
        return CoverState()

    def step(self, state: CoverState, ctx: FixContext) -> Events:
        sensors = ctx.fix.sensors
        episode = state.episode
        if sensors is None or (sensors.cover_closed is None and not episode.active):
            return NO_EVENTS
        loaded = ctx.loaded()
        on = bool(loaded) and ctx.moving and sensors.cover_closed is False
        off = sensors.cover_closed is True or loaded is False
        phase = episode.step(ctx.fix.ts, on, off, ctx.settings.uncovered_min_s, 0.0)
        if phase == "start":
            return (ctx.event(KEY, "start", KEY, "warning"),)
        if phase == "end":
            return (
                ctx.event(KEY, "end", KEY, "warning", duration_s=episode.duration_s, started_at=episode.started_at),
            )
        return NO_EVENTS

    def at_rest(self, state: CoverState, ctx: FixContext) -> float | None:
        # "on" reads sensors, moving and the load bits: all part of the rest match.
        return NO_CONSTRAINT if state.episode.idle else None

    def restore(self, state: CoverState, alert: OpenAlert, ctx: RestoreContext) -> None:
        state.episode.resume(alert.ts)


RULE = UncoveredLoad()
