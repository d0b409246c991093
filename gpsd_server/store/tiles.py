"""Offline basemap tile files, read: an MBTiles file (SQLite; rows in the
TMS scheme, y flipped), a PMTiles archive (read with protomaps' ``pmtiles``
reader over a memory map) or a folder of ``{z}/{x}/{y}.png|jpg|webp``.
Raster tiles only: the page draws them with a plain Leaflet tile layer.
Served by :mod:`gpsd_server.api.tiles`.
"""

from __future__ import annotations

import gzip
import json
import mmap
import sqlite3
import threading
from pathlib import Path
from typing import Any, Protocol

from pmtiles.reader import Reader as PmtilesReader
from pmtiles.tile import Compression, TileType

from gpsd_server.errors import ConfigError

MEDIA = {"png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}
_PMTILES_TYPE = {TileType.PNG: "png", TileType.JPEG: "jpg", TileType.WEBP: "webp"}


Bounds = tuple[float, ...]  # west, south, east, north (degrees)


class TileSource(Protocol):
    min_zoom: int
    max_zoom: int
    bounds: Bounds | None

    def tile(self, z: int, x: int, y: int) -> tuple[bytes, str] | None: ...


def _sniff(data: bytes, default: str) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return default


class MbtilesSource:
    def __init__(self, path: Path) -> None:
        # Read-only and shared across the worker threads; one lock per connection.
        self._conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
        self._lock = threading.Lock()
        meta = dict(self._conn.execute("SELECT name, value FROM metadata").fetchall())
        self.media = MEDIA.get(str(meta.get("format", "png")).lower(), "image/png")
        zooms = self._conn.execute("SELECT min(zoom_level), max(zoom_level) FROM tiles").fetchone()
        self.min_zoom = int(meta.get("minzoom", zooms[0] if zooms and zooms[0] is not None else 0))
        self.max_zoom = int(meta.get("maxzoom", zooms[1] if zooms and zooms[1] is not None else 18))
        b = meta.get("bounds")
        self.bounds: Bounds | None = tuple(float(v) for v in str(b).split(",")) if b else None

    def tile(self, z: int, x: int, y: int) -> tuple[bytes, str] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT tile_data FROM tiles WHERE zoom_level = ? AND tile_column = ? AND tile_row = ?",
                (z, x, (1 << z) - 1 - y),
            ).fetchone()
        if row is None:
            return None
        data = bytes(row[0])
        return data, _sniff(data, self.media)


class PmtilesSource:
    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self._map = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        self._reader = PmtilesReader(lambda offset, length: self._map[offset : offset + length])
        header: dict[str, Any] = dict(self._reader.header())
        kind = _PMTILES_TYPE.get(header["tile_type"])
        if kind is None:
            raise ValueError(
                f"PMTiles of type {header['tile_type'].name}: only raster (png, jpg, webp) tiles are drawn"
            )
        self.media = MEDIA[kind]
        self._gzip = header["tile_compression"] == Compression.GZIP
        self.min_zoom, self.max_zoom = int(header["min_zoom"]), int(header["max_zoom"])
        edges = ("min_lon_e7", "min_lat_e7", "max_lon_e7", "max_lat_e7")
        self.bounds: Bounds | None = tuple(header[e] / 1e7 for e in edges)

    def tile(self, z: int, x: int, y: int) -> tuple[bytes, str] | None:
        data = self._reader.get(z, x, y)
        if data is None:
            return None
        data = gzip.decompress(data) if self._gzip else bytes(data)
        return data, self.media


class FolderSource:
    def __init__(self, path: Path) -> None:
        self.root = path
        zooms = sorted(int(p.name) for p in path.iterdir() if p.is_dir() and p.name.isascii() and p.name.isdigit())
        if not zooms:
            raise ValueError("no {z}/{x}/{y} tiles in the folder")
        self.min_zoom, self.max_zoom = zooms[0], zooms[-1]
        meta = path / "metadata.json"
        bounds = json.loads(meta.read_text(encoding="utf-8")).get("bounds") if meta.is_file() else None
        self.bounds: Bounds | None = tuple(float(v) for v in bounds) if bounds else None

    def tile(self, z: int, x: int, y: int) -> tuple[bytes, str] | None:
        for ext, media in MEDIA.items():
            p = self.root / str(z) / str(x) / f"{y}.{ext}"
            if p.is_file():
                return p.read_bytes(), media
        return None


def open_source(path: Path) -> TileSource:
    """The tile source at ``path``; ConfigError naming ``map.offline_path`` when it cannot be read."""
    try:
        if path.is_dir():
            return FolderSource(path)
        if not path.is_file():
            raise ValueError("no such file or folder")
        with path.open("rb") as f:
            magic = f.read(16)
        if magic.startswith(b"PMTiles"):
            return PmtilesSource(path)
        if magic.startswith(b"SQLite format 3"):
            return MbtilesSource(path)
        raise ValueError("neither an MBTiles (SQLite) nor a PMTiles file")
    except (OSError, ValueError, sqlite3.Error, KeyError) as exc:
        raise ConfigError("config", "map.offline_path", f"{path}: {exc}") from None
