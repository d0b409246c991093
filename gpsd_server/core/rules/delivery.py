"""Mixer delivery overtime: too long from leaving a plant to reaching a site.

The clock starts when a mixer leaves a plant zone (its exit from presence)
and stops when it enters a construction site. Past ``delivery_max_s`` an
alert starts; it ends on arrival at a site (``duration_s`` from plant exit)
or on a return to a plant (``returned_to_plant``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpsd_server.core.city import Vehicle
from gpsd_server.core.rules.base import (
    NO_CONSTRAINT,
    NO_EVENTS,
    Events,
    FixContext,
    OpenAlert,
    RestoreContext,
    Rule,
)
from gpsd_server.model import Event

KEY = "delivery_overtime"


@dataclass(slots=True)
class DeliveryState:
    left_plant_at: float | None = None
    plant: str | None = None
    raised: bool = False


class DeliveryOvertime(Rule[DeliveryState]):
    name = "delivery_overtime"
    keys = (KEY,)

    def applies(self, vehicle: Vehicle) -> bool:
        return vehicle.vehicle_class == "mixer_truck"

    def new_state(self) -> DeliveryState:
        return DeliveryState()

    def step(self, state: DeliveryState, ctx: FixContext) -> Events:
        if state.left_plant_at is None and not ctx.exited:
            return NO_EVENTS
        zones = ctx.zones
        ts = ctx.fix.ts
        events: list[Event] = []
        for zid in ctx.entered:
            kind = zones[zid].kind if zid in zones else None  # None: gone with a city reload
            if kind in ("construction_site", "plant") and state.left_plant_at is not None:
                if state.raised:
                    details: dict[str, Any] = {"plant": state.plant, "duration_s": ts - state.left_plant_at}
                    if kind == "plant":
                        details["returned_to_plant"] = True
                    events.append(ctx.event(KEY, "end", KEY, "warning", zone_id=zid, **details))
                state.left_plant_at, state.plant, state.raised = None, None, False
        for zid in ctx.exited:
            if zid in zones and zones[zid].kind == "plant" and not state.raised:
                state.left_plant_at, state.plant = ts, zid
        left = state.left_plant_at
        if left is not None and not state.raised and ts - left > ctx.settings.delivery_max_s:
            state.raised = True
            events.append(ctx.event(KEY, "start", KEY, "warning", zone_id=state.plant, left_plant_at=left))
        return tuple(events)

    def at_rest(self, state: DeliveryState, ctx: FixContext) -> float | None:
        # A running clock must be looked at on every fix; a raised alert waits
        # for a zone entry, which only a full run (presence) can produce.
        if state.left_plant_at is not None and not state.raised:
            return None
        return NO_CONSTRAINT

    def restore(self, state: DeliveryState, alert: OpenAlert, ctx: RestoreContext) -> None:
        state.raised = True
        state.plant = alert.zone_id
        state.left_plant_at = alert.number("left_plant_at", alert.ts)


RULE = DeliveryOvertime()
