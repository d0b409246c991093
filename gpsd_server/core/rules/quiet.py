"""When a fix cannot change a rule: the proof behind the engine's fast path.

Most fixes of a real fleet change nothing: the vehicle is in the same zones
as a moment ago, slower than every limit it could be under, with the same
alarm bits and sensor readings. After each fully processed fix the engine
asks :func:`at_rest` whether the vehicle's *skippable* stages are at rest,
meaning each of them is a no-op (same state object, unchanged, no events)
for any later fix whose inputs match the recorded :class:`Rest`, whatever
that fix's time. :func:`still_at_rest` is that match; when it holds the
engine runs only the stages in :data:`ALWAYS_RUN` (route distance, permit
hours and the stop anchor change with every fix) and skips the rest.

Why each skippable stage is a no-op on a matching fix (state as left after
the last full fix, unchanged since because skipped):

- ``zones``: nothing pending, every strict hit already confirmed and every
  confirmed zone still near -- its own early return, for equal ``near`` and
  ``inside`` tuples.
- ``forbidden_zone``: no prohibited zone confirmed and none open, so no
  schedule is consulted.
- ``overspeed``: no episode and no run of "on" fixes; a speed at or below
  the lowest limit that could apply (class limit and every limit of the
  zones strictly containing the fix, active schedule or not) is never "on".
- ``body_lift``, ``drum_reverse``: having just run on the recorded sensors,
  their state equals the reading or the reading is ignored (near a site);
  an equal reading with an equal ``near`` is a no-op either way.
- ``uncovered_load``: no episode and no run of "on" fixes; "on" depends on
  sensors, moving and the load bits of the status, which are equal.
- ``delivery_overtime``: no clock running (or its alert already raised);
  zone presence is idle, so nothing is entered or exited.
- ``terminal_alarms``: checked on every fix (watched bits equal the state).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpsd_server.core.rules.base import FixContext
from gpsd_server.core.rules.delivery import DeliveryState
from gpsd_server.core.rules.zones import ForbiddenState, ZoneState
from gpsd_server.model import Fix, Sensors

ALWAYS_RUN = frozenset({"route_deviation", "curfew", "loaded_stop"})
LOAD_BITS = 0x300  # JT/T 808 status bits 8-9, what FixContext.loaded() falls back on


@dataclass(frozen=True, slots=True)
class Rest:
    """The inputs of the last full fix after which the skippable stages were at rest."""

    near: tuple[str, ...]
    inside: tuple[str, ...]
    speed_ceiling: float  # a speed at or below this is under every limit that could apply
    sensors: Sensors | None
    moving: bool  # only compared when sensors are reported (uncovered load reads it)
    load_bits: int


def at_rest(states: Mapping[str, Any], ctx: FixContext) -> Rest | None:
    """The Rest to record after a fully processed fix, or None if some stage is busy."""
    zones: ZoneState = states["zones"]
    confirmed = zones.inside
    if zones.pending or any(z not in confirmed for z in ctx.inside) or any(z not in ctx.near for z in confirmed):
        return None
    forbidden: ForbiddenState = states["forbidden_zone"]
    zone_map = ctx.zones
    if forbidden.open or any(z in zone_map and zone_map[z].kind == "prohibited" for z in confirmed):
        return None
    speed = states["overspeed"]
    if speed.active or speed.on_since is not None:
        return None
    ceiling = ctx.settings.class_speed_limit_kmh(ctx.vehicle.vehicle_class)
    for zid in ctx.inside:
        limit = zone_map[zid].speed_limit_kmh
        if limit is not None and limit < ceiling:
            ceiling = limit
    cover = states.get("uncovered_load")
    if cover is not None and (cover.active or cover.on_since is not None):
        return None
    delivery: DeliveryState | None = states.get("delivery_overtime")
    if delivery is not None and delivery.left_plant_at is not None and not delivery.raised:
        return None
    return Rest(ctx.near, ctx.inside, ceiling, ctx.fix.sensors, ctx.moving, ctx.fix.status & LOAD_BITS)


def still_at_rest(
    rest: Rest, fix: Fix, near: tuple[str, ...], inside: tuple[str, ...], moving: bool, mask: int, held: int
) -> bool:
    """True when the fix matches ``rest`` and its watched alarm bits (``mask``) equal those ``held``."""
    if fix.alarm & mask != held or inside != rest.inside or near != rest.near:
        return False
    speed = fix.speed_kmh
    if speed is not None and speed > rest.speed_ceiling:
        return False
    sensors = fix.sensors
    if sensors is None:
        return rest.sensors is None
    return sensors == rest.sensors and moving == rest.moving and fix.status & LOAD_BITS == rest.load_bits
