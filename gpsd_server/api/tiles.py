"""Offline basemap tiles served by the server: ``GET /tiles/{z}/{x}/{y}``,
from ``[map] offline_path`` (the file formats: :mod:`gpsd_server.store.tiles`).

Tiles are public like the page's other static files (an ``<img>`` cannot send
a bearer token); they are a city map, not fleet data. A missing tile is a
404, which Leaflet leaves blank.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response

from gpsd_server.api.params import BadParameter
from gpsd_server.store.tiles import TileSource, open_source

__all__ = ["TileSource", "mount_tiles", "open_source"]

_CACHE = {"Cache-Control": "public, max-age=86400"}


def mount_tiles(app: FastAPI, source: TileSource) -> None:
    r = APIRouter(tags=["map"])

    @r.get("/tiles/{z}/{x}/{y}", include_in_schema=False)
    async def tile(z: int, x: int, y: str) -> Response:
        """One raster tile of the offline basemap (public, like the page)."""
        y_num = y.split(".", 1)[0]
        if not 0 <= z <= 30:
            raise BadParameter("z", "zoom must be 0..30")
        if not 0 <= x < (1 << z):
            raise BadParameter("x", f"column must be 0..{(1 << z) - 1}")
        if not (y_num.isascii() and y_num.isdigit()) or len(y_num) > 10 or not 0 <= int(y_num) < (1 << z):
            raise BadParameter("y", f"row must be 0..{(1 << z) - 1}")
        found = await asyncio.to_thread(source.tile, z, x, int(y_num))
        if found is None:
            return Response(status_code=404, headers=_CACHE)
        data, media = found
        return Response(data, media_type=media, headers=_CACHE)

    app.include_router(r)
