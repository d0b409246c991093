"""Geofence and vehicle-registry uploads (admin) and the list of files (viewer).

An upload is checked as the *whole* city it would produce (every file in the
geofences folder with this one replaced, added or removed) by the pure loader
before anything is written, so a rejected upload leaves the folder and the
city in force untouched. Cheap limits come first (body size, nesting depth,
feature and coordinate counts) so a hostile body never reaches shapely. A
good file is written atomically (temporary file, fsync, rename) and the
server reloads.

Every rejection is a 4xx whose body names the parameter and, for data the
loader refused, the file, the feature or vehicle id and the reason. Nothing
heavy runs on the event loop: the size checks run in a thread on the raw
JSON, the loader in a worker process (see :mod:`gpsd_server.cityfolder`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import Response

from gpsd_server.api.auth import require
from gpsd_server.api.deps import ApiServices
from gpsd_server.api.params import BadParameter
from gpsd_server.api.responses import json_response
from gpsd_server.cityfolder import VEHICLES_FILE, feature_vertices
from gpsd_server.errors import DataError

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 5 * 1024 * 1024
MAX_FEATURES = 20_000  # per file
MAX_FILE_COORDINATES = 500_000  # positions in one file
MAX_VEHICLES = 50_000
MAX_DEPTH = 64  # JSON nesting; GeoJSON needs about 8
NAME_PATTERN = r"^[a-z0-9_-]{1,64}\.geojson$"

_FEATURE_COLLECTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "features"],
    "properties": {
        "type": {"type": "string", "enum": ["FeatureCollection"]},
        "features": {"type": "array", "items": {"type": "object"}},
    },
}
_VEHICLES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["vehicles"],
    "properties": {"vehicles": {"type": "array", "items": {"type": "object"}}},
}


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


class RejectedData(BadParameter):
    """The loader (or a limit) refused the data: names the file and the item."""

    def __init__(self, parameter: str, exc: DataError, status: int = 422) -> None:
        detail = {"error": exc.reason, "parameter": parameter, "file": exc.file, "item": exc.item}
        HTTPException.__init__(self, status_code=status, detail=detail)


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and len(declared) < 20 and int(declared) > limit:
        raise BadParameter("body", f"larger than {limit} bytes", status=413)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadParameter("body", f"larger than {limit} bytes", status=413)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise BadParameter("body", "required: a JSON document")
    return body


def parse_document(body: bytes) -> Any:
    """Decode strictly (no NaN, no deep nesting) before the loader sees it."""
    try:
        doc = msgspec.json.decode(body)
    except RecursionError:
        raise BadParameter("body", "JSON nested too deeply") from None
    except msgspec.DecodeError as exc:
        raise BadParameter("body", f"not valid JSON: {exc}") from None
    if _depth(doc) > MAX_DEPTH:
        raise BadParameter("body", f"JSON nested deeper than {MAX_DEPTH} levels")
    return doc


def _depth(doc: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                break
            stack.extend((child, depth + 1) for child in node)
    return deepest


def check_geofence_limits(file_name: str, doc: Any, max_feature_vertices: int) -> None:
    """Feature and coordinate counts; the loader (and the city's vertex budget) check everything else."""
    features = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(features, list):
        return  # the loader names the problem
    _check_counts(file_name, len(features), feature_vertices(doc), max_feature_vertices)


def _check_counts(file_name: str, features: int, vertices: list[tuple[str, int]], max_feature_vertices: int) -> None:
    if features > MAX_FEATURES:
        raise RejectedData("body", DataError(file_name, "(file)", f"more than {MAX_FEATURES} features"), 413)
    total = 0
    for label, n in vertices:
        if n > max_feature_vertices:
            reason = f"{n} coordinates in one geometry (limit {max_feature_vertices}: [geofences] max_feature_vertices)"
            raise RejectedData("body", DataError(file_name, label, reason), 413)
        total += n
        if total > MAX_FILE_COORDINATES:
            reason = f"more than {MAX_FILE_COORDINATES} coordinates in the file"
            raise RejectedData("body", DataError(file_name, label, reason), 413)


class _Geometry(msgspec.Struct):
    coordinates: msgspec.Raw = msgspec.Raw(b"null")


class _Feature(msgspec.Struct):
    properties: Any = None
    geometry: _Geometry | None = None


class _Layout(msgspec.Struct):
    features: list[_Feature]


_layout = msgspec.json.Decoder(_Layout)
_POSITION = re.compile(rb"\[\s*-?[0-9]")  # an array whose first item is a number: a position


def check_upload(file_name: str, body: bytes, max_feature_vertices: int) -> None:
    """Decode and count, in a worker thread. A FeatureCollection is decoded
    with its coordinates left as raw JSON (positions counted in the bytes):
    building a Python list per position held the GIL for ~80 ms at 100,000
    positions, which stalled the loop as much as running it there. Anything
    else is decoded in full, for a precise reason."""
    try:
        layout = _layout.decode(body)
    except (msgspec.DecodeError, RecursionError):
        check_geofence_limits(file_name, parse_document(body), max_feature_vertices)
        return
    vertices = []
    for index, feature in enumerate(layout.features):
        props = feature.properties
        if _depth(props) > MAX_DEPTH - 3:
            raise BadParameter("body", f"JSON nested deeper than {MAX_DEPTH} levels")
        if feature.geometry is None:
            continue
        fid = props.get("id") if isinstance(props, dict) else None
        label = fid if isinstance(fid, str) and fid else f"#{index}"
        vertices.append((label, len(_POSITION.findall(feature.geometry.coordinates))))
    _check_counts(file_name, len(layout.features), vertices, max_feature_vertices)


def check_vehicle_limits(doc: Any) -> None:
    vehicles = doc.get("vehicles") if isinstance(doc, dict) else None
    if isinstance(vehicles, list) and len(vehicles) > MAX_VEHICLES:
        raise RejectedData("body", DataError(VEHICLES_FILE, "(file)", f"more than {MAX_VEHICLES} vehicles"), 413)


def router(services: ApiServices) -> APIRouter:
    r = APIRouter(tags=["city"])
    city = services.city
    max_feature_vertices = services.config.geofences.max_feature_vertices

    async def apply(name: str, data: bytes | None, parameter: str) -> Response:
        """Validate the city with ``name`` replaced by ``data`` (None: removed), then write and swap it in."""
        try:
            loaded = await city.replace(name, data)
        except DataError as exc:
            over_budget = "vertices in" in exc.reason and "[geofences]" in exc.reason
            raise RejectedData(parameter, exc, 413 if over_budget else 422) from None
        except FileNotFoundError:
            raise BadParameter("name", "no such geofence file", status=404) from None
        return json_response({"file": name, **loaded.summary()})

    @r.get("/api/geofences/files", dependencies=[Depends(require("viewer"))])
    async def list_files() -> Response:
        """The geofence files and the vehicle registry in the geofences folder."""
        files = await asyncio.to_thread(city.folder.listing)
        return json_response(
            {"files": [{"name": f.name, "bytes": f.bytes, "modified": f.modified} for f in files], "error": city.error}
        )

    @r.put(
        "/api/geofences/files/{name}",
        dependencies=[Depends(require("admin"))],
        openapi_extra=_json_body(_FEATURE_COLLECTION_SCHEMA),
        responses={413: {"description": "body, feature or coordinate limit exceeded"},
                   422: {"description": "the city would not load: file, item and reason"}},
    )  # fmt: skip
    async def put_file(
        request: Request,
        name: str = PathParam(..., pattern=NAME_PATTERN, description="e.g. zones.geojson"),
    ) -> Response:
        """Add or replace one GeoJSON FeatureCollection; applied only if the whole city loads."""
        body = await read_body(request)
        await asyncio.to_thread(check_upload, name, body, max_feature_vertices)
        return await apply(name, body, "body")

    @r.delete("/api/geofences/files/{name}", dependencies=[Depends(require("admin"))])
    async def delete_file(
        name: str = PathParam(..., pattern=NAME_PATTERN, description="e.g. zones.geojson"),
    ) -> Response:
        """Remove one geofence file; refused if the rest would not load (e.g. permits refer to it)."""
        return await apply(name, None, "name")

    @r.put(
        "/api/vehicles/registry",
        tags=["vehicles"],
        dependencies=[Depends(require("admin"))],
        openapi_extra=_json_body(_VEHICLES_SCHEMA),
        responses={413: {"description": "body or vehicle limit exceeded"},
                   422: {"description": "the city would not load: file, item and reason"}},
    )  # fmt: skip
    async def put_vehicles(request: Request) -> Response:
        """Replace vehicles.json (vehicles and permits); applied only if the whole city loads."""
        body = await read_body(request)
        check_vehicle_limits(await asyncio.to_thread(parse_document, body))
        return await apply(VEHICLES_FILE, body, "body")

    return r
