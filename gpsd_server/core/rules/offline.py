"""Offline and online.

A vehicle is offline when no fix came for ``offline_s`` (``offline_moving_s``
if its last fix was moving). ``on_tick`` notices it from the driver's clock
(against the later of the last fix time and its receipt time);
``on_fix`` notices a gap after the fact (a backfill, a replay, a server that
was down) and records both ends. The start event carries the last fix's
time and place; the end event ("online", severity info) the resuming fix's.
Any non-late fix counts as a sign of life, even one with an invalid position.
"""

from __future__ import annotations

from dataclasses import dataclass

from gpsd_server.model import Event, Fix
from gpsd_server.settings import RuleSettings

KEY = "offline"


@dataclass(slots=True)
class LinkState:
    last_ts: float | None = None
    lon: float = 0.0  # last valid position
    lat: float = 0.0
    moving: bool = False
    offline: bool = False
    # Server receipt time of the last fix. The tick compares the driver's
    # clock with this too, so data replayed or backfilled from the past is
    # not declared offline just because its fix times are old.
    last_received: float = 0.0


def threshold_s(state: LinkState, settings: RuleSettings) -> float:
    return settings.offline_moving_s if state.moving else settings.offline_s


def _start(vehicle_id: str, state: LinkState, settings: RuleSettings) -> Event:
    assert state.last_ts is not None
    return Event(
        kind="offline",
        phase="start",
        vehicle_id=vehicle_id,
        ts=state.last_ts,
        lon=state.lon,
        lat=state.lat,
        key=KEY,
        severity="warning",
        details={"last_seen": state.last_ts, "threshold_s": threshold_s(state, settings)},
    )


def on_fix(state: LinkState, fix: Fix, settings: RuleSettings, *, position_ok: bool, moving: bool) -> list[Event]:
    events: list[Event] = []
    if state.last_ts is not None:
        gap = fix.ts - state.last_ts
        if not state.offline and gap > threshold_s(state, settings):
            events.append(_start(fix.vehicle_id, state, settings))
            state.offline = True
        if state.offline:
            details = {"offline_since": state.last_ts, "gap_s": gap}
            events.append(
                Event("offline", "end", fix.vehicle_id, fix.ts, fix.lon, fix.lat, KEY, "info", details=details)
            )
    state.offline = False
    state.last_ts = fix.ts
    state.last_received = max(state.last_received, fix.received_at)
    if position_ok:
        state.lon, state.lat, state.moving = fix.lon, fix.lat, moving
    return events


def restore(state: LinkState, last: Fix | None, settings: RuleSettings, *, offline: bool) -> None:
    """After a restart (or on the worker that took the vehicle over): the last
    stored fix sets the clock, with its receipt time (data replayed from the
    past is not offline because its fix times are old); an open offline alert
    stays open (the next fix ends it)."""
    if last is not None:
        state.last_ts = last.ts
        state.last_received = max(state.last_received, last.received_at)
        state.lon, state.lat = last.lon, last.lat
        state.moving = (last.speed_kmh or 0.0) >= settings.moving_kmh
    state.offline = offline


def on_tick(vehicle_id: str, state: LinkState, now: float, settings: RuleSettings) -> list[Event]:
    if state.offline or state.last_ts is None:
        return []
    if now - max(state.last_ts, state.last_received) <= threshold_s(state, settings):
        return []
    state.offline = True
    return [_start(vehicle_id, state, settings)]
