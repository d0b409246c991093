"""Retention: drop fixes older than ``[history] retention_days`` on a schedule.

With TimescaleDB whole chunks go (``drop_chunks``): no large DELETE, no dead
tuples, no vacuum debt, nothing for ingest to wait on. On a plain PostgreSQL
the same cut is made by small DELETE batches. A failed pass is logged and
retried at the next check; retention never stops the server.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg

from gpsd_server.settings import HistorySettings
from gpsd_server.store.db import DB_ERRORS, Database
from gpsd_server.store.history import drop_old_fixes

log = logging.getLogger(__name__)


async def retention_pass(
    db: Database, settings: HistorySettings, *, timescaledb: bool, now: datetime | None = None
) -> list[str]:
    """One pass: what was dropped (chunk names or a row count); [] when retention is off."""
    if settings.retention_days <= 0:
        return []
    cut = (now or datetime.now(UTC)) - timedelta(days=settings.retention_days)
    async with db.connection() as conn:
        dropped = await drop_old_fixes(conn, cut, timescaledb=timescaledb, batch_rows=settings.retention_batch_rows)
    if dropped:
        log.info("retention: dropped fixes older than %s: %s", cut.isoformat(timespec="seconds"), ", ".join(dropped))
    else:
        log.debug("retention: nothing older than %s", cut.isoformat(timespec="seconds"))
    return dropped


async def run_retention(db: Database, settings: HistorySettings, timescaledb: Callable[[], bool]) -> None:
    """The scheduled task: a pass at start, then every ``retention_check_s``."""
    if settings.retention_days <= 0:
        log.info("retention off ([history] retention_days = 0): fixes are kept forever")
        return
    log.info(
        "retention: keeping %g days of fixes, checking every %g s", settings.retention_days, settings.retention_check_s
    )
    while True:
        try:
            await retention_pass(db, settings, timescaledb=timescaledb())
        except (psycopg.Error, *DB_ERRORS) as exc:
            log.warning("retention pass failed (%s); retrying in %g s", exc, settings.retention_check_s)
        await asyncio.sleep(settings.retention_check_s)
