"""Metric frame (UTM 49N, the server's metric CRS) and polyline paths."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
from pyproj import Transformer

METRIC_CRS = "EPSG:32649"
Xy = tuple[float, float]


class Frame:
    """WGS-84 <-> metres; one transformer each way, vectorised."""

    def __init__(self) -> None:
        self._to_metric = Transformer.from_crs("EPSG:4326", METRIC_CRS, always_xy=True)
        self._to_wgs = Transformer.from_crs(METRIC_CRS, "EPSG:4326", always_xy=True)

    def metric(self, lon: float, lat: float) -> Xy:
        x, y = self._to_metric.transform(lon, lat)
        return (float(x), float(y))

    def metric_many(self, coords: Sequence[Sequence[float]]) -> list[Xy]:
        arr = np.asarray(coords, dtype=float)
        xs, ys = self._to_metric.transform(arr[:, 0], arr[:, 1])
        return list(zip(xs.tolist(), ys.tolist(), strict=True))

    def lonlat_many(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lon, lat = self._to_wgs.transform(xs, ys)
        return np.asarray(lon), np.asarray(lat)


def node_key(xy: Xy) -> tuple[float, float]:
    """Identity of a road vertex: shared vertices come from identical lon/lat, so 0.1 m is plenty."""
    return (round(xy[0], 1), round(xy[1], 1))


class Path:
    """A polyline in metres with arc length: where am I after s metres, facing where?"""

    def __init__(self, pts: Sequence[Xy]) -> None:
        cleaned = [pts[0]] + [p for a, p in itertools.pairwise(pts) if math.dist(a, p) > 1e-6]
        if len(cleaned) < 2:
            cleaned.append((cleaned[0][0] + 0.01, cleaned[0][1]))  # a degenerate but usable path
        self.pts = np.asarray(cleaned, dtype=float)
        seg = np.hypot(*np.diff(self.pts, axis=0).T)
        self.cum = np.concatenate([[0.0], np.cumsum(seg)])
        self.length = float(self.cum[-1])

    @property
    def start(self) -> Xy:
        return (float(self.pts[0, 0]), float(self.pts[0, 1]))

    @property
    def end(self) -> Xy:
        return (float(self.pts[-1, 0]), float(self.pts[-1, 1]))

    def _segment(self, s: float) -> int:
        return int(min(max(np.searchsorted(self.cum, s, side="right") - 1, 0), len(self.cum) - 2))

    def point_at(self, s: float) -> Xy:
        s = min(max(s, 0.0), self.length)
        i = self._segment(s)
        f = (s - self.cum[i]) / max(self.cum[i + 1] - self.cum[i], 1e-9)
        p = self.pts[i] + f * (self.pts[i + 1] - self.pts[i])
        return (float(p[0]), float(p[1]))

    def heading_at(self, s: float) -> float:
        """Compass heading (0 = north, clockwise) of the segment at s."""
        i = self._segment(min(max(s, 0.0), self.length))
        dx, dy = self.pts[i + 1] - self.pts[i]
        return math.degrees(math.atan2(dx, dy)) % 360.0

    def vertices_between(self, s0: float, s1: float) -> list[Xy]:
        inside = (self.cum > s0) & (self.cum < s1)
        return [(float(x), float(y)) for x, y in self.pts[inside]]

    def reversed(self) -> Path:
        return Path([(float(x), float(y)) for x, y in self.pts[::-1]])

    def splice(self, s0: float, detour: Sequence[Xy], s1: float) -> Path:
        """This path up to s0, then the detour, then this path again from s1."""
        head = [*self.vertices_between(-1.0, s0), self.point_at(s0)]
        tail = [self.point_at(s1), *self.vertices_between(s1, self.length + 1.0)]
        return Path([*head, *detour, *tail])

    def vertex_positions(self) -> list[tuple[float, Xy]]:
        return [(float(s), (float(x), float(y))) for s, (x, y) in zip(self.cum, self.pts, strict=True)]
