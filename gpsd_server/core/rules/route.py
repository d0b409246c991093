"""Route deviation: a permitted vehicle off every approved route for a minimum time.

The margin is the smallest ``distance - corridor_m`` over the routes of the
vehicle's permits valid that day. A deviation starts after the margin has
stayed positive for ``deviation_min_s`` and ends once it drops below
``-deviation_band_m``. A fix near the permit's origin or destination site
counts as on route (loading and tipping happen off the road). The key names
the permit nearest at the start: ``route_deviation:<permit>``; the end event
carries ``max_distance_m`` and ``duration_s``.
"""

from __future__ import annotations

import math

from gpsd_server.core.rules.base import NO_EVENTS, Episode, Events, FixContext
from gpsd_server.model import Fix


def route_deviation(state: Episode, fix: Fix, ctx: FixContext) -> tuple[Episode, Events]:
    permits = ctx.permits()
    if not permits and not state.active:
        return state, NO_EVENTS
    margin, distance, permit_id, route_id = math.inf, math.inf, "", ""
    at_site = False
    near = ctx.near
    for permit in permits:
        at_site = at_site or permit.origin in near or permit.destination in near
        for rid in permit.routes:
            d = ctx.route_dist.get(rid, math.inf)
            corridor = ctx.corridor_m(rid)
            if d - corridor < margin:
                margin, distance, permit_id, route_id = d - corridor, d, permit.id, rid
    if at_site or not permits:
        margin = -math.inf  # on route by definition
    on = margin > 0
    if on and not state.active and state.on_since is None:
        state.peak = 0.0
    if on or state.active:
        state.peak = max(state.peak, distance if math.isfinite(distance) else 0.0)
    settings = ctx.settings
    phase = state.step(fix.ts, on, margin < -settings.deviation_band_m, settings.deviation_min_s, 0.0)
    if phase == "start":
        state.key, state.ref = f"route_deviation:{permit_id}", route_id
        event = ctx.event(
            "route_deviation", "start", state.key, "warning", route_id=route_id, permit=permit_id, distance_m=distance
        )
        return state, (event,)
    if phase == "end":
        event = ctx.event(
            "route_deviation",
            "end",
            state.key,
            "warning",
            route_id=state.ref,
            permit=state.key.partition(":")[2],
            max_distance_m=round(state.peak, 1),
            duration_s=state.duration_s,
            started_at=state.started_at,
        )
        return state, (event,)
    return state, NO_EVENTS
