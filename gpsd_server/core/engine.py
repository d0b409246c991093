"""The engine: ordered stages over batches of fixes, per-vehicle state.

``Engine.process(fixes, now)`` takes decoded fixes (any vehicles, arrival
order) and returns the same fixes with their flags set plus the events they
caused. A fix older than the vehicle's last processed fix is marked late:
stored, but it moves no state. (The rules arrive with the rule-engine issue.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from gpsd_server.model import Event, Fix, FixFlag


@dataclass(slots=True)
class VehicleState:
    """What the engine remembers about one vehicle."""

    last_ts: float | None = None


@dataclass(frozen=True, slots=True)
class EngineResult:
    fixes: list[Fix]
    events: list[Event] = field(default_factory=list)


class Engine:
    """Stateful, pure: no I/O, no clock. The driver owns the only instance."""

    def __init__(self) -> None:
        self._vehicles: dict[str, VehicleState] = {}

    def process(self, fixes: Sequence[Fix], now: float) -> EngineResult:
        # Within one batch each vehicle's fixes go in time order, so a batch
        # that arrives shuffled behaves like the same fixes one by one.
        order = sorted(range(len(fixes)), key=lambda i: (fixes[i].vehicle_id, fixes[i].ts))
        marked: dict[int, Fix] = {}
        for i in order:
            fix = fixes[i]
            state = self._vehicles.get(fix.vehicle_id)
            if state is None:
                state = self._vehicles[fix.vehicle_id] = VehicleState()
            if state.last_ts is not None and fix.ts < state.last_ts:
                fix = replace(fix, flags=fix.flags | FixFlag.LATE)
            else:
                state.last_ts = fix.ts
            marked[i] = fix
        return EngineResult(fixes=[marked[i] for i in range(len(fixes))])

    def tick(self, now: float) -> list[Event]:
        """Time-driven checks (offline); called by the driver periodically."""
        return []

    def seed(self, vehicle_id: str, last_ts: float) -> None:
        """Restore a vehicle's last processed fix time (after a restart)."""
        self._vehicles.setdefault(vehicle_id, VehicleState()).last_ts = last_ts
