"""Versioned SQL migrations, applied at start under an advisory lock.

Files ``migrations/NNN_name.sql`` run in order, each in its own transaction,
and are recorded in ``schema_migrations``. TimescaleDB is used when the
server can load it; otherwise the same schema is created as plain tables and
a warning is logged (the product still works, without chunk management).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources

import psycopg

log = logging.getLogger(__name__)

# Tables that become hypertables on ``ts`` when TimescaleDB is there.
HYPERTABLES = {"fixes": "ts"}
_LOCK_ID = 0x67707364  # "gpsd"


@dataclass(frozen=True, slots=True)
class SchemaInfo:
    timescaledb: bool
    applied: tuple[str, ...]


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("gpsd_server.store") / "migrations"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), (folder / name).read_text(encoding="utf-8")) for name in names]


async def _enable_timescaledb(conn: psycopg.AsyncConnection[object]) -> bool:
    try:
        async with conn.transaction():
            await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        return True
    except psycopg.Error as exc:
        log.warning(
            "TimescaleDB is not available (%s); using plain tables with the same schema. "
            "Retention and time_bucket overviews are slower without it.",
            str(exc).strip().splitlines()[0],
        )
        return False


async def migrate(conn: psycopg.AsyncConnection[object], *, chunk_interval: str = "1 day") -> SchemaInfo:
    """Bring the schema up to date; safe to call from several processes."""
    await conn.set_autocommit(True)
    await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
    try:
        tsdb = await _enable_timescaledb(conn)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur = await conn.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in await cur.fetchall()}  # type: ignore[index]
        applied = []
        for version, sql in migration_files():
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql.encode())
                for table, column in HYPERTABLES.items():
                    if tsdb and f"CREATE TABLE {table} " in sql:
                        await conn.execute(
                            "SELECT create_hypertable(%s::regclass, by_range(%s, %s::interval))",
                            (table, column, chunk_interval),
                        )
                await conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied.append(version)
            log.info("applied migration %s", version)
        return SchemaInfo(timescaledb=tsdb, applied=tuple(applied))
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
