"""Addresses typed by an operator, found in the city's own layers.

A caller on the 12319 line says "东门菜场", "第7网格", "环城路与辐射3路路口"
or reads out coordinates. :meth:`Gazetteer.search` finds, by name, the
districts, grids, sites, speed zones, cameras, information points and roads of
the loaded city (exact names first, then names that start with the text, then
names that contain it), the crossing points of two named roads ("A与B",
"A/B", "A和B", with or without 路口 / 交叉口), and a typed "lon, lat".
Polygons answer with a point inside them, roads with their middle. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import shapely
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from gpsd_server.core.city import City

_CROSSING = re.compile(r"\s*(?:与|和|&|/|、|＆|／|\|)\s*")
_CROSSING_TAIL = re.compile(r"(?:交叉口|交汇处|路口|十字路口|口)$")
_COORDS = re.compile(r"^\s*(-?\d{1,3}(?:\.\d+)?)\s*[,，\s]\s*(-?\d{1,2}(?:\.\d+)?)\s*$")
KIND_ORDER = ("district", "area", "grid", "construction_site", "disposal_site", "plant", "prohibited", "speed_zone")


@dataclass(frozen=True, slots=True)
class PlaceHit:
    name: str
    kind: str  # a zone kind, camera, info_point, road, crossing or coordinates
    lon: float
    lat: float
    id: str | None = None


def _norm(text: str) -> str:
    return re.sub(r"\s+", "", text).lower()


class Gazetteer:
    def __init__(self, city: City) -> None:
        self._entries: list[tuple[str, PlaceHit]] = []
        for zone in sorted(city.zones, key=lambda z: (KIND_ORDER.index(z.kind) if z.kind in KIND_ORDER else 99, z.id)):
            p = zone.geometry.representative_point()
            self._entries.append((_norm(zone.name), PlaceHit(zone.name, zone.kind, p.x, p.y, zone.id)))
        for marker in city.markers:
            g = marker.geometry
            self._entries.append((_norm(marker.name), PlaceHit(marker.name, marker.kind, g.x, g.y, marker.id)))
        self._roads: list[tuple[str, str, BaseGeometry]] = []
        for road in city.roads:
            mid = shapely.line_interpolate_point(road.geometry, 0.5, normalized=True)
            self._entries.append((_norm(road.name), PlaceHit(road.name, "road", mid.x, mid.y, road.id)))
            self._roads.append((_norm(road.name), road.name, road.geometry))

    def search(self, text: str, limit: int = 10) -> list[PlaceHit]:
        q = _norm(text)
        if not q:
            return []
        m = _COORDS.match(text)
        if m:
            lon, lat = float(m.group(1)), float(m.group(2))
            if -180 <= lon <= 180 and -90 <= lat <= 90:
                return [PlaceHit(f"{lon:.6f}, {lat:.6f}", "coordinates", lon, lat)]
        hits = self._crossings(text)
        exact = [h for name, h in self._entries if name == q]
        prefix = [h for name, h in self._entries if name != q and name.startswith(q)]
        contains = [h for name, h in self._entries if q in name and not name.startswith(q)]
        seen: set[tuple[str, str | None]] = set()
        out = []
        for h in hits + exact + prefix + contains:
            if (h.kind, h.id or h.name) not in seen:
                seen.add((h.kind, h.id or h.name))
                out.append(h)
        return out[:limit]

    def _crossings(self, text: str) -> list[PlaceHit]:
        parts = [p for p in _CROSSING.split(_CROSSING_TAIL.sub("", text.strip())) if p]
        if len(parts) != 2:
            return []
        first, second = (_norm(p) for p in parts)
        a = [r for r in self._roads if r[0] == first] or [r for r in self._roads if first in r[0]]
        b = [r for r in self._roads if r[0] == second] or [r for r in self._roads if second in r[0]]
        out = []
        for _, name_a, geo_a in a[:3]:
            for _, name_b, geo_b in b[:3]:
                if name_a == name_b:
                    continue
                meet = geo_a.intersection(geo_b)
                for point in shapely.get_parts(meet):
                    if isinstance(point, Point):
                        out.append(PlaceHit(f"{name_a}与{name_b}路口", "crossing", point.x, point.y))
        return out
