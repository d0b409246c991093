"""Geofences, vehicles and permits as validated values (format: docs/geofences.md).

Pure: the driver reads the files and passes ``(file name, text)`` pairs;
these functions return a :class:`City` or raise :class:`DataError` naming the
file, the feature (its id, or ``#index`` when it has none) and the reason.
Loading is all-or-nothing, so a rejected reload leaves the previous City in
force. The loader is strict: a key it does not know, anywhere in a feature,
a vehicle or a permit, is refused by name with a did-you-mean, because a
misspelt ``permit`` for ``permits`` would otherwise switch route and curfew
checks off for the whole fleet without a word.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import shapely
import shapely.errors
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from gpsd_server.core.jt808.frame import valid_phone
from gpsd_server.core.schedule import Schedule, parse_schedule
from gpsd_server.errors import DataError
from gpsd_server.model import VEHICLE_CLASSES, finite_number

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

# The keys each part of the files may have (docs/geofences.md).
FEATURE_KEYS = frozenset({"type", "properties", "geometry", "id", "bbox"})
_COMMON = frozenset({"id", "name", "kind", "parent"})
ZONE_PROPERTIES = _COMMON | {"schedule", "speed_limit_kmh", "classes", "dwell_s"}
ROUTE_PROPERTIES = _COMMON | {"corridor_m"}
MARKER_PROPERTIES = _COMMON
ROAD_PROPERTIES = frozenset({"id", "name", "kind", "speed_limit_kmh"})
VEHICLES_FILE_KEYS = frozenset({"vehicles"})
VEHICLE_KEYS = frozenset({"id", "plate", "class", "company", "terminal", "owntracks", "permits"})
PERMIT_KEYS = frozenset({"id", "origin", "destination", "routes", "hours", "valid_from", "valid_to"})


# shapely's ``shape`` raises any of these for malformed coordinate arrays
# (OverflowError: an integer past a double's range).
_SHAPE_ERRORS = (
    shapely.errors.GEOSException, ValueError, TypeError, IndexError, KeyError, AttributeError, OverflowError,
)  # fmt: skip

# Vehicle and feature ids: they name alerts, files, topics (a vehicle's is at
# most 64 characters there) and the page's labels.
MAX_ID_CHARS = 128


def check_keys(obj: Mapping[str, Any], allowed: Collection[str], what: str) -> None:
    """ValueError naming the first unknown key, with a did-you-mean."""
    for key in obj:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown key {key!r} in {what}{hint}; allowed: {', '.join(sorted(allowed))}")


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
class Road:
    """A named road of the city's network layer: names places and carries 12319
    cars (core/roadnet.py); no rule reads it."""

    id: str
    name: str
    geometry: BaseGeometry
    speed_limit_kmh: float | None = None


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
    roads: tuple[Road, ...] = ()

    def vehicle(self, vehicle_id: str) -> Vehicle | None:
        return None if self.vehicles is None else self.vehicles.get(vehicle_id)


Feature = Zone | Route | Marker


def load_city(
    geofence_files: Iterable[tuple[str, str | bytes]],
    vehicles_file: tuple[str, str | bytes] | None = None,
    road_files: Iterable[tuple[str, str | bytes]] = (),
) -> City:
    """Parse every geofence file, the vehicles file and the road network, then check references."""
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
    roads = tuple(road for file_name, text in road_files for road in parse_roads(file_name, text))
    return City(
        zones=tuple(f for f in features if isinstance(f, Zone)),
        routes=tuple(f for f in features if isinstance(f, Route)),
        markers=tuple(f for f in features if isinstance(f, Marker)),
        vehicles=vehicles,
        roads=roads,
    )


NETWORK_KINDS = {"road": ("LineString", "MultiLineString"), "traffic_light": ("Point",)}


def parse_roads(file_name: str, text: str | bytes) -> list[Road]:
    """The road network layer (``network/*.geojson``): its named roads name places;
    traffic lights (the simulator's) are checked and otherwise left alone."""
    roads = []
    for index, item in enumerate(_features(file_name, text)):
        if not isinstance(item, dict) or item.get("type") != "Feature":
            raise DataError(file_name, f"#{index}", "not a GeoJSON Feature")
        props = item.get("properties")
        fid = props.get("id") if isinstance(props, dict) else None
        label = fid if isinstance(fid, str) and fid else f"#{index}"
        try:
            check_keys(item, FEATURE_KEYS, "the feature")
            if not isinstance(props, dict):
                raise ValueError("properties must be an object")
            check_keys(props, ROAD_PROPERTIES, "properties")
            kind = props.get("kind")
            if kind not in NETWORK_KINDS:
                raise ValueError(f"unknown kind {kind!r} (the network layer holds {', '.join(NETWORK_KINDS)})")
            name = props.get("name", label)
            if not isinstance(name, str):
                raise ValueError("bad name: must be a string")
            limit = _number(props, "speed_limit_kmh", None, positive=True)
            geo = item.get("geometry")
            if not isinstance(geo, dict) or geo.get("type") not in NETWORK_KINDS[kind]:
                raise ValueError(f"bad geometry type for a {kind} (want {'/'.join(NETWORK_KINDS[kind])})")
            if kind == "road":
                roads.append(Road(label, name, shape(geo), limit))
        except _SHAPE_ERRORS as exc:
            raise DataError(file_name, label, str(exc)) from None
    return roads


def _features(file_name: str, text: str | bytes) -> list[Any]:
    doc = _json(file_name, text)
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise DataError(file_name, "(file)", "not a GeoJSON FeatureCollection")
    items = doc.get("features")
    if not isinstance(items, list):
        raise DataError(file_name, "(file)", "features must be a list")
    return items


def parse_geofences(file_name: str, text: str | bytes) -> list[Feature]:
    items = _features(file_name, text)
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
    if len(fid) > MAX_ID_CHARS:
        raise DataError(file_name, label, f"id longer than {MAX_ID_CHARS} characters")
    try:
        check_keys(item, FEATURE_KEYS, "the feature")
        return _feature_value(fid, props, item.get("geometry"))
    except ValueError as exc:
        raise DataError(file_name, fid, str(exc)) from None


def _feature_value(fid: str, props: dict[str, Any], geo: Any) -> Feature:
    kind = props.get("kind")
    if not isinstance(kind, str) or kind not in GEOMETRY_TYPES:
        close = difflib.get_close_matches(str(kind), sorted(GEOMETRY_TYPES), n=1)
        raise ValueError(f"unknown kind {kind!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    allowed = MARKER_PROPERTIES if kind in MARKER_KINDS else ROUTE_PROPERTIES if kind == "route" else ZONE_PROPERTIES
    check_keys(props, allowed, f"the properties of a {kind}")
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
    except _SHAPE_ERRORS as exc:
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
    if not finite_number(value):
        raise ValueError(f"bad number: {key} must be a finite number")
    if (positive and value <= 0) or value < 0:
        raise ValueError(f"bad number: {key} must be {'> 0' if positive else '>= 0'}")
    return float(value)


def parse_vehicles(file_name: str, text: str | bytes) -> dict[str, Vehicle]:
    doc = _json(file_name, text)
    items = doc.get("vehicles") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise DataError(file_name, "(file)", 'expected {"vehicles": [...]}')
    try:
        check_keys(doc, VEHICLES_FILE_KEYS, "the vehicles file")
    except ValueError as exc:
        raise DataError(file_name, "(file)", str(exc)) from None
    vehicles: dict[str, Vehicle] = {}
    permit_ids: set[str] = set()
    for index, item in enumerate(items):
        vid = item.get("id") if isinstance(item, dict) else None
        if not isinstance(vid, str) or not vid:
            raise DataError(file_name, f"#{index}", "missing id")
        if len(vid) > MAX_ID_CHARS:
            raise DataError(file_name, f"#{index}", f"id longer than {MAX_ID_CHARS} characters")
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
    check_keys(item, VEHICLE_KEYS, "the vehicle")
    vehicle_class = item.get("class", "other")
    if vehicle_class not in VEHICLE_CLASSES:
        raise ValueError(f"bad class {vehicle_class!r} (want one of {', '.join(VEHICLE_CLASSES)})")
    texts = {}
    for key in ("plate", "company", "terminal", "owntracks"):
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"bad {key}: must be a string")
        texts[key] = value
    if texts["terminal"] is not None and not valid_phone(texts["terminal"]):
        # What the JT/T 808 ingest takes as a phone (bad_phone): such a terminal
        # never matched, and commands to it stayed queued for ever.
        raise ValueError("bad terminal: the JT/T 808 phone, 1-20 BCD/hex digits")
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
    check_keys(item, PERMIT_KEYS, f"permit {pid}")
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
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise DataError(file_name, "(file)", f"not valid JSON: {exc}") from None
    _check_text(file_name, doc)
    return doc


def _check_text(file_name: str, doc: Any) -> None:
    """No NUL in any name or value: PostgreSQL text cannot hold one, and a
    zone id or vehicle id with it, once in force, made every write of the
    fixes and alerts that name it fail (the whole fleet's batches refused and
    spooled, 2026-12-06)."""
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise DataError(file_name, _where(doc, path), f"{path or 'a value'}: contains a NUL character")
        elif isinstance(value, dict):  # children pushed last first: the first bad one in the file is named
            for key, item in reversed(value.items()):
                if "\x00" in key:
                    raise DataError(file_name, _where(doc, path), f"{path or 'a key'}: a key contains a NUL character")
                if key != "coordinates":  # numbers, checked by shapely (a polygon may have 100,000 of them)
                    stack.append((f"{path}.{key}" if path else key, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", value[i]) for i in range(len(value) - 1, -1, -1))


def _where(doc: Any, path: str) -> str:
    """The item a path is in, as DataError names it: a feature's or a vehicle's id when it has a usable one."""
    for top in ("features[", "vehicles["):
        if path.startswith(top):
            index = int(path[len(top) : path.index("]")])
            item = doc[top[:-1]][index]
            ident = (item.get("properties") or {}).get("id") if top == "features[" else item.get("id")
            if isinstance(item, dict) and isinstance(ident, str) and "\x00" not in ident and ident:
                return ident
            return f"#{index}"
    return "(file)"
