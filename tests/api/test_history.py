"""Track exports (GeoJSON, GPX, CSV), simplification, buckets, stops, trips and
bad input, against the real TimescaleDB."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta
from typing import Any

import gpxpy
import httpx
import msgspec
import psycopg
import pytest
from geojson_pydantic import FeatureCollection

from tests.fixtures.history import along, day_ago, insert_fixes, parked
from tests.fixtures.server import RunningServer

CORNERS = [(112.30, 28.55), (112.35, 28.55), (112.35, 28.60)]
ROUTE = [(112.351873, 28.649623), (112.38, 28.665), (112.410076, 28.690299)]


@pytest.fixture
def history(server: RunningServer) -> RunningServer:
    return server


def load_track(db: psycopg.Connection[Any], vehicle_id: str) -> tuple[str, str, int]:
    """300 fixes 10 s apart along an L, one late (backfilled) fix on it and one
    outlier off it; returns the range and the count of fixes on the line (301)."""
    t0 = day_ago(5, hour_utc=2)
    rows = along(CORNERS, t0, points=300, step_s=10, speed=36.0)
    late = (t0 + timedelta(seconds=1005), 112.32, 28.55, 30.0, 90.0, 1)
    outlier = (t0 + timedelta(seconds=1505), 112.36, 28.59, 30.0, 90.0, 8 | 16)  # jump | filtered
    insert_fixes(db, vehicle_id, [*rows, late, outlier])
    return t0.isoformat(), (t0 + timedelta(hours=1)).isoformat(), len(rows) + 1


def check_rfc7946(doc: dict[str, Any]) -> None:
    """What the model does not check: no crs member, [lon, lat] order, finite numbers."""
    FeatureCollection.model_validate(doc)
    assert "crs" not in doc and all("crs" not in f for f in doc["features"])
    for f in doc["features"]:
        assert f["type"] == "Feature" and isinstance(f["properties"], dict)
        coords = f["geometry"]["coordinates"]
        for lon, lat in coords if f["geometry"]["type"] == "LineString" else [coords]:
            assert 112 < lon < 113 and 28 < lat < 29  # lon first: the city is at 112.4 E, 28.6 N


async def test_geojson_gpx_csv_exports(history: RunningServer, db: psycopg.Connection[Any]) -> None:
    vid = f"{history.prefix}-trk"
    start, end, n = load_track(db, vid)
    params = {"start": start, "end": end}
    async with httpx.AsyncClient(base_url=history.http, headers=history.headers()) as http:
        r = await http.get(f"/api/vehicles/{vid}/track", params=params)
        assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
        doc = r.json()
        check_rfc7946(doc)
        line, *points = doc["features"]
        # The line: where the vehicle was (the late fix included, the outlier not);
        # the points: every fix with its flags.
        assert line["geometry"]["type"] == "LineString" and len(line["geometry"]["coordinates"]) == n
        assert [112.36, 28.59] not in line["geometry"]["coordinates"]
        assert line["properties"]["points"] == n and line["properties"]["vehicle_id"] == vid
        assert len(points) == n + 1 and sum(p["properties"]["late"] for p in points) == 1
        late = next(p for p in points if p["properties"]["late"])
        assert late["properties"]["flags"] == 1 and late["properties"]["speed"] == 30.0
        assert sum(p["properties"]["flags"] == 24 for p in points) == 1
        assert [p["properties"]["ts"] for p in points] == sorted(p["properties"]["ts"] for p in points)

        r = await http.get(f"/api/vehicles/{vid}/track", params={**params, "format": "gpx"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/gpx+xml")
        gpx = gpxpy.parse(r.text)
        assert gpx.version == "1.1" and gpx.tracks[0].name == vid
        trkpts = gpx.tracks[0].segments[0].points
        assert len(trkpts) == n
        assert (trkpts[0].longitude, trkpts[0].latitude) == CORNERS[0]
        assert trkpts[1].time - trkpts[0].time == timedelta(seconds=10) and trkpts[0].elevation == 40.0
        ext = {e.tag.split("}")[1]: e.text for e in trkpts[0].extensions}
        assert ext == {"speed_kmh": "36.0", "heading": "90.0", "flags": "0"}

        r = await http.get(f"/api/vehicles/{vid}/track", params={**params, "format": "CSV"})
        table = list(csv.DictReader(io.StringIO(r.text)))
        assert r.status_code == 200 and len(table) == n + 1  # every fix, flags in a column
        assert sum(int(row["late"]) for row in table) == 1 and table[0]["vehicle_id"] == vid


async def test_simplify_and_bucket(history: RunningServer, db: psycopg.Connection[Any]) -> None:
    vid = f"{history.prefix}-simp"
    start, end, _ = load_track(db, vid)
    async with httpx.AsyncClient(base_url=history.http, headers=history.headers()) as http:
        r = await http.get(f"/api/vehicles/{vid}/track", params={"start": start, "end": end, "simplify_m": "20"})
        doc = r.json()
        check_rfc7946(doc)
        line = doc["features"][0]["geometry"]["coordinates"]
        # An L simplifies to its three corners; the points follow the line.
        near = [(pytest.approx(x, abs=3e-4), pytest.approx(y, abs=3e-4)) for x, y in CORNERS]
        assert [tuple(c) for c in line] == near
        assert len(doc["features"]) == 1 + 3 and doc["features"][0]["properties"]["simplify_m"] == 20.0

        r = await http.get(f"/api/vehicles/{vid}/track", params={"start": start, "end": end, "bucket": "5 min"})
        line = r.json()["features"][0]["geometry"]["coordinates"]
        assert 10 <= len(line) <= 11  # 3000 s of fixes in 5-minute buckets

        r = await http.get(
            f"/api/vehicles/{vid}/track",
            params={"start": start, "end": end, "bucket": "1 min", "simplify_m": "5", "format": "gpx"},
        )
        # 1-minute samples miss the corner by up to 60 s of driving: it may take two points.
        assert len(gpxpy.parse(r.text).tracks[0].segments[0].points) in (3, 4)


@pytest.mark.parametrize(
    ("params", "status", "parameter"),
    [
        ({"format": "kml"}, 400, "format"),
        ({"simplify_m": "0"}, 400, "simplify_m"),
        ({"simplify_m": "1001"}, 400, "simplify_m"),
        ({"simplify_m": "far"}, 400, "simplify_m"),
        ({"bucket": "fortnight"}, 400, "bucket"),
        ({"start": "2026-13-01T00:00:00Z"}, 400, "start"),
        ({"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, 400, "start"),
        ({"start": "2025-01-01T00:00:00Z", "end": "2025-03-01T00:00:00Z"}, 400, "end"),
    ],
)
async def test_bad_track_parameters(
    history: RunningServer, db: psycopg.Connection[Any], params: dict[str, str], status: int, parameter: str
) -> None:
    vid = f"{history.prefix}-bad"
    insert_fixes(db, vid, parked(112.3, 28.6, day_ago(1), seconds=60, step_s=10))
    async with httpx.AsyncClient(base_url=history.http, headers=history.headers()) as http:
        r = await http.get(f"/api/vehicles/{vid}/track", params=params)
        assert (r.status_code, r.json()["parameter"]) == (status, parameter), r.text
        r = await http.get("/api/vehicles/no-such-vehicle/track")
        assert (r.status_code, r.json()["parameter"]) == (404, "vehicle_id")


async def test_stops_and_trips_name_their_zones(history: RunningServer, db: psycopg.Connection[Any]) -> None:
    vid = f"{history.prefix}-st"
    t0 = day_ago(6, hour_utc=3)
    load = parked(*ROUTE[0], t0, seconds=600, step_s=10)
    drive = along(ROUTE, load[-1][0] + timedelta(seconds=10), points=100, step_s=10, speed=30.0)
    dump = parked(*ROUTE[-1], drive[-1][0] + timedelta(seconds=10), seconds=600, step_s=10)
    insert_fixes(db, vid, load + drive + dump)
    params = {"start": t0.isoformat(), "end": (t0 + timedelta(hours=2)).isoformat()}
    async with httpx.AsyncClient(base_url=history.http, headers=history.headers()) as http:
        r = await http.get(f"/api/vehicles/{vid}/stops", params=params)
        stops = r.json()["stops"]
        assert r.status_code == 200 and len(stops) == 2
        assert stops[0]["zones"][0]["id"] == "cs-01" and stops[1]["zones"][0]["id"] == "ds-1"
        assert stops[0]["duration_s"] >= 600

        r = await http.get(f"/api/vehicles/{vid}/trips", params=params)
        body = r.json()
        assert body["stops"] == 2 and len(body["trips"]) == 1
        trip = body["trips"][0]
        assert trip["from"]["zones"][0]["id"] == "cs-01" and trip["to"]["zones"][0]["id"] == "ds-1"
        assert 7.0 < trip["distance_km"] < 7.5 and trip["max_speed_kmh"] == 30.0
        assert trip["driving_s"] == pytest.approx(1000, abs=20)

        r = await http.get(f"/api/vehicles/{vid}/stops", params={**params, "radius_m": "-1"})
        assert (r.status_code, r.json()["parameter"]) == (400, "radius_m")
        r = await http.get("/api/vehicles/nobody/trips", params=params)
        assert r.status_code == 404
    assert json.dumps(body)  # plain JSON all the way down


async def test_geojson_one_pass_and_two_pass_agree_with_the_plain_encoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The column-wise byte template gives what a dict per fix gave, in one pass or two."""
    from datetime import UTC, datetime

    from gpsd_server.api import exports
    from gpsd_server.core.history import UNUSABLE_FLAGS

    t = datetime(2026, 11, 27, 13, 30, 5, tzinfo=UTC).timestamp()
    rows = [
        (datetime.fromtimestamp(t + i * 10.25, UTC), 112.35 + i * 1e-5, 28.57 - i * 1e-6,
         None if i % 5 == 0 else (float("nan") if i % 7 == 0 else 30.0 + i / 3), None if i % 4 == 0 else i * 7.0,
         None, (1 if i % 6 == 0 else 0) | (2 if i % 9 == 0 else 0) | (8 if i % 11 == 0 else 0)
         | (32 if i % 13 == 0 else 0))
        for i in range(250)
    ]  # fmt: skip
    pages_of = [rows[:100], [], rows[100:]]

    async def pages(line_only: bool) -> Any:
        for page in pages_of:
            yield [r for r in page if not (line_only and r[6] & UNUSABLE_FLAGS)]

    def plain() -> dict[str, Any]:
        line = [[r[1], r[2]] for r in rows if not r[6] & UNUSABLE_FLAGS]  # late ones are where it was
        points = [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [r[1], r[2]]},
             "properties": {"ts": r[0], "speed": exports._round(r[3]), "heading": exports._round(r[4]),
                            "flags": r[6], "late": bool(r[6] & 1)}}
            for r in rows
        ]  # fmt: skip
        head = {"type": "Feature", "geometry": {"type": "LineString", "coordinates": line},
                "properties": {"vehicle_id": "X", "points": len(line)}}  # fmt: skip
        return json.loads(msgspec.json.encode({"type": "FeatureCollection", "features": [head, *points]}))

    async def ours() -> dict[str, Any]:
        return json.loads(b"".join([chunk async for chunk in exports.geojson(pages, {"vehicle_id": "X"})]))

    assert await ours() == plain()
    monkeypatch.setattr(exports, "ONE_PASS_MAX_ROWS", 50)  # the long-track path: line from a second pass
    assert await ours() == plain()


async def test_a_track_of_fewer_than_two_usable_fixes_is_still_valid_geojson(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by a new-user walkthrough: a parked vehicle's track (its drift left
    out of the line) was a LineString of one position, which RFC 7946 forbids
    (two or more). One usable fix: that position twice (a line of no length);
    none: no geometry. Both paths (one pass, and the line's second pass of a
    long track), the line's ``points`` counting the real fixes."""
    from datetime import UTC, datetime

    from gpsd_server.api import exports

    drift = 32  # FixFlag.DRIFT: kept as a point, out of the line
    t = datetime(2026, 11, 27, 13, 30, 5, tzinfo=UTC)

    def rows(usable: int, parked: int) -> list[Any]:
        out = [(t, 112.35 + i * 1e-4, 28.57, 0.0, None, None, 0) for i in range(usable)]
        return out + [(t, 112.36, 28.58, 0.0, None, None, drift) for _ in range(parked)]

    async def encoded(track: list[Any]) -> dict[str, Any]:
        async def pages(line_only: bool) -> Any:
            for k in range(0, len(track), 20):
                yield [r for r in track[k : k + 20] if not (line_only and r[6] & drift)]

        return json.loads(b"".join([chunk async for chunk in exports.geojson(pages, {"vehicle_id": "X"})]))

    for two_pass in (False, True):
        if two_pass:
            monkeypatch.setattr(exports, "ONE_PASS_MAX_ROWS", 10)
        none = await encoded(rows(0, 60))
        assert none["features"][0]["geometry"] is None and none["features"][0]["properties"]["points"] == 0
        assert len(none["features"]) == 61
        one = (await encoded(rows(1, 60)))["features"][0]
        assert one["geometry"] == {"type": "LineString", "coordinates": [[112.35, 28.57], [112.35, 28.57]]}
        assert one["properties"]["points"] == 1
        two = (await encoded(rows(2, 60)))["features"][0]
        assert two["geometry"]["coordinates"] == [[112.35, 28.57], [112.3501, 28.57]]
        many = (await encoded(rows(45, 30)))["features"][0]
        assert len(many["geometry"]["coordinates"]) == 45 == many["properties"]["points"]
