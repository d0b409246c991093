"""Reports (mileage, violations, permits, patrol coverage) and zone presence,
JSON and CSV, against the real TimescaleDB. Each test writes its own old day,
so the tests do not see each other's fixes."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
import pytest

from gpsd_server.core.history import track_stats
from gpsd_server.store.batch import MileageRule, rebuild_hours
from gpsd_server.wire import ts_text
from tests.fixtures.history import along, day_ago, insert_fixes, parked
from tests.fixtures.server import RunningServer
from tests.fixtures.services import REPO
from tests.helpers import publish, wait_for

L_SHAPE = [(112.30, 28.55), (112.35, 28.55), (112.35, 28.60)]
GRID_01 = (112.35465, 28.58086)
GRID_02 = (112.37566, 28.60764)


def read_csv(r: httpx.Response) -> list[dict[str, str]]:
    """A report CSV as Excel on a Chinese Windows reads it: UTF-8 with a BOM."""
    assert r.content.startswith(b"\xef\xbb\xbf"), r.content[:20]
    return list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))


@pytest.fixture
def history(server: RunningServer) -> RunningServer:
    return server


def route_coords(route_id: str) -> list[tuple[float, float]]:
    doc = json.loads(Path(REPO, "geofences", "routes.geojson").read_text(encoding="utf-8"))
    feature = next(f for f in doc["features"] if f["properties"]["id"] == route_id)
    return [tuple(c) for c in feature["geometry"]["coordinates"]]


async def test_daily_mileage_per_vehicle_and_company(history: RunningServer, db: psycopg.Connection[Any]) -> None:
    t0 = day_ago(11, hour_utc=2)  # 10:00 in Asia/Shanghai, the same local date
    company = f"公司-{history.prefix}"
    drive = along(L_SHAPE, t0, points=300, step_s=10, speed=36.0)
    insert_fixes(db, f"{history.prefix}-m1", drive, company=company)
    insert_fixes(db, f"{history.prefix}-m2", parked(112.3, 28.6, t0, seconds=600, step_s=10), company=company)
    # Loaded around the writer (COPY): the hourly summary the report reads is rebuilt for them.
    rebuild_hours(db, t0 - timedelta(days=1), t0 + timedelta(days=1), MileageRule())
    lon, lat = np.array([r[1] for r in drive]), np.array([r[2] for r in drive])
    ts, speed = np.array([r[0].timestamp() for r in drive]), np.full(len(drive), 36.0)
    expected = track_stats(ts, lon, lat, speed, moving_kmh=5, gap_s=300)
    async with httpx.AsyncClient(base_url=history.http, headers=history.headers()) as http:
        r = await http.get("/api/reports/mileage", params={"day": t0.date().isoformat()})
        body = r.json()
        mine = {v["id"]: v for v in body["vehicles"] if v["company"] == company}
        m1 = mine[f"{history.prefix}-m1"]
        assert m1["distance_km"] == pytest.approx(expected.distance_km, abs=1e-3) and 10 < m1["distance_km"] < 11
        assert m1["driving_s"] == 2990 and m1["max_speed_kmh"] == 36 and m1["fixes"] == 300
        assert mine[f"{history.prefix}-m2"]["driving_s"] == 0
        totals = next(c for c in body["companies"] if c["company"] == company)
        both_km = m1["distance_km"] + mine[f"{history.prefix}-m2"]["distance_km"]
        assert totals["vehicles"] == 2 and totals["distance_km"] == pytest.approx(both_km)

        r = await http.get(
            "/api/reports/mileage", params={"day": t0.date().isoformat(), "format": "csv", "by": "company"}
        )
        rows = read_csv(r)
        assert r.headers["content-type"].startswith("text/csv") and any(row["所属公司"] == company for row in rows)
        r = await http.get("/api/reports/mileage", params={"day": "yesterday-ish"})
        assert (r.status_code, r.json()["parameter"]) == (400, "day")
        r = await http.get("/api/reports/mileage", params={"format": "pdf"})
        assert (r.status_code, r.json()["parameter"]) == (400, "format")


async def test_violations_per_vehicle_company_kind_day(history: RunningServer, db: psycopg.Connection[Any]) -> None:
    vid = f"{history.prefix}-v1"
    insert_fixes(db, vid, [], company="违章公司")
    d0 = day_ago(13, hour_utc=4)
    for kind, severity, ts in [
        ("overspeed", "warning", d0), ("overspeed", "warning", d0 + timedelta(hours=1)),
        ("curfew", "warning", d0 + timedelta(days=1)), ("zone", "info", d0),
    ]:  # fmt: skip
        db.execute(
            "INSERT INTO alerts (id, vehicle_id, kind, key, severity, ts, raised_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (uuid.uuid4(), vid, kind, f"{kind}:{ts.timestamp()}", severity, ts, ts),
        )
    params = {"start": (d0 - timedelta(hours=4)).isoformat(), "end": (d0 + timedelta(days=2)).isoformat()}
    async with httpx.AsyncClient(base_url=history.http, headers=history.headers()) as http:
        body = (await http.get("/api/reports/violations", params=params)).json()
        mine = [row for row in body["rows"] if row["vehicle_id"] == vid]
        day0, day1 = d0.date().isoformat(), (d0 + timedelta(days=1)).date().isoformat()
        assert {(row["kind"], row["day"], row["count"]) for row in mine} == {
            ("overspeed", day0, 2),
            ("curfew", day1, 1),
        }
        assert body["by_vehicle"][vid] == 3 and body["by_company"]["违章公司"] == 3
        r = await http.get("/api/reports/violations", params={**params, "format": "csv"})
        assert sum(1 for row in read_csv(r) if row["车辆编号"] == vid) == 2
        r = await http.get("/api/reports/violations", params={"start": params["end"], "end": params["start"]})
        assert (r.status_code, r.json()["parameter"]) == (400, "start")


async def test_permit_compliance_per_trip(history: RunningServer, db: psycopg.Connection[Any]) -> None:
    route = route_coords("route-cs-01-ds-1")
    good = day_ago(10, hour_utc=15)  # 23:00 local: inside the permit's 22:00-05:30
    bad = day_ago(9, hour_utc=4)  # 12:00 local, and a detour 1 km north in the middle
    detour = route[:15] + [(x, y + 0.01) for x, y in route[15:30]] + route[30:]
    for t0, line in ((good, route), (bad, detour)):
        rows = parked(*line[0], t0, seconds=600, step_s=10)
        rows += along(line, rows[-1][0] + timedelta(seconds=10), points=200, step_s=10, speed=32.0)
        rows += parked(*line[-1], rows[-1][0] + timedelta(seconds=10), seconds=600, step_s=10)
        insert_fixes(db, "MT-001", rows)
    async with httpx.AsyncClient(base_url=history.http, headers=history.headers()) as http:
        day = (good + timedelta(hours=8)).date().isoformat()  # the local date
        trips = [t for t in (await http.get("/api/reports/permits", params={"day": day})).json()["trips"]
                 if t["vehicle_id"] == "MT-001"]  # fmt: skip
        assert len(trips) == 1
        t = trips[0]
        assert (t["permit_id"], t["on_route_pct"], t["inside_hours_pct"]) == ("P-0001", 100.0, 100.0)
        assert t["origin_reached"] and t["destination_reached"] and t["compliant"]

        day = (bad + timedelta(hours=8)).date().isoformat()
        r = await http.get("/api/reports/permits", params={"day": day, "format": "csv"})
        rows = [row for row in read_csv(r) if row["车辆编号"] == "MT-001"]
        assert len(rows) == 1 and rows[0]["合规"] == "否" and rows[0]["许可时段内(%)"] == "0.0"
        assert 50 < float(rows[0]["在核准路线(%)"]) < 95


async def test_patrol_coverage_and_zone_presence(history: RunningServer, db: psycopg.Connection[Any]) -> None:
    t0 = day_ago(12, hour_utc=2)
    rows = parked(*GRID_01, t0, seconds=600, step_s=10)
    rows += along([GRID_01, GRID_02], rows[-1][0] + timedelta(seconds=10), points=30, step_s=10, speed=40.0)
    rows += parked(*GRID_02, rows[-1][0] + timedelta(seconds=10), seconds=300, step_s=10)
    insert_fixes(db, "PC-001", rows)
    params = {"start": t0.isoformat(), "end": (t0 + timedelta(hours=1)).isoformat()}
    async with httpx.AsyncClient(base_url=history.http, headers=history.headers()) as http:
        body = (await http.get("/api/reports/patrol-coverage", params=params)).json()
        grids = {g["id"]: g for g in body["grids"]}
        assert len(grids) == 58 and grids["grid-01"]["visited"] and grids["grid-02"]["visited"]
        assert grids["grid-01"]["first_visit"] == ts_text(t0) and grids["grid-01"]["inside_s"] >= 600
        assert len(body["unvisited"]) >= 50 and "grid-01" not in body["unvisited"]
        mileage = [m for m in body["patrol_mileage"] if m["vehicle_id"] == "PC-001"]
        assert len(mileage) == 1 and 3 < mileage[0]["distance_km"] < 4.5
        r = await http.get("/api/reports/patrol-coverage", params={**params, "format": "csv"})
        assert len(read_csv(r)) == 58

        r = await http.get("/api/zones/grid-01/inside", params=params)
        inside = {v["id"]: v for v in r.json()["vehicles"]}
        assert inside["PC-001"]["first"] == ts_text(t0) and inside["PC-001"]["inside_s"] >= 600
        r = await http.get("/api/zones/no-such-zone/inside")
        assert (r.status_code, r.json()["parameter"]) == (404, "zone_id")

        # "Now" is the engine's confirmed presence, fed by live fixes.
        vid = f"{history.prefix}-now"
        now = time.time()
        topic = f"{history.prefix}/{vid}/fix"
        for i in range(2):
            body_ = {"ts": now - 20 + i * 10, "lon": GRID_01[0], "lat": GRID_01[1], "speed_kmh": 0}
            await publish([(topic, json.dumps(body_).encode())])
        await wait_for(lambda: vid in history.server.engine.vehicles_in_zone("grid-01"), what="presence")
        r = await http.get("/api/zones/grid-01/inside")
        assert r.json()["now"] and {"id": vid} in r.json()["vehicles"]
