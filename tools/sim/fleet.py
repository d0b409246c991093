"""Vehicles and what each class does all day.

Muck trucks shuttle origin site -> disposal site along their permit route,
loaded one way and empty back, only inside their permitted hours (they park
in a site otherwise). Mixers go plant -> construction site -> unload (drum
``ccw``) -> plant. Patrol cars wander the roads of their district; other
vehicles wander the whole network. Every class slows for school zones and
stops at red lights, so normal driving breaks no rule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import clock
from .city import City, NodeKey
from .geo import Path, Xy, node_key
from .motion import Drive, Stay

CRUISE_KMH = {"muck_truck": (32.0, 37.0), "mixer_truck": (38.0, 45.0), "patrol": (35.0, 48.0), "other": (35.0, 48.0)}
SPEED_LIMIT_KMH = {"muck_truck": 40.0, "mixer_truck": 50.0}  # what the server enforces per class
SCHOOL_CAP_KMH = 25.0
SCHOOL_MARGIN_M = 80.0  # slow down this far outside a speed zone: GPS noise must not put a fast fix inside
LEG_SLACK = 1.4  # a muck truck starts a leg only if leg time x this fits in its window
LOAD_S, UNLOAD_S, LIFT_S = 480.0, 240.0, 90.0

Activity = Drive | Stay


@dataclass
class Vehicle:
    id: str
    cls: str
    info: dict[str, Any]
    rng: random.Random
    cruise_kmh: float
    phase_s: int  # report offset within the interval, so fixes spread over time
    xy: Xy = (0.0, 0.0)
    heading: float = 0.0
    activity: Activity | None = None
    plan: list[Activity] = field(default_factory=list)
    home: Any = None  # class-specific: permit, plant id or district id
    loaded: bool = False
    last_node: NodeKey | None = None
    prev_node: NodeKey | None = None

    @property
    def speed_kmh(self) -> float:
        return self.activity.v * 3.6 if isinstance(self.activity, Drive) else 0.0

    @property
    def ignition(self) -> bool:
        return self.activity.ignition if isinstance(self.activity, Stay) else True

    def sensors(self, t: float) -> dict[str, Any]:
        return self.activity.current_sensors(t) if self.activity else {}


class Planner:
    """Builds drives (with their slow zones and lights) and the next activities of each class."""

    def __init__(self, city: City) -> None:
        self.city = city
        self.schools = [z for z in city.of_kind("speed_zone")]
        self._slow_cache: dict[Any, list[tuple[float, float, float]]] = {}

    # ---------------------------------------------------------------- drives
    def drive(self, v: Vehicle, path: Path, sensors: dict[str, Any], label: str, cache_key: Any = None) -> Drive:
        slow = self._slow_cache.get(cache_key) if cache_key is not None else None
        if slow is None:
            slow = self.slow_zones(path)
            if cache_key is not None:
                self._slow_cache[cache_key] = slow
        lights = [
            (s, f"{k[0]:.1f},{k[1]:.1f}")
            for s, xy in path.vertex_positions()
            if (k := node_key(xy)) in self.city.road.lights
        ]
        return Drive(path, v.cruise_kmh, slow=slow, lights=lights, sensors=sensors, label=label)

    def reroute(self, d: Drive, path: Path) -> None:
        """Give a drive a new path that shares its past (a detour): new slow zones and lights."""
        fresh = self.drive_for_path(path, d.cruise_kmh)
        d.path, d.slow, d.lights = path, fresh.slow, fresh.lights

    def drive_for_path(self, path: Path, cruise_kmh: float) -> Drive:
        lights = [
            (s, f"{k[0]:.1f},{k[1]:.1f}")
            for s, xy in path.vertex_positions()
            if (k := node_key(xy)) in self.city.road.lights
        ]
        return Drive(path, cruise_kmh, slow=self.slow_zones(path), lights=lights)

    def slow_zones(self, path: Path) -> list[tuple[float, float, float]]:
        """S-ranges of a path near a speed zone, at the school cap (or the zone's own limit)."""
        s = np.arange(0.0, path.length, 10.0)
        xs = np.interp(s, path.cum, path.pts[:, 0])
        ys = np.interp(s, path.cum, path.pts[:, 1])
        out = []
        for zone in self.schools:
            near = zone.polygon.buffer(SCHOOL_MARGIN_M)
            minx, miny, maxx, maxy = near.bounds
            inside = (xs >= minx) & (xs <= maxx) & (ys >= miny) & (ys <= maxy)
            if inside.any():
                cap = min(SCHOOL_CAP_KMH, float(zone.props.get("speed_limit_kmh", 30)) - 5)
                idx = np.flatnonzero(inside)
                out.append((float(s[idx[0]]) - 10, float(s[idx[-1]]) + 10, cap))
        return sorted(out)

    # ------------------------------------------------------------ muck trucks
    def permit(self, v: Vehicle) -> dict[str, Any]:
        return v.info["permits"][0]

    def route(self, v: Vehicle, outbound: bool) -> tuple[Path, str]:
        rid = self.permit(v)["routes"][0]
        path = self.city.routes[rid]
        return (path, rid) if outbound else (path.reversed(), rid)

    def leg_time(self, path: Path, v: Vehicle) -> float:
        return path.length / (v.cruise_kmh / 3.6 * 0.7)  # lights and school zones cost about 30 %

    def muck_next(self, v: Vehicle, t: float, *, ignore_hours: bool = False) -> list[Activity]:
        """At a site: unload (disposal) or load (origin), then the next leg if it fits in the window."""
        permit = self.permit(v)
        if v.loaded and self._at(v, permit["destination"]):
            return [self.unload_at_disposal(v, t)]
        outbound = self._at(v, permit["origin"])
        path, _ = self.route(v, outbound)
        span = clock.active_span(t, permit["hours"])
        if not ignore_hours and (span is None or span[1] - t < self.leg_time(path, v) * LEG_SLACK + LOAD_S):
            return [self.park(v, t)]
        if outbound and not v.loaded:
            load = Stay(
                t + LOAD_S * v.rng.uniform(0.8, 1.2),
                {"loaded": False, "cover_closed": False, "lift": False},
                label="loading",
                after={"loaded": True, "cover_closed": True},
            )
            return [load, self.muck_drive(v, outbound=True)]
        return [self.muck_drive(v, outbound=outbound)]

    def muck_drive(self, v: Vehicle, *, outbound: bool) -> Drive:
        path, rid = self.route(v, outbound)
        sensors = {"loaded": outbound, "cover_closed": True, "lift": False}
        return self.drive(v, path, sensors, f"{'outbound' if outbound else 'return'} {rid}", (rid, outbound))

    def park(self, v: Vehicle, t: float) -> Stay:
        """Engine off in the site until the permit window opens again (plus a driver's delay)."""
        hours = self.permit(v)["hours"]
        span = clock.active_span(t, hours)
        start = clock.next_start(span[1] if span else t, hours) or t + 3600
        sensors = {"loaded": v.loaded, "cover_closed": True, "lift": False}
        return Stay(start + v.rng.uniform(0, 900), sensors, ignition=False, label="parked")

    def unload_at_disposal(self, v: Vehicle, t: float) -> Stay:
        lift_from = t + (UNLOAD_S - LIFT_S) / 2
        return Stay(
            t + UNLOAD_S,
            {"loaded": True, "cover_closed": False, "lift": False},
            label="unloading",
            phases=[(lift_from, lift_from + LIFT_S, {"lift": True})],
            after={"loaded": False},
        )

    def _at(self, v: Vehicle, zone_id: str) -> bool:
        return self.city.zones[zone_id].contains(v.xy)

    # ----------------------------------------------------------------- mixers
    def mixer_next(self, v: Vehicle, t: float) -> list[Activity]:
        plant = self.city.zones[v.home]
        if v.loaded:  # at a construction site: unload, then back to the plant
            unload = Stay(
                t + 600 * v.rng.uniform(0.8, 1.3),
                {"loaded": True, "drum": "ccw"},
                label="unloading",
                after={"loaded": False, "drum": "stopped"},
            )
            back = self.road_drive(
                v, v.xy, plant.polygon.centroid.coords[0], {"loaded": False, "drum": "stopped"}, "to plant"
            )
            return [unload, back]
        sites = self.city.of_kind("construction_site")
        site = sites[v.rng.randrange(len(sites))]
        load = Stay(t + 360 * v.rng.uniform(0.8, 1.3), {"loaded": False, "drum": "cw"}, label="loading")
        go = self.road_drive(
            v,
            plant.polygon.centroid.coords[0],
            site.polygon.centroid.coords[0],
            {"loaded": True, "drum": "cw"},
            f"to {site.id}",
        )
        return [load, go]

    def road_drive(self, v: Vehicle, a: Xy, b: Xy, sensors: dict[str, Any], label: str) -> Drive:
        ka, kb = self.city.road.nearest_node(a), self.city.road.nearest_node(b)
        return self.drive(v, Path(self.city.road.shortest(ka, kb)), sensors, label, (ka, kb))

    # ----------------------------------------------------------- wanderers
    def wander_next(self, v: Vehicle, t: float) -> list[Activity]:
        """Patrol and other vehicles: the next road stretch from this junction, sometimes a pause."""
        road = self.city.road
        here = v.last_node if v.last_node is not None else road.nearest_node(v.xy)
        edges = road.edges_from(here)
        forward = [e for e in edges if e[1] != v.prev_node] or edges
        home = self.city.zones.get(v.home) if v.home else None
        if home is not None:
            mine = [e for e in forward if home.contains(road.nodes[e[len(e) // 2]])]
            forward = mine or forward
        edge = forward[v.rng.randrange(len(forward))]
        v.prev_node, v.last_node = edge[-2], edge[-1]
        out: list[Activity] = []
        if v.rng.random() < 0.15:
            out.append(Stay(t + v.rng.uniform(60, 300), {}, label="inspection"))
        out.append(self.drive(v, Path([road.nodes[k] for k in edge]), {}, "patrol", tuple(edge)))
        return out
