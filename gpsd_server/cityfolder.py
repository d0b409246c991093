"""The city's folder (geofences and vehicles), read and written in one place,
and the keeper that loads it off the event loop and swaps it in atomically.

Every ``*.geojson`` directly in the folder and ``vehicles.json`` make the
city; ``network/*.geojson`` is the road layer, which only names places. A load parses the
files, validates the whole city with the pure loader and builds its projected
geometry (zone index, corridors; slow for dense outlines) in a worker thread;
only the swap runs on the event loop. A failed load raises ``DataError`` and
the city in force stays. Uploads are validated as the whole city they would
produce before anything is written, then written atomically (temporary file,
fsync, rename) and loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

from gpsd_server.core.city import City, load_city
from gpsd_server.core.gazetteer import Gazetteer
from gpsd_server.core.geo import CityGeometry
from gpsd_server.core.history_city import CityShapes
from gpsd_server.core.places import Places
from gpsd_server.core.roadnet import RoadNetwork
from gpsd_server.errors import DataError

log = logging.getLogger(__name__)

VEHICLES_FILE = "vehicles.json"
NETWORK_DIR = "network"
EMPTY_GEOJSON = b'{"type":"FeatureCollection","features":[]}'


@dataclass(frozen=True, slots=True)
class CityData:
    city: City
    geojson: bytes  # every feature of every file, for the map
    files: tuple[str, ...]
    geometry: CityGeometry | None = None  # the engine's projected city
    shapes: CityShapes | None = None  # the same, as history reads it
    places: Places | None = None  # names for where alerts happen
    roads: RoadNetwork | None = None  # 12319 cases: road-aware ETA
    gazetteer: Gazetteer | None = None  # 12319 cases: addresses typed by the operator

    def summary(self) -> dict[str, Any]:
        c = self.city
        return {
            "zones": len(c.zones), "routes": len(c.routes), "markers": len(c.markers),
            "vehicles": len(c.vehicles or {}), "files": sorted(Path(f).name for f in self.files),
        }  # fmt: skip


def empty() -> CityData:
    return CityData(City(vehicles={}), EMPTY_GEOJSON, ())


@dataclass(frozen=True, slots=True)
class FileInfo:
    name: str
    bytes: int
    modified: datetime


class CityFolder:
    """The folder as name -> bytes, and atomic writes into it. Blocking I/O."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def geofence_files(self) -> dict[str, bytes]:
        if not self.folder.is_dir():
            return {}
        out = {}
        for p in sorted(self.folder.glob("*.geojson")):
            if p.is_file():
                try:
                    out[p.name] = p.read_bytes()
                except OSError as exc:
                    raise DataError(str(p), "(file)", f"cannot read: {exc.strerror}") from None
        return out

    def vehicles(self) -> bytes | None:
        path = self.folder / VEHICLES_FILE
        return path.read_bytes() if path.is_file() else None

    def road_files(self) -> dict[str, bytes]:
        network = self.folder / NETWORK_DIR
        if not network.is_dir():
            return {}
        return {f"{NETWORK_DIR}/{p.name}": p.read_bytes() for p in sorted(network.glob("*.geojson")) if p.is_file()}

    def listing(self) -> list[FileInfo]:
        paths = sorted(self.folder.glob("*.geojson")) if self.folder.is_dir() else []
        if (self.folder / VEHICLES_FILE).is_file():
            paths.append(self.folder / VEHICLES_FILE)
        return [
            FileInfo(p.name, (st := p.stat()).st_size, datetime.fromtimestamp(st.st_mtime, UTC))
            for p in paths
            if p.is_file()
        ]

    def write(self, name: str, data: bytes) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # Not *.geojson, so a load never sees a half-written file.
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.folder / name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def restore(self, name: str, data: bytes | None) -> None:
        if data is None:
            with contextlib.suppress(FileNotFoundError):
                (self.folder / name).unlink()
        else:
            self.write(name, data)


def parse(
    geofences: dict[str, bytes],
    vehicles: bytes | None,
    *,
    label: Path | None = None,
    roads: dict[str, bytes] | None = None,
) -> tuple[City, bytes]:
    """The pure loader over a city's files, and the map's FeatureCollection.
    Errors name the file under ``label`` (a folder), or bare (an upload)."""

    def named(name: str) -> str:
        return name if label is None else str(label / name)

    files = [(named(name), text) for name, text in sorted(geofences.items())]
    try:
        city = load_city(
            files,
            (named(VEHICLES_FILE), vehicles) if vehicles is not None else None,
            [(named(name), text) for name, text in sorted((roads or {}).items())],
        )
    except (TypeError, AttributeError, RecursionError) as exc:
        # A loader gap, not the data's fault alone: refuse the data, keep serving.
        log.warning("geofence loader failed: %r", exc)
        raise DataError(str(label or "(upload)"), "(file)", "data not understood") from None
    features: list[Any] = []
    for _, text in files:
        features.extend(msgspec.json.decode(text).get("features", []))
    return city, msgspec.json.encode({"type": "FeatureCollection", "features": features})


GeometryBuilder = Callable[[City], CityGeometry]
Swap = Callable[[CityData], None]


class CityKeeper:
    """Holds the city in force; loads and replaces it without stalling the loop."""

    def __init__(
        self,
        folder: CityFolder,
        build_geometry: GeometryBuilder,
        *,
        on_swap: list[Swap] | None = None,
        after_swap: Callable[[CityData], Awaitable[None]] | None = None,
    ) -> None:
        self.folder = folder
        self._build_geometry = build_geometry
        self._on_swap = on_swap or []
        self._after_swap = after_swap
        self._lock = asyncio.Lock()  # one change of the folder at a time
        self.current = empty()
        self.error: str | None = None

    def shapes(self) -> CityShapes:
        """The city in force as history reads it (built on first use for a city never loaded)."""
        data = self.current
        if data.shapes is None:
            geometry = self._build_geometry(data.city)
            data = self.current = CityData(
                data.city, data.geojson, data.files, geometry, CityShapes(data.city, geometry)
            )
        assert data.shapes is not None
        return data.shapes

    def _load(self, geofences: dict[str, bytes] | None = None, vehicles: bytes | None = None) -> CityData:
        """Read (unless given: an upload), parse, validate and project: the slow part, in a thread."""
        label = None
        if geofences is None:
            if self.folder.folder.exists() and not self.folder.folder.is_dir():
                raise DataError(str(self.folder.folder), "(folder)", "not a folder")
            geofences, vehicles = self.folder.geofence_files(), self.folder.vehicles()
            label = self.folder.folder
        city, geojson = parse(geofences, vehicles, label=label, roads=self.folder.road_files())
        geometry = self._build_geometry(city)
        files = tuple(str(self.folder.folder / n) for n in sorted(geofences))
        if vehicles is not None:
            files += (str(self.folder.folder / VEHICLES_FILE),)
        places = Places(city, geometry.projection)
        roads, gazetteer = RoadNetwork(city.roads, geometry.projection), Gazetteer(city)
        return CityData(city, geojson, files, geometry, CityShapes(city, geometry), places, roads, gazetteer)

    async def load(self) -> CityData:
        """(Re)load the folder; on error the previous city stays and the error is kept."""
        async with self._lock:
            return await self._reload()

    async def _reload(self) -> CityData:
        try:
            data = await asyncio.to_thread(self._load)
        except DataError as exc:
            self.error = str(exc)
            log.error("geofences not loaded, keeping the previous set: %s", exc)
            raise
        self._swap(data)
        return data

    def _swap(self, data: CityData) -> None:
        self.current, self.error = data, None
        for swap in self._on_swap:
            swap(data)
        # The city's many long-lived objects need not be scanned by every
        # garbage collection (measured: ~20% of engine time without this).
        gc.collect()
        gc.freeze()
        c = data.city
        log.info(
            "city loaded from %s: %d zones, %d routes, %d markers, %d vehicles",
            self.folder.folder, len(c.zones), len(c.routes), len(c.markers), len(c.vehicles or {}),
        )  # fmt: skip

    async def swapped(self, data: CityData) -> None:
        if self._after_swap is not None:
            await self._after_swap(data)

    async def replace(self, name: str, data: bytes | None) -> CityData:
        """Validate the city with file ``name`` replaced by ``data`` (None: removed),
        then write it and swap it in. Raises ``DataError`` (nothing written)
        when the city would not load; ``FileNotFoundError`` to remove a missing file."""
        async with self._lock:
            geofences = await asyncio.to_thread(self.folder.geofence_files)
            vehicles = await asyncio.to_thread(self.folder.vehicles)
            if data is None and name != VEHICLES_FILE and name not in geofences:
                raise FileNotFoundError(name)
            if name == VEHICLES_FILE:
                vehicles = data
            elif data is None:
                geofences.pop(name, None)
            else:
                geofences[name] = data
            # The whole city as it would be: nothing is written unless it loads.
            loaded = await asyncio.to_thread(self._load, geofences, vehicles)
            await asyncio.to_thread(self.folder.restore, name, data)
            self._swap(loaded)
        await self.swapped(loaded)
        return loaded
