"""Kinematics along a path: cruise, slow zones, traffic lights, planned stops.

A ``Drive`` moves a vehicle along a ``Path`` one step at a time. The target
speed is the lowest of: the cruise speed (or an injected override), a slow
zone the vehicle is in or about to enter, a red light ahead it can still stop
for, a planned stop (``Hold``) ahead, and the end of the path. Speed then
moves towards the target within comfortable acceleration and braking.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Any

from .geo import Path

ACCEL = 1.0  # m/s², a loaded truck pulling away
BRAKE = 1.5  # m/s², comfortable braking
HARD_BRAKE = 3.5  # m/s², beyond this a driver runs the amber light
LIGHT_CYCLE_S = 90
LIGHT_RED_S = 40
STOP_GAP_M = 2.0  # vehicles stop this far before a light


def kmh(v_ms: float) -> float:
    return v_ms * 3.6


def ms(v_kmh: float) -> float:
    return v_kmh / 3.6


def light_is_red(light_id: str, t: float) -> bool:
    offset = zlib.crc32(light_id.encode()) % LIGHT_CYCLE_S  # fixed per light: lights are not synchronised
    return (t + offset) % LIGHT_CYCLE_S < LIGHT_RED_S


@dataclass
class Hold:
    """A planned stop at ``s``: ``phases`` are (from_s, to_s, sensor overrides) relative to arrival."""

    s: float
    duration: float
    phases: list[tuple[float, float, dict[str, Any]]] = field(default_factory=list)
    after: dict[str, Any] = field(default_factory=dict)  # sensors from the end of the stop on
    arrived_at: float | None = None
    done: bool = False

    def sensors(self, t: float) -> dict[str, Any]:
        if self.arrived_at is None:
            return {}
        rel = t - self.arrived_at
        return next((dict(o) for a, b, o in self.phases if a <= rel < b), {})


@dataclass
class Stretch:
    """An s-range with a speed override and/or sensor overrides (injected)."""

    s0: float
    s1: float
    speed_kmh: float | None = None
    sensors: dict[str, Any] = field(default_factory=dict)


@dataclass
class Drive:
    path: Path
    cruise_kmh: float
    slow: list[tuple[float, float, float]] = field(default_factory=list)  # (s0, s1, cap km/h)
    lights: list[tuple[float, str]] = field(default_factory=list)  # (s, light id)
    holds: list[Hold] = field(default_factory=list)
    stretches: list[Stretch] = field(default_factory=list)
    sensors: dict[str, Any] = field(default_factory=dict)  # sensors while on this drive
    label: str = ""
    s: float = 0.0
    v: float = 0.0  # m/s
    started_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.s >= self.path.length - 0.5 and self.v < 0.05

    def final_sensors(self) -> dict[str, Any]:
        out = dict(self.sensors)
        for h in self.holds:
            out.update(h.after)
        return out

    def active_hold(self) -> Hold | None:
        return next((h for h in self.holds if h.arrived_at is not None and not h.done), None)

    def stretch_at(self, s: float) -> Stretch | None:
        return next((x for x in self.stretches if x.s0 <= s < x.s1), None)

    def current_sensors(self, t: float) -> dict[str, Any]:
        out = dict(self.sensors)
        for h in self.holds:
            if h.done:
                out.update(h.after)
        stretch = self.stretch_at(self.s)
        if stretch:
            out.update(stretch.sensors)
        hold = self.active_hold()
        if hold:
            out.update(hold.sensors(t))
        return out

    def step(self, t: float, dt: float) -> None:
        if self.started_at is None:
            self.started_at = t
        hold = self.active_hold()
        if hold is not None:
            if t - hold.arrived_at >= hold.duration:  # type: ignore[operator]
                hold.done = True
            return
        target, stop_at = self._target(t)
        brake = HARD_BRAKE if target < self.v - BRAKE * dt else BRAKE
        v_new = min(max(target, self.v - brake * dt, 0.0), self.v + ACCEL * dt)
        s_new = self.s + (self.v + v_new) / 2 * dt
        if stop_at is not None and s_new >= stop_at:
            s_new, v_new = max(self.s, stop_at), 0.0
        self.s, self.v = min(s_new, self.path.length), v_new
        self._arrive_at_holds(t)

    def _arrive_at_holds(self, t: float) -> None:
        for h in self.holds:
            if h.arrived_at is None and not h.done and self.s >= h.s - 0.5 and self.v < 0.05:
                h.arrived_at = t
                return

    def _target(self, t: float) -> tuple[float, float | None]:
        """Target speed (m/s) and the position the vehicle must not pass this step, if any."""
        stretch = self.stretch_at(self.s)
        target = ms(stretch.speed_kmh if stretch and stretch.speed_kmh else self.cruise_kmh)
        for s0, s1, cap in self.slow:
            if s0 <= self.s <= s1:
                target = min(target, ms(cap))
            elif 0 < s0 - self.s < 400:
                target = min(target, math.sqrt(ms(cap) ** 2 + 2 * BRAKE * (s0 - self.s)))
        stops = [self.path.length]
        stops += [h.s for h in self.holds if not h.done and h.arrived_at is None and h.s >= self.s - 0.5]
        red = self._red_light_ahead(t)
        if red is not None:
            stops.append(red)
        stop_at = min(stops)
        target = min(target, math.sqrt(2 * BRAKE * max(stop_at - self.s, 0.0)))
        return target, stop_at

    def _red_light_ahead(self, t: float) -> float | None:
        for s_light, light_id in self.lights:
            line = s_light - STOP_GAP_M
            if line < self.s - 0.01:
                continue  # behind us (or we are past the stop line)
            if line - self.s > 150:
                return None
            if not light_is_red(light_id, t):
                return None
            can_stop = self.v**2 / (2 * HARD_BRAKE) <= line - self.s + 0.5
            return line if can_stop else None
        return None


@dataclass
class Stay:
    """Stationary until ``until`` (simulated seconds); sensors and ignition while staying."""

    until: float
    sensors: dict[str, Any] = field(default_factory=dict)
    ignition: bool = True
    label: str = ""
    phases: list[tuple[float, float, dict[str, Any]]] = field(default_factory=list)  # absolute times
    after: dict[str, Any] = field(default_factory=dict)  # sensors once the stay is over

    def final_sensors(self) -> dict[str, Any]:
        return {**self.sensors, **self.after}

    def finished_at(self, t: float) -> bool:
        return t >= self.until

    def current_sensors(self, t: float) -> dict[str, Any]:
        out = dict(self.sensors)
        for a, b, o in self.phases:
            if a <= t < b:
                out.update(o)
        return out


@dataclass
class Linger(Stay):
    """A stay of ``duration`` from whenever it begins (a car sent to a place
    stays there; the drive before it decides when it gets there)."""

    duration: float = 0.0

    def finished_at(self, t: float) -> bool:
        if self.until < 0:
            self.until = t + self.duration
        return t >= self.until
