"""Zone presence (enter/exit with dwell and an exit band) and forbidden zones.

Presence is spatial hysteresis plus dwell: a vehicle enters a zone when its
fixes have been strictly inside for the zone's ``dwell_s`` (an excursion into
the exit band does not reset the clock), and leaves only when a fix lies
beyond the exit band. Both are "zone" events (start = enter, end = exit)
with key ``zone:<id>`` and severity info.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gpsd_server.core.rules.base import NO_EVENTS, Events, FixContext
from gpsd_server.model import Event, Fix


@dataclass(slots=True)
class ZoneState:
    inside: dict[str, float] = field(default_factory=dict)  # zone id -> first inside fix ts
    pending: dict[str, float] = field(default_factory=dict)  # dwell not met yet


def zone_presence(state: ZoneState, fix: Fix, ctx: FixContext) -> tuple[ZoneState, Events]:
    inside, near, ts = ctx.inside, ctx.near, fix.ts
    ctx.confirmed = state.inside
    # Fast path: nothing pending, every strict hit already known, every known zone still near.
    if not state.pending and all(z in state.inside for z in inside) and all(z in near for z in state.inside):
        return state, NO_EVENTS
    events: list[Event] = []
    for zid in [z for z in state.inside if z not in near]:
        entered_at = state.inside.pop(zid)
        ctx.exited += (zid,)
        events.append(_event(ctx, "end", zid, entered_at=entered_at, duration_s=ts - entered_at))
    for zid in [z for z in state.pending if z not in near]:
        del state.pending[zid]
    for zid in inside:
        if zid in state.inside:
            continue
        since = state.pending.setdefault(zid, ts)
        zone = ctx.zones.get(zid)
        if zone is not None and ts - since >= zone.dwell_s:
            del state.pending[zid]
            state.inside[zid] = since
            ctx.entered += (zid,)
            events.append(_event(ctx, "start", zid, entered_at=since))
    return state, tuple(events)


def _event(ctx: FixContext, phase: str, zid: str, **details: float) -> Event:
    zone = ctx.zones.get(zid)
    name, kind = (zone.name, zone.kind) if zone is not None else (zid, "removed")
    return ctx.event(
        "zone",
        "start" if phase == "start" else "end",
        f"zone:{zid}",
        "info",
        zone_id=zid,
        name=name,
        zone_kind=kind,
        extra=details,
    )


@dataclass(slots=True)
class ForbiddenState:
    open: set[str] = field(default_factory=set)  # prohibited zone ids with an open alert


def forbidden_zone(state: ForbiddenState, fix: Fix, ctx: FixContext) -> tuple[ForbiddenState, Events]:
    """Inside (after dwell) a prohibited zone that applies to the class, while its schedule is active."""
    zones = ctx.zones
    prohibited = [z for z in ctx.confirmed if z in zones and zones[z].kind == "prohibited"]
    if not prohibited and not state.open:
        return state, NO_EVENTS
    now_in = set()
    for zid in prohibited:
        schedule = zones[zid].schedule
        if schedule is None or schedule.active(ctx.local()):
            now_in.add(zid)
    events = []
    for zid in sorted(now_in - state.open):
        events.append(
            ctx.event("forbidden_zone", "start", f"forbidden:{zid}", "warning", zone_id=zid, name=zones[zid].name)
        )
    for zid in sorted(state.open - now_in):
        name = zones[zid].name if zid in zones else zid
        events.append(ctx.event("forbidden_zone", "end", f"forbidden:{zid}", "warning", zone_id=zid, name=name))
    state.open = now_in
    return state, tuple(events)
