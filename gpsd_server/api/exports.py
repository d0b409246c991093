"""Track encoders: GeoJSON (RFC 7946), GPX 1.1 and CSV, page by page.

Each encoder consumes pages of ``store.history.TrackRow`` and yields bytes,
so a response streams while the cursor is read and never holds the whole
track. GeoJSON needs the line before the points, so it asks for two passes
over the rows (``pages(line_only)``); the database does that cheaply from the
(vehicle_id, ts) index.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable
from datetime import UTC
from typing import Any
from xml.sax.saxutils import escape

import msgspec

from gpsd_server.store.history import LATE, TrackRow
from gpsd_server.wire import ts_text

Pages = Callable[[bool], AsyncIterator[list[TrackRow]]]
_encode = msgspec.json.Encoder().encode
GPX_NS = "urn:gpsd-server:gpx:1"


def _round(v: float | None, digits: int = 1) -> float | None:
    return None if v is None or v != v else round(v, digits)


async def geojson(pages: Pages, line_properties: dict[str, Any]) -> AsyncIterator[bytes]:
    """A FeatureCollection: first a LineString of the non-late fixes, then one
    Point per fix with ts, speed, heading, flags and late."""
    yield b'{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"LineString","coordinates":['
    vertices = 0
    async for rows in pages(True):
        chunk = _encode([[r[1], r[2]] for r in rows])[1:-1]
        if chunk:
            yield (b"," if vertices else b"") + chunk
            vertices += len(rows)
    yield b']},"properties":' + _encode({**line_properties, "points": vertices}) + b"}"
    async for rows in pages(False):
        features = [
            {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [r[1], r[2]]},
                "properties": {
                    "ts": r[0],
                    "speed": _round(r[3]),
                    "heading": _round(r[4]),
                    "flags": r[6],
                    "late": bool(r[6] & LATE),
                },
            }
            for r in rows
        ]
        if features:
            yield b"," + _encode(features)[1:-1]
    yield b"]}"


def _gpx_time(row: TrackRow) -> str:
    return row[0].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _trkpt(r: TrackRow) -> str:
    ele = f"<ele>{r[5]:.1f}</ele>" if r[5] is not None and r[5] == r[5] else ""
    ext = "".join(
        f"<gpsd:{name}>{value:.1f}</gpsd:{name}>"
        for name, value in (("speed_kmh", r[3]), ("heading", r[4]))
        if value is not None and value == value
    )
    return (
        f'<trkpt lat="{r[2]!r}" lon="{r[1]!r}">{ele}<time>{_gpx_time(r)}</time>'
        f"<extensions>{ext}<gpsd:flags>{r[6]}</gpsd:flags></extensions></trkpt>\n"
    )


async def gpx(pages: Pages, vehicle_id: str, description: str) -> AsyncIterator[bytes]:
    """GPX 1.1: one trk of the non-late fixes; speed (km/h), heading and flags
    go in ``extensions`` under our own namespace, as GPX 1.1 has no speed."""
    yield (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<gpx version="1.1" creator="gpsd-server" xmlns="http://www.topografix.com/GPX/1/1"'
        f' xmlns:gpsd="{GPX_NS}">\n'
        f"<trk><name>{escape(vehicle_id)}</name><desc>{escape(description)}</desc><trkseg>\n"
    ).encode()
    async for rows in pages(True):
        yield "".join(_trkpt(r) for r in rows).encode()
    yield b"</trkseg></trk>\n</gpx>\n"


CSV_HEADER = ("vehicle_id", "ts", "lon", "lat", "speed_kmh", "heading", "alt_m", "flags", "late")


async def csv_rows(pages: Pages, vehicle_id: str) -> AsyncIterator[bytes]:
    """Every fix, late ones included and marked."""
    yield (",".join(CSV_HEADER) + "\r\n").encode()
    async for rows in pages(False):
        out = io.StringIO()
        writer = csv.writer(out)
        for r in rows:
            late = int(bool(r[6] & LATE))
            writer.writerow(
                (vehicle_id, ts_text(r[0]), r[1], r[2], _round(r[3]), _round(r[4]), _round(r[5]), r[6], late)
            )
        yield out.getvalue().encode()


def table_csv(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> bytes:
    """A small report as CSV (reports are one row per vehicle/grid, not per fix)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode()


__all__ = ["CSV_HEADER", "GPX_NS", "csv_rows", "geojson", "gpx", "table_csv"]
