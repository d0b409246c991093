"""After a restart: rebuild what the components remember from the store.

One function of the components it restores, each through its own public
method: the engine (per vehicle: the last stored fix and the alerts still
open, handed to the rules that own them), the ledger (open alert ids), the
hub (last positions for the snapshot) and the directory (vehicles the
registry no longer lists). An ingest worker restores per vehicle, lazily, the
first time it sees one after taking its partition over.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, cast

import psycopg

from gpsd_server.core import cases
from gpsd_server.core.engine import Engine
from gpsd_server.core.rules.base import OpenAlert
from gpsd_server.directory import VehicleDirectory, VehicleInfo
from gpsd_server.ledger import AlertLedger
from gpsd_server.model import Fix, Severity
from gpsd_server.sinks.hub import LiveHub, LivePosition
from gpsd_server.store import alerts, vehicles

log = logging.getLogger(__name__)


async def restore(
    conn: psycopg.AsyncConnection[Any],
    *,
    engine: Engine,
    ledger: AlertLedger,
    hub: LiveHub | None,
    directory: VehicleDirectory,
    vehicle_ids: Sequence[str] | None = None,
) -> None:
    """Every vehicle (a restart), or only ``vehicle_ids`` (an ingest worker that
    sees them for the first time since it took their partition over)."""
    last = await vehicles.last_positions(conn, scope=vehicle_ids)
    still_open = await alerts.still_open(conn, vehicle_ids)
    directory.learn(VehicleInfo(r.vehicle_id, r.vehicle_class, r.plate, r.company) for r in last)
    ledger.restore((a.vehicle_id, a.key, str(a.id)) for a in still_open)
    by_vehicle: dict[str, list[OpenAlert]] = defaultdict(list)
    for a in still_open:
        if a.kind in cases.ALERT_KINDS:  # a 12319 case's deadline: the case book's (gpsd_server/cases.py)
            continue
        by_vehicle[a.vehicle_id].append(
            OpenAlert(
                a.key,
                a.kind,
                cast(Severity, a.severity),
                a.ts.timestamp(),
                a.lon or 0.0,
                a.lat or 0.0,
                a.zone_id,
                a.route_id,
                a.details,
            )
        )
    positions = []
    for r in last:
        ts = r.ts.timestamp()
        received = r.received_at.timestamp() if r.received_at is not None else 0.0
        fix = Fix(
            r.vehicle_id, ts, r.lon, r.lat, received_at=received, speed_kmh=r.speed_kmh, heading=r.heading,
            alarm=r.alarm,
        )  # fmt: skip
        engine.restore(r.vehicle_id, fix, by_vehicle.pop(r.vehicle_id, ()))
        positions.append(
            LivePosition(r.vehicle_id, ts, r.lon, r.lat, r.speed_kmh, r.heading, r.vehicle_class, r.plate, r.alarm)
        )
    for vehicle_id, open_alerts in by_vehicle.items():  # open alerts of vehicles without a stored position
        engine.restore(vehicle_id, None, open_alerts)
    if hub is not None:
        hub.restore(positions)
    if vehicle_ids is None:
        log.info("restored %d vehicles and %d open alerts from the database", len(last), len(still_open))
    else:
        log.debug("restored %d of %d vehicles first seen, %d open alerts", len(last), len(vehicle_ids), len(still_open))
