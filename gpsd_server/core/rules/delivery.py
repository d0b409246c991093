"""Mixer delivery overtime: too long from leaving a plant to reaching a site.

The clock starts when a mixer leaves a plant zone (its exit event) and
stops when it enters a construction site. Past ``delivery_max_s`` an alert
starts; it ends on arrival at a site (``duration_s`` from plant exit) or on a
return to a plant (``returned_to_plant``).
"""

from __future__ import annotations

from dataclasses import dataclass

from gpsd_server.core.rules.base import NO_EVENTS, Events, FixContext
from gpsd_server.model import Event, Fix

KEY = "delivery_overtime"


@dataclass(slots=True)
class DeliveryState:
    left_plant_at: float | None = None
    plant: str | None = None
    raised: bool = False


def delivery_overtime(state: DeliveryState, fix: Fix, ctx: FixContext) -> tuple[DeliveryState, Events]:
    if state.left_plant_at is None and not ctx.exited:
        return state, NO_EVENTS
    zones = ctx.zones
    events: list[Event] = []
    for zid in ctx.entered:
        kind = zones[zid].kind
        if kind in ("construction_site", "plant") and state.left_plant_at is not None:
            if state.raised:
                details = {"plant": state.plant, "duration_s": fix.ts - state.left_plant_at}
                if kind == "plant":
                    details["returned_to_plant"] = True
                events.append(ctx.event("delivery_overtime", "end", KEY, "warning", zone_id=zid, extra=details))
            state.left_plant_at, state.plant, state.raised = None, None, False
    for zid in ctx.exited:
        if zid in zones and zones[zid].kind == "plant" and not state.raised:
            state.left_plant_at, state.plant = fix.ts, zid
    left = state.left_plant_at
    if left is not None and not state.raised and fix.ts - left > ctx.settings.delivery_max_s:
        state.raised = True
        events.append(ctx.event("delivery_overtime", "start", KEY, "warning", zone_id=state.plant, left_plant_at=left))
    return state, tuple(events)
