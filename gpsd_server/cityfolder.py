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
import multiprocessing
import os
import tempfile
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from gpsd_server.core.city import City, load_city
from gpsd_server.core.gazetteer import Gazetteer
from gpsd_server.core.geo import CityGeometry
from gpsd_server.core.history_city import CityShapes
from gpsd_server.core.places import Places
from gpsd_server.core.roadnet import RoadNetwork
from gpsd_server.errors import DataError

log = logging.getLogger(__name__)

T = TypeVar("T")
VEHICLES_FILE = "vehicles.json"
NETWORK_DIR = "network"
# Niceness of the work that builds a city (parse, projection, index): below the
# loop's thread, which serves HTTP and ingest meanwhile.
BACKGROUND_NICE = 10
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


def count_positions(coordinates: Any) -> int:
    """Positions (innermost ``[lon, lat, ...]`` arrays) in a GeoJSON coordinates value."""
    count = 0
    stack = [coordinates]
    while stack:
        node = stack.pop()
        if not isinstance(node, list) or not node:
            continue
        if isinstance(node[0], (int, float)):
            count += 1
        else:
            stack.extend(node)
    return count


def feature_vertices(doc: Any) -> list[tuple[str, int]]:
    """(feature id or ``#index``, positions) of every feature of a decoded FeatureCollection."""
    features = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(features, list):
        return []
    out = []
    for index, feature in enumerate(features):
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        if not isinstance(geometry, dict):
            continue
        props = feature.get("properties")
        fid = props.get("id") if isinstance(props, dict) else None
        out.append((fid if isinstance(fid, str) and fid else f"#{index}", count_positions(geometry.get("coordinates"))))
    return out


@dataclass(frozen=True, slots=True)
class VertexBudget:
    """Positions allowed in one feature and in the whole city (``[geofences]``)."""

    per_feature: int = 100_000
    per_city: int = 1_000_000

    def check(self, files: list[tuple[str, bytes]]) -> int:
        """Raise ``DataError`` naming the file and the feature that exceeds a budget
        (the city's: the feature where the total passes it); returns the total."""
        total = 0
        for name, text in files:
            try:
                doc = msgspec.json.decode(text)
            except (msgspec.DecodeError, RecursionError):
                continue  # the loader names the problem
            for fid, n in feature_vertices(doc):
                if n > self.per_feature:
                    raise DataError(
                        name, fid, f"{n} vertices in one feature (budget {self.per_feature}: "
                        "[geofences] max_feature_vertices)",
                    )  # fmt: skip
                total += n
                if total > self.per_city:
                    raise DataError(
                        name, fid, f"more than {self.per_city} vertices in the city "
                        "([geofences] max_city_vertices)",
                    )  # fmt: skip
        return total


def _parse_job(
    geofences: dict[str, bytes],
    vehicles: bytes | None,
    roads: dict[str, bytes],
    label: str | None,
    changed: str | None,
    budget: VertexBudget,
) -> tuple[Any, ...]:
    """Budget and parse, for a worker: ``("ok", city, geojson)`` or
    ``("error", file, item, reason)`` (a pickled DataError would lose its fields)."""
    folder = Path(label) if label is not None else None
    with contextlib.suppress(OSError):
        os.nice(BACKGROUND_NICE)
    try:
        order = sorted(geofences, key=lambda n: (n == changed, n))
        budget.check([(n if folder is None else str(folder / n), geofences[n]) for n in order])
        city, geojson = parse(geofences, vehicles, label=folder, roads=roads)
    except DataError as exc:
        return ("error", exc.file, exc.item, exc.reason)
    return ("ok", city, geojson)


async def _in_background_thread(job: Callable[..., T], *args: Any) -> T:
    """Run ``job`` in a thread of its own at a lower CPU priority (Linux: per
    thread), so on a busy machine the loop's thread is scheduled first."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def run() -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
        try:
            result = job(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            loop.call_soon_threadsafe(_settle, future, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    threading.Thread(target=run, name="city-build", daemon=True).start()
    return await future


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


async def _in_worker_process(job: Callable[..., tuple[Any, ...]], *args: Any) -> tuple[Any, ...]:
    """Run ``job`` in a process of its own (forked from a clean forkserver, so
    no thread of ours is copied) and return its result; the process ends after."""
    ctx = multiprocessing.get_context("forkserver")
    pool = ProcessPoolExecutor(max_workers=1, mp_context=ctx)
    try:
        # submit() starts the process (and the forkserver, the first time): blocking work
        return await asyncio.wrap_future(await asyncio.to_thread(pool.submit, job, *args))
    finally:
        await asyncio.to_thread(pool.shutdown)


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
        budget: VertexBudget | None = None,
    ) -> None:
        self.folder = folder
        self.budget = budget or VertexBudget()
        self._build_geometry = build_geometry
        self._on_swap = on_swap or []
        self._after_swap = after_swap
        self._lock = asyncio.Lock()  # one change of the folder at a time
        self.current = empty()
        self.error: str | None = None
        self._serving = False  # after the first load: parse in a worker process

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

    def _read(self) -> tuple[dict[str, bytes], bytes | None]:
        if self.folder.folder.exists() and not self.folder.folder.is_dir():
            raise DataError(str(self.folder.folder), "(folder)", "not a folder")
        return self.folder.geofence_files(), self.folder.vehicles()

    def _build(self, city: City, geojson: bytes, names: list[str], vehicles: bool) -> CityData:
        """Project the city (zone index, corridors): GEOS work that releases the GIL, in a thread."""
        geometry = self._build_geometry(city)
        files = tuple(str(self.folder.folder / n) for n in sorted(names))
        if vehicles:
            files += (str(self.folder.folder / VEHICLES_FILE),)
        places = Places(city, geometry.projection)
        roads, gazetteer = RoadNetwork(city.roads, geometry.projection), Gazetteer(city)
        return CityData(city, geojson, files, geometry, CityShapes(city, geometry), places, roads, gazetteer)

    async def _load(
        self, geofences: dict[str, bytes] | None = None, vehicles: bytes | None = None, changed: str | None = None
    ) -> CityData:
        """Read (unless given: an upload), parse, validate and project the city.

        Parsing builds Python objects from the JSON and shapely geometries from
        them in long calls that hold the GIL (about 0.4 s for a 100,000-vertex
        polygon, in steps of up to 150 ms); from a thread that would stall the
        loop just as well. So once the server serves (every load after the
        first), it runs in a worker process and only the finished city comes
        back (unpickling it takes ~15 ms). ``changed`` (an upload's file) is
        counted last, so a city over its vertex budget names it."""
        label = None
        if geofences is None:
            files, vehicles = await asyncio.to_thread(self._read)
            label = str(self.folder.folder)
        else:
            files = geofences
        roads = await asyncio.to_thread(self.folder.road_files)  # the road layer names places; not uploaded
        job = (files, vehicles, roads, label, changed, self.budget)
        if self._serving:
            result = await _in_worker_process(_parse_job, *job)
        else:
            result = await asyncio.to_thread(_parse_job, *job)
        if result[0] == "error":
            raise DataError(*result[1:])
        city, geojson = result[1], result[2]
        return await _in_background_thread(self._build, city, geojson, list(files), vehicles is not None)

    async def load(self) -> CityData:
        """(Re)load the folder; on error the previous city stays and the error is kept."""
        async with self._lock:
            return await self._reload()

    async def _reload(self) -> CityData:
        try:
            data = await self._load()
        except DataError as exc:
            self.error = str(exc)
            log.error("geofences not loaded, keeping the previous set: %s", exc)
            raise
        finally:
            self._serving = True
        self._swap(data)
        return data

    def _swap(self, data: CityData) -> None:
        self.current, self.error = data, None
        for swap in self._on_swap:
            swap(data)
        # The city's many long-lived objects need not be scanned by every
        # garbage collection (measured: ~20% of engine time without this).
        # Only the young generations are collected first: a full collection
        # scans every live object with the GIL held, so from any thread it
        # stalls the loop; the replaced city is freed by reference counting
        # (it holds no cycles).
        gc.collect(1)
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
            loaded = await self._load(geofences, vehicles, name)
            await asyncio.to_thread(self.folder.restore, name, data)
            self._swap(loaded)
        await self.swapped(loaded)
        return loaded
