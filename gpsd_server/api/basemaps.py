"""Basemap presets of ``[map] basemaps`` as the page's switcher draws them.

Each preset is one or more Leaflet tile layers in one coordinate system:

- ``tianditu``: 天地图 vector map and its label layer (CGCS2000 ≈ WGS-84,
  Web Mercator ``_w`` tiles), with ``[map] tianditu_key``;
- ``amap``: 高德 road map, GCJ-02 (the page converts every position for it);
- ``osm``: OpenStreetMap's standard tiles (WGS-84);
- ``offline``: tiles served by this server from ``[map] offline_path``
  (``api/tiles.py``), WGS-84 Web Mercator;
- ``custom``: ``[map] tile_url`` in ``[map] tile_crs``.

The page always offers "no basemap" too, and draws the city layers above
whichever is chosen. With ``basemaps`` empty, ``custom`` is offered when
``tile_url`` is set.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from gpsd_server.settings import MapSettings
from gpsd_server.store.tiles import TileSource, open_source

_TIANDITU = (
    "https://t{s}.tianditu.gov.cn/{layer}_w/wmts?SERVICE=WMTS&REQUEST=GetTile&VERSION=1.0.0&LAYER={layer}"
    "&STYLE=default&TILEMATRIXSET=w&FORMAT=tiles&TILEMATRIX={z}&TILEROW={y}&TILECOL={x}&tk={key}"
)


def presets(m: MapSettings) -> tuple[str, ...]:
    if m.basemaps:
        return m.basemaps
    return ("custom",) if m.tile_url else ()


def open_offline(m: MapSettings, base_dir: str) -> TileSource | None:
    if "offline" not in presets(m):
        return None
    path = Path(m.offline_path)
    return _open(str(path if path.is_absolute() else Path(base_dir) / path))


@lru_cache(maxsize=8)
def _open(path: str) -> TileSource:
    # One reader per file for the process: the tile route and /api/map share it.
    return open_source(Path(path))


def describe(m: MapSettings, offline: TileSource | None) -> list[dict[str, Any]]:
    """The presets in order, each ``{id, name, crs, attribution, layers: [{url, ...}]}``."""
    out: list[dict[str, Any]] = []
    for name in presets(m):
        if name == "tianditu":
            key = m.tianditu_key
            out.append({
                "id": name, "name": "天地图", "crs": "wgs84", "attribution": "© 天地图 国家地理信息公共服务平台",
                "layers": [
                    {"url": _TIANDITU.replace("{layer}", "vec").replace("{key}", key), "subdomains": "01234567",
                     "max_zoom": 18},
                    {"url": _TIANDITU.replace("{layer}", "cva").replace("{key}", key), "subdomains": "01234567",
                     "max_zoom": 18},
                ],
            })  # fmt: skip
        elif name == "amap":
            out.append({
                "id": name, "name": "高德地图", "crs": "gcj02", "attribution": "© 高德地图 AutoNavi",
                "layers": [{"url": "https://webrd0{s}.is.autonavi.com/appmaptile?lang=zh_cn&size=1&scale=1&style=8"
                            "&x={x}&y={y}&z={z}", "subdomains": "1234", "max_zoom": 18}],
            })  # fmt: skip
        elif name == "osm":
            out.append({
                "id": name, "name": "OpenStreetMap", "crs": "wgs84", "attribution": "© OpenStreetMap contributors",
                "layers": [{"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png", "max_zoom": 19}],
            })  # fmt: skip
        elif name == "offline" and offline is not None:
            out.append({
                "id": name, "name": "离线地图", "crs": "wgs84", "attribution": "离线瓦片",
                "layers": [{"url": "/tiles/{z}/{x}/{y}", "min_zoom": offline.min_zoom,
                            "max_native_zoom": offline.max_zoom, "max_zoom": 19,
                            "bounds": list(offline.bounds) if offline.bounds else None}],
            })  # fmt: skip
        elif name == "custom":
            out.append({
                "id": name, "name": "自定义底图", "crs": m.tile_crs, "attribution": m.tile_attribution,
                "layers": [{"url": m.tile_url, "max_zoom": 19}],
            })  # fmt: skip
    return out
