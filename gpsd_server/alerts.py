"""Alerts as people see them: the one place an alert becomes a wire message,
whether it was just raised (an engine event) or read back from the store."""

from __future__ import annotations

from typing import TypeVar

from gpsd_server.core.rules import presence
from gpsd_server.directory import VehicleDirectory
from gpsd_server.store.alerts import AlertRecord
from gpsd_server.store.batch import AlertRow
from gpsd_server.wire import Alert, ZoneRecord, utc

A = TypeVar("A", bound=Alert)


def _coord(v: float) -> float | None:
    return v if v == v else None  # NaN: no known position (an alarm before any fix)


def from_raised(row: AlertRow, directory: VehicleDirectory) -> Alert:
    """A just-raised event, for ``/ws/live`` (zone presence travels as ``type: zone``)."""
    e = row.event
    info = directory.info(e.vehicle_id)
    cls = ZoneRecord if e.kind == presence.KIND else Alert
    ended = e.phase in ("end", "instant")
    lon, lat = _coord(e.lon), _coord(e.lat)
    return cls(
        id=row.id,
        kind=e.kind,
        key=e.key,
        phase=e.phase,
        severity=e.severity,
        vehicle_id=e.vehicle_id,
        plate=info.plate,
        vehicle_class=info.vehicle_class,
        ts=utc(e.ts),
        raised_at=utc(row.raised_at),
        lon=lon,
        lat=lat,
        zone_id=e.zone_id,
        route_id=e.route_id,
        zone_name=directory.place_name(e.zone_id or e.route_id),
        place=row.place,
        details=e.details,
        ended_ts=utc(e.ts) if ended else None,
        ended_at=utc(row.raised_at) if ended else None,
        end_lon=lon if e.phase == "end" else None,
        end_lat=lat if e.phase == "end" else None,
        state="open",
        active=e.phase == "start",
    )


def from_record(record: AlertRecord, directory: VehicleDirectory, cls: type[A] = Alert) -> A:  # type: ignore[assignment]
    """A stored row, for the desk API, replays and operator updates."""
    info = directory.info(record.vehicle_id)
    return cls(
        id=str(record.id),
        number=record.number,
        kind=record.kind,
        key=record.key,
        severity=record.severity,
        vehicle_id=record.vehicle_id,
        plate=info.plate,
        vehicle_class=info.vehicle_class,
        ts=record.ts,
        raised_at=record.raised_at,
        lon=record.lon,
        lat=record.lat,
        zone_id=record.zone_id,
        route_id=record.route_id,
        zone_name=directory.place_name(record.zone_id or record.route_id),
        place=record.place,
        details=record.details,
        ended_ts=record.ended_ts,
        ended_at=record.ended_at,
        end_lon=record.end_lon,
        end_lat=record.end_lat,
        state=record.state,
        active=record.ended_ts is None,
        acked_by=record.acked_by,
        acked_at=record.acked_at,
        closed_by=record.closed_by,
        closed_at=record.closed_at,
        comment=record.comment,
    )
