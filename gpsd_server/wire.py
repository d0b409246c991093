"""Every message the page and integrators see, as typed structs, encoded once.

Websocket messages carry their kind in ``type`` (a msgspec tag); HTTP bodies
are the same structs (an alert is the same object on ``/ws/live``, in
``GET /api/alerts`` and in a replay). One time format everywhere: RFC 3339 in
UTC with ``Z``, as msgspec writes an aware ``datetime``. One "moving"
threshold: ``[rules] moving_kmh``, applied by :func:`status`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
import numpy as np

MovingStatus = Literal["moving", "stopped"]
_encoder = msgspec.json.Encoder()
encode = _encoder.encode
decode = msgspec.json.Decoder().decode


def utc(ts: float) -> datetime:
    """POSIX seconds -> an aware UTC datetime (encoded as ``...Z``)."""
    return datetime.fromtimestamp(ts, UTC)


def ts_text(dt: datetime) -> str:
    """The same format as an encoded datetime, for CSV and other text."""
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z")


def status(speed_kmh: float | None, moving_kmh: float) -> MovingStatus:
    return "moving" if (speed_kmh or 0.0) >= moving_kmh else "stopped"


_floor = math.floor


def _to(value: float, scale: float) -> float:
    """``value`` to the nearest multiple of 1/``scale``, halves up.

    ``round(value, 7)`` finds the decimal exactly and costs three times as much
    (0.6 µs; a live position rounds four numbers, for every position sent).
    The two differ by one unit in the last place in about one value in a
    million (1 cm at 7 decimals of a degree), and on exact halves, which
    ``round`` sends to the even neighbour. NaN and infinities stay as they are."""
    try:
        return _floor(value * scale + 0.5) / scale
    except (ValueError, OverflowError):
        return value


def _round(value: float | None, scale: float) -> float | None:
    return None if value is None else _to(value, scale)


def _to_many(values: Sequence[float | None], scale: float) -> list[float]:
    """:func:`_round` of many values at once with numpy, the same
    multiply-floor-divide; ``None`` becomes NaN, which is encoded as ``null``
    as ``None`` is. (A finite value past 1e307 would overflow to ``null``
    where ``_to`` keeps it; the decoders bound every number far below.)"""
    nan = math.nan
    a = np.fromiter([nan if v is None else v for v in values], np.float64, len(values))
    rounded: list[float] = (np.floor(a * scale + 0.5) / scale).tolist()
    return rounded


# How live positions are rounded: 7 decimals of a degree (1 cm), 0.1 km/h, 1°.
COORD_SCALE, SPEED_SCALE, HEADING_SCALE = 1e7, 10.0, 1.0


class Message(msgspec.Struct, tag_field="type", kw_only=True):
    """Base of every websocket message."""


class Position(Message, tag="position", kw_only=True):
    vehicle_id: str
    plate: str | None
    vehicle_class: str = msgspec.field(name="class")
    ts: datetime
    lon: float
    lat: float
    speed: float | None
    heading: float | None
    status: MovingStatus

    @classmethod
    def of(
        cls,
        vehicle_id: str,
        ts: float,
        lon: float,
        lat: float,
        speed_kmh: float | None,
        heading: float | None,
        *,
        plate: str | None,
        vehicle_class: str,
        moving_kmh: float,
    ) -> Position:
        return cls(
            vehicle_id=vehicle_id,
            plate=plate,
            vehicle_class=vehicle_class,
            ts=utc(ts),
            lon=_to(lon, COORD_SCALE),
            lat=_to(lat, COORD_SCALE),
            speed=_round(speed_kmh, SPEED_SCALE),
            heading=_round(heading, HEADING_SCALE),
            status=status(speed_kmh, moving_kmh),
        )


class Positions(Message, tag="positions", kw_only=True):
    """One ``/ws/live`` frame: every position since the client's last frame
    (conflated to the latest per vehicle while the client lags behind)."""

    positions: list[Position]


def positions_frame(encoded: list[bytes]) -> bytes:
    """The bytes of ``Positions`` from positions encoded once each: joining is
    what lets one encoding serve every client whose filter admits it. A single
    position is sent as the plain ``position`` message."""
    if len(encoded) == 1:
        return encoded[0]
    return b'{"type":"positions","positions":[' + b",".join(encoded) + b"]}"


ROW_FIELDS = ("vehicle_id", "ts", "lon", "lat", "speed", "heading", "class")
PositionRow = tuple[str, float, float, float, float | None, float | None, str]


class PositionRows(Message, tag="rows", kw_only=True):
    """The lean form of a frame of positions (``/ws/live?positions=rows``, the
    page's): one array per position in the order of ``fields``, ``ts`` in
    POSIX seconds; plate and status are left to the client (``/api/vehicles``,
    ``/api/map``'s ``moving_kmh``). A third of the bytes of ``Positions``:
    with a control room reading every position the bytes are what the
    fan-out costs, on the server and on every screen."""

    fields: tuple[str, ...] = ROW_FIELDS
    rows: list[PositionRow]


def position_row(
    vehicle_id: str, ts: float, lon: float, lat: float, speed_kmh: float | None, heading: float | None, cls: str
) -> bytes:
    """One row of :class:`PositionRows`, rounded as :class:`Position` rounds."""
    return encode(
        (vehicle_id, ts, _to(lon, COORD_SCALE), _to(lat, COORD_SCALE), _round(speed_kmh, SPEED_SCALE),
         _round(heading, HEADING_SCALE), cls)
    )  # fmt: skip


def position_rows(
    vehicle_ids: list[str],
    ts: list[float],
    lon: list[float],
    lat: list[float],
    speed_kmh: list[float | None],
    heading: list[float | None],
    classes: list[str],
) -> list[bytes]:
    """:func:`position_row` of many positions, the same bytes (a test checks
    it), the numbers rounded for all of them at once (:func:`_to_many`: 0.74
    against 1.13 µs per position for a flush of 5,000)."""
    lon_r, lat_r = _to_many(lon, COORD_SCALE), _to_many(lat, COORD_SCALE)
    sp_r, hd_r = _to_many(speed_kmh, SPEED_SCALE), _to_many(heading, HEADING_SCALE)
    return [encode(row) for row in zip(vehicle_ids, ts, lon_r, lat_r, sp_r, hd_r, classes, strict=True)]


_ROWS_HEAD = b'{"type":"rows","fields":' + msgspec.json.encode(ROW_FIELDS) + b',"rows":['


def rows_frame(encoded: list[bytes]) -> bytes:
    """The bytes of ``PositionRows`` from rows encoded once each (any number, one too)."""
    return _ROWS_HEAD + b",".join(encoded) + b"]}"


class Batch(Message, tag="batch", kw_only=True):
    """Several ``/ws/live`` messages in one frame, in order, each exactly as it
    would have been sent alone: what queued up for a client while its last
    frame was being sent, and the zone records of one flush interval."""

    messages: list[Any]


def batch_frame(encoded: list[str]) -> str:
    """``Batch`` from messages encoded once each (one message: itself)."""
    if len(encoded) == 1:
        return encoded[0]
    return '{"type":"batch","messages":[' + ",".join(encoded) + "]}"


class Snapshot(Message, tag="snapshot", kw_only=True):
    vehicles: list[Position]


class Alert(Message, tag="alert", kw_only=True):
    """An alert: on ``/ws/live`` (with the ``phase`` that sent it), in the desk
    API and in replays. Zone presence records have the same shape, tag ``zone``."""

    id: str
    number: str | None = None  # short number per local day, e.g. 20261201-0042 (given when stored)
    kind: str
    key: str
    phase: Literal["start", "end", "instant", "update"] | None = None
    severity: str
    vehicle_id: str
    plate: str | None = None
    vehicle_class: str | None = msgspec.field(default=None, name="class")
    ts: datetime  # fix time of the start
    raised_at: datetime
    lon: float | None
    lat: float | None
    zone_id: str | None = None
    route_id: str | None = None
    zone_name: str | None = None
    place: str | None = None  # district · grid · site or nearest road, from the city's layers
    details: dict[str, Any] = msgspec.field(default_factory=dict)
    ended_ts: datetime | None = None
    ended_at: datetime | None = None
    end_lon: float | None = None
    end_lat: float | None = None
    state: str = "open"
    active: bool = True
    acked_by: str | None = None
    acked_at: datetime | None = None
    closed_by: str | None = None
    closed_at: datetime | None = None
    comment: str | None = None


class ZoneRecord(Alert, tag="zone", kw_only=True):
    """Zone presence (enter = start, exit = end): for reports and the map, not the desk."""


class Heartbeat(Message, tag="heartbeat", kw_only=True):
    """Sent on a quiet /ws/live every ``[http] ws_heartbeat_s``: the server is alive."""

    ts: datetime


class Error(Message, tag="error", kw_only=True, omit_defaults=True):
    error: str
    parameter: str | None = None


# -- replay -------------------------------------------------------------------------


class TimelineAlert(msgspec.Struct, kw_only=True):
    id: str
    ts: datetime
    kind: str
    vehicle_id: str
    severity: str


class ReplayInfo(Message, tag="replay_info", kw_only=True):
    start: datetime
    end: datetime
    speed: float
    vehicles: list[str]
    alerts: list[TimelineAlert]


class ReplayPosition(Message, tag="replay_position", kw_only=True):
    vehicle_id: str
    ts: datetime
    lon: float
    lat: float
    speed: float | None
    heading: float | None
    plate: str | None
    vehicle_class: str | None = msgspec.field(name="class")


class ReplayAlert(Alert, tag="replay_alert", kw_only=True):
    pass


class ReplayClock(Message, tag="replay_clock", kw_only=True):
    ts: datetime


class ReplayEnd(Message, tag="replay_end", kw_only=True):
    stats: dict[str, Any]


# -- HTTP bodies -------------------------------------------------------------------------


class VehicleRow(msgspec.Struct, kw_only=True):
    id: str
    plate: str | None
    vehicle_class: str = msgspec.field(name="class")
    company: str | None
    ts: datetime
    age_s: float
    lon: float
    lat: float
    speed: float | None
    heading: float | None
    alarm: int
    status: MovingStatus


class VehicleList(msgspec.Struct, kw_only=True):
    vehicles: list[VehicleRow]


class AlertList(msgspec.Struct, kw_only=True):
    alerts: list[Alert]


# -- 12319 cases --------------------------------------------------------------------------


class CaseEvent(msgspec.Struct, kw_only=True):
    """One entry of a case's audit trail."""

    seq: int
    kind: str  # created, dispatched, reassigned, arrived, left, returned, handled, called_back, closed, ...
    at: datetime
    recorded_at: datetime
    by: str
    comment: str
    data: dict[str, Any]


class CaseStep(msgspec.Struct, kw_only=True):
    """A step of a case against its deadline."""

    step: str  # dispatch, arrive, handle, callback
    limit_s: float | None  # None: no deadline
    started_at: datetime | None
    due_at: datetime | None
    done_at: datetime | None
    took_s: float | None
    overdue: bool  # past the deadline, done or not


class Case(Message, tag="case", kw_only=True):
    """A 12319 case: on ``/ws/live`` after each change (``event`` says what
    happened) and in ``GET /api/cases``."""

    id: int
    number: str
    channel: str
    category: str
    category_name: str
    priority: str
    description: str
    address: str
    reporter: str
    lon: float
    lat: float
    place: str | None
    district_id: str | None
    district: str | None
    grid_id: str | None
    grid: str | None
    state: str
    vehicle_id: str | None
    plate: str | None
    accepted_at: datetime
    accepted_by: str
    dispatched_at: datetime | None
    assigned_at: datetime | None
    arrived_at: datetime | None
    arrival_source: str | None
    arrival_distance_m: float | None
    on_site: bool | None
    handled_at: datetime | None
    called_back_at: datetime | None
    closed_at: datetime | None
    cancelled_at: datetime | None
    command: dict[str, Any] | None  # the dispatch text to the car's terminal: id, status
    steps: list[CaseStep]
    late: bool  # the step it waits for is past its deadline
    actions: list[str]  # what may be done now
    events: int
    updated_at: datetime
    event: CaseEvent | None = None


class CaseList(msgspec.Struct, kw_only=True):
    cases: list[Case]
