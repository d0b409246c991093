"""A worker takes vehicles over: each vehicle's rule state is restored from
the store the first time the worker sees it (as a restart restores every
vehicle), and forgotten when its partition goes to another worker, so a later
return restores it again from what the other worker stored."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from gpsd_server.core.engine import Engine
from gpsd_server.directory import VehicleDirectory
from gpsd_server.ledger import AlertLedger
from gpsd_server.restore import restore
from gpsd_server.store.db import Database

log = logging.getLogger(__name__)


class FirstSight:
    def __init__(self, *, db: Database, engine: Engine, ledger: AlertLedger, directory: VehicleDirectory) -> None:
        self._db, self._engine, self._ledger, self._directory = db, engine, ledger, directory
        self._partition: dict[str, int] = {}  # vehicle -> the partition it arrives on
        self.restored = 0

    async def ensure(self, owners: Mapping[str, int]) -> None:
        """Before the engine judges these vehicles' fixes: restore the new ones."""
        new = [v for v in owners if v not in self._partition]
        if not new:
            return
        async with await self._db.direct() as conn:
            await restore(
                conn, engine=self._engine, ledger=self._ledger, hub=None, directory=self._directory, vehicle_ids=new
            )
        for v in new:
            self._partition[v] = owners[v]
        self.restored += len(new)

    async def revoke(self, partitions: set[int]) -> None:
        gone = [v for v, p in self._partition.items() if p in partitions]
        self._engine.forget(gone)
        self._ledger.forget(gone)
        for v in gone:
            del self._partition[v]
        log.info("forgot %d vehicles of partitions %s", len(gone), sorted(partitions))
