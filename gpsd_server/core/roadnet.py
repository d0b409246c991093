"""The city's road layer as a graph: travel time from patrol cars to a place.

Built once per loaded city (in the loader's thread) from the named roads of
``geofences/network/*.geojson``: the lines are projected to metres and noded
(split where they cross), each piece an edge between two junctions, carrying
its road's ``speed_limit_kmh``. A query snaps the place and every car to the
nearest piece, runs one Dijkstra from the place (roads are two-way) and adds
the legs onto and off the network as a straight line x ``road_factor`` at
city speed. A car or place farther than ``snap_max_m`` from every road gets
the straight-line estimate, as in a city without a road layer. Pure.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import shapely
from shapely import ops
from shapely.geometry import LineString, Point
from shapely.geometry.base import BaseGeometry

from gpsd_server.core.city import Road
from gpsd_server.core.geo import Projection

Method = Literal["road", "straight"]


@dataclass(frozen=True, slots=True)
class Leg:
    """How a car gets to the place: seconds, metres driven, and by which estimate."""

    method: Method
    eta_s: float
    route_m: float
    path: tuple[tuple[float, float], ...] = ()  # lon/lat, when asked for (road method)


@dataclass(frozen=True, slots=True)
class _Snap:
    edge: int
    along_m: float  # from the edge's first node
    off_m: float  # straight distance from the point to the edge
    xy: tuple[float, float]
    point: tuple[float, float]  # the point on the edge


class RoadNetwork:
    def __init__(self, roads: Sequence[Road], projection: Projection) -> None:
        self.projection = projection
        lines: list[BaseGeometry] = []
        limits: list[float] = []
        for road in roads:
            for part in shapely.get_parts(projection.geometry(road.geometry)):
                if isinstance(part, LineString) and part.length > 0:
                    lines.append(part)
                    limits.append(road.speed_limit_kmh or math.inf)
        self._edges: list[LineString] = []
        self._limit: list[float] = []
        self._ends: list[tuple[int, int]] = []
        self._adjacent: list[list[int]] = []
        if not lines:
            self._tree = None
            return
        originals = shapely.STRtree(np.array(lines, dtype=object))
        noded = shapely.get_parts(shapely.node(shapely.multilinestrings(lines)))
        nodes: dict[tuple[float, float], int] = {}

        def node(x: float, y: float) -> int:
            key = (round(x, 2), round(y, 2))
            if key not in nodes:
                nodes[key] = len(nodes)
                self._adjacent.append([])
            return nodes[key]

        for piece in noded:
            if piece.length <= 0:
                continue
            mid = shapely.line_interpolate_point(piece, 0.5, normalized=True)
            source = int(originals.query_nearest(mid)[0])
            (x0, y0), (x1, y1) = piece.coords[0], piece.coords[-1]
            u, v = node(x0, y0), node(x1, y1)
            index = len(self._edges)
            self._edges.append(piece)
            self._limit.append(limits[source])
            self._ends.append((u, v))
            self._adjacent[u].append(index)
            if v != u:
                self._adjacent[v].append(index)
        self._tree = shapely.STRtree(np.array(self._edges, dtype=object))

    @property
    def empty(self) -> bool:
        return self._tree is None

    @property
    def size(self) -> tuple[int, int]:
        """(junctions, edges)."""
        return len(self._adjacent), len(self._edges)

    def _snap(self, x: float, y: float, max_m: float) -> _Snap | None:
        if self._tree is None:
            return None
        p = Point(x, y)
        hits, dist = self._tree.query_nearest(p, max_distance=max_m, return_distance=True)
        if not len(hits):
            return None
        edge = int(hits[0])
        line = self._edges[edge]
        along = float(line.project(p))
        on = line.interpolate(along)
        return _Snap(edge, along, float(dist[0]), (x, y), (float(on.x), float(on.y)))

    def _speed_ms(self, edge: int, speed_kmh: float) -> float:
        return min(speed_kmh, self._limit[edge]) / 3.6

    def legs(
        self,
        target: tuple[float, float],
        cars: Sequence[tuple[float, float]],
        *,
        road_speed_kmh: float,
        city_speed_kmh: float,
        road_factor: float,
        snap_max_m: float,
        paths: int = 0,
    ) -> list[Leg]:
        """One :class:`Leg` per car (lon, lat) to the target (lon, lat); the
        first ``paths`` cars by position get their road path drawn."""
        lon = np.array([target[0], *(c[0] for c in cars)], dtype=np.float64)
        lat = np.array([target[1], *(c[1] for c in cars)], dtype=np.float64)
        xs, ys = self.projection.to_xy(lon, lat)
        off_ms = city_speed_kmh / 3.6 / road_factor  # straight metres per second off the network

        def straight(i: int) -> Leg:
            d = math.hypot(xs[i + 1] - xs[0], ys[i + 1] - ys[0])
            return Leg("straight", d / off_ms, d * road_factor)

        goal = self._snap(float(xs[0]), float(ys[0]), snap_max_m)
        if goal is None:
            return [straight(i) for i in range(len(cars))]
        snaps = [self._snap(float(xs[i + 1]), float(ys[i + 1]), snap_max_m) for i in range(len(cars))]
        targets = {n for s in snaps if s is not None for n in self._ends[s.edge]}
        best, prev = self._dijkstra(goal, targets, road_speed_kmh)
        out: list[Leg] = []
        for i, snap in enumerate(snaps):
            if snap is None:
                out.append(straight(i))
                continue
            options = self._options(snap, goal, best, road_speed_kmh)
            if not options:
                out.append(straight(i))
                continue
            t, m, via = min(options)
            t += (snap.off_m + goal.off_m) / off_ms
            m += (snap.off_m + goal.off_m) * road_factor
            path = self._path(snap, goal, via, prev) if i < paths else ()
            out.append(Leg("road", t, m, path))
        return out

    def _options(
        self, snap: _Snap, goal: _Snap, best: dict[int, tuple[float, float]], speed_kmh: float
    ) -> list[tuple[float, float, int]]:
        """(seconds, metres, via node; -1 along the same edge) from the car's snap to the goal."""
        edge, line = snap.edge, self._edges[snap.edge]
        v_ms = self._speed_ms(edge, speed_kmh)
        u, v = self._ends[edge]
        options = []
        for node, along in ((u, snap.along_m), (v, line.length - snap.along_m)):
            if node in best:
                t, m = best[node]
                options.append((t + along / v_ms, m + along, node))
        if edge == goal.edge:
            d = abs(snap.along_m - goal.along_m)
            options.append((d / v_ms, d, -1))
        return options

    def _dijkstra(
        self, goal: _Snap, targets: set[int], speed_kmh: float
    ) -> tuple[dict[int, tuple[float, float]], dict[int, tuple[int, int]]]:
        """Seconds and metres from the goal to each junction (until every target is settled)."""
        edge, line = goal.edge, self._edges[goal.edge]
        v_ms = self._speed_ms(edge, speed_kmh)
        u, v = self._ends[edge]
        best: dict[int, tuple[float, float]] = {}
        prev: dict[int, tuple[int, int]] = {}  # node -> (previous node or -1 for the goal, edge)
        todo: list[tuple[float, float, int, int, int]] = [
            (goal.along_m / v_ms, goal.along_m, u, -1, edge),
            ((line.length - goal.along_m) / v_ms, line.length - goal.along_m, v, -1, edge),
        ]
        left = set(targets)
        while todo and left:
            t, m, node, before, via = heapq.heappop(todo)
            if node in best:
                continue
            best[node], prev[node] = (t, m), (before, via)
            left.discard(node)
            for e in self._adjacent[node]:
                a, b = self._ends[e]
                other = b if a == node else a
                if other not in best:
                    length = self._edges[e].length
                    heapq.heappush(todo, (t + length / self._speed_ms(e, speed_kmh), m + length, other, node, e))
        return best, prev

    def _path(
        self, snap: _Snap, goal: _Snap, via: int, prev: dict[int, tuple[int, int]]
    ) -> tuple[tuple[float, float], ...]:
        """The road path car -> place as lon/lat (for the map)."""
        pts: list[tuple[float, float]] = [snap.xy, snap.point]
        if via == -1:
            pts += list(ops.substring(self._edges[snap.edge], snap.along_m, goal.along_m).coords)
        else:
            pts += self._part(snap.edge, snap.along_m, via)
            node = via
            while True:
                before, edge = prev[node]
                if before == -1:
                    pts += self._part(edge, None, node, to=goal.along_m)
                    break
                pts += self._part(edge, None, node, to=None, towards=before)
                node = before
        pts += [goal.point, goal.xy]
        xs = np.array([p[0] for p in pts])
        ys = np.array([p[1] for p in pts])
        lon, lat = self.projection.to_lonlat(xs, ys)
        return tuple((round(float(a), 6), round(float(b), 6)) for a, b in zip(lon, lat, strict=True))

    def _part(
        self, edge: int, along: float | None, node: int, *, to: float | None = None, towards: int | None = None
    ) -> list[tuple[float, float]]:
        """Coordinates along an edge: from ``along`` to the end at ``node``, or
        from ``node`` to ``to`` (an offset) or to its other end ``towards``."""
        line = self._edges[edge]
        u, _ = self._ends[edge]
        at_node = 0.0 if node == u else line.length
        if along is not None:
            start, end = along, at_node
        elif to is not None:
            start, end = at_node, to
        else:
            start, end = at_node, line.length - at_node
        return list(ops.substring(line, start, end).coords)
