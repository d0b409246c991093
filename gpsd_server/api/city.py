"""The city as the page reads it: every feature, the map settings, reload (admin)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from gpsd_server.api import basemaps
from gpsd_server.api.auth import require
from gpsd_server.api.deps import ApiServices
from gpsd_server.api.params import BadParameter
from gpsd_server.api.responses import GeoJSONResponse, text_content
from gpsd_server.core.geo import city_centre
from gpsd_server.errors import DataError


def router(services: ApiServices) -> APIRouter:
    r = APIRouter(tags=["city"])
    cfg = services.config

    @r.get(
        "/api/geofences",
        dependencies=[Depends(require("viewer", company="city"))],
        response_class=GeoJSONResponse,
        responses=text_content(geojson=True),
    )
    async def geofences() -> Response:
        """Every city feature (zones, routes, cameras, information points) as one
        GeoJSON FeatureCollection, as loaded from the geofences folder."""
        return Response(services.city.current.geojson, media_type="application/geo+json")

    @r.post(
        "/api/geofences/reload",
        dependencies=[Depends(require("admin"))],
        responses={422: {"description": "the folder would not load: file, item and reason"}},
    )
    async def reload_geofences() -> dict[str, Any]:
        """Re-read the geofences folder; on any error the previous set stays in force."""
        try:
            data = await services.city.load()
        except DataError as exc:
            raise BadParameter("geofences", str(exc), status=422) from None
        await services.city.swapped(data)
        return data.summary()

    offline = basemaps.open_offline(cfg.map, cfg.base_dir)
    basemap_list = basemaps.describe(cfg.map, offline)

    @r.get("/api/map", dependencies=[Depends(require("viewer", company="city"))])
    async def map_settings() -> dict[str, Any]:
        m = cfg.map
        centre = m.center or city_centre(services.city.current.city)
        return {
            "city": cfg.city.name,
            "timezone": cfg.city.timezone,
            "center": list(centre) if centre else None,
            "zoom": m.zoom,
            "tile_url": m.tile_url or None,
            "tile_crs": m.tile_crs,
            "tile_attribution": m.tile_attribution,
            "moving_kmh": cfg.rules.moving_kmh,
            "offline_s": cfg.rules.offline_s,
            "basemaps": basemap_list,  # presets for the page's switcher, the first is the default
            "stall_s": cfg.desk.stall_s,  # no live message for this long: the desk's stall banner
        }

    return r
