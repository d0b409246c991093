"""Where a point is, in the words of the city's own layers.

An alert an inspector reads next week must say *where* in a way people use:
the district and grid the point lies in, then the site it is inside
(construction site, disposal site, plant, prohibited zone) or, failing that,
the nearest named road of the network layer within ``road_within_m``:
``资阳区 · 网格07 · 环城路附近 (35 m)``. Pure; built once per loaded city
(in the loader's thread), asked only when an alert is raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from gpsd_server.core.city import City, Zone
from gpsd_server.core.geo import Projection

SITE_KINDS = ("construction_site", "disposal_site", "plant", "prohibited")
SEPARATOR = " · "


class _Layer:
    """Named polygons in an STRtree; which contain a point."""

    def __init__(self, zones: Sequence[Zone]) -> None:
        self.ids = [z.id for z in zones]
        self.names = [z.name for z in zones]
        self.shapes = np.array([z.geometry for z in zones], dtype=object)
        self.tree = shapely.STRtree(self.shapes) if zones else None

    def containing(self, point: BaseGeometry) -> list[str]:
        return [self.names[i] for i in self.indices(point)]

    def indices(self, point: BaseGeometry) -> list[int]:
        if self.tree is None:
            return []
        return sorted(self.tree.query(point, predicate="within").tolist())

    def first(self, point: BaseGeometry) -> tuple[str, str] | None:
        found = self.indices(point)
        return (self.ids[found[0]], self.names[found[0]]) if found else None


@dataclass(frozen=True, slots=True)
class Location:
    district_id: str | None = None
    district: str | None = None
    grid_id: str | None = None
    grid: str | None = None


class Places:
    def __init__(self, city: City, projection: Projection, *, road_within_m: float = 300.0) -> None:
        by_kind = {kind: [z for z in city.zones if z.kind == kind] for kind in ("district", "area", "grid")}
        self._districts = _Layer(by_kind["district"] or by_kind["area"])
        self._grids = _Layer(by_kind["grid"])
        self._sites = _Layer([z for z in city.zones if z.kind in SITE_KINDS])
        self._projection = projection
        self._road_within_m = road_within_m
        self._road_names = [r.name for r in city.roads]
        lines = [projection.geometry(r.geometry) for r in city.roads]
        self._roads = shapely.STRtree(np.array(lines, dtype=object)) if lines else None

    def describe(self, lon: float, lat: float) -> str | None:
        """District · grid · the site it is in, or the nearest road; None outside every layer."""
        if not (np.isfinite(lon) and np.isfinite(lat)):
            return None
        point = shapely.Point(lon, lat)
        parts = self._districts.containing(point)[:1] + self._grids.containing(point)[:1]
        sites = self._sites.containing(point)
        if sites:
            parts.append(f"{sites[0]}内")
        elif (road := self._nearest_road(lon, lat)) is not None:
            parts.append(road)
        return SEPARATOR.join(parts) or None

    def locate(self, lon: float, lat: float) -> Location:
        """The district and grid a point is in (ids and names), for 12319 cases."""
        if not (np.isfinite(lon) and np.isfinite(lat)):
            return Location()
        point = shapely.Point(lon, lat)
        district, grid = self._districts.first(point), self._grids.first(point)
        return Location(
            district_id=district[0] if district else None, district=district[1] if district else None,
            grid_id=grid[0] if grid else None, grid=grid[1] if grid else None,
        )  # fmt: skip

    def _nearest_road(self, lon: float, lat: float) -> str | None:
        if self._roads is None:
            return None
        x, y = self._projection.to_xy(np.array([lon]), np.array([lat]))
        point = shapely.Point(float(x[0]), float(y[0]))
        hits, dist = self._roads.query_nearest(point, max_distance=self._road_within_m, return_distance=True)
        if not len(hits):
            return None
        return f"{self._road_names[int(hits[0])]}附近 ({round(float(dist[0]))} m)"
