"""The control-room page: ``/`` (index.html), ``/static/...`` (its modules and
styles, shipped in the package) and ``/vendor/...`` (Leaflet from
web/node_modules, installed by tools/web_setup.sh; never committed, no CDN).

Static files are public: the page asks for the token itself and every API
call it makes carries it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "web"
VENDOR_DIR = Path(__file__).resolve().parent.parent.parent / "web" / "node_modules"

# Revalidate on every load (cheap on a LAN: 304s), so an upgrade is never half-applied.
_NO_CACHE = {"Cache-Control": "no-cache"}


class _StaticNoCache(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(_NO_CACHE)
        return response


def mount_web(app: FastAPI, *, static_dir: Path = STATIC_DIR, vendor_dir: Path = VENDOR_DIR) -> None:
    """Serve the page at ``/`` and its files at ``/static`` and ``/vendor``."""
    index = static_dir / "index.html"
    if not index.is_file():
        raise FileNotFoundError(f"control-room page missing: {index}")
    if not (vendor_dir / "leaflet" / "dist" / "leaflet.js").is_file():
        log.warning("map library missing in %s: run tools/web_setup.sh (npm ci in web/)", vendor_dir)

    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return FileResponse(index, media_type="text/html; charset=utf-8", headers=_NO_CACHE)

    app.mount("/static", _StaticNoCache(directory=static_dir), name="static")
    app.mount("/vendor", _StaticNoCache(directory=vendor_dir, check_dir=False), name="vendor")
