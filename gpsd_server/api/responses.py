"""JSON bodies encoded by :mod:`gpsd_server.wire`, so HTTP and the websockets
share one time format (FastAPI's own encoder would write ``+00:00``)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import Response

from gpsd_server import wire


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(wire.encode(body), status_code=status, media_type="application/json", headers=headers)


class GeoJSONResponse(Response):
    media_type = "application/geo+json"


class PlainTextResponse(Response):
    media_type = "text/plain"


GEOJSON_SCHEMA = {"type": "object", "required": ["type"], "properties": {"type": {"type": "string"}}}


def text_content(*media_types: str, geojson: bool = False) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a 200 that may also be one of these text formats (or GeoJSON)."""
    content: dict[str, Any] = {m: {"schema": {"type": "string"}} for m in media_types}
    if geojson:
        content["application/geo+json"] = {"schema": GEOJSON_SCHEMA}
    return {200: {"content": content}}


def schema_of(name: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a 200 whose JSON body is ``#/components/schemas/<name>`` (see api/openapi.py)."""
    return {200: {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}}}
