"""Overspeed: above the lowest applicable limit for a minimum time.

The limit is the lowest ``speed_limit_kmh`` of the zones strictly containing
the fix (whose schedule is active), else the class limit. The alert names
where its limit came from: ``zone_id`` is the speed zone whose limit applied,
or None with ``limit_source: "class"``. Starts after ``overspeed_min_s`` above
the limit, ends below the limit minus ``overspeed_band_kmh``; the end event
carries ``peak_kmh`` and ``duration_s``. Only the terminal's reported speed
drives it: a speed derived from two noisy positions would raise false alerts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gpsd_server.core.rules.base import NO_EVENTS, Episode, Events, FixContext, OpenAlert, RestoreContext, Rule, rounded

KEY = "overspeed"


@dataclass(slots=True)
class SpeedState:
    episode: Episode = field(default_factory=Episode)
    limit_kmh: float = 0.0  # of the running episode
    zone_id: str | None = None  # the zone whose limit applied; None: the class limit
    peak_kmh: float = 0.0


def speed_limit(ctx: FixContext) -> tuple[float, str | None]:
    """The limit at this fix and the zone it comes from (None: the class limit)."""
    limit = ctx.settings.class_speed_limit_kmh(ctx.vehicle.vehicle_class)
    source = None
    zones = ctx.zones
    for zid in ctx.inside:
        zone = zones.get(zid)
        if zone is None:  # gone with a city reload (a place from before it): no limit of its own
            continue
        zone_limit = zone.speed_limit_kmh
        if zone_limit is None or zone_limit >= limit:
            continue
        if ctx.in_hours(zone.schedule):
            limit, source = zone_limit, zid
    return limit, source


class Overspeed(Rule[SpeedState]):
    name = "overspeed"
    keys = (KEY,)

    def new_state(self) -> SpeedState:
        return SpeedState()

    def step(self, state: SpeedState, ctx: FixContext) -> Events:
        speed = ctx.fix.speed_kmh
        if speed is None:
            return NO_EVENTS
        settings = ctx.settings
        episode = state.episode
        limit, zone_id = speed_limit(ctx)
        on = speed > limit
        if on and episode.idle:
            state.peak_kmh = 0.0
        if on or episode.active:
            state.peak_kmh = max(state.peak_kmh, speed)
        phase = episode.step(ctx.fix.ts, on, speed < limit - settings.overspeed_band_kmh, settings.overspeed_min_s, 0.0)
        if phase == "start":
            state.limit_kmh, state.zone_id = limit, zone_id
            return (ctx.event(KEY, "start", KEY, "warning", zone_id=state.zone_id, **_limit(state), speed_kmh=speed),)
        if phase == "end":
            event = ctx.event(
                KEY, "end", KEY, "warning", zone_id=state.zone_id, **_limit(state),
                peak_kmh=rounded(state.peak_kmh), duration_s=episode.duration_s, started_at=episode.started_at,
            )  # fmt: skip
            return (event,)
        return NO_EVENTS

    def at_rest(self, state: SpeedState, ctx: FixContext) -> float | None:
        if not state.episode.idle:
            return None
        # At or below the lowest limit that could apply here (schedules aside)
        # the speed is never "on".
        ceiling = ctx.settings.class_speed_limit_kmh(ctx.vehicle.vehicle_class)
        for zid in ctx.inside:
            zone = ctx.zones.get(zid)
            limit = None if zone is None else zone.speed_limit_kmh
            if limit is not None and limit < ceiling:
                ceiling = limit
        return ceiling

    def restore(self, state: SpeedState, alert: OpenAlert, ctx: RestoreContext) -> None:
        state.episode.resume(alert.ts)
        state.limit_kmh = alert.number("limit_kmh", ctx.settings.default_speed_limit_kmh)
        state.zone_id = alert.zone_id
        state.peak_kmh = max(alert.number("peak_kmh"), alert.number("speed_kmh"))


def _limit(state: SpeedState) -> dict[str, Any]:
    return {"limit_kmh": state.limit_kmh, "limit_source": "zone" if state.zone_id else "class"}


RULE = Overspeed()
