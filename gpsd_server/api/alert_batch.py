"""Many alerts at once from the desk: ``POST /api/alerts/ack`` and
``POST /api/alerts/close`` with ``{"ids": [...]}`` (and a ``comment`` to close).

Each alert changes on its own (one statement each, in one transaction per
request); an alert already in the target state, or gone, is listed under
``refused`` with its state instead of failing the others. Every change goes
out on /ws/live as an ``update``, as from the single-alert routes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec
from fastapi import APIRouter, Body, Depends
from fastapi.responses import Response
from pydantic import StringConstraints

from gpsd_server import alerts as view
from gpsd_server import wire
from gpsd_server.api.auth import Principal, require
from gpsd_server.api.deps import ApiServices
from gpsd_server.api.params import ALERT_REF_DESCRIPTION, ALERT_REF_PATTERN, NO_NUL, parse_alert_ref
from gpsd_server.api.responses import json_response
from gpsd_server.store import alerts as store
from gpsd_server.store.alerts import AlertRecord, AlertRef, TransitionRefused

MAX_IDS = 500
Ref = Annotated[str, StringConstraints(pattern=ALERT_REF_PATTERN)]
IDS = f"alerts, each {ALERT_REF_DESCRIPTION}"


class Refused(msgspec.Struct, kw_only=True):
    id: str
    state: str | None  # None: no such alert


class BatchResult(msgspec.Struct, kw_only=True):
    alerts: list[wire.Alert]
    refused: list[Refused]


def _ids(values: list[str]) -> list[AlertRef]:
    """Each alert once, by id or number (the schema checks 1..MAX_IDS of them; a refusal names ``ids``).
    An alert named once by id and once by number is changed once and refused the second time."""
    return list(dict.fromkeys(parse_alert_ref("ids", v) for v in values))


def router(services: ApiServices) -> APIRouter:
    r = APIRouter(prefix="/api/alerts", tags=["alerts"])
    directory = services.directory

    async def apply(ids: list[AlertRef], who: Principal, comment: str | None) -> Response:
        now = datetime.now(UTC)
        changed: list[AlertRecord] = []
        refused: list[Refused] = []
        async with services.db.connection() as conn:
            for aid in ids:
                try:
                    if comment is None:
                        changed.append(await store.acknowledge(conn, aid, by=who.name, at=now, scope=who.scope))
                    else:
                        changed.append(
                            await store.close(conn, aid, by=who.name, at=now, comment=comment, scope=who.scope)
                        )
                except TransitionRefused as exc:
                    refused.append(Refused(id=str(aid), state=exc.state))
        updates = []
        for row in changed:
            update: wire.Alert = view.from_record(row, directory)
            update.phase = "update"
            updates.append(update)
        services.live.publish_alerts(updates)
        return json_response(BatchResult(alerts=[view.from_record(x, directory) for x in changed], refused=refused))

    @r.post("/ack")
    async def ack_many(
        ids: Annotated[list[Ref], Body(embed=True, min_length=1, max_length=MAX_IDS, description=IDS)],
        who: Principal = Depends(require("operator", company="own_alerts")),
    ) -> Response:
        """Acknowledge open alerts; others are listed under ``refused``."""
        return await apply(_ids(ids), who, None)

    @r.post("/close")
    async def close_many(
        ids: Annotated[list[Ref], Body(embed=True, min_length=1, max_length=MAX_IDS, description=IDS)],
        comment: str = Body("", embed=True, max_length=2000, pattern=NO_NUL),
        who: Principal = Depends(require("operator", company="own_alerts")),
    ) -> Response:
        """Close alerts that are not closed yet, with one comment."""
        return await apply(_ids(ids), who, comment)

    return r
