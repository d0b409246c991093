"""Zone presence: the pre-stage whose result every rule reads.

Presence is spatial hysteresis plus dwell: a vehicle enters a zone when its
fixes have been strictly inside for the zone's ``dwell_s`` (an excursion into
the exit band does not reset the clock), and leaves only when a fix lies
beyond the exit band. Both are "zone" events (start = enter, end = exit)
with key ``zone:<id>`` and severity info. The engine runs this stage first
and hands its result (confirmed zones, entered, exited) to the rules in
their read-only context.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from gpsd_server.core.city import Zone
from gpsd_server.core.rules.base import NO_EVENTS, Events, OpenAlert, make_event
from gpsd_server.model import Event, Fix

KIND = "zone"
PREFIX = "zone:"


@dataclass(slots=True)
class PresenceState:
    inside: dict[str, float] = field(default_factory=dict)  # zone id -> first inside fix ts
    pending: dict[str, float] = field(default_factory=dict)  # dwell not met yet


@dataclass(frozen=True, slots=True)
class Presence:
    """What this fix changed: zones entered and exited, and their events."""

    entered: tuple[str, ...] = ()
    exited: tuple[str, ...] = ()
    events: Events = NO_EVENTS


UNCHANGED = Presence()


def idle(state: PresenceState, near: tuple[str, ...], inside: tuple[str, ...]) -> bool:
    """Nothing pending, every strict hit already confirmed, every confirmed zone still near."""
    confirmed = state.inside
    return not state.pending and all(z in confirmed for z in inside) and all(z in near for z in confirmed)


def step(
    state: PresenceState, fix: Fix, near: tuple[str, ...], inside: tuple[str, ...], zones: Mapping[str, Zone]
) -> Presence:
    if idle(state, near, inside):
        return UNCHANGED
    ts = fix.ts
    events: list[Event] = []
    exited: list[str] = []
    entered: list[str] = []
    for zid in [z for z in state.inside if z not in near]:
        entered_at = state.inside.pop(zid)
        exited.append(zid)
        events.append(_event(fix, zones, "end", zid, entered_at=entered_at, duration_s=ts - entered_at))
    for zid in [z for z in state.pending if z not in near]:
        del state.pending[zid]
    for zid in inside:
        if zid in state.inside:
            continue
        since = state.pending.setdefault(zid, ts)
        zone = zones.get(zid)
        if zone is not None and ts - since >= zone.dwell_s:
            del state.pending[zid]
            state.inside[zid] = since
            entered.append(zid)
            events.append(_event(fix, zones, "start", zid, entered_at=since))
    return Presence(tuple(entered), tuple(exited), tuple(events))


def restore(state: PresenceState, alert: OpenAlert) -> None:
    """An open zone record: the vehicle was inside when the server stopped."""
    state.inside[alert.key.removeprefix(PREFIX)] = alert.ts


def _event(fix: Fix, zones: Mapping[str, Zone], phase: str, zid: str, **details: float) -> Event:
    zone = zones.get(zid)
    name, kind = (zone.name, zone.kind) if zone is not None else (zid, "removed")
    return make_event(
        fix,
        KIND,
        "start" if phase == "start" else "end",
        PREFIX + zid,
        "info",
        zone_id=zid,
        details={"name": name, "zone_kind": kind, **details},
    )
