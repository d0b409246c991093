"""The ``api_tokens`` table: SHA-256 digests of bearer tokens, never the tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: int
    name: str
    role: str
    created_at: datetime
    revoked_at: datetime | None
    company: str | None = None  # the company a ``company`` token is bound to


@dataclass(frozen=True, slots=True)
class Holder:
    """Who an active token belongs to."""

    name: str
    role: str
    company: str | None
    digest: bytes


async def insert(
    conn: psycopg.AsyncConnection[Any], *, name: str, role: str, digest: bytes, company: str | None = None
) -> int:
    cur = await conn.execute(
        "INSERT INTO api_tokens (name, role, company, digest) VALUES (%s, %s, %s, %s) RETURNING id",
        (name, role, company, digest),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def lookup(conn: psycopg.AsyncConnection[Any], digest: bytes) -> Holder | None:
    """The holder of an active token."""
    cur = await conn.execute(
        "SELECT name, role, company, digest FROM api_tokens WHERE digest = %s AND revoked_at IS NULL", (digest,)
    )
    row = await cur.fetchone()
    return None if row is None else Holder(str(row[0]), str(row[1]), row[2], bytes(row[3]))


async def all_tokens(conn: psycopg.AsyncConnection[Any]) -> list[TokenRow]:
    cur = await conn.execute("SELECT id, name, role, created_at, revoked_at, company FROM api_tokens ORDER BY id")
    return [TokenRow(*row) for row in await cur.fetchall()]


async def revoke(conn: psycopg.AsyncConnection[Any], token_id: int) -> bool:
    """True when an active token was revoked."""
    cur = await conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL", (token_id,)
    )
    return cur.rowcount > 0


async def active_among(conn: psycopg.AsyncConnection[Any], digests: list[bytes]) -> dict[bytes, Holder]:
    """digest -> holder of those of ``digests`` that are still active."""
    cur = await conn.execute(
        "SELECT digest, name, role, company FROM api_tokens WHERE digest = ANY(%s) AND revoked_at IS NULL",
        (digests,),
    )
    return {bytes(d): Holder(str(n), str(r), c, bytes(d)) for d, n, r, c in await cur.fetchall()}
