"""Geofence and vehicle files: one test per rejection reason, plus schedules."""

from __future__ import annotations

import copy
import json
from datetime import datetime
from typing import Any

import pytest

from gpsd_server.core.city import load_city
from gpsd_server.core.schedule import local_time, parse_schedule
from gpsd_server.errors import DataError
from tests.fixtures.city import TZ, VEHICLES, box, city_features, collection, feature, lonlat


def load(features: list[dict[str, Any]], vehicles: dict[str, Any] | None = None) -> None:
    vehicles_file = None if vehicles is None else ("vehicles.json", json.dumps(vehicles))
    load_city([("zones.geojson", collection(*features))], vehicles_file)


def rejected(features: list[dict[str, Any]], vehicles: dict[str, Any] | None = None) -> DataError:
    with pytest.raises(DataError) as info:
        load(features, vehicles)
    return info.value


def test_the_test_city_loads() -> None:
    city = load_city([("zones.geojson", collection(*city_features()))], ("vehicles.json", json.dumps(VEHICLES)))
    assert len(city.zones) == 8 and len(city.routes) == 1
    assert city.vehicle("MT-001") is not None


BOWTIE = {
    "type": "Polygon",
    "coordinates": [[lonlat(0, 0), lonlat(100, 100), lonlat(100, 0), lonlat(0, 100), lonlat(0, 0)]],
}


SQ = box(0, 0, 10, 10)
POINT = {"type": "Point", "coordinates": [112.3, 28.5]}
LINE = {"type": "LineString", "coordinates": [[112, 28], [112.1, 28]]}
PROJECTED = {"type": "Polygon", "coordinates": [[[0, 0], [500000, 0], [0, 500000], [0, 0]]]}
BAD_WINDOWS = [{"days": [0], "from": "01:00", "to": "02:00"}]
BAD_HOUR = {"from": "25:00", "to": "06:00"}
HUGE = {"type": "Polygon", "coordinates": [[[10**309, 28.5], [112.31, 28.5], [112.31, 28.51], [10**309, 28.5]]]}


@pytest.mark.parametrize(
    ("item", "reason", "bad"),
    [
        ("Z", "invalid polygon: Self-intersection", feature("Z", "area", BOWTIE)),
        ("Z", "unknown kind 'park'", feature("Z", "park", SQ)),
        ("Z", "bad geometry type 'Point' for kind 'area'", feature("Z", "area", POINT)),
        ("R", "bad geometry type 'Polygon' for kind 'route'", feature("R", "route", SQ)),
        ("C", "bad geometry type 'LineString'", feature("C", "camera", LINE)),
        ("Z", "bad schedule: 'from' must be HH:MM", feature("Z", "area", SQ, schedule=BAD_HOUR)),
        ("Z", "bad schedule: days", feature("Z", "area", SQ, schedule=BAD_WINDOWS)),
        ("Z", "bad class 'bus'", feature("Z", "area", SQ, classes=["bus"])),
        ("Z", "bad number: speed_limit_kmh must be > 0", feature("Z", "speed_zone", SQ, speed_limit_kmh=0)),
        ("Z", "bad number: dwell_s must be >= 0", feature("Z", "area", SQ, dwell_s=-1)),
        ("R", "bad number: corridor_m must be a finite number", feature("R", "route", LINE, corridor_m="wide")),
        ("Z", "unknown reference: parent 'NOPE'", feature("Z", "area", SQ, parent="NOPE")),
        ("#1", "missing id", feature("", "area", SQ)),
        ("Z", "bad geometry: coordinates must be WGS-84", feature("Z", "area", PROJECTED)),
        ("Z", "bad geometry: int too large", feature("Z", "area", HUGE)),
        ("Z", "bad number: speed_limit_kmh must be a finite", feature("Z", "speed_zone", SQ, speed_limit_kmh=10**309)),
        ("Z", "bad number: dwell_s must be a finite number", feature("Z", "area", SQ, dwell_s=10**309)),
        ("R", "bad number: corridor_m must be a finite number", feature("R", "route", LINE, corridor_m=-(10**309))),
        ("#1", "features[1].properties.id: contains a NUL character", feature("Z\x00", "area", SQ)),
        ("Z", "features[1].properties.name: contains a NUL character", feature("Z", "area", SQ, name="a\x00b")),
        ("Z", "features[1].properties.schedule: a key contains", feature("Z", "area", SQ, schedule={"fr\x00m": 1})),
        ("#1", "id longer than 128 characters", feature("Z" * 129, "area", SQ)),
    ],
)  # fmt: skip
def test_feature_rejections_name_file_item_and_reason(item: str, reason: str, bad: dict[str, Any]) -> None:
    error = rejected([feature("OK", "grid", box(0, 0, 50, 50)), bad])
    assert (error.file, error.item) == ("zones.geojson", item)
    assert error.reason.startswith(reason), error.reason


def test_duplicate_id_across_files() -> None:
    one = ("a.geojson", collection(feature("Z", "area", SQ)))
    two = ("b.geojson", collection(feature("Z", "grid", SQ)))
    with pytest.raises(DataError) as info:
        load_city([one, two])
    assert (info.value.file, info.value.item, info.value.reason) == (
        "b.geojson",
        "Z",
        "duplicate id (also in a.geojson)",
    )


def test_not_json_and_not_a_collection() -> None:
    with pytest.raises(DataError, match="not valid JSON"):
        load_city([("x.geojson", "{")])
    with pytest.raises(DataError, match="not a GeoJSON FeatureCollection"):
        load_city([("x.geojson", "[]")])


def vehicles_with(**permit_changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VEHICLES)
    doc["vehicles"][0]["permits"][0].update(permit_changes)
    return doc


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"origin": "DS1"}, "unknown reference: no construction_site 'DS1'"),
        ({"destination": "NOPE"}, "unknown reference: no disposal_site 'NOPE'"),
        ({"routes": ["R1", "SZ"]}, "unknown reference: no route 'SZ'"),
    ],
)
def test_permit_references_are_checked(changes: dict[str, Any], reason: str) -> None:
    error = rejected(city_features(), vehicles_with(**changes))
    assert (error.file, error.item, error.reason) == ("vehicles.json", "MT-001/P-001", reason)


@pytest.mark.parametrize(
    ("vehicles", "item", "reason"),
    [
        (vehicles_with(hours={"from": "8:00", "to": "20:00"}), "MT-001", "permit P-001: bad schedule"),
        (vehicles_with(valid_to="2024-13-01"), "MT-001", "permit P-001: bad date"),
        ({"vehicles": [{"id": "V", "class": "tank"}]}, "V", "bad class 'tank'"),
        ({"vehicles": [{"id": "V"}, {"id": "V"}]}, "V", "duplicate id"),
        ({"vehicles": [{"plate": "x"}]}, "#0", "missing id"),
    ],
)
def test_vehicle_rejections(vehicles: dict[str, Any], item: str, reason: str) -> None:
    error = rejected(city_features(), vehicles)
    assert (error.file, error.item) == ("vehicles.json", item)
    assert error.reason.startswith(reason), error.reason


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=TZ).timestamp()


@pytest.mark.parametrize(
    ("when", "active"),
    [
        ("2024-03-08 21:30", True),  # Friday evening
        ("2024-03-09 05:59", True),  # Saturday morning belongs to Friday's window
        ("2024-03-09 06:00", False),
        ("2024-03-09 21:30", False),  # Saturday is not listed
        ("2024-03-10 03:00", False),  # Sunday morning would belong to Saturday
        ("2024-03-04 02:00", False),  # Monday morning would belong to Sunday
        ("2024-03-04 22:00", True),
    ],
)
def test_windows_across_midnight_belong_to_the_day_they_start(when: str, active: bool) -> None:
    schedule = parse_schedule({"days": [1, 2, 3, 4, 5], "from": "21:00", "to": "06:00"})
    assert schedule.active(local_time(at(when), TZ)) is active


def test_equal_from_and_to_is_a_whole_day() -> None:
    schedule = parse_schedule([{"days": [3], "from": "08:00", "to": "08:00"}])
    assert schedule.active(local_time(at("2024-03-07 07:59"), TZ))  # Thursday morning, Wednesday's window
    assert not schedule.active(local_time(at("2024-03-07 08:00"), TZ))


@pytest.mark.parametrize(
    "spec",
    [
        {"from": "00:00", "to": "00:00"},
        {"from": "08:00", "to": "08:00"},
        {"from": "00:00", "to": "24:00"},
        {"days": [1, 2, 3, 4, 5, 6], "from": "00:00", "to": "00:00"},
        {"from": "00:00", "to": "23:59"},
        {"from": "21:00", "to": "06:00"},
        [{"from": "00:00", "to": "12:00"}, {"from": "12:00", "to": "24:00"}],  # whole, but only as a pair
        [{"days": [3], "from": "08:00", "to": "08:00"}, {"from": "00:00", "to": "00:00"}],
    ],
)
def test_a_schedule_is_always_active_exactly_when_every_minute_of_the_week_is(spec: Any) -> None:
    """``Schedule.always`` lets the rules skip the local clock: it must never be
    claimed for a schedule with a gap (it may miss a whole day made of parts)."""
    schedule = parse_schedule(spec)
    week = datetime(2024, 3, 4, tzinfo=TZ).timestamp()  # a Monday, no DST in Asia/Shanghai
    every = all(schedule.active(local_time(week + 60 * m, TZ)) for m in range(7 * 24 * 60))
    pair = isinstance(spec, list) and len(spec) == 2 and spec[0].get("to") == "12:00"
    assert schedule.always == (every and not pair)
    assert every or not schedule.always


# -- strictness: a misspelt key never switches a check off silently ---------------


def vehicle_with(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VEHICLES)
    doc["vehicles"][0].update(changes)
    return doc


@pytest.mark.parametrize(
    ("vehicles", "item", "fragment"),
    [
        (lambda: vehicle_with(permit=[]), "MT-001", "unknown key 'permit' in the vehicle (did you mean 'permits'?)"),
        (lambda: vehicle_with(colour="red"), "MT-001", "unknown key 'colour'"),
        (lambda: {"vehicles": [], "fleet": 1}, "(file)", "unknown key 'fleet' in the vehicles file"),
    ],
)
def test_unknown_vehicle_keys_are_refused_by_name(vehicles: Any, item: str, fragment: str) -> None:
    err = rejected(city_features(), vehicles())
    assert err.file == "vehicles.json" and err.item == item and fragment in err.reason


def test_unknown_permit_keys_name_the_vehicle_and_the_permit() -> None:
    doc = copy.deepcopy(VEHICLES)
    doc["vehicles"][0]["permits"][0]["orign"] = "CS1"
    err = rejected(city_features(), doc)
    assert err.item == "MT-001" and "permit" in err.reason and "did you mean 'origin'?" in err.reason


@pytest.mark.parametrize(
    ("props", "fragment"),
    [
        ({"applies_to": ["muck_truck"]}, "unknown key 'applies_to'"),
        ({"speed_limit": 30}, "did you mean 'speed_limit_kmh'?"),
        ({"corridor_m": 60}, "unknown key 'corridor_m' in the properties of a prohibited"),
    ],
)
def test_unknown_feature_keys_are_refused_by_name(props: dict[str, Any], fragment: str) -> None:
    zone = feature("PZ", "prohibited", box(0, 0, 10, 10), **props)
    err = rejected([zone])
    assert (err.file, err.item) == ("zones.geojson", "PZ") and fragment in err.reason


def test_a_route_refuses_width_m_and_a_feature_refuses_stray_members() -> None:
    line = {"type": "LineString", "coordinates": [lonlat(0, 0), lonlat(100, 0)]}
    err = rejected([feature("R", "route", line, width_m=40)])
    assert "unknown key 'width_m'" in err.reason
    stray = feature("Z", "area", box(0, 0, 10, 10)) | {"style": {}}
    assert "unknown key 'style' in the feature" in rejected([stray]).reason


def test_24_00_is_the_end_of_the_day() -> None:
    schedule = parse_schedule({"from": "20:00", "to": "24:00"})
    late = datetime(2024, 3, 4, 23, 59, tzinfo=TZ).timestamp()
    early = datetime(2024, 3, 5, 0, 1, tzinfo=TZ).timestamp()
    assert schedule.active(local_time(late, TZ)) and not schedule.active(local_time(early, TZ))
    assert parse_schedule({"from": "00:00", "to": "24:00"}).active(local_time(early, TZ))
    with pytest.raises(ValueError, match="'from' must be HH:MM"):
        parse_schedule({"from": "24:00", "to": "06:00"})


def test_the_road_network_names_places_and_is_checked_too() -> None:
    line = {"type": "LineString", "coordinates": [lonlat(0, 0), lonlat(100, 0)]}
    road = {"type": "Feature", "properties": {"id": "road-1", "kind": "road", "name": "环城路"}, "geometry": line}
    city = load_city([("zones.geojson", collection(*city_features()))], None, [("roads.geojson", collection(road))])
    assert [(r.id, r.name) for r in city.roads] == [("road-1", "环城路")]
    bad = road | {"properties": {"id": "road-1", "kind": "road", "lanes": 4}}
    with pytest.raises(DataError, match="unknown key 'lanes'"):
        load_city([], None, [("roads.geojson", collection(bad))])
    huge = road | {"properties": {"id": "road-1", "kind": "road", "speed_limit_kmh": 10**309}}
    with pytest.raises(DataError, match="speed_limit_kmh must be a finite number"):  # a 500 before
        load_city([], None, [("roads.geojson", collection(huge))])
    far = road | {"geometry": {"type": "LineString", "coordinates": [[10**309, 28.5], [112.3, 28.5]]}}
    with pytest.raises(DataError, match="road-1"):
        load_city([], None, [("roads.geojson", collection(far))])


@pytest.mark.parametrize(
    ("item", "reason", "change"),
    [
        ("MT-001", "vehicles[0].plate: contains a NUL character", {"plate": "湘A\x00"}),
        ("MT-001", "vehicles[0].company: contains a NUL character", {"company": "x\x00"}),
        ("#0", "vehicles[0].id: contains a NUL character", {"id": "MT\x00001"}),
        ("#0", "id longer than 128 characters", {"id": "M" * 129}),
        ("MT-001", "bad terminal", {"terminal": "01300559169²"}),
        ("MT-001", "bad terminal", {"terminal": "ab/+#"}),
        ("MT-001", "bad terminal", {"terminal": "1" * 21}),
    ],
)
def test_vehicle_texts_the_database_cannot_hold_are_refused(item: str, reason: str, change: dict[str, Any]) -> None:
    """A NUL accepted here made the registry's sync to the database fail in
    the background, and a zone id with one every write of the fleet's fixes."""
    doc = copy.deepcopy(VEHICLES)
    doc["vehicles"][0].update(change)
    error = rejected(city_features(), doc)
    assert (error.file, error.item) == ("vehicles.json", item)
    assert error.reason.startswith(reason), error.reason
