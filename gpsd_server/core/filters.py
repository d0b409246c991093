"""The filter stage: which fixes may move a vehicle, per vehicle, in fix-time order.

Between decode and the rules, every positioned fix is classified:

- **good**: the vehicle is where the fix says; the rules and mileage use it.
- **drift**: the vehicle is standing (reported speed under ``drift_speed_kmh``,
  or ignition off) within ``drift_radius_m`` (``drift_radius_ignition_off_m``)
  of where it stopped. Parked GPS wanders 10-20 m; those wanderings must not
  become kilometres or zone flapping. The fix is stored flagged ``DRIFT``;
  the rules see the vehicle at its parked position, time passing.
- **outlier**: poor quality where the terminal says so (``hdop`` above
  ``max_hdop``, fewer than ``min_sats`` satellites: flagged ``FILTERED``), or
  an impossible jump: farther than ``jump_min_m`` from the last accepted
  position at an implied speed above the class's ``max_speed_kmh`` (flagged
  ``JUMP | FILTERED``). Stored, never moves rule state, never counts in
  mileage.

The late decision. An isolated multipath jump and a real sudden move (a
terminal that was asleep while the truck was towed, a cold start) look the
same at the first fix; the next fixes tell them apart. A jump is therefore
held as a *suspect*: if a later fix is consistent with the last accepted
position, the suspects were outliers (nothing to undo: they never reached the
rules); if ``confirm_fixes`` fixes agree with each other at the new place,
the move was real, and the suspects are *released*: their flags are
corrected and the rules run over them, in order, before the fix that
confirmed them. Nothing real is thrown away, and one bad fix never raises an
alert.

Pure: values in, a :class:`Verdict` out; the engine keeps one
:class:`FilterState` per vehicle.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Literal

import msgspec

from gpsd_server.model import Fix, FixFlag
from gpsd_server.settings import FilterSettings

Kind = Literal["good", "drift", "outlier", "release"]

DRIFT = int(FixFlag.DRIFT)
JUMP = int(FixFlag.JUMP | FixFlag.FILTERED)
FILTERED = int(FixFlag.FILTERED)


class Place(msgspec.Struct, frozen=True, gc=False):
    """An accepted position in metres, and when the vehicle was last seen there or after."""

    x: float
    y: float
    ts: float


@dataclass(slots=True)
class Suspect:
    fix: Fix
    x: float
    y: float


@dataclass(slots=True)
class FilterState:
    anchor: Place | None = None  # where the vehicle is for the rules and mileage
    seen_ts: float = -math.inf  # last accepted (good or drift) fix time
    parked: bool = False  # the anchor is a standing position (drift applies)
    suspects: tuple[Suspect, ...] = ()  # a tuple: most vehicles never have one, and () is shared

    def copy(self) -> FilterState:
        """A full copy (every field is immutable)."""
        return FilterState(self.anchor, self.seen_ts, self.parked, self.suspects)


class Verdict(msgspec.Struct, frozen=True, gc=False):
    kind: Kind
    flags: int = 0  # to add to the fix
    reason: str = ""  # for outliers: hdop, sats, jump
    released: tuple[Suspect, ...] = ()  # kind "release": suspects to run first, then this fix as good
    dropped: int = 0  # suspects found to be outliers by this fix


GOOD = Verdict("good")
DRIFTING = Verdict("drift", DRIFT)


class Counts:
    """Every filter outcome by reason, for /metrics and the periodic log line."""

    def __init__(self) -> None:
        self.total: Counter[str] = Counter()

    def add(self, verdict: Verdict) -> None:
        if verdict.kind == "outlier":
            self.total[f"outlier_{verdict.reason}"] += 1
        elif verdict.kind == "drift":
            self.total["drift"] += 1
        elif verdict.kind == "release":
            self.total["released"] += len(verdict.released)
        if verdict.dropped:
            self.total["outlier_confirmed"] += verdict.dropped


def classify(state: FilterState, fix: Fix, x: float, y: float, vehicle_class: str, s: FilterSettings) -> Verdict:
    """Classify one fix (the vehicle's next in time) and advance the state."""
    if not s.enabled:
        _accept(state, fix, x, y, s)
        return GOOD
    if fix.hdop is not None and fix.hdop > s.max_hdop:
        return Verdict("outlier", FILTERED, "hdop")
    if fix.sats is not None and fix.sats < s.min_sats:
        return Verdict("outlier", FILTERED, "sats")
    anchor = state.anchor
    if anchor is None:
        _accept(state, fix, x, y, s)
        return GOOD
    d = math.hypot(x - anchor.x, y - anchor.y)
    if _is_jump(d, fix.ts - state.seen_ts, vehicle_class, s):
        return _suspect(state, fix, x, y, vehicle_class, s)
    dropped = len(state.suspects)
    if dropped:
        state.suspects = ()
    if state.parked and d <= _drift_radius(fix, s) and _standing(fix, s):
        state.seen_ts = fix.ts
        return Verdict("drift", DRIFT, dropped=dropped) if dropped else DRIFTING
    _accept(state, fix, x, y, s)
    return Verdict("good", dropped=dropped) if dropped else GOOD


def _is_jump(d: float, dt: float, vehicle_class: str, s: FilterSettings) -> bool:
    if d < s.jump_min_m:
        return False
    return d / max(dt, 1.0) * 3.6 > s.max_speed_kmh(vehicle_class)


def _suspect(state: FilterState, fix: Fix, x: float, y: float, vehicle_class: str, s: FilterSettings) -> Verdict:
    suspects = state.suspects
    dropped = 0
    if suspects:
        last = suspects[-1]
        step = math.hypot(x - last.x, y - last.y)
        if _is_jump(step, fix.ts - last.fix.ts, vehicle_class, s):
            dropped = len(suspects)  # inconsistent with the cluster too: those were outliers
            suspects = ()
    suspects = (*suspects, Suspect(fix, x, y))
    if len(suspects) < s.confirm_fixes:
        state.suspects = suspects
        return Verdict("outlier", JUMP, "jump", dropped=dropped)
    # The vehicle really is over there: the earlier suspects go to the rules
    # first, then this fix, as good.
    released = suspects[:-1]
    state.suspects = ()
    _accept(state, fix, x, y, s)
    return Verdict("release", released=released, dropped=dropped)


def _accept(state: FilterState, fix: Fix, x: float, y: float, s: FilterSettings) -> None:
    state.anchor = Place(x, y, fix.ts)
    state.seen_ts = fix.ts
    state.parked = _standing(fix, s)


def _standing(fix: Fix, s: FilterSettings) -> bool:
    if fix.ignition is False:
        return True
    return fix.speed_kmh is None or fix.speed_kmh < s.drift_speed_kmh


def _drift_radius(fix: Fix, s: FilterSettings) -> float:
    return s.drift_radius_ignition_off_m if fix.ignition is False else s.drift_radius_m
