"""API documentation that works without internet: Swagger UI from
web/node_modules (``swagger-ui-dist``, installed by tools/web_setup.sh) at
``/docs``, started by a script file of the page (no inline script, no CDN).
The OpenAPI description declares the bearer scheme (api/openapi.py), so
"Authorize" takes a token and every "Try it out" sends it."""

from __future__ import annotations

from fastapi import FastAPI
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


def install_docs(app: FastAPI) -> None:
    """``/docs`` from local files (the bearer scheme is declared by
    :mod:`gpsd_server.api.openapi`). The app must be created with
    ``docs_url=None, redoc_url=None``."""
    page = _PAGE.format(title=app.title)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-cache"})
