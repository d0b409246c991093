"""12319 cases: file, dispatch, follow and close them; the dispatch proposal;
addresses from the city's layers; the case report.

Viewers read (``GET``), operators change (``POST``). Each action is one route
(``/api/cases/{id}/dispatch``, ``arrive``, ``handle``, ``callback``, ``close``,
``cancel``, ``note``) whose body carries the operator's comment; an action
the case's state does not allow is a 409 naming ``state``. Arrival needs no
button: the case driver marks it from the dispatched car's fixes
(``arrive`` is for a car without GPS). Changes reach ``/ws/live`` as ``case``
messages. The work is the case driver's (gpsd_server/cases.py); this module
parses and answers.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field

from gpsd_server import wire
from gpsd_server.api import sheets
from gpsd_server.api.auth import Principal, require
from gpsd_server.api.deps import ApiServices, CaseService
from gpsd_server.api.params import NO_NUL, BadParameter, format_query, parse_range, parse_time, time_query
from gpsd_server.api.responses import json_response, text_content
from gpsd_server.api.terminals import VEHICLE_ID, terminal_phone
from gpsd_server.core import cases as core
from gpsd_server.core.cases import CHANNEL_LABEL, PRIORITY_LABEL, STATE_LABEL, STEP_LABEL, CaseRefused, Proposal
from gpsd_server.settings import CASE_CATEGORY_ID
from gpsd_server.store import cases as store

CASE_ID = Path(..., ge=1, le=2**62, description="the case's id")
StateFilter = Literal[
    "open", "all", "accepted", "dispatched", "arrived", "handled", "called_back", "closed", "cancelled"
]
ReportSection = Literal["steps", "category", "district", "grid", "vehicle"]
ACTIONS = ("arrive", "handle", "callback", "close", "cancel", "note")
NEEDS_COMMENT = frozenset(("cancel", "note"))


class CaseCreate(BaseModel):
    """A case as the hotline takes it."""

    channel: core.Channel = Field("hotline", description="hotline | patrol | camera | info_point")
    category: str = Field(..., pattern=CASE_CATEGORY_ID, description="an id of [cases] categories")
    priority: Literal["urgent", "high", "normal"] = "normal"
    description: str = Field("", max_length=2000, pattern=NO_NUL)
    address: str = Field("", max_length=200, pattern=NO_NUL, description="as the caller said it")
    reporter: str = Field("", max_length=100, pattern=NO_NUL, description="who to call back")
    lon: float = Field(..., ge=-180, le=180, description="WGS-84")
    lat: float = Field(..., ge=-90, le=90)


class Comment(BaseModel):
    comment: str = Field("", max_length=2000, pattern=NO_NUL)


class NeededComment(BaseModel):
    """The body of an action that needs a reason (cancel, note)."""

    comment: str = Field(..., max_length=2000, pattern=r"^[^\x00]*[^\s\x00][^\x00]*$", description="not blank")


class Dispatch(BaseModel):
    vehicle_id: str = Field(..., pattern=VEHICLE_ID, description="the patrol car sent")
    comment: str = Field("", max_length=2000, pattern=NO_NUL)


def _proposal(p: Proposal) -> dict[str, Any]:
    return {
        "id": p.id, "plate": p.plate, "lon": p.lon, "lat": p.lat, "age_s": p.age_s, "distance_m": p.distance_m,
        "route_m": p.route_m, "eta_min": p.eta_min, "method": p.method, "busy": list(p.busy),
        "path": [list(xy) for xy in p.path] or None,
    }  # fmt: skip


def _refused(exc: CaseRefused) -> BadParameter:
    return BadParameter(exc.parameter, exc.reason, status=exc.status)


def router(services: ApiServices, desk: CaseService) -> APIRouter:
    r = APIRouter(tags=["cases"])
    settings = services.config.cases

    def now() -> float:
        return desk.clock()

    @r.get("/api/cases/meta", dependencies=[Depends(require("viewer"))])
    async def meta() -> Response:
        """Categories, channels, priorities, states and steps with the names
        people read; the deadlines per priority and the arrival radius."""
        return json_response({
            "categories": [{"id": k, "name": v} for k, v in settings.categories.items()],
            "channels": [{"id": k, "name": CHANNEL_LABEL[k]} for k in core.CHANNELS],
            "priorities": [{"id": k, "name": PRIORITY_LABEL[k]} for k in core.PRIORITIES],
            "states": [{"id": k, "name": STATE_LABEL[k]} for k in core.STATES],
            "steps": [{"id": k, "name": STEP_LABEL[k]} for k in core.STEPS],
            "deadlines_s": {p: {s: settings.deadline_s(p, s) for s in core.STEPS} for p in core.PRIORITIES},
            "arrive_radius_m": settings.arrive_radius_m, "arrive_stop_s": settings.arrive_stop_s,
        })  # fmt: skip

    @r.get("/api/cases", dependencies=[Depends(require("viewer"))])
    async def list_cases(
        state: StateFilter = Query("open", description="open (not closed or cancelled), all, or one state"),
        category: str | None = Query(None, pattern=CASE_CATEGORY_ID),
        priority: Literal["urgent", "high", "normal"] | None = None,
        district_id: str | None = Query(None, max_length=64, pattern=NO_NUL),
        grid_id: str | None = Query(None, max_length=64, pattern=NO_NUL),
        vehicle_id: str | None = Query(None, pattern=VEHICLE_ID),
        q: str | None = Query(None, max_length=100, pattern=NO_NUL, description="in number, text, address, place"),
        late: bool = Query(False, description="only open cases whose pending step is past its deadline"),
        since: str | None = time_query("accepted at or after (RFC 3339 or epoch seconds)"),
        until: str | None = Query(None, description="accepted before (RFC 3339)"),
        limit: int = Query(200, ge=1, le=2000),
    ) -> Response:
        """Cases, newest first."""
        t = now()
        ids = None
        if late:
            ids = [f.id for f in desk.book if (step := f.pending) and (due := desk.book.due(f, step)) and t >= due]
        filt = store.CaseFilter(
            state=state, category=category, priority=priority, district_id=district_id, grid_id=grid_id,
            vehicle_id=vehicle_id, text=q or None, since=parse_time("since", since) if since else None,
            until=parse_time("until", until) if until else None, ids=ids, limit=limit,
        )  # fmt: skip
        async with services.db.connection() as conn:
            rows = await store.listing(conn, filt)
        return json_response(wire.CaseList(cases=[desk.view(row, t) for row in rows]))

    @r.post("/api/cases", status_code=201)
    async def create_case(body: CaseCreate, who: Principal = Depends(require("operator"))) -> Response:
        """File a case; its district, grid and place come from the city's layers."""
        try:
            case = await desk.create(
                channel=body.channel, category=body.category, priority=body.priority, description=body.description,
                address=body.address, reporter=body.reporter, lon=body.lon, lat=body.lat, by=who.name,
            )  # fmt: skip
        except CaseRefused as exc:
            raise _refused(exc) from None
        return json_response(case, status=201)

    @r.get("/api/cases/proposal", dependencies=[Depends(require("viewer"))])
    async def proposal_at(
        lon: float = Query(..., ge=-180, le=180),
        lat: float = Query(..., ge=-90, le=90),
        limit: int = Query(5, ge=1, le=50),
    ) -> Response:
        """Online patrol cars by ETA to a place (road-aware where the city has roads)."""
        cars = desk.propose(lon, lat, limit=limit, now=now())
        return json_response({"vehicles": [_proposal(p) for p in cars]})

    @r.get("/api/cases/{case_id}", dependencies=[Depends(require("viewer"))])
    async def get_case(case_id: int = CASE_ID) -> Response:
        """A case with its whole audit trail (and whether its seals hold) and its overdue alerts."""
        async with services.db.connection() as conn:
            row = await store.get(conn, case_id)
            if row is None:
                raise BadParameter("case_id", "no such case", status=404)
            trail = await store.events(conn, case_id)
            alerts = await store.alerts_of(conn, case_id)
        body = {
            "case": desk.view(row, now()), "events": [desk.event_view(e) for e in trail],
            "audit": {"events": len(trail), "intact": store.intact(trail)}, "alerts": alerts,
            "on_site": desk.book.on_site(case_id),
        }  # fmt: skip
        return json_response(body)

    @r.get("/api/cases/{case_id}/proposal", dependencies=[Depends(require("viewer"))])
    async def proposal(case_id: int = CASE_ID, limit: int = Query(5, ge=1, le=50)) -> Response:
        """The dispatch proposal for a case: online patrol cars by ETA, free ones first."""
        async with services.db.connection() as conn:
            row = await store.get(conn, case_id)
        if row is None:
            raise BadParameter("case_id", "no such case", status=404)
        cars = desk.propose(row.lon, row.lat, limit=limit, now=now())
        return json_response({"case_id": case_id, "vehicles": [_proposal(p) for p in cars]})

    @r.post("/api/cases/{case_id}/dispatch")
    async def dispatch(
        body: Dispatch, case_id: int = CASE_ID, who: Principal = Depends(require("operator"))
    ) -> Response:
        """Send a patrol car (again: another car); the case goes to the car's
        terminal as a 0x8300 text when it has one."""
        phone = terminal_phone(services, body.vehicle_id)
        try:
            case = await desk.act(
                case_id, "dispatch", by=who.name, comment=body.comment, vehicle_id=body.vehicle_id, phone=phone
            )
        except CaseRefused as exc:
            raise _refused(exc) from None
        return json_response(case)

    def action_route(action: str) -> None:
        async def run(comment: str, case_id: int, who: Principal) -> Response:
            if action in NEEDS_COMMENT and not comment.strip():
                raise BadParameter("comment", f"required for {action}")
            try:
                case = await desk.act(case_id, action, by=who.name, comment=comment.strip())
            except CaseRefused as exc:
                raise _refused(exc) from None
            return json_response(case)

        if action in NEEDS_COMMENT:

            async def act(
                body: NeededComment, case_id: int = CASE_ID, who: Principal = Depends(require("operator"))
            ) -> Response:
                return await run(body.comment, case_id, who)

        else:

            async def act(  # type: ignore[misc]  # the same route, another body
                body: Comment, case_id: int = CASE_ID, who: Principal = Depends(require("operator"))
            ) -> Response:
                return await run(body.comment, case_id, who)

        act.__name__ = f"case_{action}"
        act.__doc__ = {
            "arrive": "Arrived, by hand (a car without GPS); GPS marks it by itself.",
            "handle": "Handled on site.", "callback": "The citizen was called back.",
            "close": "Close a called-back case.", "cancel": "Cancel (comment required).",
            "note": "A note in the audit trail, in any state (comment required).",
        }[action]  # fmt: skip
        r.add_api_route(f"/api/cases/{{case_id}}/{action}", act, methods=["POST"])

    for action in ACTIONS:
        action_route(action)

    @r.get("/api/places", tags=["city"], dependencies=[Depends(require("viewer", company="city"))])
    async def places(
        q: str = Query(..., min_length=1, max_length=100, pattern=NO_NUL, description="a name, A与B路口, or lon, lat"),
        limit: int = Query(10, ge=1, le=50),
    ) -> Response:
        """Addresses in the city's own layers: districts, grids, sites, cameras,
        information points, roads and road crossings."""
        data = services.city.current
        hits = data.gazetteer.search(q, limit) if data.gazetteer is not None else []
        out = []
        for h in hits:
            place = data.places.describe(h.lon, h.lat) if data.places is not None else None
            out.append({"name": h.name, "kind": h.kind, "id": h.id, "lon": h.lon, "lat": h.lat, "place": place})
        return json_response({"places": out})

    @r.get("/api/places/at", tags=["city"], dependencies=[Depends(require("viewer", company="city"))])
    async def place_at(lon: float = Query(..., ge=-180, le=180), lat: float = Query(..., ge=-90, le=90)) -> Response:
        """Where a point is, in the city's words: district, grid and place."""
        data = services.city.current
        if data.places is None:
            return json_response({"place": None, "district_id": None, "district": None, "grid_id": None, "grid": None})
        where = data.places.locate(lon, lat)
        return json_response({
            "place": data.places.describe(lon, lat), "district_id": where.district_id, "district": where.district,
            "grid_id": where.grid_id, "grid": where.grid,
        })  # fmt: skip

    @r.get(
        "/api/reports/cases", tags=["reports"], dependencies=[Depends(require("viewer"))],
        responses=text_content("text/csv", sheets.XLSX_TYPE),
    )  # fmt: skip
    async def case_report(
        start: str | None = time_query("cases accepted from (RFC 3339 or epoch seconds); default end - 1 day"),
        end: str | None = time_query("until (RFC 3339 or epoch seconds); default now"),
        format: str = format_query("json", "csv", "xlsx"),
        by: ReportSection = Query("steps", description="CSV rows: steps | category | district | grid | vehicle"),
    ) -> Any:
        """12319 cases accepted in a range: times per step (median, p90, max),
        overdue counts, and per category, district, grid and patrol car."""
        fmt = format.lower()
        t0, t1 = parse_range(start, end, max_span=timedelta(days=366), now=wire.utc(now()))
        data = await desk.report(t0, t1)
        for row in data["steps"]:
            row["name"] = STEP_LABEL.get(row["step"], "结案" if row["step"] == "close" else "全程")
        for row in data["category"]:
            row["name"] = settings.categories.get(row["key"], row["key"])
        for row in data["vehicle"]:
            row["plate"] = services.directory.info(row["vehicle_id"]).plate
        if fmt in ("csv", "xlsx"):  # Chinese headers, local times, as the other reports
            rows = data[by]
            keys = tuple(rows[0].keys()) if rows else ("key",)
            table = [tuple(x[k] for k in keys) for x in rows]
            header = tuple("label" if k == "name" else k for k in keys)
            tz = services.config.city.timezone
            if fmt == "csv":
                body, media = sheets.to_csv(header, table, tz), "text/csv; charset=utf-8"
            else:
                body, media = sheets.to_xlsx(header, table, tz, title=f"12319案件-{by}"), sheets.XLSX_TYPE
            return Response(
                body, media_type=media, headers={"Content-Disposition": f'attachment; filename="cases-{by}.{fmt}"'}
            )
        return json_response({"start": t0, "end": t1, **data})

    return r
