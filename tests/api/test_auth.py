"""Every route needs a token and the right role; the list of routes comes
from the app itself, so a new route cannot slip through unprotected."""

from __future__ import annotations

import re
from typing import Any

import httpx
import websockets
from fastapi.routing import APIRoute
from starlette.routing import WebSocketRoute

from gpsd_server.api.auth import PUBLIC_PATHS, PUBLIC_PREFIXES, RANK, ROLES
from tests.fixtures.server import RunningServer


def all_routes(routes: list[Any]) -> list[Any]:
    """Every route, including those of included routers (FastAPI keeps them
    behind an internal wrapper; none of our routers sets an include prefix)."""
    out: list[Any] = []
    for r in routes:
        inner = getattr(r, "original_router", None)
        if inner is not None:
            out.extend(all_routes(inner.routes))
        else:
            out.append(r)
    return out


def required_role(route: APIRoute) -> str | None:
    roles = [getattr(d.call, "role", None) for d in route.dependant.dependencies]
    found = [r for r in roles if r is not None]
    return max(found, key=lambda r: RANK[r]) if found else None


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "00000000-0000-0000-0000-000000000000", path)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES) or path == "/"


async def test_every_http_route_requires_its_role(server: RunningServer) -> None:
    app = server.server.app
    checked = 0
    async with httpx.AsyncClient(base_url=server.http) as http:
        for route in all_routes(app.routes):
            if not isinstance(route, APIRoute) or is_public(route.path):
                continue
            role = required_role(route)
            assert role is not None, f"{route.path} has no require(role) dependency"
            for method in sorted(route.methods):
                url = concrete(route.path)
                r = await http.request(method, url)
                assert r.status_code == 401, (method, route.path, r.status_code)
                assert r.json()["parameter"] == "Authorization"
                r = await http.request(method, url, headers={"Authorization": "Bearer not-a-token"})
                assert r.status_code == 401, (method, route.path)
                weaker = [w for w in ROLES if RANK[w] < RANK[role]]
                for w in weaker:
                    r = await http.request(method, url, headers=server.headers(w))
                    assert r.status_code == 403, (method, route.path, w, r.status_code)
                checked += 1
    assert checked >= 25


async def test_every_public_path_is_served_without_a_token(server: RunningServer) -> None:
    """The list of public paths names only what is served: a path listed but
    not served would be opened to anyone by whatever later mounts it there."""
    async with httpx.AsyncClient(base_url=server.http) as http:
        for path in sorted(PUBLIC_PATHS):
            r = await http.get(path)
            assert r.status_code == 200, (path, r.status_code)


async def test_every_websocket_requires_a_token(server: RunningServer) -> None:
    ws_routes = [r for r in all_routes(server.server.app.routes) if isinstance(r, WebSocketRoute)]
    assert {r.path for r in ws_routes} >= {"/ws/live", "/ws/replay"}
    base = server.http.replace("http://", "ws://")
    for route in ws_routes:
        rejected = False
        try:
            async with websockets.connect(base + route.path) as ws:
                await ws.recv()
        except (websockets.InvalidStatus, websockets.ConnectionClosed):
            rejected = True
        assert rejected, route.path


async def test_tokens_roles_and_revocation(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.http) as http:
        r = await http.get("/api/me", headers=server.headers("operator"))
        assert r.json()["role"] == "operator"
        r = await http.post("/api/tokens", json={"name": "alice", "role": "viewer"}, headers=server.headers("admin"))
        assert r.status_code == 201
        alice: dict[str, Any] = r.json()
        assert alice["token"].startswith("gpsd_")
        me = await http.get("/api/me", headers={"Authorization": f"Bearer {alice['token']}"})
        assert me.json() == {"name": "alice", "role": "viewer"}
        r = await http.post("/api/tokens", json={"name": "x", "role": "root"}, headers=server.headers("admin"))
        assert r.status_code == 400 and r.json()["parameter"] == "role"
        listed = (await http.get("/api/tokens", headers=server.headers("admin"))).json()["tokens"]
        alice_id = next(t["id"] for t in listed if t["name"] == "alice")
        assert all("digest" not in t and "token" not in t for t in listed)
        r = await http.delete(f"/api/tokens/{alice_id}", headers=server.headers("admin"))
        assert r.status_code == 200
        me = await http.get("/api/me", headers={"Authorization": f"Bearer {alice['token']}"})
        assert me.status_code == 401
    # only digests are stored
    import psycopg

    with psycopg.connect(server.dsn) as conn:
        row = conn.execute("SELECT count(*) FROM api_tokens WHERE digest::text LIKE %s", ("%gpsd_%",)).fetchone()
        assert row == (0,)
