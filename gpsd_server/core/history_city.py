"""The city as history needs it: zones to name stops, grids for coverage,
projected routes for permit compliance. Pure; built once per loaded City."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import tzinfo

import numpy as np
import shapely

from gpsd_server.core.city import City, Permit, Zone
from gpsd_server.core.geo import Projection, city_centre
from gpsd_server.core.history import BoolArray, FloatArray, Trip, zones_at
from gpsd_server.core.schedule import local_time

# Where a truck sits is named by its small zones first; the 5 areas and 9
# districts contain everything and would only add noise to a stop.
_STOP_ZONE_ORDER = {"construction_site": 0, "disposal_site": 0, "plant": 0, "prohibited": 1, "grid": 2}


class CityShapes:
    def __init__(self, city: City, projection: Projection | None = None) -> None:
        self.city = city
        centre = city_centre(city) or (112.5, 28.5)
        self.projection = projection or Projection.near(*centre)
        self.zones = {z.id: z for z in city.zones}
        self._zone_list = list(city.zones)
        self._zone_ids = [z.id for z in self._zone_list]
        self._zone_geoms = [z.geometry for z in self._zone_list]
        shapely.prepare(self._zone_geoms)
        self.grids = [z for z in city.zones if z.kind == "grid"]
        self._routes = {r.id: self.projection.geometry(r.geometry) for r in city.routes}
        self._corridor = {r.id: r.corridor_m for r in city.routes}
        self._sites = {z.id: self.projection.geometry(z.geometry) for z in city.zones if z.kind.endswith("_site")}

    def zones_at(self, lon: float, lat: float) -> list[Zone]:
        """Zones containing a point, the most specific kinds first."""
        hit = [self.zones[z] for z in zones_at(self._zone_ids, self._zone_geoms, lon, lat)]
        return sorted(hit, key=lambda z: (_STOP_ZONE_ORDER.get(z.kind, 3), z.id))

    def on_route(self, permit: Permit, x: FloatArray, y: FloatArray, *, corridor_m: float) -> BoolArray:
        """Per point: within the corridor of a permitted route, or inside its
        origin or destination site (the deviation rule's own exemption)."""
        points = shapely.points(x, y)
        ok = np.zeros(len(x), dtype=bool)
        for route_id in permit.routes:
            line = self._routes.get(route_id)
            if line is not None:
                width = self._corridor.get(route_id) or corridor_m
                ok |= np.asarray(shapely.distance(line, points), dtype=np.float64) <= width
        for site_id in (permit.origin, permit.destination):
            site = self._sites.get(site_id)
            if site is not None:
                ok |= np.asarray(shapely.contains(site, points), dtype=bool)
        return ok

    def reached(self, site_id: str, x: FloatArray, y: FloatArray) -> bool:
        site = self._sites.get(site_id)
        return bool(site is not None and len(x) and shapely.contains_xy(site, x, y).any())


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
    x: FloatArray,
    y: FloatArray,
    *,
    tz: tzinfo,
    corridor_m: float,
    margin_m: float = 0.0,
) -> PermitCheck | None:
    """Score one trip against the permit that fits it best (most on route)."""
    part = slice(trip.first, trip.last + 1)
    tx, ty, tt = x[part], y[part], ts[part]
    best: PermitCheck | None = None
    for permit in permits:
        on = shapes.on_route(permit, tx, ty, corridor_m=corridor_m + margin_m)
        hours = (
            np.ones(len(tt), dtype=bool)
            if permit.hours is None
            else np.fromiter((permit.hours.active(local_time(t, tz)) for t in tt.tolist()), dtype=bool, count=len(tt))
        )
        check = PermitCheck(
            permit_id=permit.id,
            on_route_pct=round(100.0 * float(on.mean()), 1) if len(on) else 0.0,
            inside_hours_pct=round(100.0 * float(hours.mean()), 1) if len(hours) else 0.0,
            origin_reached=shapes.reached(permit.origin, tx, ty),
            destination_reached=shapes.reached(permit.destination, tx, ty),
        )
        if best is None or check.on_route_pct > best.on_route_pct:
            best = check
    return best
