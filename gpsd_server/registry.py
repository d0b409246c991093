"""The city's vehicle registry mirrored into the database (plates, classes,
companies, terminals), after every load of the city."""

from __future__ import annotations

import logging

import psycopg

from gpsd_server.cityfolder import CityData
from gpsd_server.store import vehicles
from gpsd_server.store.db import DB_ERRORS, Database, first_line

log = logging.getLogger(__name__)


class RegistrySync:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def __call__(self, data: CityData) -> None:
        if not self._db.ready:
            return  # the start-up syncs once the database answers
        try:
            # A connection of its own: rare, and not held up by the pool's reconnect backoff after an outage.
            async with await self._db.direct() as conn:
                await vehicles.sync_registry(conn, (data.city.vehicles or {}).values())
        except (psycopg.Error, *DB_ERRORS) as exc:  # the city is in force anyway; the table catches up later
            log.warning("vehicle registry not synced to the database (%s)", first_line(exc))
