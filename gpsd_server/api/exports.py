"""Track encoders: GeoJSON (RFC 7946), GPX 1.1 and CSV, page by page.

Each encoder consumes pages of ``store.history.TrackRow`` and yields bytes,
so a response streams while the cursor is read. GeoJSON needs the line before
the points: up to ``ONE_PASS_MAX_ROWS`` fixes it keeps the encoded points back
and writes both from one pass; a longer track asks for a second pass for the
line (``pages(line_only)``), which the database serves cheaply from the
(vehicle_id, ts) index. Points are encoded column by column (one msgspec
call per column and page) into a byte template: about a microsecond a fix.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable
from datetime import UTC
from typing import Any
from xml.sax.saxutils import escape

import msgspec
import numpy as np

from gpsd_server.core.history import UNUSABLE_FLAGS
from gpsd_server.store.history import LATE, TrackRow
from gpsd_server.wire import ts_text

Pages = Callable[[bool], AsyncIterator[list[TrackRow]]]
_encode = msgspec.json.Encoder().encode
GPX_NS = "urn:gpsd-server:gpx:1"


def _round(v: float | None, digits: int = 1) -> float | None:
    return None if v is None or v != v else round(v, digits)


_POINT = (
    b'{"type":"Feature","geometry":{"type":"Point","coordinates":[%s,%s]},'
    b'"properties":{"ts":%s,"speed":%s,"heading":%s,"flags":%s,"late":%s}}'
)
# Points kept back while the line is not yet written: a vehicle-day is about
# 8,640 fixes; past this the line is read in a pass of its own.
ONE_PASS_MAX_ROWS = 100_000


def _values(values: Any) -> list[bytes]:
    """Each value's JSON, encoded in one call (no commas inside numbers, null, true or RFC 3339 times)."""
    return _encode(values)[1:-1].split(b",")


def point_features(rows: list[TrackRow]) -> bytes:
    """The Point features of a page, comma-separated: each column is encoded
    in one msgspec call and the features are filled from a byte template, so
    no dict is built per fix."""
    ts, lon, lat, speed, heading, _alt, flags = zip(*rows, strict=True)
    late = [b"true" if f & LATE else b"false" for f in flags]
    return b",".join([
        _POINT % fields
        for fields in zip(
            _values(lon), _values(lat), _values(ts), _rounded(speed), _rounded(heading), _values(flags), late,
            strict=True,
        )
    ])  # fmt: skip


def _rounded(values: tuple[float | None, ...]) -> list[bytes]:
    """Rounded to 0.1 (numpy rounds to the nearest double of k/10, as ``round``
    does); None and NaN become null."""
    return _values(np.round(np.array(values, dtype=np.float64), 1).tolist())


def _line(rows: list[TrackRow]) -> tuple[bytes, int]:
    """The line's vertices in a page: where the vehicle was (late and backfilled
    fixes included, in fix-time order; outliers and parked drift not)."""
    where = [(r[1], r[2]) for r in rows if not r[6] & UNUSABLE_FLAGS]
    return _encode(where)[1:-1], len(where)


_HEAD = b'{"type":"FeatureCollection","features":[{"type":"Feature","geometry":'
_LINE_OPEN = b'{"type":"LineString","coordinates":['


def _geometry(coordinates: bytes, vertices: int) -> bytes:
    """The line's geometry. RFC 7946 wants two or more positions in a
    LineString: a track of one usable fix (a parked vehicle, its drift left
    out) is that point twice, a track of none has no geometry (``null``)."""
    if vertices == 0:
        return b"null"
    if vertices == 1:
        coordinates = coordinates + b"," + coordinates
    return _LINE_OPEN + coordinates + b"]}"


async def geojson(pages: Pages, line_properties: dict[str, Any]) -> AsyncIterator[bytes]:
    """A FeatureCollection: first a LineString of the usable fixes (see
    ``_line``), then one Point per fix with ts, speed, heading, flags and late.

    One pass over the fixes: the points are encoded as the pages come and kept
    back until the line (drawn from the same rows) is written. A track longer
    than ``ONE_PASS_MAX_ROWS`` reads the line in a pass of its own, then the
    points kept so far, then the rest as they come."""
    rows_seen = 0
    line: list[bytes] = []
    points: list[bytes] = []
    vertices = 0
    source = aiter(pages(False))
    async for rows in source:
        if not rows:
            continue
        rows_seen += len(rows)
        points.append(point_features(rows))
        chunk, count = _line(rows)
        if chunk:
            line.append(chunk)
            vertices += count
        if rows_seen > ONE_PASS_MAX_ROWS:
            break
    else:
        yield _HEAD + _geometry(b",".join(line), vertices)
        yield b',"properties":' + _encode({**line_properties, "points": vertices}) + b"}"
        for chunk in points:
            yield b"," + chunk
        yield b"]}"
        return
    # Too long to keep back: the line from a second pass, then the points.
    # The line is held back until it has two vertices (a parked vehicle's
    # drift is left out: its line may be one point, or none).
    yield _HEAD
    vertices = 0
    held: list[bytes] | None = []
    async for rows in pages(True):
        chunk, count = _line(rows)
        if not chunk:
            continue
        vertices += count
        if held is not None:
            held.append(chunk)
            if vertices >= 2:
                yield _LINE_OPEN + b",".join(held)
                held = None
        else:
            yield b"," + chunk
    if held is not None:  # fewer than two vertices in all
        yield _geometry(b",".join(held), vertices)
    else:
        yield b"]}"
    yield b',"properties":' + _encode({**line_properties, "points": vertices}) + b"}"
    for chunk in points:
        yield b"," + chunk
    async for rows in source:
        if rows:
            yield b"," + point_features(rows)
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
    """GPX 1.1: one trk of the usable fixes (as the GeoJSON line); speed (km/h), heading and flags
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
