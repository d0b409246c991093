"""Reading the city (geofences and vehicles) from its folder.

The pure loader in ``core.city`` validates; this driver reads the files: every
``*.geojson`` directly in the folder (sub-folders such as ``network/`` are
not geofences) and ``vehicles.json``. A failed load raises ``DataError`` and
the caller keeps the set it had.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from gpsd_server.core.city import City, load_city
from gpsd_server.errors import DataError

VEHICLES_FILE = "vehicles.json"


@dataclass(frozen=True, slots=True)
class CityData:
    city: City
    geojson: bytes  # every feature of every file, for the map
    files: tuple[str, ...]

    def place_names(self) -> dict[str, str]:
        names = {z.id: z.name for z in self.city.zones}
        names.update({r.id: r.name for r in self.city.routes})
        return names


def empty() -> CityData:
    return CityData(City(vehicles={}), b'{"type":"FeatureCollection","features":[]}', ())


def load_dir(folder: Path) -> CityData:
    """Load a city folder; a missing folder is an empty city (no geofences)."""
    if not folder.exists():
        return empty()
    if not folder.is_dir():
        raise DataError(str(folder), "(folder)", "not a folder")
    paths = sorted(folder.glob("*.geojson"))
    texts: list[tuple[str, bytes]] = []
    for p in paths:
        try:
            texts.append((str(p), p.read_bytes()))
        except OSError as exc:
            raise DataError(str(p), "(file)", f"cannot read: {exc.strerror}") from None
    vehicles_path = folder / VEHICLES_FILE
    vehicles = None
    if vehicles_path.is_file():
        vehicles = (str(vehicles_path), vehicles_path.read_bytes())
    city = load_city(texts, vehicles)
    features: list[Any] = []
    for _, text in texts:
        features.extend(msgspec.json.decode(text).get("features", []))
    collection = msgspec.json.encode({"type": "FeatureCollection", "features": features})
    return CityData(city, collection, tuple(p for p, _ in texts) + ((vehicles[0],) if vehicles else ()))
