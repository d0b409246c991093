"""The API's connection pool, and the checks every caller shares."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gpsd_server.settings import DatabaseSettings

DB_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, OSError)


class Database:
    """Pooled asyncio connections for reads and the operators' writes (never ingest's)."""

    def __init__(self, settings: DatabaseSettings, *, application_name: str = "gpsd-api") -> None:
        self.dsn = settings.dsn
        self._connect_timeout = settings.connect_timeout_s
        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            settings.dsn,
            min_size=1,
            max_size=settings.pool_max_size,
            open=False,
            # Times come back in UTC, so every message has one time format.
            kwargs={
                "application_name": application_name,
                "connect_timeout": max(1, int(settings.connect_timeout_s)),
                "options": "-c timezone=UTC",
            },
        )

    async def open(self) -> None:
        await self.pool.open(wait=False)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def connection(self, wait_s: float | None = None) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self.pool.connection(timeout=wait_s) as conn:
            yield conn

    async def ping(self, wait_s: float = 2.0) -> bool:
        try:
            async with self.pool.connection(timeout=wait_s) as conn:
                await conn.execute("SELECT 1")
            return True
        except DB_ERRORS:
            return False

    async def direct(self) -> psycopg.AsyncConnection[Any]:
        """A connection of its own (migrations, restore), outside the pool."""
        return await psycopg.AsyncConnection.connect(
            self.dsn, connect_timeout=max(1, int(self._connect_timeout)), options="-c timezone=UTC"
        )
