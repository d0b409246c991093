"""The API's connection pool, the database's health as one background probe
sees it, and the checks every caller shares.

A request never waits to find out that the database is away: a probe task
(``probe_forever``) asks it every ``health_check_s`` on a connection of its
own, and :meth:`Database.connection` refuses at once with
:class:`DatabaseUnavailable` (the API answers 503) while the last answer was
"away" or while the schema is not known to be in place (``ready``, set by the
start-up once migrations have run). ``/healthz`` reads the same answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from gpsd_server.settings import DatabaseSettings

log = logging.getLogger(__name__)


class DatabaseUnavailable(Exception):
    """The database is away (or not migrated yet): the caller answers 503."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


DB_ERRORS = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, OSError, DatabaseUnavailable)


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class Database:
    """Pooled asyncio connections for reads and the operators' writes (never ingest's)."""

    def __init__(self, settings: DatabaseSettings, *, application_name: str = "gpsd-api") -> None:
        self.dsn = settings.dsn
        self._connect_timeout = settings.connect_timeout_s
        self._request_wait_s = settings.request_wait_s
        self._check_s = settings.health_check_s
        self.available = False  # the probe's last answer
        self.ready = False  # the schema is in place (migrations ran in this process)
        self._schema_in_place = asyncio.Event()  # set with ready, for tasks that wait for it
        self.problem = "not checked yet"  # why not available/ready, for /healthz
        self.changed = asyncio.Event()  # set on every change of ``available``
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

    async def wait_ready(self) -> None:
        """Until the schema is in place (migrations run at start, or once the database answers)."""
        await self._schema_in_place.wait()

    @property
    def usable(self) -> bool:
        return self.available and self.ready

    @asynccontextmanager
    async def connection(self, wait_s: float | None = None) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pool connection; ``DatabaseUnavailable`` at once while the probe says away."""
        if not self.usable:
            raise DatabaseUnavailable(self.problem)
        try:
            async with self.pool.connection(timeout=wait_s or self._request_wait_s) as conn:
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, OSError) as exc:
            raise DatabaseUnavailable(first_line(exc)) from exc

    async def direct(self) -> psycopg.AsyncConnection[Any]:
        """A connection of its own (migrations, restore, the probe), outside the pool."""
        return await psycopg.AsyncConnection.connect(
            self.dsn, connect_timeout=max(1, int(self._connect_timeout)), options="-c timezone=UTC"
        )

    # -- the probe ---------------------------------------------------------------

    def _set(self, available: bool, problem: str) -> None:
        if available != self.available:
            if available:
                log.info("database available")
            else:
                log.warning("database %s", problem)
            self.available = available
            self.changed.set()
            self.changed = asyncio.Event()
        self.problem = problem

    async def probe(self, conn: psycopg.AsyncConnection[Any] | None) -> psycopg.AsyncConnection[Any] | None:
        """One check; returns the connection to keep for the next (None: reconnect)."""
        given = conn
        try:
            try:
                if conn is None or conn.closed:
                    async with asyncio.timeout(self._connect_timeout + 1):
                        conn = await self.direct()
                    await conn.set_autocommit(True)
                async with asyncio.timeout(max(1.0, self._check_s * 2)):
                    await conn.execute("SELECT 1")
            except (TimeoutError, psycopg.Error, OSError) as exc:
                if conn is not None:
                    with contextlib.suppress(psycopg.Error, OSError):
                        await conn.close()
                why = "timed out" if isinstance(exc, TimeoutError) else first_line(exc)
                self._set(False, f"unavailable: {why}")
                return None
            was_down = not self.available
            self._set(True, "ok" if self.ready else "migrating")
            if was_down:
                # Connections the pool held across the outage are dead: drop them now,
                # not one failed request at a time.
                with contextlib.suppress(psycopg.Error, OSError, PoolTimeout):
                    await self.pool.check()
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # psycopg_pool's check() counts a cancellation that lands in a
                    # connection's check as a broken connection and goes on: raise it
                    # again, or the probe runs on and the shutdown waits for it.
                    raise asyncio.CancelledError
        except BaseException:  # cancelled: a connection opened here is not handed back, close it
            if conn is not None and conn is not given:
                with contextlib.suppress(psycopg.Error, OSError):
                    await conn.close()
            raise
        return conn

    async def probe_forever(self) -> None:
        """Ask the database every ``health_check_s``, until cancelled."""
        conn: psycopg.AsyncConnection[Any] | None = None
        try:
            while True:
                conn = await self.probe(conn)
                await asyncio.sleep(self._check_s)
        finally:
            if conn is not None:
                with contextlib.suppress(psycopg.Error, OSError):
                    await conn.close()

    def mark_ready(self) -> None:
        """The schema is in place (the start-up just used the database: it is there)."""
        self.ready = True
        self._schema_in_place.set()
        self._set(True, "ok")


def scope_clause(column: str, scope: Collection[str] | None) -> tuple[str, list[Any]]:
    """``" AND column = ANY(%s)"`` and its argument narrowing a query to a
    company account's vehicles (``scope``); nothing for the city's accounts."""
    if scope is None:
        return "", []
    return f" AND {column} = ANY(%s)", [list(scope)]
