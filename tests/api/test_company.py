"""Company accounts: company A cannot read anything of company B, on every
route and socket of the app (enumerated from the app, so a new route is
checked the day it is added), sees of its own what the city's viewer sees,
acts on its own alerts only when [desk] company_may_ack, never on others'."""

from __future__ import annotations

import asyncio
import io
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import openpyxl
import psycopg
import pytest
import websockets
from fastapi.routing import APIRoute
from starlette.routing import WebSocketRoute

from gpsd_server import cli
from tests.api.test_auth import all_routes, is_public
from tests.fixtures.companies import (
    GRID_01,
    NIGHT,
    Company,
    city_folder,
    companies_for,
    company_tokens,
    go_live,
    live_fixes,
    store_history,
)
from tests.fixtures.server import RunningServer, make_tokens, running, server_env
from tests.helpers import publish, ws_messages

TZ = ZoneInfo("Asia/Shanghai")
DAY = NIGHT.astimezone(TZ).date().isoformat()
RANGE = {"start": (NIGHT - timedelta(hours=1)).isoformat(), "end": (NIGHT + timedelta(hours=3)).isoformat()}
# A value for every query parameter some route needs or narrows by; an
# unknown required one fails the test (add it here), it is never skipped.
QUERY_VALUES: dict[str, str] = {
    "day": DAY, **RANGE, "since": RANGE["start"], "lon": str(GRID_01[0]), "lat": str(GRID_01[1]),
    "q": "网格", "state": "all",
}  # fmt: skip
FORMATS = ("json", "geojson", "gpx", "csv", "xlsx")


@pytest.fixture
def companies(unique: str) -> tuple[Company, Company]:
    return companies_for(unique)


@pytest.fixture
def server_overrides(own_database: str, tmp_path: Path, companies: tuple[Company, Company]) -> dict[str, str]:
    return {
        "GPSD_DATABASE__DSN": own_database,
        "GPSD_GEOFENCES__DIR": str(city_folder(tmp_path, companies)),
        "GPSD_DESK__COMPANY_MAY_ACK": "true",
    }


@pytest.fixture
async def fleet(server: RunningServer, companies: tuple[Company, Company]) -> AsyncIterator[RunningServer]:
    store_history(server.dsn, companies)
    await go_live(server, companies)
    await company_tokens(server, companies)
    yield server


def text_of(r: httpx.Response) -> str:
    """What a response says, whatever its type (an XLSX's cells too)."""
    if r.headers.get("content-type", "").startswith("application/vnd.openxmlformats"):
        book = openpyxl.load_workbook(io.BytesIO(r.content))
        return "\n".join(str(v) for ws in book.worksheets for row in ws.iter_rows(values_only=True) for v in row)
    return r.content.decode("utf-8", errors="replace")


def found(markers: list[str], text: str) -> list[str]:
    return [m for m in markers if re.search(re.escape(m) + r"(?![0-9A-Za-z-])", text)]


def policy(route: APIRoute) -> tuple[str, str]:
    """(role, company access) of the route's require() dependency."""
    deps = [d.call for d in route.dependant.dependencies if hasattr(d.call, "company")]
    assert deps, f"{route.path} has no require(role) dependency"
    return getattr(deps[0], "role"), getattr(deps[0], "company")  # noqa: B009


def operation(app: Any, route: APIRoute, method: str) -> dict[str, Any]:
    return dict(app.openapi()["paths"].get(route.path, {}).get(method.lower(), {}))


def variants(op: dict[str, Any]) -> list[dict[str, str]]:
    """Query strings covering every value of the route's enumerated and
    format parameters, the other parameters from QUERY_VALUES."""
    base: dict[str, str] = {}
    choices: list[tuple[str, list[str]]] = []
    for p in op.get("parameters", []):
        if p["in"] != "query" or p["name"] == "vehicle_id":
            continue
        name, schema = p["name"], p.get("schema", {})
        enum = schema.get("enum") or next((s["enum"] for s in schema.get("anyOf", []) if "enum" in s), None)
        if name == "format":
            choices.append((name, [f for f in FORMATS if re.fullmatch(schema.get("pattern", ".*"), f)]))
        elif enum and name != "state":
            choices.append((name, [str(v) for v in enum]))
        elif name in QUERY_VALUES:
            base[name] = QUERY_VALUES[name]
        else:
            assert not p.get("required"), f"no test value for the required parameter {name}: add it to QUERY_VALUES"
    out = [base]
    for name, values in choices:
        out = [{**q, name: v} for q in out for v in values]
    return out


async def test_company_a_reads_nothing_of_company_b_on_any_route(
    fleet: RunningServer, companies: tuple[Company, Company]
) -> None:
    server, (a, b) = fleet, companies
    app = server.server.app
    seen_policies: dict[str, int] = {}
    writes: list[tuple[APIRoute, str]] = []
    async with httpx.AsyncClient(base_url=server.http, timeout=30) as http:
        for route in all_routes(app.routes):
            if not isinstance(route, APIRoute) or is_public(route.path):
                continue
            _, access = policy(route)
            for method in sorted(route.methods):
                seen_policies[access] = seen_policies.get(access, 0) + 1
                url = route.path.replace("{vehicle_id}", a.muck).replace("{zone_id}", "grid-01")
                url = re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000000", url)
                if access == "none":
                    r = await http.request(method, url, headers=a.headers())
                    assert r.status_code == 403, (method, route.path, r.status_code, r.text)
                    assert r.json()["parameter"] == "Authorization"
                    continue
                if method != "GET":
                    writes.append((route, method))
                    continue
                await check_read(http, server, route, operation(app, route, method), a, b, access)
        for route, method in writes:
            await check_write(http, server, route, method, a, b)
    # Every kind of route was met: the ones closed to companies, city data, own data, own alerts.
    assert seen_policies.get("none", 0) >= 20 and seen_policies.get("city", 0) >= 4, seen_policies
    assert seen_policies.get("own", 0) >= 12 and seen_policies.get("own_alerts", 0) == 4, seen_policies


async def check_read(
    http: httpx.AsyncClient, server: RunningServer, route: APIRoute, op: dict[str, Any], a: Company, b: Company,
    access: str,
) -> None:  # fmt: skip
    params = {p["name"] for p in op.get("parameters", []) if p["in"] == "query"}
    if "{alert_id}" in route.path:  # one alert: A's own are shown, B's are missing (the city's viewer sees them)
        for aid in a.alerts:
            r = await http.get(route.path.replace("{alert_id}", aid), headers=a.headers())
            assert r.status_code == 200 and r.json()["id"] == aid, (route.path, r.text[:300])
        for aid in b.alerts:
            r = await http.get(route.path.replace("{alert_id}", aid), headers=a.headers())
            assert r.status_code == 404 and r.json()["parameter"] == "alert_id", (route.path, r.text[:300])
            r = await http.get(route.path.replace("{alert_id}", aid), headers=server.headers())
            assert r.status_code == 200 and r.json()["id"] == aid, (route.path, r.text[:300])
        return
    for query in variants(op):
        where = (route.path, query)
        url = route.path.replace("{zone_id}", "grid-01")
        own = await http.get(url.replace("{vehicle_id}", a.muck), params=query, headers=a.headers())
        assert own.status_code == 200, (where, own.status_code, own.text[:300])
        leaked = found(b.markers(), text_of(own))
        assert not leaked, f"{where}: company A was shown company B's {leaked}"
        if access == "city":
            continue
        # What the city's viewer is shown of A, A is shown too; of B the viewer is shown something.
        viewer = await http.get(url.replace("{vehicle_id}", a.muck), params=query, headers=server.headers())
        assert viewer.status_code == 200, (where, viewer.text[:300])
        assert found(a.markers(), text_of(own)) == found(a.markers(), text_of(viewer)), where
        if "{vehicle_id}" in route.path:
            r = await http.get(url.replace("{vehicle_id}", b.muck), params=query, headers=a.headers())
            assert r.status_code == 404 and r.json()["parameter"] == "vehicle_id", (where, r.status_code, r.text)
            control = await http.get(url.replace("{vehicle_id}", b.muck), params=query, headers=server.headers())
        else:
            control = viewer
        # The check could fail: the viewer is shown B's data (or, where the answer
        # only counts, e.g. vehicles per grid, different figures than A).
        narrower = control is viewer and text_of(own) != text_of(viewer)
        assert found(b.markers(), text_of(control)) or narrower, f"{where}: the viewer sees nothing of B either"
    if "vehicle_id" in params:
        for vid in b.vehicles:
            r = await http.get(route.path, params={"vehicle_id": vid}, headers=a.headers())
            assert r.status_code == 404 and r.json()["parameter"] == "vehicle_id", (route.path, r.status_code)
        r = await http.get(route.path, params={"vehicle_id": a.muck}, headers=a.headers())
        assert r.status_code == 200 and a.muck in r.text, (route.path, r.text[:300])


def alert_states(dsn: str, ids: list[str]) -> dict[str, str]:
    with psycopg.connect(dsn) as db:
        return {str(i): s for i, s in db.execute("SELECT id, state FROM alerts WHERE id = ANY(%s::uuid[])", (ids,))}


async def check_write(
    http: httpx.AsyncClient, server: RunningServer, route: APIRoute, method: str, a: Company, b: Company
) -> None:
    """The routes open to companies that change something: alert transitions,
    on B's alerts refused as missing (B's alerts unchanged), on A's done."""
    assert method == "POST" and route.path.startswith("/api/alerts"), f"{method} {route.path}: a new company write"
    before = alert_states(server.dsn, b.alerts)
    assert set(before.values()) <= {"open", "acked"}
    closing = route.path.endswith("close")
    body: dict[str, Any] = {"comment": "公司处理"} if closing else {}
    if "{alert_id}" in route.path:
        for aid in b.alerts:
            r = await http.post(route.path.replace("{alert_id}", aid), json=body, headers=a.headers())
            assert r.status_code == 404 and r.json()["parameter"] == "alert_id", (route.path, r.text)
        mine = a.alerts[2] if closing else a.alerts[0]
        r = await http.post(route.path.replace("{alert_id}", mine), json=body, headers=a.headers())
        assert r.status_code == 200 and r.json()["state"] == ("closed" if closing else "acked"), r.text
    else:
        r = await http.post(route.path, json={**body, "ids": [*b.alerts, a.alerts[1]]}, headers=a.headers())
        assert r.status_code == 200, r.text
        out = r.json()
        assert [x["id"] for x in out["alerts"]] == [a.alerts[1]]
        assert sorted(x["id"] for x in out["refused"]) == sorted(b.alerts)
        assert all(x["state"] is None for x in out["refused"])  # as if missing: nothing said about B's alert
    assert alert_states(server.dsn, b.alerts) == before, f"{route.path} changed company B's alerts"


async def live_messages(ws: websockets.ClientConnection, seconds: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            out += ws_messages(json.loads(await asyncio.wait_for(ws.recv(), left)))
        except TimeoutError:
            break
    return out


def vehicles_in(messages: list[dict[str, Any]]) -> set[str]:
    ids = {str(m["vehicle_id"]) for m in messages if "vehicle_id" in m}
    for m in messages:
        ids |= {str(v["vehicle_id"]) for v in m.get("vehicles", []) if isinstance(v, dict)}
    return ids


async def check_live(server: RunningServer, a: Company, b: Company) -> None:
    """/ws/live: A's snapshot, positions and alerts are A's; no 12319 case
    reaches it; subscribing to B's vehicles yields nothing."""
    base = server.http.replace("http://", "ws://")
    async with (
        websockets.connect(f"{base}/ws/live?token={a.token}") as mine,
        websockets.connect(server.ws_url()) as city,
    ):
        first = await live_messages(mine, 1.0)
        assert first[0]["type"] == "snapshot"
        assert vehicles_in(first) == set(a.vehicles), vehicles_in(first)
        await live_messages(city, 0.5)
        await publish(live_fixes(server, (a, b), time.time() + 1, shift=0.0002))
        async with httpx.AsyncClient(base_url=server.http, headers=server.headers("operator")) as http:
            r = await http.post("/api/alerts/ack", json={"ids": [b.alerts[0]]})  # an alert update of B's
            assert r.status_code == 200
            case = {"channel": "hotline", "category": "street_vending", "priority": "urgent",
                    "description": "占道经营", "address": "东门菜场", "reporter": "王先生", "lon": 112.3585,
                    "lat": 28.5855}  # fmt: skip
            assert (await http.post("/api/cases", json=case)).status_code == 201
        got, city_got = await live_messages(mine, 2.0), await live_messages(city, 1.0)
        assert {m["type"] for m in city_got} >= {"case", "alert"}, "the city's desk got the case and the update"
        assert vehicles_in(city_got) >= {*a.vehicles, *b.vehicles}
        assert "case" not in {m["type"] for m in got}
        assert vehicles_in(got) == set(a.vehicles), vehicles_in(got)
        assert not found(b.markers(), json.dumps(got, ensure_ascii=False))
        await mine.send(json.dumps({"type": "subscribe", "vehicles": list(b.vehicles)}))
        snap = await live_messages(mine, 1.0)
        assert snap and snap[0] == {"type": "snapshot", "vehicles": []}
        await mine.send(json.dumps({"type": "subscribe", "bbox": [100, 20, 120, 30]}))
        snap = await live_messages(mine, 1.0)
        assert vehicles_in(snap) == set(a.vehicles)


async def check_replay(server: RunningServer, a: Company, b: Company) -> None:
    """/ws/replay: B's vehicles are unknown to A (404 naming vehicles); A's own replays."""
    base = server.http.replace("http://", "ws://")
    start = {"type": "start", "start": RANGE["start"], "end": RANGE["end"], "speed": 100}
    async with websockets.connect(f"{base}/ws/replay?token={a.token}") as ws:
        for vehicles in ([b.muck], [a.muck, b.patrol]):
            await ws.send(json.dumps({**start, "vehicles": vehicles}))
            err = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert err["type"] == "error" and err["parameter"] == "vehicles", err
        await ws.send(json.dumps({**start, "vehicles": list(a.vehicles)}))
        info = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert info["type"] == "replay_info" and set(info["vehicles"]) == set(a.vehicles)
        assert {x["vehicle_id"] for x in info["alerts"]} <= set(a.vehicles) and info["alerts"]
        played = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(20)]
        assert {m["vehicle_id"] for m in played if "vehicle_id" in m} <= set(a.vehicles)
        assert any(m["type"] == "replay_position" for m in played)


SOCKETS = {"/ws/live": check_live, "/ws/replay": check_replay}


async def test_company_a_gets_nothing_of_company_b_on_any_socket(
    fleet: RunningServer, companies: tuple[Company, Company]
) -> None:
    sockets = {r.path for r in all_routes(fleet.server.app.routes) if isinstance(r, WebSocketRoute)}
    assert sockets <= set(SOCKETS), f"a new websocket {sockets - set(SOCKETS)}: add its company check to SOCKETS"
    assert sockets == set(SOCKETS)
    for path in sorted(sockets):
        await SOCKETS[path](fleet, *companies)


async def test_company_tokens_by_api_and_cli(
    fleet: RunningServer, companies: tuple[Company, Company], monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    server, (a, _) = fleet, companies
    async with httpx.AsyncClient(base_url=server.http, headers=server.headers("admin")) as http:
        for body, why in (
            ({"name": "x", "role": "company"}, "required"),
            ({"name": "x", "role": "company", "company": "没有这家公司"}, "no vehicle"),
            ({"name": "x", "role": "viewer", "company": a.name}, "only a company token"),
        ):
            r = await http.post("/api/tokens", json=body)
            assert r.status_code == 400 and r.json()["parameter"] == "company" and why in r.json()["error"], r.text
        listed = (await http.get("/api/tokens")).json()["tokens"]
        assert {t["company"] for t in listed if t["role"] == "company"} >= {a.name}
        me = (await http.get("/api/me", headers=a.headers())).json()
        assert me == {"name": "车队调度", "role": "company", "company": a.name, "vehicles": 2, "may_ack": True}
        # The CLI, as an admin at the console runs it.
        monkeypatch.setenv("GPSD_DATABASE__DSN", server.dsn)
        monkeypatch.delenv("GPSD_CONFIG", raising=False)
        args = ["--config", str(Path(__file__).parents[2] / "config.toml"), "token", "create", "--name", "cli"]
        assert await asyncio.to_thread(cli.main, [*args, "--role", "company", "--company", a.name]) == 0
        token = capsys.readouterr().out.strip().splitlines()[-1]
        me = (await http.get("/api/me", headers={"Authorization": f"Bearer {token}"})).json()
        assert me["company"] == a.name and me["vehicles"] == 2
        assert await asyncio.to_thread(cli.main, [*args, "--role", "company"]) == 2
        assert "needs its company" in capsys.readouterr().err
        assert await asyncio.to_thread(cli.main, [*args, "--role", "operator", "--company", a.name]) == 2


async def test_company_may_not_act_on_alerts_by_default(
    database: str, own_database: str, unique: str, tmp_path: Path
) -> None:
    a, b = companies_for(unique)
    env = server_env(database, unique, tmp_path, {
        "GPSD_DATABASE__DSN": own_database, "GPSD_GEOFENCES__DIR": str(city_folder(tmp_path, (a, b))),
    })  # fmt: skip
    async with running(env) as srv:
        server = RunningServer(srv, f"t{unique}", f"http://127.0.0.1:{srv.http_port}", own_database,
                               make_tokens(own_database, unique))  # fmt: skip
        store_history(own_database, (a, b))
        await company_tokens(server, (a, b))
        async with httpx.AsyncClient(base_url=server.http, headers=a.headers()) as http:
            assert (await http.get("/api/me")).json()["may_ack"] is False
            listed = (await http.get("/api/alerts")).json()["alerts"]
            assert sorted(x["id"] for x in listed) == sorted(a.alerts)
            single = [(f"/api/alerts/{a.alerts[0]}/{change}", {}) for change in ("ack", "close")]
            for path, body in [*single, *((f"/api/alerts/{change}", {"ids": a.alerts}) for change in ("ack", "close"))]:
                r = await http.post(path, json=body)
                assert r.status_code == 403 and r.json()["parameter"] == "Authorization", (path, r.text)
        assert set(alert_states(own_database, a.alerts).values()) == {"open"}
