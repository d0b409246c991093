"""The supervisor's desk over HTTP against the real database: the dashboard's
counts, reports as XLSX and Chinese CSV with the JSON's numbers, the 12319
dispatch log, bulk acknowledge/close, the live heartbeat, local API docs."""

from __future__ import annotations

import io
import json
import time
import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import openpyxl
import psycopg
import pytest
import websockets

from tests.api.test_reports import L_SHAPE, read_csv
from tests.fixtures.history import along, day_ago, insert_fixes
from tests.fixtures.server import RunningServer
from tests.fixtures.services import REPO
from tests.helpers import publish, wait_for

TZ = ZoneInfo("Asia/Shanghai")


def insert_alert(
    db: psycopg.Connection[Any], vehicle_id: str, kind: str, severity: str, ts: datetime, state: str = "open"
) -> str:
    aid = str(uuid.uuid4())
    db.execute(
        "INSERT INTO alerts (id, vehicle_id, kind, key, severity, ts, raised_at, lon, lat, details, state)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, 112.35, 28.57, '{}', %s)",
        (aid, vehicle_id, kind, f"{kind}:{aid}", severity, ts, ts, state),
    )
    return aid


def xlsx_rows(r: httpx.Response) -> list[list[Any]]:
    assert r.headers["content-type"].startswith("application/vnd.openxmlformats-officedocument.spreadsheetml")
    ws = openpyxl.load_workbook(io.BytesIO(r.content)).active
    assert ws is not None
    return [list(row) for row in ws.iter_rows(values_only=True)]


async def test_dashboard_counts_a_day(server: RunningServer, db: psycopg.Connection[Any]) -> None:
    p = server.prefix
    t = day_ago(40, hour_utc=3)
    day = t.astimezone(TZ).date()
    for vid, company in ((f"{p}-a1", f"甲公司{p}"), (f"{p}-a2", f"甲公司{p}"), (f"{p}-b1", f"乙公司{p}")):
        insert_fixes(db, vid, [], company=company, vehicle_class="muck_truck")
    for vid, kind, severity, when in [
        (f"{p}-a1", "overspeed", "warning", t),
        (f"{p}-a1", "overspeed", "warning", t + timedelta(minutes=5)),
        (f"{p}-a1", "tampering", "critical", t + timedelta(minutes=9)),
        (f"{p}-a2", "route_deviation", "warning", t),
        (f"{p}-b1", "curfew", "warning", t),
        (f"{p}-b1", "zone", "info", t),  # zone presence is no violation
        (f"{p}-b1", "curfew", "warning", t - timedelta(days=2)),  # the trend's earlier day
    ]:
        insert_alert(db, vid, kind, severity, when)
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers()) as http:
        body = (await http.get("/api/dashboard", params={"day": day.isoformat()})).json()
        v = body["violations"]
        assert v["total"] == 5 and v["by_kind"] == {"overspeed": 2, "tampering": 1, "route_deviation": 1, "curfew": 1}
        assert v["by_severity"] == {"critical": 1, "warning": 4}
        assert v["by_company"] == {f"甲公司{p}": 4, f"乙公司{p}": 1}
        assert body["top_vehicles"][0] == {"vehicle_id": f"{p}-a1", "plate": None, "company": f"甲公司{p}", "count": 3}
        assert body["top_companies"][0] == {"company": f"甲公司{p}", "count": 4}
        trend = {x["day"]: x["total"] for x in body["trend"]}
        assert len(trend) == 7 and trend[day.isoformat()] == 5
        assert trend[(day - timedelta(days=2)).isoformat()] == 1 and sum(trend.values()) == 6
        vehicles = db.execute("SELECT count(*) FROM vehicles").fetchone()
        assert vehicles is not None and body["now"]["vehicles"] == vehicles[0]
        assert sum(body["now"]["by_status"].values()) == vehicles[0]
        # the same numbers as the violations report
        start = datetime.combine(day, datetime.min.time(), TZ)
        span = {"start": start.isoformat(), "end": (start + timedelta(days=1)).isoformat()}
        rep = (await http.get("/api/reports/violations", params=span)).json()
        assert rep["by_kind"] == dict(sorted(v["by_kind"].items()))
        r = await http.get("/api/dashboard", params={"day": "20xx-01-01"})
        assert (r.status_code, r.json()["parameter"]) == (400, "day")


async def test_reports_as_xlsx_and_chinese_csv(server: RunningServer, db: psycopg.Connection[Any]) -> None:
    t0 = day_ago(41, hour_utc=2)
    company = f"导出公司-{server.prefix}"
    vid = f"{server.prefix}-x1"
    insert_fixes(db, vid, along(L_SHAPE, t0, points=200, step_s=10, speed=36.0), company=company, plate="湘A·X0001",
                 vehicle_class="muck_truck")  # fmt: skip
    day = t0.astimezone(TZ).date().isoformat()
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers()) as http:
        body = (await http.get("/api/reports/mileage", params={"day": day})).json()
        mine = next(x for x in body["vehicles"] if x["id"] == vid)
        rows = xlsx_rows(await http.get("/api/reports/mileage", params={"day": day, "format": "xlsx"}))
        assert rows[0][:6] == ["编号", "车牌", "车辆类型", "所属公司", "里程(km)", "行驶时间(秒)"]
        row = next(r for r in rows[1:] if r[0] == vid)
        assert row[1:5] == ["湘A·X0001", "渣土车", company, mine["distance_km"]] and row[5] == mine["driving_s"]
        csv_row = next(r for r in read_csv(await http.get("/api/reports/mileage", params={"day": day, "format": "csv"}))
                       if r["编号"] == vid)  # fmt: skip
        assert csv_row["车辆类型"] == "渣土车" and float(csv_row["里程(km)"]) == mine["distance_km"]

        # violations: kinds in Chinese; the local day
        insert_alert(db, vid, "overspeed", "warning", t0)
        start = datetime.combine(t0.astimezone(TZ).date(), datetime.min.time(), TZ)
        params = {"start": start.isoformat(), "end": (start + timedelta(days=1)).isoformat()}
        rows = xlsx_rows(await http.get("/api/reports/violations", params={**params, "format": "xlsx"}))
        assert rows[0] == ["车辆编号", "车牌", "所属公司", "告警类型", "日期", "次数"]
        assert [vid, "湘A·X0001", company, "超速", day, 1] in rows

        # the dispatch log: local times in the CSV, real date-times in the XLSX
        pc = "PC-020"  # a patrol car of the demo city's registry, online now
        # Far from the city centre: the next test servers restore this last position (test_dispatch asks there).
        fix = {"ts": time.time(), "lon": 112.60, "lat": 28.85}
        await publish([(f"{server.prefix}/{pc}/fix", json.dumps(fix).encode())])
        await wait_for(lambda: pc in server.server.hub.positions, what="the patrol car's live position")
        async with httpx.AsyncClient(base_url=server.http, headers=server.headers("operator")) as op:
            r = await op.post("/api/dispatch", json={"lon": 112.35, "lat": 28.57, "vehicle_id": pc, "note": "渣土撒漏"})
            assert r.status_code in (200, 201), r.text
        log = (await http.get("/api/reports/dispatches")).json()["dispatches"]
        mine_d = next(d for d in log if d["vehicle_id"] == pc)
        assert mine_d["note"] == "渣土撒漏" and mine_d["created_by"].startswith("operator-")
        created = datetime.fromisoformat(mine_d["created_at"].replace("Z", "+00:00")).astimezone(TZ)
        csv_rows = read_csv(await http.get("/api/reports/dispatches", params={"format": "csv"}))
        c = next(x for x in csv_rows if x["车辆编号"] == pc)
        assert c["派单时间(北京时间)"] == created.strftime("%Y-%m-%d %H:%M:%S") and c["事件说明"] == "渣土撒漏"
        rows = xlsx_rows(await http.get("/api/reports/dispatches", params={"format": "xlsx"}))
        x = next(r for r in rows[1:] if r[3] == pc)
        assert x[1] == created.replace(tzinfo=None, microsecond=0)


async def test_bulk_acknowledge_and_close(server: RunningServer, db: psycopg.Connection[Any]) -> None:
    vid = f"{server.prefix}-bulk"
    insert_fixes(db, vid, [])
    ids = [insert_alert(db, vid, "overspeed", "warning", day_ago(0.01)) for _ in range(3)]
    insert_alert_closed = insert_alert(db, vid, "curfew", "warning", day_ago(0.01), state="closed")
    async with (
        httpx.AsyncClient(base_url=server.http, headers=server.headers("operator")) as http,
        websockets.connect(server.ws_url()) as ws,
    ):
        assert json.loads(await ws.recv())["type"] == "snapshot"
        r = await http.post("/api/alerts/ack", json={"ids": [*ids, insert_alert_closed]})
        body = r.json()
        assert r.status_code == 200 and sorted(a["id"] for a in body["alerts"]) == sorted(ids)
        assert all(a["state"] == "acked" and a["acked_by"].startswith("operator-") for a in body["alerts"])
        assert body["refused"] == [{"id": insert_alert_closed, "state": "closed"}]
        updates: set[str] = set()
        while len(updates) < 3:
            m = json.loads(await ws.recv())
            if m["type"] == "alert" and m["phase"] == "update":
                updates.add(m["id"])
        assert updates == set(ids)
        db.execute("UPDATE alerts SET number = '19990101-' || lpad((9000 + n)::text, 4, '0') FROM"
                   " (SELECT id AS i, row_number() OVER (ORDER BY id) AS n FROM alerts WHERE id = ANY(%s::uuid[])) o"
                   " WHERE id = o.i", (ids[:2],))  # fmt: skip
        numbers = dict(db.execute("SELECT id::text, number FROM alerts WHERE id = ANY(%s::uuid[])", (ids[:2],)))
        # By number, as the desk shows them; the same alert named twice changes once.
        r = await http.post(
            "/api/alerts/close", json={"ids": [numbers[ids[0]], ids[1], numbers[ids[1]]], "comment": "批量处理"}
        )
        assert [a["comment"] for a in r.json()["alerts"]] == ["批量处理", "批量处理"]
        assert sorted(a["id"] for a in r.json()["alerts"]) == sorted(ids[:2])
        assert r.json()["refused"] == [{"id": numbers[ids[1]], "state": "closed"}]
        for bad, reason in (([], "at least 1"), (["nope"], "UUID")):
            r = await http.post("/api/alerts/ack", json={"ids": bad})
            assert r.status_code == 400 and r.json()["parameter"].startswith("ids"), r.text
            assert reason in r.json()["error"], r.text
        r = await http.post("/api/alerts/ack", json={"ids": ids}, headers=server.headers("viewer"))
        assert r.status_code == 403


@pytest.fixture
def server_overrides() -> dict[str, str]:
    return {"GPSD_HTTP__WS_HEARTBEAT_S": "0.5"}


async def test_quiet_live_socket_carries_heartbeats(server: RunningServer) -> None:
    async with websockets.connect(server.ws_url()) as ws:
        assert json.loads(await ws.recv())["type"] == "snapshot"
        m = json.loads(await ws.recv())
        assert m["type"] == "heartbeat" and m["ts"].endswith("Z")


async def test_docs_are_local_and_declare_bearer(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.http) as http:
        page = (await http.get("/docs")).text
        assert "/vendor/swagger-ui-dist/swagger-ui-bundle.js" in page and "//" not in page.split("<body>")[1].replace(
            "</", ""
        )
        for asset in ("/vendor/swagger-ui-dist/swagger-ui-bundle.js", "/vendor/swagger-ui-dist/swagger-ui.css",
                      "/static/js/docs.js"):  # fmt: skip
            assert (await http.get(asset)).status_code == 200, asset
        spec = (await http.get("/openapi.json")).json()
        assert spec["components"]["securitySchemes"]["bearer"] == {
            "type": "http", "scheme": "bearer",
            "description": spec["components"]["securitySchemes"]["bearer"]["description"],
        }  # fmt: skip
        assert spec["paths"]["/api/vehicles"]["get"]["security"] == [{"bearer": []}]
        assert "security" not in spec["paths"]["/healthz"]["get"]
    assert (REPO / "web" / "node_modules" / "swagger-ui-dist" / "swagger-ui-bundle.js").is_file()
