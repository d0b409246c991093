"""Alert desk routes: list, acknowledge, close."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import Response

from gpsd_server import alerts as view
from gpsd_server import wire
from gpsd_server.api.auth import Principal, require
from gpsd_server.api.deps import ApiServices
from gpsd_server.api.params import (
    ALERT_REF_DESCRIPTION,
    ALERT_REF_PATTERN,
    NO_NUL,
    BadParameter,
    parse_alert_ref,
    parse_time,
    time_query,
)
from gpsd_server.api.responses import json_response, schema_of
from gpsd_server.store import alerts as store
from gpsd_server.store.alerts import AlertRecord, AlertRef, TransitionRefused

ALERT_ID = Path(description=ALERT_REF_DESCRIPTION, pattern=ALERT_REF_PATTERN)


def router(services: ApiServices) -> APIRouter:
    r = APIRouter(prefix="/api/alerts", tags=["alerts"])
    directory = services.directory

    @r.get("", responses=schema_of("AlertList"))
    async def list_alerts(
        who: Principal = Depends(require("viewer", company="own")),
        state: Literal["open", "acked", "closed", "active", "all"] = Query(
            "active", description="active = open or acked"
        ),
        vehicle_id: str | None = Query(None, pattern=NO_NUL),
        kind: str | None = Query(None, pattern=NO_NUL, description="an alert kind; 'zone' lists zone presence records"),
        since: str | None = time_query("fix time lower bound: RFC 3339 or epoch seconds"),
        limit: int = Query(200, ge=1, le=5000),
    ) -> Response:
        lower = parse_time("since", since) if since else None
        if vehicle_id:
            who.check_vehicle(vehicle_id)
        async with services.db.connection() as conn:
            rows = await store.list_alerts(
                conn, state=state, vehicle_id=vehicle_id or None, kind=kind or None, since=lower, limit=limit,
                scope=who.scope,
            )  # fmt: skip
        return json_response(wire.AlertList(alerts=[view.from_record(row, directory) for row in rows]))

    @r.get("/{alert_id}", responses={**schema_of("Alert"), 404: {"description": "no such alert"}})
    async def one_alert(
        alert_id: str = ALERT_ID, who: Principal = Depends(require("viewer", company="own"))
    ) -> Response:
        """One alert, by id or by the number the desk shows (zone presence records have no number)."""
        ref = parse_alert_ref("alert_id", alert_id)
        async with services.db.connection() as conn:
            row = await store.get(conn, ref, scope=who.scope)
        if row is None:
            raise BadParameter("alert_id", "no such alert", status=404)
        return json_response(view.from_record(row, directory))

    async def transition(aid: AlertRef, change: str, who: Principal, comment: str = "") -> Response:
        now = datetime.now(UTC)
        try:
            async with services.db.connection() as conn:
                row: AlertRecord
                if change == "ack":
                    row = await store.acknowledge(conn, aid, by=who.name, at=now, scope=who.scope)
                else:
                    row = await store.close(conn, aid, by=who.name, at=now, comment=comment, scope=who.scope)
        except TransitionRefused as exc:
            if exc.state is None:
                raise BadParameter("alert_id", "no such alert", status=404) from None
            raise BadParameter("alert_id", f"alert is {exc.state}", status=409) from None
        out: wire.Alert = view.from_record(row, directory)
        update: wire.Alert = view.from_record(row, directory)
        update.phase = "update"
        services.live.publish_alerts([update])
        return json_response(out)

    transition_responses = {**schema_of("Alert"), 409: {"description": "the alert is already acknowledged or closed"}}

    @r.post("/{alert_id}/ack", responses=transition_responses)
    async def ack(
        alert_id: str = ALERT_ID, who: Principal = Depends(require("operator", company="own_alerts"))
    ) -> Response:
        return await transition(parse_alert_ref("alert_id", alert_id), "ack", who)

    @r.post("/{alert_id}/close", responses=transition_responses)
    async def close(
        alert_id: str = ALERT_ID,
        comment: str = Body("", embed=True, max_length=2000, pattern=NO_NUL),
        who: Principal = Depends(require("operator", company="own_alerts")),
    ) -> Response:
        return await transition(parse_alert_ref("alert_id", alert_id), "close", who, comment)

    return r
