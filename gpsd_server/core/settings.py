"""Rule thresholds: one frozen value, every field documented, every field a default.

The driver maps the ``[rules]`` config section onto :class:`RuleSettings`
(one key per field, same name). Distances are metres, speeds km/h, times
seconds of *fix* time. Per-zone values (speed limit, dwell, corridor width,
schedule) live in the geofence files, not here; these are the fall-backs
and the noise bands around them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

# JT/T 808 alarm bits raised as alerts by default. Left out on purpose: the
# terminal's own overspeed (1), pre-warnings (13, 14), area/route/segment
# alarms (20-23) -- the server's rules decide those from positions.
DEFAULT_ALARM_BITS: tuple[int, ...] = (0, 2, 3, 4, 5, 6, 7, 8, 18, 19, 26, 27, 28, 29, 30)


@dataclass(frozen=True, slots=True)
class RuleSettings:
    """Every threshold of the rule engine (see docs/geofences.md for the rules)."""

    # -- movement ---------------------------------------------------------
    moving_kmh: float = 5.0
    """At or above this speed a vehicle counts as moving (curfew, cover, offline)."""

    # -- zones ------------------------------------------------------------
    zone_exit_band_m: float = 30.0
    """A vehicle leaves a zone only once it is this far outside the polygon,
    so a truck parked on a boundary does not flap in and out."""

    # -- overspeed --------------------------------------------------------
    default_speed_limit_kmh: float = 80.0
    """Limit for classes without their own limit, outside any speed zone."""
    muck_truck_speed_limit_kmh: float = 40.0
    """Muck-truck limit on city roads (a lower zone limit wins)."""
    mixer_truck_speed_limit_kmh: float = 50.0
    """Mixer limit while agitating (a lower zone limit wins)."""
    overspeed_band_kmh: float = 5.0
    """An overspeed ends only below limit minus this band."""
    overspeed_min_s: float = 15.0
    """Speed must stay above the limit this long before an overspeed starts."""

    # -- route deviation --------------------------------------------------
    corridor_m: float = 50.0
    """Corridor half-width for routes whose file does not give ``corridor_m``."""
    deviation_band_m: float = 15.0
    """A deviation ends only once the truck is closer than corridor minus this."""
    deviation_min_s: float = 60.0
    """The truck must stay outside the corridor this long before a deviation starts."""

    # -- curfew -----------------------------------------------------------
    curfew_min_s: float = 60.0
    """Moving outside permit hours this long starts a curfew alert."""
    curfew_end_s: float = 120.0
    """Stopped (or back inside permit hours) this long ends it."""

    # -- suspected illegal dumping ----------------------------------------
    stop_radius_m: float = 50.0
    """Fixes within this distance of where a stop began belong to the stop."""
    stop_exit_band_m: float = 20.0
    """A raised stop ends only beyond stop_radius_m plus this band."""
    stop_min_s: float = 300.0
    """A loaded muck truck stopped this long outside every site is suspected."""

    # -- uncovered load ---------------------------------------------------
    uncovered_min_s: float = 30.0
    """Loaded, moving and cover open this long starts an uncovered-load alert."""

    # -- offline ----------------------------------------------------------
    offline_s: float = 600.0
    """No fix for this long (parked vehicle) means offline."""
    offline_moving_s: float = 120.0
    """No fix for this long after a fix that was moving means offline."""

    # -- terminal alarms --------------------------------------------------
    alarm_bits: tuple[int, ...] = DEFAULT_ALARM_BITS
    """JT/T 808 alarm bits that raise alerts (start when set, end when cleared)."""

    # -- mixer delivery ---------------------------------------------------
    delivery_max_s: float = 5400.0
    """Longest allowed time from leaving a plant to entering a construction site."""

    # -- restart ----------------------------------------------------------
    restore_grace_s: float = 120.0
    """After Engine.restore, an open alert not confirmed within this much fix
    time is closed (its condition ended while the server was down)."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "alarm_bits":
                if any(not isinstance(b, int) or not 0 <= b <= 31 for b in value):
                    raise ValueError(f"{f.name}: bits must be integers 0..31")
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{f.name}: must be a number")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{f.name}: must be a finite number >= 0")
        if self.deviation_band_m >= self.corridor_m:
            raise ValueError("deviation_band_m: must be smaller than corridor_m")

    def class_speed_limit_kmh(self, vehicle_class: str) -> float:
        if vehicle_class == "muck_truck":
            return self.muck_truck_speed_limit_kmh
        if vehicle_class == "mixer_truck":
            return self.mixer_truck_speed_limit_kmh
        return self.default_speed_limit_kmh
