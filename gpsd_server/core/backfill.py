"""Blind-area backfill: fixes that arrive after later ones, run through the rules over their gap.

A terminal that goes dark (a tunnel, no network, a driver who pulls the
antenna) keeps recording and uploads the blind-area fixes later: JT/T 808
0x0704 type 1, or a JSON batch, arriving after live fixes resumed. They are
older than the vehicle's last processed fix, so they must not move the live
state; but whatever they reveal (a detour off the approved route, a stop
outside every site) is exactly what a cheating driver hides.

So when a silence longer than ``[rules] backfill_gap_s`` ends, the engine
keeps a :class:`Gap`: a copy of the vehicle's state as it was before the
fix that ended the silence (rules, zone presence, filter, parked position),
and that fix. Late fixes that fall into a gap are run, in fix-time order, on
a copy of that state, followed by the fix that ended the gap. Of what they
raise, only conditions that *started and ended* within the gap (the gap's
closing fix included) are raised, keyed apart from live alerts
(``<key>@backfill:<gap start>``) and marked ``backfill`` with the delay
between fix time and receipt. A condition still true when live fixes
resumed is the live rules' to raise, once; one open before the gap is
theirs to end. An offline alert raised for the gap stays: the terminal did
not report while it was dark.

Backfill may come in several pieces; each piece re-runs the gap from its
copy over every late fix received for it so far, and only what was not
raised before is raised. At most ``backfill_gaps_kept`` gaps per vehicle are
kept, for ``backfill_window_s`` of fix time.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from gpsd_server.core.filters import FilterState
from gpsd_server.core.rules import presence
from gpsd_server.model import Event, Fix

MARK = "@backfill:"


class Where(msgspec.Struct, frozen=True, gc=False):
    """A fix's place as the rules saw it (projected, zones, route distances)."""

    x: float
    y: float
    lon: float
    lat: float
    near: tuple[str, ...]
    inside: tuple[str, ...]
    route_dist: Mapping[str, float]


@dataclass(slots=True)
class Gap:
    """A kept gap. The vehicle's state before it is held pickled: a few hundred
    bytes, against several times that as live objects, and a private copy each
    time it is unpacked."""

    start_ts: float  # last live fix before the silence
    end: Fix  # the live fix that ended it
    state: bytes  # pickled (rule states by name, zone presence, filter), as before ``end`` was processed
    where: Where | None
    end_where: Where | None = None  # how ``end`` was located (set once it ran)
    late: dict[float, Fix] | None = None  # late fixes received so far, by ts
    raised: set[tuple[str, str, float]] | None = None  # (key, phase, ts) already raised

    def holds(self, ts: float) -> bool:
        return self.start_ts < ts < self.end.ts

    def unpack(self) -> tuple[dict[str, Any], presence.PresenceState, FilterState]:
        """Fresh copies of the rule states, zone presence and filter state before the gap."""
        states, presence_state, filter_state = pickle.loads(self.state)
        return states, presence_state, filter_state


def snapshot(
    start_ts: float,
    end: Fix,
    states: dict[str, Any],
    presence_state: presence.PresenceState,
    filter_state: FilterState,
    where: Where | None,
) -> Gap:
    """``filter_state`` is as it was before the gap's closing fix was filtered."""
    state = pickle.dumps((states, presence_state, filter_state), pickle.HIGHEST_PROTOCOL)
    return Gap(start_ts, end, state, where)


def keep(gap: Gap, during: list[Event], at_end: list[Event]) -> list[Event]:
    """What a run over the gap raises: conditions that started in the gap and ended
    in it (or at the fix that closed it), not raised before, keyed apart."""
    started: dict[str, Event] = {}
    ended: dict[str, Event] = {}
    instants: list[Event] = []
    for e in during:
        if e.phase == "start":
            started.setdefault(e.key, e)
        elif e.phase == "end" and e.key in started:
            ended.setdefault(e.key, e)
        elif e.phase == "instant":
            instants.append(e)
    for e in at_end:
        if e.phase == "end" and e.key in started:
            ended.setdefault(e.key, e)
    chosen = [started[k] for k in started if k in ended] + [ended[k] for k in started if k in ended] + instants
    chosen.sort(key=lambda e: e.ts)
    out = []
    raised = gap.raised = gap.raised or set()
    for e in chosen:
        mark = (e.key, e.phase, e.ts)
        if mark in raised:
            continue
        raised.add(mark)
        out.append(e)
    return out


def mark(event: Event, gap: Gap, received_at: float) -> Event:
    """The backfill version of an event: its own key, flagged, with the upload delay."""
    details = {**event.details, "backfill": True, "delay_s": round(max(0.0, received_at - event.ts))}
    return Event(
        event.kind, event.phase, event.vehicle_id, event.ts, event.lon, event.lat,
        f"{event.key}{MARK}{int(gap.start_ts)}", event.severity, event.zone_id, event.route_id, details,
    )  # fmt: skip
