"""Alert desk routes: list, acknowledge, close."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from psycopg.rows import dict_row

from gpsd_server.api.auth import Principal, require
from gpsd_server.api.params import BadParameter, parse_time

if TYPE_CHECKING:
    from gpsd_server.app import Server

_COLUMNS = (
    "id, vehicle_id, kind, key, severity, zone_id, route_id, ts, raised_at, lon, lat, ended_ts, ended_at,"
    " details, state, acked_by, acked_at, closed_by, closed_at, comment"
)


def alert_json(row: dict[str, Any], server: Server) -> dict[str, Any]:
    out = dict(row)
    out["id"] = str(row["id"])
    for k in ("ts", "raised_at", "ended_ts", "ended_at", "acked_at", "closed_at"):
        if out.get(k) is not None:
            out[k] = out[k].isoformat()
    info = server.pipeline.vehicles.get(row["vehicle_id"])
    out["plate"] = info.plate if info else None
    out["class"] = info.vehicle_class if info else None
    out["zone_name"] = server.pipeline.place_name(row["zone_id"] or row["route_id"])
    out["active"] = row["ended_ts"] is None
    return out


def _alert_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise BadParameter("alert_id", "not an alert id (UUID)") from None


def router(server: Server) -> APIRouter:
    r = APIRouter(prefix="/api/alerts", tags=["alerts"])

    @r.get("")
    async def list_alerts(
        _: Principal = Depends(require("viewer")),
        state: Literal["open", "acked", "closed", "active", "all"] = Query(
            "active", description="active = open or acked"
        ),
        vehicle_id: str | None = None,
        kind: str | None = Query(None, description="an alert kind; 'zone' lists zone presence records"),
        since: str | None = Query(None, description="fix time lower bound, RFC 3339"),
        limit: int = Query(200, ge=1, le=5000),
    ) -> dict[str, Any]:
        where: list[str] = []
        args: list[Any] = []
        if state == "active":
            where.append("state <> 'closed'")
        elif state != "all":
            where.append("state = %s")
            args.append(state)
        if vehicle_id:
            where.append("vehicle_id = %s")
            args.append(vehicle_id)
        if kind:
            where.append("kind = %s")
            args.append(kind)
        else:  # zone presence records are not alerts for the desk
            where.append("kind <> 'zone'")
        if since:
            where.append("ts >= %s")
            args.append(parse_time("since", since))
        sql = f"SELECT {_COLUMNS} FROM alerts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts DESC LIMIT %s"
        async with server.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql.encode(), [*args, limit])
            rows = await cur.fetchall()
        return {"alerts": [alert_json(row, server) for row in rows]}

    async def _transition(alert_id: str, sql: str, args: tuple[Any, ...]) -> dict[str, Any]:
        aid = _alert_id(alert_id)
        async with server.pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(sql.encode(), (*args, aid))
            row = await cur.fetchone()
            if row is None:
                await cur.execute("SELECT state FROM alerts WHERE id = %s", (aid,))
                current = await cur.fetchone()
                if current is None:
                    raise BadParameter("alert_id", "no such alert", status=404)
                raise BadParameter("alert_id", f"alert is {current['state']}", status=409)
        out = alert_json(row, server)
        server.hub.publish_alerts([{**out, "phase": "update"}])
        return out

    @r.post("/{alert_id}/ack")
    async def ack(alert_id: str, who: Principal = Depends(require("operator"))) -> dict[str, Any]:
        return await _transition(
            alert_id,
            f"UPDATE alerts SET state = 'acked', acked_by = %s, acked_at = %s"
            f" WHERE state = 'open' AND id = %s RETURNING {_COLUMNS}",
            (who.name, datetime.now(UTC)),
        )

    @r.post("/{alert_id}/close")
    async def close(
        alert_id: str,
        comment: str = Body("", embed=True, max_length=2000),
        who: Principal = Depends(require("operator")),
    ) -> dict[str, Any]:
        return await _transition(
            alert_id,
            f"UPDATE alerts SET state = 'closed', closed_by = %s, closed_at = %s, comment = %s"
            f" WHERE state <> 'closed' AND id = %s RETURNING {_COLUMNS}",
            (who.name, datetime.now(UTC), comment),
        )

    return r
