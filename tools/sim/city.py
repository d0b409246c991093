"""The city as the simulator sees it: zones, routes, roads and fleet, in metres.

Reads ``geofences/*.geojson`` (the geofence format), the road network in
``geofences/network/roads.geojson`` and ``geofences/vehicles.json``.
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from shapely.geometry import LineString, Point, Polygon
from shapely.prepared import PreparedGeometry, prep

from .geo import Frame, Path, Xy, node_key

NodeKey = tuple[float, float]


@dataclass
class Zone:
    id: str
    kind: str
    polygon: Polygon
    props: dict[str, Any]
    prepared: PreparedGeometry = field(init=False)

    def __post_init__(self) -> None:
        self.prepared = prep(self.polygon)

    def contains(self, xy: Xy) -> bool:
        return bool(self.prepared.contains(Point(xy)))


@dataclass
class Road:
    """The road graph: vertices joined along each road; junctions are where it branches."""

    nodes: dict[NodeKey, Xy] = field(default_factory=dict)
    links: dict[NodeKey, dict[NodeKey, float]] = field(default_factory=lambda: defaultdict(dict))
    lights: set[NodeKey] = field(default_factory=set)

    def add_line(self, pts: list[Xy]) -> None:
        for a, b in itertools.pairwise(pts):
            ka, kb = node_key(a), node_key(b)
            self.nodes[ka], self.nodes[kb] = a, b
            self.links[ka][kb] = self.links[kb][ka] = math.dist(a, b)

    def is_junction(self, k: NodeKey) -> bool:
        return len(self.links[k]) != 2

    def shortest(self, a: NodeKey, b: NodeKey) -> list[Xy]:
        """Dijkstra over road vertices (a thousand or so: cheap)."""
        dist, prev, todo = {a: 0.0}, {}, [(0.0, a)]
        while todo:
            d, k = heapq.heappop(todo)
            if k == b:
                break
            if d > dist[k]:
                continue
            for n, w in self.links[k].items():
                if d + w < dist.get(n, math.inf):
                    dist[n], prev[n] = d + w, k
                    heapq.heappush(todo, (d + w, n))
        out = [b]
        while out[-1] != a:
            out.append(prev[out[-1]])
        return [self.nodes[k] for k in reversed(out)]

    def edges_from(self, junction: NodeKey) -> list[list[NodeKey]]:
        """Every road stretch from a junction to the next junction, as vertex keys."""
        out = []
        for first in sorted(self.links[junction]):
            chain, prev = [junction, first], junction
            while not self.is_junction(chain[-1]):
                nxt = next(n for n in self.links[chain[-1]] if n != prev)
                prev = chain[-1]
                chain.append(nxt)
            out.append(chain)
        return out

    def nearest_node(self, xy: Xy) -> NodeKey:
        return min(self.nodes, key=lambda k: math.dist(self.nodes[k], xy))


@dataclass
class City:
    frame: Frame
    zones: dict[str, Zone]
    routes: dict[str, Path]
    route_lines: dict[str, LineString]
    corridor_m: dict[str, float]
    road: Road
    vehicles: list[dict[str, Any]]

    def of_kind(self, *kinds: str) -> list[Zone]:
        return [z for z in self.zones.values() if z.kind in kinds]

    def site_at(self, xy: Xy) -> Zone | None:
        return next((z for z in self.of_kind("construction_site", "disposal_site", "plant") if z.contains(xy)), None)


def load(folder: FsPath) -> City:
    frame = Frame()
    zones: dict[str, Zone] = {}
    routes: dict[str, Path] = {}
    corridor: dict[str, float] = {}
    for file in sorted(folder.glob("*.geojson")):
        for feat in json.loads(file.read_text("utf-8"))["features"]:
            props, geom = feat["properties"], feat["geometry"]
            if geom["type"] == "Polygon":
                ring = frame.metric_many(geom["coordinates"][0])
                zones[props["id"]] = Zone(props["id"], props["kind"], Polygon(ring), props)
            elif props["kind"] == "route" and geom["type"] == "LineString":
                routes[props["id"]] = Path(frame.metric_many(geom["coordinates"]))
                corridor[props["id"]] = float(props.get("corridor_m", 50))
    road = load_road(frame, folder / "network" / "roads.geojson")
    vehicles = json.loads((folder / "vehicles.json").read_text("utf-8"))["vehicles"]
    lines = {rid: LineString(p.pts) for rid, p in routes.items()}
    return City(frame, zones, routes, lines, corridor, road, vehicles)


def load_road(frame: Frame, file: FsPath) -> Road:
    road = Road()
    for feat in json.loads(file.read_text("utf-8"))["features"]:
        geom = feat["geometry"]
        if geom["type"] == "LineString":
            road.add_line(frame.metric_many(geom["coordinates"]))
        elif feat["properties"]["kind"] == "traffic_light":
            road.lights.add(node_key(frame.metric(*geom["coordinates"])))
    return road
