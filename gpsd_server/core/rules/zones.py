"""Forbidden zones: a vehicle of a class the zone applies to is inside (after
dwell) a prohibited zone while the zone's schedule is active.

Key ``forbidden:<zone id>``; the start names the zone, the end says how long.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpsd_server.core.rules.base import NO_CONSTRAINT, NO_EVENTS, Events, FixContext, OpenAlert, RestoreContext, Rule
from gpsd_server.model import Event

PREFIX = "forbidden:"


@dataclass(slots=True)
class ForbiddenState:
    open: dict[str, float] = field(default_factory=dict)  # prohibited zone id -> start fix ts


class ForbiddenZone(Rule[ForbiddenState]):
    name = "forbidden_zone"
    keys = (PREFIX,)

    def new_state(self) -> ForbiddenState:
        return ForbiddenState()

    def step(self, state: ForbiddenState, ctx: FixContext) -> Events:
        zones = ctx.zones
        prohibited = [z for z in ctx.confirmed if z in zones and zones[z].kind == "prohibited"]
        if not prohibited and not state.open:
            return NO_EVENTS
        now_in = set()
        for zid in prohibited:
            if ctx.in_hours(zones[zid].schedule):
                now_in.add(zid)
        events: list[Event] = []
        ts = ctx.fix.ts
        for zid in sorted(now_in - state.open.keys()):
            state.open[zid] = ts
            events.append(
                ctx.event("forbidden_zone", "start", PREFIX + zid, "warning", zone_id=zid, name=zones[zid].name)
            )
        for zid in sorted(state.open.keys() - now_in):
            started = state.open.pop(zid)
            name = zones[zid].name if zid in zones else zid
            events.append(
                ctx.event(
                    "forbidden_zone",
                    "end",
                    PREFIX + zid,
                    "warning",
                    zone_id=zid,
                    name=name,
                    duration_s=round(ts - started),
                )
            )
        return tuple(events)

    def at_rest(self, state: ForbiddenState, ctx: FixContext) -> float | None:
        # A confirmed prohibited zone consults its schedule on every fix.
        zones = ctx.zones
        if state.open:
            return None
        for z in ctx.confirmed:
            zone = zones.get(z)
            if zone is not None and zone.kind == "prohibited":
                return None
        return NO_CONSTRAINT

    def restore(self, state: ForbiddenState, alert: OpenAlert, ctx: RestoreContext) -> None:
        state.open[alert.key.removeprefix(PREFIX)] = alert.ts


RULE = ForbiddenZone()
