"""The stall banner against a real server process paused with SIGSTOP (and
resumed with SIGCONT), and the basemap switcher with a local PMTiles file."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.browser.conftest import VIEWPORT, Page
from tests.fixtures.server import make_tokens
from tests.fixtures.services import ADMIN_DSN, MQTT_PORT, PG_PORT
from tests.fixtures.tiles import city_tiles, write_pmtiles
from tools.procs import ServerProcess


@dataclass
class SharedServices:
    """The session's broker and database, as tools/procs.ServerProcess reads them."""

    pg_port: int = PG_PORT
    mqtt_port: int = MQTT_PORT

    def dsn(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{db}"


@pytest.fixture
def paused_server(services: None, tmp_path: Path) -> Iterator[ServerProcess]:
    tag = uuid.uuid4().hex[:8]
    db = f"gpsd_test_stall_{tag}"
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    env = {"GPSD_GEOFENCES__ALLOW_EMPTY": "true", "GPSD_DESK__STALL_S": "3", "GPSD_HTTP__WS_HEARTBEAT_S": "1",
           "GPSD_MQTT__PERSISTENT_SESSION": "false"}  # fmt: skip
    srv = ServerProcess(SharedServices(), tmp_path, db=db, tag=tag, env=env, make_tokens=make_tokens)  # type: ignore[arg-type]
    try:
        srv.start()
        yield srv
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            os.kill(srv.proc.pid, signal.SIGCONT)
            srv.proc.terminate()
            srv.proc.wait(30)
        with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


async def test_stall_banner_while_the_server_is_paused(browser: Any, paused_server: ServerProcess) -> None:
    context = await browser.new_context(viewport=VIEWPORT, locale="zh-CN", timezone_id="Asia/Shanghai", bypass_csp=True)
    try:
        p = await context.new_page()
        await p.add_init_script(f"localStorage.setItem('gpsd.token', {paused_server.tokens['operator']!r})")
        await p.goto(paused_server.http + "/")
        await p.wait_for_function("window.gpsd && document.body.classList.contains('ready')", timeout=15000)
        await p.wait_for_function("window.gpsd.liveConnected()", timeout=15000)
        assert not await p.is_visible("#stall-banner")
        assert paused_server.proc is not None
        os.kill(paused_server.proc.pid, signal.SIGSTOP)  # frozen: the socket stays open, nothing arrives
        try:
            await p.locator("#stall-banner").wait_for(state="visible", timeout=15000)
            text = await p.inner_text("#stall-banner")
            assert "实时数据中断" in text and "秒未收到任何数据" in text
            await p.screenshot(path=str(Path(__file__).parents[2] / "artifacts" / "23-stall-banner.png"))
        finally:
            os.kill(paused_server.proc.pid, signal.SIGCONT)
        await p.locator("#stall-banner").wait_for(state="hidden", timeout=15000)
        assert not await p.evaluate("window.gpsd.stalled()")
    finally:
        await context.close()


@pytest.fixture(scope="module")
def tile_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pmtiles(tmp_path_factory.mktemp("tiles") / "city.pmtiles", city_tiles())


@pytest.fixture
def server_overrides(tile_file: Path) -> dict[str, str]:
    return {"GPSD_MAP__BASEMAPS": '["offline", "osm"]', "GPSD_MAP__OFFLINE_PATH": str(tile_file)}


async def loaded_tiles(page: Page) -> int:
    return int(await page.js(
        "[...document.querySelectorAll('img.leaflet-tile-loaded')].filter(i => i.src.includes('/tiles/')).length"
    ))  # fmt: skip


async def test_basemap_presets_switch_with_offline_tiles(page: Page) -> None:
    tile_requests: list[str] = []
    page.page.on("request", lambda r: tile_requests.append(r.url) if "/tiles/" in r.url else None)
    external: list[str] = []
    page.page.on("request", lambda r: external.append(r.url) if "127.0.0.1" not in r.url else None)
    await page.open("viewer")
    assert await page.js("window.gpsd.basemap()") == "offline"
    await page.page.wait_for_function(
        "[...document.querySelectorAll('img.leaflet-tile-loaded')].some(i => i.src.includes('/tiles/'))", timeout=10000
    )
    assert await loaded_tiles(page) > 0 and tile_requests
    assert external == []  # the offline preset needs no network
    await page.screenshot("24-basemap-offline")
    # the switcher: 无底图 -> no tiles, remembered across a reload
    switcher = page.page.locator(".leaflet-top.leaflet-left .leaflet-control-layers")
    await switcher.hover()
    await switcher.locator("label", has_text="无底图").click()
    await page.page.wait_for_function(
        "![...document.querySelectorAll('img.leaflet-tile')].some(i => i.src.includes('/tiles/'))"
    )
    assert await page.js("document.getElementById('map').classList.contains('no-tiles')")
    await page.page.reload()
    await page.page.wait_for_function("document.body.classList.contains('ready')")
    assert await page.js("window.gpsd.basemap()") == "none" and await loaded_tiles(page) == 0
    await switcher.hover()
    await switcher.locator("label", has_text="离线地图").click()
    await page.page.wait_for_function(
        "[...document.querySelectorAll('img.leaflet-tile-loaded')].some(i => i.src.includes('/tiles/'))", timeout=10000
    )
    # the city layers stay above the tiles
    z_city = await page.js("+getComputedStyle(document.querySelector('.leaflet-overlay-pane')).zIndex")
    z_tiles = await page.js("+getComputedStyle(document.querySelector('.leaflet-tile-pane')).zIndex")
    assert z_city > z_tiles
    assert page.errors == []
