"""Retention: drop fixes older than ``[history] retention_days`` on a schedule.

With TimescaleDB whole chunks go (``drop_chunks``): no large DELETE, no dead
tuples, no vacuum debt, nothing for ingest to wait on. On a plain PostgreSQL
the same cut is made by small DELETE batches. A failed pass is logged and
retried at the next check; retention never stops the server.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import psycopg

from gpsd_server.api.history_params import history_settings
from gpsd_server.store.history import drop_old_fixes

if TYPE_CHECKING:
    from gpsd_server.app import Server

log = logging.getLogger(__name__)


async def retention_pass(server: Server, now: datetime | None = None) -> list[str]:
    """One pass: what was dropped (chunk names or a row count); [] when retention is off."""
    settings = history_settings(server.cfg)
    if settings.retention_days <= 0:
        return []
    cut = (now or datetime.now(UTC)) - timedelta(days=settings.retention_days)
    async with server.pool.connection() as conn:
        dropped = await drop_old_fixes(
            conn, cut, timescaledb=server.timescaledb, batch_rows=settings.retention_batch_rows
        )
    if dropped:
        log.info("retention: dropped fixes older than %s: %s", cut.isoformat(timespec="seconds"), ", ".join(dropped))
    else:
        log.debug("retention: nothing older than %s", cut.isoformat(timespec="seconds"))
    return dropped


async def run_retention(server: Server) -> None:
    """The scheduled task: a pass at start, then every ``retention_check_s``."""
    settings = history_settings(server.cfg)
    if settings.retention_days <= 0:
        log.info("retention off ([history] retention_days = 0): fixes are kept forever")
        # Stay alive: the server stops when any of its tasks ends.
        await asyncio.Event().wait()
    log.info(
        "retention: keeping %g days of fixes, checking every %g s", settings.retention_days, settings.retention_check_s
    )
    while True:
        try:
            await retention_pass(server)
        except (psycopg.Error, OSError) as exc:
            log.warning("retention pass failed (%s); retrying in %g s", exc, settings.retention_check_s)
        await asyncio.sleep(settings.retention_check_s)
