"""Basemap presets and the offline tile server: a PMTiles archive, an MBTiles
file and a tile folder, read back through /tiles; /api/map lists the presets;
bad [map] keys stop the start naming the key."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gpsd_server import config
from gpsd_server.errors import ConfigError
from gpsd_server.store.tiles import open_source
from tests.fixtures.server import RunningServer
from tests.fixtures.tiles import city_tiles, write_folder, write_mbtiles, write_pmtiles


@pytest.fixture(scope="module")
def tile_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pmtiles(tmp_path_factory.mktemp("tiles") / "city.pmtiles", city_tiles())


@pytest.fixture
def server_overrides(tile_file: Path) -> dict[str, str]:
    return {"GPSD_MAP__BASEMAPS": '["offline", "osm", "amap", "tianditu"]', "GPSD_MAP__OFFLINE_PATH": str(tile_file),
            "GPSD_MAP__TIANDITU_KEY": "test-key"}  # fmt: skip


async def test_presets_and_offline_tiles(server: RunningServer) -> None:
    tiles = city_tiles()
    (z, x, y), data = next(iter(tiles.items()))
    async with httpx.AsyncClient(base_url=server.http) as http:
        m = (await http.get("/api/map", headers=server.headers())).json()
        presets = {b["id"]: b for b in m["basemaps"]}
        assert [b["id"] for b in m["basemaps"]] == ["offline", "osm", "amap", "tianditu"]
        assert presets["offline"]["layers"][0]["url"] == "/tiles/{z}/{x}/{y}"
        assert presets["offline"]["layers"][0]["max_native_zoom"] == 14
        assert presets["amap"]["crs"] == "gcj02" and presets["tianditu"]["crs"] == "wgs84"
        assert len(presets["tianditu"]["layers"]) == 2 and "tk=test-key" in presets["tianditu"]["layers"][1]["url"]
        assert m["stall_s"] == 15.0
        # Tiles are public (an <img> sends no bearer token), like the page's files.
        r = await http.get(f"/tiles/{z}/{x}/{y}")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content == data
        r = await http.get(f"/tiles/{z}/{x}/{y}.png")
        assert r.status_code == 200 and r.content == data
        assert (await http.get("/tiles/3/0/0")).status_code == 404  # outside the set: Leaflet leaves it blank
        bad = [("/tiles/2/9/0", "x"), ("/tiles/2/0/x", "y"), ("/tiles/99/0/0", "z")]
        bad += [("/tiles/1/0/%C2%B2", "y"), ("/tiles/1/0/" + "1" * 5000, "y")]  # were 500s
        for path, parameter in bad:
            r = await http.get(path)
            assert (r.status_code, r.json()["parameter"]) == (400, parameter), path


def test_mbtiles_and_folder_read_the_same_tiles(tmp_path: Path) -> None:
    tiles = city_tiles(range(11, 13))
    for source in (
        open_source(write_mbtiles(tmp_path / "c.mbtiles", tiles)),
        open_source(write_folder(tmp_path / "f", tiles)),
    ):
        assert (source.min_zoom, source.max_zoom) == (11, 12)
        for key, data in tiles.items():
            found = source.tile(*key)
            assert found is not None and found == (data, "image/png")
        assert source.tile(11, 0, 0) is None


def test_bad_map_keys_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        config.load(None, {"GPSD_MAP__BASEMAPS": '["tianditu"]'})
    assert e.value.key == "map.tianditu_key"
    with pytest.raises(ConfigError) as e:
        config.load(None, {"GPSD_MAP__BASEMAPS": '["google"]'})
    assert e.value.key == "map.basemaps[0]"
    with pytest.raises(ConfigError) as e:
        config.load(None, {"GPSD_MAP__BASEMAPS": '["offline"]'})
    assert e.value.key == "map.offline_path"
    (tmp_path / "junk.mbtiles").write_bytes(b"not a tile file")
    with pytest.raises(ConfigError) as e:
        open_source(tmp_path / "junk.mbtiles")
    assert e.value.key == "map.offline_path" and "junk.mbtiles" in str(e.value)
