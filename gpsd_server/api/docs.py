"""API documentation that works without internet: Swagger UI from
web/node_modules (``swagger-ui-dist``, installed by tools/web_setup.sh) at
``/docs``, started by a script file of the page (no inline script, no CDN),
and the OpenAPI description with its bearer ``securitySchemes``, so
"Authorize" takes a token and every "Try it out" sends it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse

_PAGE = """<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<title>{title} · API 文档</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/vendor/swagger-ui-dist/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/vendor/swagger-ui-dist/swagger-ui-bundle.js"></script>
<script src="/static/js/docs.js"></script>
</body>
</html>
"""


def with_bearer(schema: dict[str, Any], public: Iterable[str]) -> dict[str, Any]:
    """Declare the bearer scheme and require it on every operation outside ``public``."""
    open_paths = set(public)
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "a token from `gpsd-server token create` or POST /api/tokens (shown once)",
    }
    for path, item in schema.get("paths", {}).items():
        if path in open_paths:
            continue
        for op in item.values():
            if isinstance(op, dict):
                op.setdefault("security", [{"bearer": []}])
    return schema


def install_docs(app: FastAPI, public: Iterable[str]) -> None:
    """``/docs`` from local files and the bearer scheme in ``/openapi.json``.
    The app must be created with ``docs_url=None, redoc_url=None``."""
    page = _PAGE.format(title=app.title)
    public_paths = frozenset(public)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            app.openapi_schema = with_bearer(schema, public_paths)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema
