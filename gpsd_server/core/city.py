"""Geofences, vehicles and permits as validated values (format: docs/geofences.md).

Pure: the driver reads the files and passes ``(file name, text)`` pairs;
these functions return a :class:`City` or raise :class:`DataError` naming the
file, the feature (its id, or ``#index`` when it has none) and the reason.
Loading is all-or-nothing, so a rejected reload leaves the previous City in
force.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import shapely
import shapely.errors
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from gpsd_server.core.schedule import Schedule, parse_schedule
from gpsd_server.errors import DataError
from gpsd_server.model import VEHICLE_CLASSES

ZONE_KINDS = (
    "area",
    "district",
    "grid",
    "prohibited",
    "construction_site",
    "disposal_site",
    "plant",
    "speed_zone",
)
MARKER_KINDS = ("camera", "info_point")
GEOMETRY_TYPES: Mapping[str, tuple[str, ...]] = {
    **{kind: ("Polygon", "MultiPolygon") for kind in ZONE_KINDS},
    "route": ("LineString", "MultiLineString"),
    **{kind: ("Point",) for kind in MARKER_KINDS},
}


@dataclass(frozen=True, slots=True)
class Zone:
    id: str
    name: str
    kind: str
    geometry: BaseGeometry  # WGS-84 lon/lat
    classes: frozenset[str]
    schedule: Schedule | None = None
    speed_limit_kmh: float | None = None
    dwell_s: float = 0.0
    parent: str | None = None


@dataclass(frozen=True, slots=True)
class Route:
    id: str
    name: str
    geometry: BaseGeometry  # WGS-84 lon/lat
    corridor_m: float | None = None  # None: RuleSettings.corridor_m (50 m by default)
    parent: str | None = None


@dataclass(frozen=True, slots=True)
class Marker:
    """A camera or information point: shown on the map, no rules."""

    id: str
    name: str
    kind: str
    geometry: BaseGeometry
    parent: str | None = None


@dataclass(frozen=True, slots=True)
class Permit:
    id: str
    origin: str  # construction_site zone id
    destination: str  # disposal_site zone id
    routes: tuple[str, ...]
    hours: Schedule | None = None  # None: any time
    valid_from: int | None = None  # local date ordinal, inclusive
    valid_to: int | None = None

    def valid_on(self, day: int) -> bool:
        return (self.valid_from is None or day >= self.valid_from) and (self.valid_to is None or day <= self.valid_to)


@dataclass(frozen=True, slots=True)
class Vehicle:
    id: str
    vehicle_class: str = "other"
    plate: str = ""
    company: str = ""
    terminal: str | None = None
    owntracks: str | None = None
    permits: tuple[Permit, ...] = ()


@dataclass(frozen=True, slots=True)
class City:
    zones: tuple[Zone, ...] = ()
    routes: tuple[Route, ...] = ()
    markers: tuple[Marker, ...] = ()
    vehicles: Mapping[str, Vehicle] | None = None

    def vehicle(self, vehicle_id: str) -> Vehicle | None:
        return None if self.vehicles is None else self.vehicles.get(vehicle_id)


Feature = Zone | Route | Marker


def load_city(
    geofence_files: Iterable[tuple[str, str | bytes]],
    vehicles_file: tuple[str, str | bytes] | None = None,
) -> City:
    """Parse every geofence file and the vehicles file, then check references."""
    features: list[Feature] = []
    seen: dict[str, str] = {}
    for file_name, text in geofence_files:
        for feature in parse_geofences(file_name, text):
            if feature.id in seen:
                raise DataError(file_name, feature.id, f"duplicate id (also in {seen[feature.id]})")
            seen[feature.id] = file_name
            features.append(feature)
    by_id = {f.id: f for f in features}
    for f in features:
        if f.parent is not None and f.parent not in by_id:
            raise DataError(seen[f.id], f.id, f"unknown reference: parent {f.parent!r}")
    vehicles: dict[str, Vehicle] = {}
    if vehicles_file is not None:
        vehicles = parse_vehicles(*vehicles_file)
        _check_permit_references(vehicles_file[0], vehicles, by_id)
    return City(
        zones=tuple(f for f in features if isinstance(f, Zone)),
        routes=tuple(f for f in features if isinstance(f, Route)),
        markers=tuple(f for f in features if isinstance(f, Marker)),
        vehicles=vehicles,
    )


def parse_geofences(file_name: str, text: str | bytes) -> list[Feature]:
    doc = _json(file_name, text)
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise DataError(file_name, "(file)", "not a GeoJSON FeatureCollection")
    items = doc.get("features")
    if not isinstance(items, list):
        raise DataError(file_name, "(file)", "features must be a list")
    out: list[Feature] = []
    ids: set[str] = set()
    for index, item in enumerate(items):
        feature = _feature(file_name, index, item)
        if feature.id in ids:
            raise DataError(file_name, feature.id, "duplicate id")
        ids.add(feature.id)
        out.append(feature)
    return out


def _feature(file_name: str, index: int, item: Any) -> Feature:
    label = f"#{index}"
    if not isinstance(item, dict) or item.get("type") != "Feature":
        raise DataError(file_name, label, "not a GeoJSON Feature")
    props = item.get("properties")
    if not isinstance(props, dict):
        raise DataError(file_name, label, "properties must be an object")
    fid = props.get("id")
    if not isinstance(fid, str) or not fid:
        raise DataError(file_name, label, "missing id")
    try:
        return _feature_value(fid, props, item.get("geometry"))
    except ValueError as exc:
        raise DataError(file_name, fid, str(exc)) from None


def _feature_value(fid: str, props: dict[str, Any], geo: Any) -> Feature:
    kind = props.get("kind")
    if not isinstance(kind, str) or kind not in GEOMETRY_TYPES:
        raise ValueError(f"unknown kind {kind!r}")
    name = props.get("name", fid)
    if not isinstance(name, str):
        raise ValueError("bad name: must be a string")
    parent = props.get("parent")
    if parent is not None and not isinstance(parent, str):
        raise ValueError("bad parent: must be a zone id")
    geometry = _geometry(kind, geo)
    if kind in MARKER_KINDS:
        return Marker(fid, name, kind, geometry, parent)
    if kind == "route":
        corridor = _number(props, "corridor_m", None, positive=True)
        return Route(fid, name, geometry, corridor, parent)
    schedule = props.get("schedule")
    return Zone(
        id=fid,
        name=name,
        kind=kind,
        geometry=geometry,
        classes=_classes(props.get("classes")),
        schedule=None if schedule is None else parse_schedule(schedule),
        speed_limit_kmh=_number(props, "speed_limit_kmh", None, positive=True),
        dwell_s=_number(props, "dwell_s", 0.0, positive=False) or 0.0,
        parent=parent,
    )


def _geometry(kind: str, geo: Any) -> BaseGeometry:
    allowed = GEOMETRY_TYPES[kind]
    if not isinstance(geo, dict) or geo.get("type") not in allowed:
        got = geo.get("type") if isinstance(geo, dict) else type(geo).__name__
        raise ValueError(f"bad geometry type {got!r} for kind {kind!r} (want {'/'.join(allowed)})")
    try:
        geometry = shape(geo)
    # shapely raises any of these for malformed coordinate arrays
    except (shapely.errors.GEOSException, ValueError, TypeError, IndexError, KeyError, AttributeError) as exc:
        raise ValueError(f"bad geometry: {exc}") from None
    if geometry.is_empty:
        raise ValueError("bad geometry: empty")
    minx, miny, maxx, maxy = geometry.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise ValueError("bad geometry: coordinates must be WGS-84 lon/lat degrees")
    if not shapely.is_valid(geometry):
        raise ValueError(f"invalid polygon: {shapely.is_valid_reason(geometry)}")
    return geometry


def _classes(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset(VEHICLE_CLASSES)
    if not isinstance(value, list) or not value:
        raise ValueError("bad class: classes must be a non-empty list")
    for item in value:
        if item not in VEHICLE_CLASSES:
            raise ValueError(f"bad class {item!r} (want one of {', '.join(VEHICLE_CLASSES)})")
    return frozenset(value)


def _number(props: dict[str, Any], key: str, default: float | None, *, positive: bool) -> float | None:
    value = props.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"bad number: {key} must be a finite number")
    if (positive and value <= 0) or value < 0:
        raise ValueError(f"bad number: {key} must be {'> 0' if positive else '>= 0'}")
    return float(value)


def parse_vehicles(file_name: str, text: str | bytes) -> dict[str, Vehicle]:
    doc = _json(file_name, text)
    items = doc.get("vehicles") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise DataError(file_name, "(file)", 'expected {"vehicles": [...]}')
    vehicles: dict[str, Vehicle] = {}
    permit_ids: set[str] = set()
    for index, item in enumerate(items):
        vid = item.get("id") if isinstance(item, dict) else None
        if not isinstance(vid, str) or not vid:
            raise DataError(file_name, f"#{index}", "missing id")
        if vid in vehicles:
            raise DataError(file_name, vid, "duplicate id")
        try:
            vehicle = _vehicle(vid, item)
        except ValueError as exc:
            raise DataError(file_name, vid, str(exc)) from None
        for permit in vehicle.permits:
            if permit.id in permit_ids:
                raise DataError(file_name, f"{vid}/{permit.id}", "duplicate id")
            permit_ids.add(permit.id)
        vehicles[vid] = vehicle
    return vehicles


def _vehicle(vid: str, item: dict[str, Any]) -> Vehicle:
    vehicle_class = item.get("class", "other")
    if vehicle_class not in VEHICLE_CLASSES:
        raise ValueError(f"bad class {vehicle_class!r} (want one of {', '.join(VEHICLE_CLASSES)})")
    texts = {}
    for key in ("plate", "company", "terminal", "owntracks"):
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"bad {key}: must be a string")
        texts[key] = value
    permits = item.get("permits", [])
    if not isinstance(permits, list):
        raise ValueError("bad permits: must be a list")
    return Vehicle(
        id=vid,
        vehicle_class=vehicle_class,
        plate=texts["plate"] or "",
        company=texts["company"] or "",
        terminal=texts["terminal"],
        owntracks=texts["owntracks"],
        permits=tuple(_permit(index, p) for index, p in enumerate(permits)),
    )


def _permit(index: int, item: Any) -> Permit:
    pid = item.get("id") if isinstance(item, dict) else None
    if not isinstance(pid, str) or not pid:
        raise ValueError(f"permit #{index}: missing id")
    assert isinstance(item, dict)
    refs = [item.get("origin"), item.get("destination")]
    routes = item.get("routes")
    if any(not isinstance(r, str) for r in refs) or not isinstance(routes, list) or not routes:
        raise ValueError(f"permit {pid}: origin, destination and a non-empty routes list are required")
    if any(not isinstance(r, str) for r in routes):
        raise ValueError(f"permit {pid}: route ids must be strings")
    hours = item.get("hours")
    try:
        schedule = None if hours is None else parse_schedule(hours)
    except ValueError as exc:
        raise ValueError(f"permit {pid}: {exc}") from None
    return Permit(
        id=pid,
        origin=str(refs[0]),
        destination=str(refs[1]),
        routes=tuple(routes),
        hours=schedule,
        valid_from=_date(pid, item, "valid_from"),
        valid_to=_date(pid, item, "valid_to"),
    )


def _date(pid: str, item: dict[str, Any], key: str) -> int | None:
    value = item.get(key)
    if value is None:
        return None
    try:
        return date.fromisoformat(value).toordinal()
    except (TypeError, ValueError):
        raise ValueError(f"permit {pid}: bad date: {key} must be YYYY-MM-DD") from None


def _check_permit_references(file_name: str, vehicles: Mapping[str, Vehicle], features: Mapping[str, Feature]) -> None:
    def kind_of(fid: str) -> str | None:
        f = features.get(fid)
        return None if f is None else getattr(f, "kind", "route")

    for vehicle in vehicles.values():
        for permit in vehicle.permits:
            wanted = [(permit.origin, "construction_site"), (permit.destination, "disposal_site")]
            wanted += [(route, "route") for route in permit.routes]
            for ref, kind in wanted:
                if kind_of(ref) != kind:
                    raise DataError(file_name, f"{vehicle.id}/{permit.id}", f"unknown reference: no {kind} {ref!r}")


def _json(file_name: str, text: str | bytes) -> Any:
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(file_name, "(file)", f"not valid JSON: {exc}") from None
