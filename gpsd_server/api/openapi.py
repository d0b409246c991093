"""The published OpenAPI description, made to match what the server answers.

FastAPI documents each route's success and a 422 for its own validation
errors. This server answers those 400 naming the parameter, and every route
may also answer 401/403 (its token), 503 (the database is away) and, with a
path parameter, 404; :func:`install` adds those with the error body's schema,
declares the bearer scheme on every route that needs a token, and adds the
JSON schemas of the wire messages (``msgspec.json.schema_components``) that
routes name as ``#/components/schemas/<Struct>``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from gpsd_server import wire

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what is wrong, for people"},
        "parameter": {"type": ["string", "null"], "description": "the parameter (or body) at fault"},
        "file": {"type": "string", "description": "geofence uploads: the file refused"},
        "item": {"type": "string", "description": "geofence uploads: the feature or vehicle id"},
    },
}
HEALTH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status", "database", "mqtt", "problems"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "degraded"]},
        "database": {"type": "boolean"},
        "geofences": {"type": "string"},
        "timescaledb": {"type": "boolean"},
        "mqtt": {"type": "boolean"},
        "problems": {"type": "array", "items": {"type": "string"}},
        "version": {"type": "string"},
    },
}
WIRE_TYPES: tuple[type[Any], ...] = (wire.VehicleList, wire.Alert, wire.ZoneRecord)
# The desk's list holds alerts and (kind=zone) zone presence records.
ALERT_LIST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["alerts"],
    "properties": {
        "alerts": {"type": "array", "items": {"anyOf": [{"$ref": "#/components/schemas/Alert"},
                                                        {"$ref": "#/components/schemas/ZoneRecord"}]}},
    },
}  # fmt: skip
ERRORS = {
    "400": "a bad parameter or body, named in `parameter`",
    "401": "no token, or an invalid or revoked one",
    "403": "the token's role is too weak, or a company account may not use this route",
    "404": "no such item (the vehicle, zone, alert, file or token named)",
    "503": "the database is away (the route needs it), or the token cannot be checked",
}


def ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(name: str) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": ref(name)}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, **json_content("Error")}


def complete(schema: dict[str, Any], public_paths: frozenset[str]) -> dict[str, Any]:
    """Add what every route may answer (see the module docstring)."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = ERROR_SCHEMA
    schemas["Health"] = HEALTH_SCHEMA
    _, wire_schemas = msgspec.json.schema_components(WIRE_TYPES, ref_template="#/components/schemas/{name}")
    schemas.update(wire_schemas)
    schemas["AlertList"] = ALERT_LIST_SCHEMA
    components["securitySchemes"] = {
        "bearer": {
            "type": "http",
            "scheme": "bearer",
            "description": "a token from `gpsd-server token create` or POST /api/tokens (shown once)",
        }
    }
    for path, item in schema.get("paths", {}).items():
        for op in item.values():
            responses: dict[str, Any] = op.setdefault("responses", {})
            default_422 = responses.get("422", {})
            if default_422.get("description") == "Validation Error":
                del responses["422"]  # answered 400 (see api/http.py)
            wanted = ["400", "503"]
            if path not in public_paths:
                wanted += ["401", "403", "404"]
                op["security"] = [{"bearer": []}]
            for code in wanted:
                responses.setdefault(code, _error(ERRORS[code]))
            for code, response in responses.items():
                if code[0] in "45" and "content" not in response:
                    response.update(json_content("Error"))
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return schema


def install(app: FastAPI, public_paths: frozenset[str]) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            app.openapi_schema = complete(schema, public_paths)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema
