"""JT/T 808 terminals: their health, and commands to them.

``GET /api/terminals`` (viewer): every terminal the registry names or the
gateways have seen, with a one-word ``status`` for the page (``online``,
``refused`` (connecting but turned away: unknown terminal, wrong auth
code), ``unauthenticated``, ``offline``, ``never_seen``), the protocol state,
edition, last connect and last valid frame, and drops and tolerated quirks
by reason. ``POST /api/terminals/{vehicle_id}/commands`` (operator) queues a
text message (0x8300), a position query (0x8201) or new reporting
intervals (0x8103 0x0029/0x0027); ``GET`` lists a vehicle's commands and
``GET /api/commands/{id}`` follows one (queued, sent, acknowledged, failed,
timed_out). The gateway's command driver delivers them
(gpsd_server/gateway/commands.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
import psycopg
from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from gpsd_server.api.auth import Principal, require
from gpsd_server.api.deps import ApiServices
from gpsd_server.api.params import NO_NUL, BadParameter
from gpsd_server.api.responses import json_response
from gpsd_server.core.decode.jt808 import AUTO_REGISTER_PREFIX, normalize_phone, valid_phone
from gpsd_server.core.jt808 import downlink as dl
from gpsd_server.core.jt808.params import REPORT_INTERVAL_DEFAULT, REPORT_INTERVAL_SLEEP
from gpsd_server.store import commands as store

VEHICLE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,63}$"
CommandKind = Literal["text", "position_query", "report_interval"]
TerminalStatus = Literal["online", "refused", "unauthenticated", "offline", "never_seen"]
_REFUSED_STATES = frozenset(("unknown_terminal", "auth_failed"))


class CommandRequest(BaseModel):
    """A command for a vehicle's terminal."""

    kind: CommandKind
    text: str | None = Field(None, min_length=1, max_length=500, pattern=NO_NUL, description="for kind text")
    urgent: bool = Field(False, description="text: the terminal's emergency flag")
    interval_s: int | None = Field(None, ge=1, le=86400, description="report_interval: default (0x0029)")
    sleep_interval_s: int | None = Field(None, ge=1, le=86400, description="report_interval: while asleep (0x0027)")


class CommandView(msgspec.Struct, kw_only=True):
    id: int
    vehicle_id: str
    phone: str
    kind: str
    msg_id: int
    body: dict[str, Any]
    status: str
    attempts: int
    transport: str | None
    result: int | None
    error: str | None
    dispatch_id: int | None
    created_by: str
    created_at: datetime
    sent_at: datetime | None
    acked_at: datetime | None
    updated_at: datetime

    @classmethod
    def of(cls, row: store.CommandRow) -> CommandView:
        return cls(
            id=row.id, vehicle_id=row.vehicle_id, phone=row.phone, kind=row.kind, msg_id=row.msg_id, body=row.body,
            status=row.status, attempts=row.attempts, transport=row.transport, result=row.result, error=row.error,
            dispatch_id=row.dispatch_id, created_by=row.created_by, created_at=row.created_at, sent_at=row.sent_at,
            acked_at=row.acked_at, updated_at=row.updated_at,
        )  # fmt: skip


class TerminalView(msgspec.Struct, kw_only=True):
    vehicle_id: str | None
    plate: str | None
    phone: str
    registered: bool
    status: TerminalStatus
    state: str
    transport: str | None
    connected: bool
    edition: int | None
    peer: str
    last_connect: datetime | None
    last_frame: datetime | None
    last_disconnect: datetime | None
    close_reason: str
    last_drop: str
    last_drop_at: datetime | None
    drops: dict[str, int]
    tolerated: dict[str, int]
    connections: int
    terminal_plate: str
    model: str
    imei: str
    software_version: str
    open_commands: int
    last_command: CommandView | None


def terminal_phone(services: ApiServices, vehicle_id: str) -> str | None:
    """The normalised phone of a vehicle's JT/T 808 terminal, if it has one."""
    vehicle = (services.city.current.city.vehicles or {}).get(vehicle_id)
    if vehicle is not None and vehicle.terminal:
        return normalize_phone(vehicle.terminal)
    if services.config.jt808.auto_register and vehicle_id.startswith(AUTO_REGISTER_PREFIX):
        phone = vehicle_id[len(AUTO_REGISTER_PREFIX) :]
        return phone if valid_phone(phone) else None
    return None


def build_command(request: CommandRequest) -> dl.Command:
    if request.kind == "text":
        if not request.text:
            raise BadParameter("text", "required for kind text")
        flag = dl.TEXT_DISPLAY | dl.TEXT_TTS | (1 if request.urgent else 0)
        return dl.TextMessage(request.text, flag)
    if request.kind == "position_query":
        return dl.PositionQuery()
    params: list[tuple[int, int | str]] = []
    if request.interval_s is not None:
        params.append((REPORT_INTERVAL_DEFAULT, request.interval_s))
    if request.sleep_interval_s is not None:
        params.append((REPORT_INTERVAL_SLEEP, request.sleep_interval_s))
    if not params:
        raise BadParameter("interval_s", "interval_s or sleep_interval_s is required for kind report_interval")
    return dl.SetParameters(tuple(params))


async def queue_command(
    conn: psycopg.AsyncConnection[Any], *, vehicle_id: str, phone: str, kind: str, command: dl.Command, by: str,
    dispatch_id: int | None = None,
) -> store.CommandRow:  # fmt: skip
    """Put a command in the terminal's queue (the body in EMQX's downlink
    JSON, the 2019 form, which a 2013 terminal reads without its extras)."""
    return await store.enqueue(
        conn, vehicle_id=vehicle_id, phone=phone, kind=kind, msg_id=command.msg_id, body=command.to_json(2019),
        created_by=by, dispatch_id=dispatch_id,
    )  # fmt: skip


def _utc(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _status(row: dict[str, Any], now: datetime, mqtt_online_s: float) -> TerminalStatus:
    if row["transport"] == "mqtt":
        seen = row.get("last_frame")
        return "online" if seen is not None and (now - seen).total_seconds() <= mqtt_online_s else "offline"
    if row["connected"]:
        if row["state"] in _REFUSED_STATES:
            return "refused"
        return "online" if row["state"] == "authenticated" else "unauthenticated"
    return "refused" if row["state"] in _REFUSED_STATES else "offline"


def router(services: ApiServices) -> APIRouter:
    r = APIRouter(tags=["terminals"])
    j = services.config.jt808

    @r.get("/api/terminals")
    async def terminals(
        vehicle_id: str | None = Query(None, pattern=VEHICLE_ID, description="only this vehicle's terminal"),
        who: Principal = Depends(require("viewer", company="own")),
    ) -> Response:
        """Every JT/T 808 terminal: registry and gateways, with its health (a
        company account: its own vehicles' terminals)."""
        if vehicle_id is not None:
            who.check_vehicle(vehicle_id)
        vehicles = services.city.current.city.vehicles or {}
        async with services.db.connection() as conn:
            rows = {row["phone"]: row for row in await store.health(conn)}
            latest = await store.latest_per_vehicle(conn)
            open_counts = await store.open_counts(conn)
        now = datetime.now(UTC)
        out: list[TerminalView] = []
        registered: set[str] = set()
        for vid, vehicle in vehicles.items():
            if vehicle.terminal:
                phone = normalize_phone(vehicle.terminal)
                registered.add(phone)
                out.append(_view(rows.get(phone), phone, vid, vehicle.plate, True, now, latest, open_counts))
        for phone, row in rows.items():
            if phone not in registered:
                vid = row["vehicle_id"]
                plate = vehicles[vid].plate if vid in vehicles else None
                out.append(_view(row, phone, vid, plate, False, now, latest, open_counts))
        out = [t for t in out if who.sees(t.vehicle_id)]
        if vehicle_id is not None:
            out = [t for t in out if t.vehicle_id == vehicle_id]
        out.sort(key=lambda t: (t.vehicle_id or "~", t.phone))
        return json_response({"terminals": out})

    def _view(
        row: dict[str, Any] | None, phone: str, vid: str | None, plate: str | None, known: bool, now: datetime,
        latest: dict[str, store.CommandRow], open_counts: dict[str, int],
    ) -> TerminalView:  # fmt: skip
        last = latest.get(vid) if vid else None
        common: dict[str, Any] = {
            "vehicle_id": vid, "plate": plate, "phone": phone, "registered": known,
            "open_commands": open_counts.get(vid, 0) if vid else 0,
            "last_command": CommandView.of(last) if last else None,
        }  # fmt: skip
        if row is None:
            return TerminalView(
                **common, status="never_seen", state="never_seen", transport=None, connected=False, edition=None,
                peer="", last_connect=None, last_frame=None, last_disconnect=None, close_reason="", last_drop="",
                last_drop_at=None, drops={}, tolerated={}, connections=0, terminal_plate="", model="", imei="",
                software_version="",
            )  # fmt: skip
        return TerminalView(
            **common, status=_status(row, now, j.mqtt_online_s), state=row["state"], transport=row["transport"],
            connected=bool(row["connected"]), edition=row["edition"], peer=row["peer"],
            last_connect=_utc(row["last_connect"]), last_frame=_utc(row["last_frame"]),
            last_disconnect=_utc(row["last_disconnect"]), close_reason=row["close_reason"],
            last_drop=row["last_drop"], last_drop_at=_utc(row["last_drop_at"]), drops=dict(row["drops"] or {}),
            tolerated=dict(row["tolerated"] or {}), connections=int(row["connections"]), terminal_plate=row["plate"],
            model=row["model"], imei=row["imei"], software_version=row["software_version"],
        )  # fmt: skip

    @r.post("/api/terminals/{vehicle_id}/commands", status_code=201)
    async def send_command(
        request: CommandRequest,
        vehicle_id: str = Path(..., pattern=VEHICLE_ID),
        who: Principal = Depends(require("operator")),
    ) -> Response:
        """Queue a command for the vehicle's terminal; it goes out when the
        terminal is reachable and its status follows the terminal's answer."""
        phone = terminal_phone(services, vehicle_id)
        if phone is None:
            raise BadParameter("vehicle_id", f"{vehicle_id!r} has no JT/T 808 terminal", status=404)
        command = build_command(request)
        async with services.db.connection() as conn:
            row = await queue_command(
                conn, vehicle_id=vehicle_id, phone=phone, kind=request.kind, command=command, by=who.name
            )
        return json_response(CommandView.of(row), status=201)

    @r.get("/api/terminals/{vehicle_id}/commands", dependencies=[Depends(require("operator"))])
    async def vehicle_commands(
        vehicle_id: str = Path(..., pattern=VEHICLE_ID), limit: int = Query(20, ge=1, le=500)
    ) -> Response:
        """A vehicle's commands, newest first."""
        async with services.db.connection() as conn:
            rows = await store.for_vehicle(conn, vehicle_id, limit)
        return json_response({"commands": [CommandView.of(row) for row in rows]})

    @r.get("/api/commands/{command_id}", dependencies=[Depends(require("operator"))])
    async def command(command_id: int = Path(..., ge=1, le=2**62)) -> Response:
        """One command and where it is."""
        async with services.db.connection() as conn:
            row = await store.get(conn, command_id)
        if row is None:
            raise BadParameter("command_id", "no such command", status=404)
        return json_response(CommandView.of(row))

    return r
