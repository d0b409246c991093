"""Bearer tokens with roles: viewer < operator < admin, and company accounts.

Tokens are random 32-byte strings shown once at creation; the database keeps
only their SHA-256 digests. A request's token is hashed and looked up by
digest, then the digests are compared with ``hmac.compare_digest``. Tokens are
never logged. HTTP clients send ``Authorization: Bearer <token>``; websockets
(browsers cannot set headers there) pass ``?token=<token>``.

Every route needs a role, given by a ``Depends(require(role))``; the few
public routes (the page's static files, ``/healthz`` for load balancers and
the OpenAPI description) are listed in ``PUBLIC_PATHS`` and a test checks that
every other route answers 401 without a token and 403 with a weaker role.

:class:`TokenStore` keeps the tokens in use in memory (and in a small file in
the state folder) until they are revoked, asks the database about them every
``[http] token_check_s`` and closes the websockets of a revoked one (4401);
a database outage locks nobody out who was let in before.

A ``company`` token is bound to one company (a haulage firm): it stands
outside the ladder and is refused (403) by every route unless the route says
otherwise with ``require(role, company=...)``: ``"city"`` for the city's
reference data (layers, map settings, places), ``"own"`` for routes that
narrow what they answer to the principal's :attr:`Principal.scope` (the ids
of the company's vehicles in the directory, resolved on every request), and
``"own_alerts"`` for the alert transitions, open to a company only when
``[desk] company_may_ack`` is on. A route that forgets to say so is closed to
companies rather than open to them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import psycopg
from fastapi import HTTPException, Request, WebSocket
from starlette.websockets import WebSocketState

from gpsd_server.api.params import BadParameter
from gpsd_server.directory import VehicleDirectory
from gpsd_server.store import tokens
from gpsd_server.store.db import DB_ERRORS, Database

log = logging.getLogger(__name__)

Role = Literal["viewer", "operator", "admin", "company"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")  # the ladder
COMPANY: Role = "company"
TOKEN_ROLES: tuple[Role, ...] = (*ROLES, COMPANY)
RANK = {r: i for i, r in enumerate(ROLES)}
CompanyAccess = Literal["none", "city", "own", "own_alerts"]
PUBLIC_PATHS = frozenset({"/healthz", "/docs", "/openapi.json"})
PUBLIC_PREFIXES = ("/static/", "/vendor/", "/tiles/")  # tiles: an image request carries no token


@dataclass(frozen=True, slots=True)
class Principal:
    """Who calls. ``scope`` is None for the city's own accounts (they see every
    vehicle) and the ids of its company's vehicles for a company account."""

    name: str
    role: Role
    company: str | None = None
    scope: frozenset[str] | None = None

    def may(self, role: Role) -> bool:
        """On the ladder at least ``role`` (a company account is not on it)."""
        return self.role in RANK and role in RANK and RANK[self.role] >= RANK[role]

    def sees(self, vehicle_id: str | None) -> bool:
        return self.scope is None or (vehicle_id is not None and vehicle_id in self.scope)

    def check_vehicle(self, vehicle_id: str, parameter: str = "vehicle_id") -> None:
        """404 naming ``parameter`` for a vehicle outside the scope: the same
        answer as for a vehicle that does not exist, so nothing leaks."""
        if not self.sees(vehicle_id):
            raise BadParameter(parameter, f"unknown vehicle {vehicle_id!r}", status=404)

    def scoped(self, scope: frozenset[str] | None) -> Principal:
        return Principal(self.name, self.role, self.company, scope)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return "gpsd_" + secrets.token_urlsafe(32)


class AuthError(HTTPException):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status_code=status, detail={"error": reason, "parameter": "Authorization"})


class TokenStore:
    """Digest -> principal, held in memory so a request costs no query.

    A token found active is kept until it is revoked: every ``check_s`` the
    tokens in use are asked again in one query, and a revoked one is dropped
    and the websockets opened with it are closed (4401). While the database
    is away a known token keeps working (the control room must not be locked
    out during an outage); an unknown one is answered 503 at once, never
    after a wait. A token found not active is not asked again for ``check_s``.

    With ``cache_path`` the known tokens (digests, names, roles: what the
    database holds, never a token) are also kept in a file, so a server that
    starts while the database is away still admits the control room. A token
    revoked while this server was stopped is refused once the database answers.
    """

    def __init__(
        self, db: Database, *, check_s: float = 1.0, max_tokens: int = 10_000, cache_path: Path | None = None
    ) -> None:
        self._db = db
        self._check_s = check_s
        self._max = max_tokens
        self._cache_path = cache_path
        self._known: dict[bytes, Principal] = _read_cache(cache_path) if cache_path else {}
        self._saved = dict(self._known)
        self._refused: dict[bytes, float] = {}  # digest -> when found not active (monotonic)
        self._sockets: dict[bytes, set[WebSocket]] = {}
        self._wake = asyncio.Event()
        self.revoked_closed = 0  # websockets closed because their token was revoked

    async def lookup(self, token: str) -> Principal | None:
        d = digest(token)
        principal = self._known.get(d)
        if principal is not None:
            return principal
        refused_at = self._refused.get(d)
        now = time.monotonic()
        if refused_at is not None and now - refused_at < self._check_s:
            return None
        try:
            async with self._db.connection() as conn:
                row = await tokens.lookup(conn, d)
        except (psycopg.Error, *DB_ERRORS):
            raise AuthError(503, "cannot check the token: database unavailable") from None
        if row is not None and hmac.compare_digest(row.digest, d):
            principal = Principal(row.name, cast(Role, row.role), row.company)
            _bounded_put(self._known, d, principal, self._max)
            self._refused.pop(d, None)
            await self._save()
        else:
            _bounded_put(self._refused, d, now, self._max)
        return principal

    async def _save(self) -> None:
        if self._cache_path is None or self._known == self._saved:
            return
        self._saved = dict(self._known)
        try:
            await asyncio.to_thread(_write_cache, self._cache_path, self._saved)
        except OSError as exc:
            log.warning("token cache %s not written: %s", self._cache_path, exc)

    def watch(self, token: str, ws: WebSocket) -> None:
        """Close ``ws`` (4401) when ``token`` is revoked."""
        self._sockets.setdefault(digest(token), set()).add(ws)

    async def check(self) -> None:
        """Ask the database about every token in use now; drop the revoked ones."""
        if not self._known:
            return
        digests = list(self._known)
        async with self._db.connection() as conn:
            active = await tokens.active_among(conn, digests)
        for d in digests:
            found = active.get(d)
            if found is not None:
                self._known[d] = Principal(found.name, cast(Role, found.role), found.company)
                continue
            self._known.pop(d, None)
            for ws in self._sockets.pop(d, set()):
                if ws.application_state == WebSocketState.CONNECTED:
                    self.revoked_closed += 1
                    with contextlib.suppress(Exception):  # the peer may be gone already
                        await ws.close(code=4401, reason="token revoked")
        await self._save()

    async def check_forever(self) -> None:
        """``check`` every ``check_s`` (at once after ``forget``), until cancelled."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._check_s):
                    await self._wake.wait()
            self._wake.clear()
            with contextlib.suppress(psycopg.Error, *DB_ERRORS):  # away: known tokens keep working
                await self.check()
            for d, sockets in list(self._sockets.items()):
                sockets -= {ws for ws in sockets if ws.application_state == WebSocketState.DISCONNECTED}
                if not sockets:
                    del self._sockets[d]

    def forget(self) -> None:
        """A token was revoked here: check at once."""
        self._wake.set()


def _read_cache(path: Path) -> dict[bytes, Principal]:
    try:
        rows = json.loads(path.read_text())
        return {
            bytes.fromhex(r["digest"]): Principal(str(r["name"]), cast(Role, r["role"]), r.get("company"))
            for r in rows
            if r.get("role") in ROLES or (r.get("role") == COMPANY and isinstance(r.get("company"), str))
        }
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        log.warning("token cache %s not read (%s): tokens are checked against the database", path, exc)
        return {}


def _write_cache(path: Path, known: dict[bytes, Principal]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"digest": d.hex(), "name": p.name, "role": p.role, "company": p.company} for d, p in known.items()]
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(rows, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _bounded_put(cache: dict[bytes, Any], key: bytes, value: Any, limit: int) -> None:
    if key not in cache and len(cache) >= limit:
        del cache[next(iter(cache))]  # the oldest
    cache[key] = value


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def require(role: Role, *, company: CompanyAccess = "none") -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the caller's principal, at least ``role`` on the
    ladder; a company account only where ``company`` lets it in (see the
    module's docstring), with its scope resolved."""

    async def dependency(request: Request) -> Principal:
        token = bearer(request)
        if token is None:
            raise AuthError(401, "missing token: send Authorization: Bearer <token>")
        store: TokenStore = request.app.state.tokens
        principal = await store.lookup(token)
        if principal is None:
            raise AuthError(401, "invalid or revoked token")
        return admit(principal, role, company, request.app.state)

    dependency.role = role  # type: ignore[attr-defined]  # read by the route-enumeration test
    dependency.company = company  # type: ignore[attr-defined]
    return dependency


def admit(principal: Principal, role: Role, company: CompanyAccess, state: Any) -> Principal:
    """``principal`` (scoped when it is a company's) if it may use a route
    needing ``role`` and open to companies as ``company``; else AuthError 403."""
    if principal.role != COMPANY:
        if not principal.may(role):
            raise AuthError(403, f"role {role} required (token has {principal.role})")
        return principal
    if company == "none" or (company == "own_alerts" and not state.company_may_ack):
        raise AuthError(403, f"role {role} required (a company account may not use this route)")
    directory: VehicleDirectory = state.directory
    return principal.scoped(directory.fleet(principal.company or ""))


async def websocket_principal(ws: WebSocket, role: Role, *, company: CompanyAccess = "none") -> Principal | None:
    """Check ``?token=``. On success the socket is not accepted yet (the route
    accepts it) and is closed with 4401 if the token is revoked later. On
    failure it is accepted and closed with 4401 (missing, invalid or revoked
    token), 4403 (role too weak, or a company account where companies may
    not go) or 1013 (database away, token not known: try again later), and
    None is returned. A company account's principal comes with its scope."""
    token = ws.query_params.get("token") or ""
    store: TokenStore = ws.app.state.tokens
    try:
        principal = await store.lookup(token) if token else None
    except AuthError:
        await _refuse(ws, 1013, "cannot check the token: database unavailable")
        return None
    if principal is None:
        await _refuse(ws, 4401, "missing or invalid token")
        return None
    try:
        principal = admit(principal, role, company, ws.app.state)
    except AuthError:
        await _refuse(ws, 4403, f"role {role} required")
        return None
    store.watch(token, ws)
    return principal


async def _refuse(ws: WebSocket, code: int, reason: str) -> None:
    # Accept first: a close before accepting is an HTTP 403 in the handshake,
    # which a browser cannot tell from any other failure.
    await ws.accept()
    await ws.close(code=code, reason=reason)


async def create_token(conn: psycopg.AsyncConnection[Any], *, name: str, role: Role, company: str | None = None) -> str:
    """A new token, shown only here. A ``company`` token needs its company;
    the other roles take none (ValueError naming what is wrong)."""
    if role not in TOKEN_ROLES:
        raise ValueError(f"role must be one of {', '.join(TOKEN_ROLES)}")
    company = (company or "").strip() or None
    if role == COMPANY and company is None:
        raise ValueError("a company token needs its company")
    if role != COMPANY and company is not None:
        raise ValueError(f"only a company token takes a company (role {role} sees every vehicle)")
    token = new_token()
    await tokens.insert(conn, name=name, role=role, company=company, digest=digest(token))
    return token
