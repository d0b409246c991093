"""Bearer tokens with roles: viewer < operator < admin.

Tokens are random 32-byte strings shown once at creation; the database keeps
only their SHA-256 digests. A request's token is hashed and looked up by
digest, then the digests are compared with ``hmac.compare_digest``. Tokens are
never logged. HTTP clients send ``Authorization: Bearer <token>``; websockets
(browsers cannot set headers there) pass ``?token=<token>``.

Every route needs a role, given by a ``Depends(require(role))``; the few
public routes (the page's static files, ``/healthz`` for load balancers and
the OpenAPI description) are listed in ``PUBLIC_PATHS`` and a test checks that
every other route answers 401 without a token and 403 with a weaker role.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

import psycopg
from fastapi import HTTPException, Request, WebSocket

from gpsd_server.store import tokens
from gpsd_server.store.db import DB_ERRORS, Database

Role = Literal["viewer", "operator", "admin"]
ROLES: tuple[Role, ...] = ("viewer", "operator", "admin")
RANK = {r: i for i, r in enumerate(ROLES)}
PUBLIC_PATHS = frozenset({"/healthz", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
PUBLIC_PREFIXES = ("/static/", "/vendor/", "/tiles/")
_CACHE_S = 30.0


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role

    def may(self, role: Role) -> bool:
        return RANK[self.role] >= RANK[role]


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> str:
    return "gpsd_" + secrets.token_urlsafe(32)


class AuthError(HTTPException):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(status_code=status, detail={"error": reason, "parameter": "Authorization"})


class TokenStore:
    """Digest -> principal, cached briefly so a request costs no query."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: dict[bytes, tuple[Principal | None, float]] = {}

    async def lookup(self, token: str) -> Principal | None:
        d = digest(token)
        hit = self._cache.get(d)
        now = time.monotonic()
        if hit is not None and now - hit[1] < _CACHE_S:
            return hit[0]
        try:
            async with self._db.connection(wait_s=5) as conn:
                row = await tokens.lookup(conn, d)
        except (psycopg.Error, *DB_ERRORS):
            # Database away: a token seen before keeps working (the control
            # room must not be locked out during an outage); others wait.
            if hit is not None:
                return hit[0]
            raise AuthError(503, "cannot check the token: database unavailable") from None
        principal = None
        if row is not None and hmac.compare_digest(row[2], d):
            principal = Principal(row[0], cast(Role, row[1]))
        if len(self._cache) > 10000:
            self._cache.clear()
        self._cache[d] = (principal, now)
        return principal

    def forget(self) -> None:
        self._cache.clear()


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def require(role: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the caller's principal, at least ``role``."""

    async def dependency(request: Request) -> Principal:
        token = bearer(request)
        if token is None:
            raise AuthError(401, "missing token: send Authorization: Bearer <token>")
        store: TokenStore = request.app.state.tokens
        principal = await store.lookup(token)
        if principal is None:
            raise AuthError(401, "invalid or revoked token")
        if not principal.may(role):
            raise AuthError(403, f"role {role} required (token has {principal.role})")
        return principal

    dependency.role = role  # type: ignore[attr-defined]  # read by the route-enumeration test
    return dependency


async def websocket_principal(ws: WebSocket, role: Role) -> Principal | None:
    """Check ``?token=`` before accepting; closes with 4401/4403 and returns None."""
    token = ws.query_params.get("token") or ""
    store: TokenStore = ws.app.state.tokens
    principal = await store.lookup(token) if token else None
    if principal is None:
        await ws.close(code=4401, reason="missing or invalid token")
        return None
    if not principal.may(role):
        await ws.close(code=4403, reason=f"role {role} required")
        return None
    return principal


async def create_token(conn: psycopg.AsyncConnection[Any], *, name: str, role: Role) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = new_token()
    await tokens.insert(conn, name=name, role=role, digest=digest(token))
    return token
