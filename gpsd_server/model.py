"""Value types shared by the core and the drivers.

Times inside the core are POSIX seconds (float, UTC). They are cheap to
compare and subtract and go straight into numpy arrays; drivers convert to
``datetime`` at the database and JSON boundaries.

Fix, Sensors and Event are frozen msgspec structs, made for every message:
measured, a 17-field frozen dataclass cost 3.1 µs to build and 8.3 µs to
``replace``, a struct 0.2 and 1.0. They hold only scalars and plain
containers, so the garbage collector need not track them (``gc=False``).
Change one with ``msgspec.structs.replace``.
"""

from __future__ import annotations

import enum
import math
from typing import Any, Literal

import msgspec

VEHICLE_CLASSES: tuple[str, ...] = ("muck_truck", "mixer_truck", "patrol", "other")

DrumState = Literal["cw", "ccw", "stopped"]
Severity = Literal["info", "warning", "critical"]
Phase = Literal["start", "end", "instant"]


def finite_number(value: Any) -> bool:
    """A JSON number (not a bool) that a double holds as a finite value; an
    integer past a double's range (10**309) is not one (``math.isfinite``
    raised OverflowError on it: 500s and a closed websocket, 2026-12-06)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


class FixFlag(enum.IntFlag):
    """Marks stored with a fix (column ``fixes.flags``)."""

    NONE = 0
    LATE = 1  # older than the vehicle's last processed fix: stored, moves no state
    BACKFILL = 2  # sent as blind-area backfill (JT/T 808 0x0704 type 1)
    INVALID = 4  # terminal says the position is not valid (status bit 1 clear)
    JUMP = 8  # impossible jump from the previous fix: stored, ignored by the rules
    FILTERED = 16  # any filter stage kept this fix out of the rules (outlier: jump, hdop, sats)
    DRIFT = 32  # standing: GPS wander around the parked position (rules see the parked position)
    NOFIX = 64  # no position at all (alarm/status only): runs the alarm rules, never stored as a track point


class Sensors(msgspec.Struct, frozen=True, gc=False):
    """Muck-truck and mixer body sensors (vendor extensions, native payload)."""

    cover_closed: bool | None = None
    loaded: bool | None = None
    lift: bool | None = None
    drum: DrumState | None = None


class Fix(msgspec.Struct, frozen=True, gc=False):
    """One decoded, validated position of one vehicle."""

    vehicle_id: str
    ts: float  # fix time, POSIX seconds UTC
    lon: float  # WGS-84 degrees
    lat: float
    received_at: float = 0.0  # when the server received it, POSIX seconds UTC
    speed_kmh: float | None = None
    heading: float | None = None
    alt_m: float | None = None
    sats: int | None = None
    hdop: float | None = None
    ignition: bool | None = None
    alarm: int = 0  # JT/T 808 alarm DWORD
    status: int = 0  # JT/T 808 status DWORD
    sensors: Sensors | None = None
    mileage_km: float | None = None
    source: str = "native"  # native | owntracks | jt808
    flags: int = 0  # FixFlag bits


class Event(msgspec.Struct, frozen=True, gc=False):
    """Something the engine concluded from fixes.

    ``phase`` is ``start`` or ``end`` for conditions that last (an overspeed,
    a deviation) and ``instant`` for one-off facts. ``key`` identifies the
    condition within a vehicle, so that an end event closes its start: two
    events with the same ``vehicle_id`` and ``key`` belong to one alert.
    ``ts`` is the fix time the event refers to, never the wall clock.
    """

    kind: str
    phase: Phase
    vehicle_id: str
    ts: float
    lon: float
    lat: float
    key: str
    severity: Severity = "warning"
    zone_id: str | None = None
    route_id: str | None = None
    details: dict[str, Any] = msgspec.field(default_factory=dict)
