"""Dates at the ends of the calendar (the issue's 16 route/value pairs and
more) never make a 500: times are clamped into [1970-01-01, 9999-12-30] and
days into [1970-01-02, 9999-12-28]; a range that is then empty or too long
is a 400 naming the parameter; ``by`` is checked."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from tests.fixtures.server import RunningServer
from tests.fixtures.services import REPO
from tests.helpers import publish

EPOCH = "1970-01-01T00:00:00Z"
FAR_PAST = "0001-01-01T00:00:00Z"
FAR_FUTURE = "9999-12-31T23:59:59Z"
TIMES = [FAR_PAST, FAR_FUTURE, "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00", "99999999999", "1e300"]
DAYS = ["0001-01-01", "9999-12-31", "1970-01-01", "9999-12-30"]


def zone_id() -> str:
    return str(json.loads((REPO / "geofences" / "zones.geojson").read_bytes())["features"][0]["properties"]["id"])


@pytest.fixture
async def vehicle(server: RunningServer) -> str:
    vid = f"{server.prefix}-edge"
    body = json.dumps({"ts": time.time() - 60, "lon": 112.95, "lat": 28.23, "speed_kmh": 10})
    await publish([(f"{server.prefix}/{vid}/fix", body.encode())])
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers()) as http:
        for _ in range(100):
            if any(v["id"] == vid for v in (await http.get("/api/vehicles")).json()["vehicles"]):
                return vid
            await asyncio.sleep(0.05)
    raise AssertionError("the vehicle's fix was not stored")


def cases(vid: str) -> list[tuple[str, dict[str, str]]]:
    ranged = [
        f"/api/vehicles/{vid}/track", f"/api/vehicles/{vid}/stops", f"/api/vehicles/{vid}/trips",
        "/api/reports/violations", "/api/reports/patrol-coverage", f"/api/zones/{zone_id()}/inside",
    ]  # fmt: skip
    out: list[tuple[str, dict[str, str]]] = []
    for path in ranged:
        for t in TIMES:
            out += [(path, {"end": t}), (path, {"start": t}), (path, {"start": t, "end": t})]
        out.append((path, {"start": FAR_PAST, "end": FAR_FUTURE}))
    for path in ("/api/reports/mileage", "/api/reports/permits"):
        out += [(path, {"day": d}) for d in DAYS]
    out += [("/api/alerts", {"since": t}) for t in TIMES]
    return out


async def test_no_date_makes_a_server_error(server: RunningServer, vehicle: str) -> None:
    checked = 0
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers(), timeout=60) as http:
        for path, params in cases(vehicle):
            r = await http.get(path, params=params)
            what = (path, params, r.status_code, r.text[:200])
            assert r.status_code < 500, what
            if r.status_code >= 400:
                assert r.json()["parameter"] in params, what
            checked += 1
        # the pairs, by name
        for path in (f"/api/vehicles/{vehicle}/track", f"/api/vehicles/{vehicle}/stops",
                     f"/api/vehicles/{vehicle}/trips", "/api/reports/violations"):  # fmt: skip
            r = await http.get(path, params={"end": FAR_PAST})
            assert r.status_code == 400 and r.json() == {"error": f"must be after {EPOCH}", "parameter": "end"}
        for path in ("/api/reports/mileage", "/api/reports/permits"):
            for day, clamped in (("0001-01-01", "1970-01-02"), ("9999-12-31", "9999-12-28")):
                r = await http.get(path, params={"day": day})
                assert r.status_code == 200 and r.json()["day"] == clamped, r.text
            r = await http.get(path, params={"day": "20260101"})
            assert r.status_code == 400 and r.json()["parameter"] == "day", r.text
        r = await http.get("/api/reports/patrol-coverage", params={"end": FAR_FUTURE})
        assert r.status_code == 200 and r.json()["end"] == "9999-12-30T00:00:00Z", r.text[:300]
        r = await http.get(f"/api/vehicles/{vehicle}/track", params={"start": FAR_PAST, "end": FAR_FUTURE})
        assert r.status_code == 400 and r.json()["parameter"] == "end"  # clamped, still longer than the cap
    assert checked >= 16
    print(f"\n[edge dates] {checked} route/value pairs, none a 5xx")


async def test_by_is_checked_on_reports(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers()) as http:
        for path in ("/api/reports/mileage", "/api/reports/patrol-coverage"):
            r = await http.get(path, params={"by": "x", "format": "csv"})
            assert r.status_code == 400 and r.json()["parameter"] == "by", r.text
        r = await http.get("/api/reports/mileage", params={"by": "company", "format": "csv", "day": "2026-01-01"})
        assert r.status_code == 200 and r.text.startswith("\ufeff所属公司,")  # Excel-ready: BOM, Chinese headers


async def test_an_epoch_longer_than_the_schema_allows_is_refused(server: RunningServer) -> None:
    """Found by the fuzzer: the schema allows 15 digits of epoch seconds; a
    longer one was clamped and answered 200."""
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers()) as http:
        for path in ("/api/reports/dispatches", "/api/reports/violations", "/api/alerts"):
            name = "since" if path == "/api/alerts" else "end"
            r = await http.get(path, params={name: "129737867682072592384"})
            assert r.status_code == 400 and r.json()["parameter"] == name, (path, r.text)
            r = await http.get(path, params={name: "999999999999999"})  # 15 digits: clamped to 9999-12-30
            assert r.status_code == 200, (path, r.text)
