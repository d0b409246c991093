"""The city as history needs it: zones to name stops, grids for coverage,
and permit compliance per trip. Pure; built once per loaded city, on the same
projected geometry the engine uses, so a report measures what the rules
measured."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo

import numpy as np

from gpsd_server.core.city import City, Permit, Zone
from gpsd_server.core.geo import CityGeometry, FloatArray
from gpsd_server.core.history import Trip, zones_at
from gpsd_server.core.permits import permit_margin
from gpsd_server.core.schedule import local_time
from gpsd_server.model import VEHICLE_CLASSES
from gpsd_server.settings import RuleSettings

# Where a truck sits is named by its small zones first; the 5 areas and 9
# districts contain everything and would only add noise to a stop.
_STOP_ZONE_ORDER = {"construction_site": 0, "disposal_site": 0, "plant": 0, "prohibited": 1, "grid": 2}
_MUCK = VEHICLE_CLASSES.index("muck_truck")


class CityShapes:
    def __init__(self, city: City, geometry: CityGeometry) -> None:
        self.city = city
        self.geometry = geometry
        self.projection = geometry.projection
        self.zones = {z.id: z for z in city.zones}
        self._zone_list = list(city.zones)
        self._zone_ids = [z.id for z in self._zone_list]
        self._zone_geoms = [z.geometry for z in self._zone_list]
        self.grids = [z for z in city.zones if z.kind == "grid"]
        self._corridor = {r.id: r.corridor_m for r in city.routes}

    def corridor_m(self, route_id: str, default_m: float) -> float:
        own = self._corridor.get(route_id)
        return default_m if own is None else own

    def zones_at(self, lon: float, lat: float) -> list[Zone]:
        """Zones containing a point, the most specific kinds first."""
        hit = [self.zones[z] for z in zones_at(self._zone_ids, self._zone_geoms, lon, lat)]
        return sorted(hit, key=lambda z: (_STOP_ZONE_ORDER.get(z.kind, 3), z.id))


@dataclass(frozen=True, slots=True)
class PermitCheck:
    permit_id: str
    on_route_pct: float
    inside_hours_pct: float
    origin_reached: bool
    destination_reached: bool

    @property
    def compliant(self) -> bool:
        return (
            self.on_route_pct >= 99.0
            and self.inside_hours_pct >= 99.0
            and self.origin_reached
            and self.destination_reached
        )


def check_trip(
    shapes: CityShapes,
    permits: list[Permit],
    trip: Trip,
    ts: FloatArray,
    lon: FloatArray,
    lat: FloatArray,
    *,
    tz: tzinfo,
    settings: RuleSettings,
) -> PermitCheck | None:
    """Score one trip against the permit that fits it best (most on route).

    "On route" is :func:`~gpsd_server.core.permits.permit_margin` of the live
    rule, on the zones and route distances the engine's geometry gives.
    """
    part = slice(trip.first, trip.last + 1)
    tt = ts[part]
    n = len(tt)
    if not n:
        return None
    routes = shapes.geometry.corridors.permitted(permits)
    located = shapes.geometry.locate(lon[part], lat[part], np.full(n, _MUCK, dtype=np.intp), [routes] * n)

    def corridor_m(route_id: str) -> float:
        return shapes.corridor_m(route_id, settings.corridor_m)

    best: PermitCheck | None = None
    for permit in permits:
        on = [permit_margin((permit,), located.route_dist[i], located.near[i], corridor_m).on_route for i in range(n)]
        hours = [True] * n if permit.hours is None else [permit.hours.active(local_time(t, tz)) for t in tt.tolist()]
        check = PermitCheck(
            permit_id=permit.id,
            on_route_pct=round(100.0 * sum(on) / n, 1),
            inside_hours_pct=round(100.0 * sum(hours) / n, 1),
            origin_reached=any(permit.origin in z for z in located.inside),
            destination_reached=any(permit.destination in z for z in located.inside),
        )
        if best is None or check.on_route_pct > best.on_route_pct:
            best = check
    return best
