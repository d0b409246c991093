"""Route deviation: a permitted vehicle off every approved route for a minimum time.

The margin is :func:`gpsd_server.core.permits.permit_margin` over the
permits valid that day (shared with the permit report). A deviation starts
after the margin has stayed positive for ``deviation_min_s`` and ends once it
drops below ``-deviation_band_m``. The key names the permit nearest at the
start: ``route_deviation:<permit>``; the end event carries ``max_distance_m``
and ``duration_s``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from gpsd_server.core.city import Vehicle
from gpsd_server.core.permits import permit_margin
from gpsd_server.core.rules.base import NO_EVENTS, Episode, Events, FixContext, OpenAlert, RestoreContext, Rule, rounded

PREFIX = "route_deviation:"


@dataclass(slots=True)
class RouteState:
    episode: Episode = field(default_factory=Episode)
    permit_id: str = ""  # of the running episode
    route_id: str = ""
    max_distance_m: float = 0.0


class RouteDeviation(Rule[RouteState]):
    name = "route_deviation"
    keys = (PREFIX,)
    always_run = True  # the distance to the route changes with every fix

    def applies(self, vehicle: Vehicle) -> bool:
        return bool(vehicle.permits)

    def new_state(self) -> RouteState:
        return RouteState()

    def step(self, state: RouteState, ctx: FixContext) -> Events:
        permits = ctx.permits()
        episode = state.episode
        if not permits and not episode.active:
            return NO_EVENTS
        m = permit_margin(permits, ctx.route_dist, ctx.near, ctx.corridor_m)
        on = m.margin_m > 0
        if on and episode.idle:
            state.max_distance_m = 0.0
        if on or episode.active:
            state.max_distance_m = max(state.max_distance_m, m.distance_m if math.isfinite(m.distance_m) else 0.0)
        settings = ctx.settings
        phase = episode.step(ctx.fix.ts, on, m.margin_m < -settings.deviation_band_m, settings.deviation_min_s, 0.0)
        if phase == "start":
            state.permit_id, state.route_id = m.permit_id, m.route_id
            event = ctx.event(
                "route_deviation", "start", PREFIX + m.permit_id, "warning", route_id=m.route_id,
                permit=m.permit_id, distance_m=rounded(m.distance_m),
            )  # fmt: skip
            return (event,)
        if phase == "end":
            event = ctx.event(
                "route_deviation", "end", PREFIX + state.permit_id, "warning", route_id=state.route_id,
                permit=state.permit_id, max_distance_m=rounded(state.max_distance_m),
                duration_s=episode.duration_s, started_at=episode.started_at,
            )  # fmt: skip
            return (event,)
        return NO_EVENTS

    def restore(self, state: RouteState, alert: OpenAlert, ctx: RestoreContext) -> None:
        state.episode.resume(alert.ts)
        state.permit_id = alert.key.removeprefix(PREFIX)
        state.route_id = alert.route_id or ""
        state.max_distance_m = max(alert.number("max_distance_m"), alert.number("distance_m"))


RULE = RouteDeviation()
