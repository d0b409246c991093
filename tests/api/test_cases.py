"""12319 cases over HTTP against the real server and database: filing,
the proposal, every action, the audit trail, 4xx naming the parameter and
409 naming the state, roles, addresses from the city's layers, the report."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import psycopg
import pytest

from tests.fixtures.server import RunningServer
from tests.helpers import publish, wait_for

# Demo city (geofences/): a point on 辐射3路 north of the centre, and patrol cars around it.
PLACE = (112.3585, 28.5855)
CARS = {"PC-001": (112.3595, 28.5880), "PC-002": (112.3700, 28.6000), "PC-003": (112.3300, 28.5500)}


@pytest.fixture
def server_overrides(own_database: str) -> dict[str, str]:
    """A database of this module's own: the patrol cars it moves (and the cases
    it files) must not become other tests' restored positions."""
    return {"GPSD_DATABASE__DSN": own_database}


async def cars_online(server: RunningServer, spots: dict[str, tuple[float, float]] = CARS) -> None:
    now = time.time()
    await publish(
        [
            (f"{server.prefix}/{vid}/fix", json.dumps({"ts": now, "lon": lon, "lat": lat, "speed_kmh": 20}).encode())
            for vid, (lon, lat) in spots.items()
        ]
    )
    hub = server.server.hub
    await wait_for(lambda: all(v in hub.positions for v in spots), what="patrol positions")


def new_case(**kw: Any) -> dict[str, Any]:
    body = {
        "channel": "hotline", "category": "street_vending", "priority": "urgent", "description": "东门菜场门口占道经营",
        "address": "东门菜场", "reporter": "王先生 13800000000", "lon": PLACE[0], "lat": PLACE[1],
    }  # fmt: skip
    body.update(kw)
    return body


async def test_a_case_from_filing_to_closing(server: RunningServer) -> None:
    await cars_online(server)
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers("operator")) as http:
        r = await http.post("/api/cases", json=new_case())
        assert r.status_code == 201, r.text
        case = r.json()
        assert case["type"] == "case" and case["state"] == "accepted" and case["number"].count("-") == 1
        assert case["district"] and case["grid"] and case["place"].startswith(case["district"])
        assert case["category_name"] == "流动摊贩" and case["actions"] == ["cancel", "dispatch", "note"]
        cid = case["id"]

        proposal = (await http.get(f"/api/cases/{cid}/proposal", params={"limit": 3})).json()["vehicles"]
        assert [c["id"] for c in proposal][:1] == ["PC-001"]
        assert all(c["method"] == "road" for c in proposal) and proposal[0]["path"]
        assert [c["eta_min"] for c in proposal] == sorted(c["eta_min"] for c in proposal)

        r = await http.post(f"/api/cases/{cid}/handle", json={"comment": "too early"})
        assert r.status_code == 409 and r.json()["parameter"] == "state"
        r = await http.post(f"/api/cases/{cid}/dispatch", json={"vehicle_id": "MT-001"})
        assert r.status_code == 404 and r.json()["parameter"] == "vehicle_id"
        r = await http.post(f"/api/cases/{cid}/dispatch", json={"vehicle_id": "PC-001", "comment": "最近"})
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "dispatched" and r.json()["vehicle_id"] == "PC-001"
        assert r.json()["event"]["kind"] == "dispatched" and r.json()["event"]["data"]["method"] == "road"
        r = await http.post(f"/api/cases/{cid}/dispatch", json={"vehicle_id": "PC-002", "comment": "改派"})
        assert r.json()["event"]["kind"] == "reassigned" and r.json()["vehicle_id"] == "PC-002"
        for action in ("arrive", "handle", "callback", "close"):
            r = await http.post(f"/api/cases/{cid}/{action}", json={"comment": action})
            assert r.status_code == 200, (action, r.text)
        assert r.json()["state"] == "closed" and r.json()["actions"] == ["note"]
        r = await http.post(f"/api/cases/{cid}/cancel", json={"comment": "x"})
        assert r.status_code == 409 and r.json()["parameter"] == "state"
        r = await http.post(f"/api/cases/{cid}/note", json={"comment": ""})
        assert r.status_code == 400 and r.json()["parameter"] == "comment"
        assert (await http.post(f"/api/cases/{cid}/note", json={"comment": "市民表示满意"})).status_code == 200

        full = (await http.get(f"/api/cases/{cid}")).json()
        kinds = [e["kind"] for e in full["events"]]
        assert kinds == ["created", "dispatched", "reassigned", "arrived", "handled", "called_back", "closed", "note"]
        assert full["audit"] == {"events": 8, "intact": True}
        assert [e["by"] for e in full["events"]][1:3] == ["operator-" + server.prefix[1:]] * 2
        steps = {s["step"]: s for s in full["case"]["steps"]}
        assert all(steps[s]["done_at"] for s in ("dispatch", "arrive", "handle", "callback"))

        listed = (await http.get("/api/cases", params={"state": "closed", "q": case["number"]})).json()["cases"]
        assert [c["id"] for c in listed] == [cid]
        dispatches = (await http.get("/api/dispatch")).json()["dispatches"]
        assert {d["vehicle_id"] for d in dispatches[:2]} == {"PC-001", "PC-002"}


async def test_bad_input_names_the_parameter_and_viewers_only_read(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers("operator")) as http:
        for body, param in (
            (new_case(category="nonsense"), "category"),
            (new_case(category="Bad Id"), "category"),
            (new_case(priority="soon"), "priority"),
            (new_case(channel="fax"), "channel"),
            (new_case(lon=200), "lon"),
            (new_case(description="a\x00b"), "description"),
        ):
            r = await http.post("/api/cases", json=body)
            assert r.status_code == 400 and r.json()["parameter"] == param, (param, r.text)
        assert (await http.get("/api/cases/999999999")).json()["parameter"] == "case_id"
        r = await http.post("/api/cases/999999999/handle", json={})
        assert r.status_code == 404 and r.json()["parameter"] == "case_id"
        r = await http.get("/api/cases", params={"state": "lost"})
        assert r.status_code == 400 and r.json()["parameter"] == "state"
        r = await http.get("/api/reports/cases", params={"start": "yesterday"})
        assert r.status_code == 400 and r.json()["parameter"] == "start"
        r = await http.get("/api/cases/proposal", params={"lon": 112.35})
        assert r.status_code == 400 and r.json()["parameter"] == "lat"
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers("viewer")) as http:
        assert (await http.post("/api/cases", json=new_case())).status_code == 403
        assert (await http.get("/api/cases")).status_code == 200
        assert (await http.get("/api/cases/meta")).json()["priorities"][0] == {"id": "urgent", "name": "紧急"}


async def test_addresses_come_from_the_city_layers(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers("viewer")) as http:
        hits = (await http.get("/api/places", params={"q": "环城路与辐射3路路口"})).json()["places"]
        assert hits[0]["kind"] == "crossing" and hits[0]["place"]
        grid = (await http.get("/api/places", params={"q": "第7网格"})).json()["places"][0]
        assert (grid["kind"], grid["id"]) == ("grid", "grid-07")
        at = (await http.get("/api/places/at", params={"lon": grid["lon"], "lat": grid["lat"]})).json()
        assert at["grid_id"] == "grid-07" and at["district"]


async def test_the_trail_cannot_be_edited(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers("operator")) as http:
        cid = (await http.post("/api/cases", json=new_case(description="乱张贴"))).json()["id"]
        await http.post(f"/api/cases/{cid}/note", json={"comment": "first note"})
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        for sql in (
            "UPDATE case_events SET comment = 'edited' WHERE case_id = %s",
            "DELETE FROM case_events WHERE case_id = %s",
            "DELETE FROM cases WHERE id = %s",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql, (cid,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("TRUNCATE case_events CASCADE")
        # Someone who can switch the trigger off still leaves a broken seal.
        with conn.transaction():
            conn.execute("ALTER TABLE case_events DISABLE TRIGGER case_events_no_change")
            conn.execute("UPDATE case_events SET comment = 'edited' WHERE case_id = %s AND seq = 2", (cid,))
            conn.execute("ALTER TABLE case_events ENABLE TRIGGER case_events_no_change")
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers("viewer")) as http:
        full = (await http.get(f"/api/cases/{cid}")).json()
    assert full["events"][1]["comment"] == "edited" and full["audit"] == {"events": 2, "intact": False}


async def test_the_case_report_exports_in_chinese(server: RunningServer) -> None:
    """CSV with a BOM and Chinese headers, XLSX that openpyxl opens, the same
    numbers as the JSON report."""
    import io

    import openpyxl

    async with httpx.AsyncClient(base_url=server.http, headers=server.headers("operator")) as http:
        await http.post("/api/cases", json=new_case(description="乱堆物料"))
        report = (await http.get("/api/reports/cases")).json()
        csv_r = await http.get("/api/reports/cases", params={"format": "CSV", "by": "category"})
        xlsx_r = await http.get("/api/reports/cases", params={"format": "xlsx", "by": "category"})
        bad = await http.get("/api/reports/cases", params={"format": "pdf"})
    assert bad.status_code == 400 and bad.json()["parameter"] == "format"
    text = csv_r.content.decode("utf-8")
    assert text.startswith("\ufeff代码,名称,次数,未结案"), text[:60]
    assert csv_r.headers["content-disposition"].endswith('cases-category.csv"')
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx_r.content)).active
    assert sheet is not None
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:3] == ("代码", "名称", "次数")
    assert [r[2] for r in rows[1:]] == [row["count"] for row in report["category"]]


async def test_a_proposal_for_a_place_far_off_the_city_is_straight_line_not_a_500(server: RunningServer) -> None:
    """Found by the fuzzer: a point thousands of km away projects to no
    finite distance on the city's road network; the cars are still offered,
    by straight line."""
    await cars_online(server)
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers()) as http:
        r = await http.get("/api/cases/proposal", params={"lon": 26.4375746572929, "lat": 0.0, "limit": 3})
    assert r.status_code == 200, r.text
    cars = r.json()["vehicles"]
    assert len(cars) == 3 and {c["method"] for c in cars} == {"straight"}
    assert all(c["distance_m"] > 9_000_000 and c["route_m"] >= c["distance_m"] for c in cars)
