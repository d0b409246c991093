"""The page's view of JT/T 808 terminals: the health badge in the vehicle
card, and the 12319 dispatch panel following the text message to the patrol
car's terminal until the terminal acknowledges it."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.browser.conftest import Page
from tests.fixtures.server import RunningServer
from tests.fixtures.services import REPO
from tests.helpers import wait_for
from tools.jt808_terminal import SimulatedTerminal, location

CAR, PHONE = "PC-010", "013100000010"


@pytest.fixture
def server_overrides(unique: str, tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "geofences"
    shutil.copytree(REPO / "geofences", folder)
    registry = json.loads((folder / "vehicles.json").read_text(encoding="utf-8"))
    vehicles = registry if isinstance(registry, list) else registry.get("vehicles", registry)
    for v in vehicles if isinstance(vehicles, list) else vehicles.values():
        if v["id"] == CAR:
            v["terminal"] = PHONE
    (folder / "vehicles.json").write_text(json.dumps(registry, ensure_ascii=False), encoding="utf-8")
    return {
        "GPSD_GEOFENCES__DIR": str(folder),
        "GPSD_JT808__ENABLED": "true",
        "GPSD_JT808__HOST": "127.0.0.1",
        "GPSD_JT808__PORT": "0",
        "GPSD_JT808__TOPIC_PREFIX": f"t{unique}-808",
        "GPSD_JT808__COMMAND_POLL_S": "0.1",
        "GPSD_JT808__HEALTH_FLUSH_S": "0.1",
    }


async def online(server: RunningServer) -> SimulatedTerminal:
    gateway = server.server.gateway
    await wait_for(lambda: gateway._server is not None)
    car = SimulatedTerminal(PHONE)
    await car.connect("127.0.0.1", gateway.port)
    await car.authenticate(await car.register(plate="湘A·P010"))
    await car.report(location(time.time() - 2, 112.2005, 28.4505, speed_kmh=8))
    await wait_for(lambda: CAR in server.server.hub.positions, what="the car on the live map")
    await wait_for(lambda: not any(r.dirty for r in server.server.health.records.values()), what="health written")
    return car


async def test_vehicle_card_shows_the_terminal_and_dispatch_follows_its_acknowledgement(page: Page) -> None:
    car = await online(page.server)
    try:
        await page.open("operator")
        await page.js(f"window.gpsd.select({CAR!r})")
        badge = page.page.locator("#card [data-terminal-status]")
        await badge.wait_for()
        assert (await badge.get_attribute("data-terminal-status"), await badge.text_content()) == ("online", "在线")
        assert "JT/T 808-2013" in (await badge.get_attribute("title") or "")

        await page.page.click("button[data-tab=dispatch]")
        await page.page.fill("#dispatch-lon", "112.20")
        await page.page.fill("#dispatch-lat", "28.45")
        await page.page.click("#dispatch-search")
        await page.page.locator(f"#dispatch-list .car[data-vehicle-id='{CAR}']").wait_for()
        await page.page.fill("#dispatch-note", "占道经营")
        await page.page.fill("#dispatch-place", "东门菜场")
        await page.page.click(f"#dispatch-list .car[data-vehicle-id='{CAR}'] input")
        await page.page.click("#dispatch-send")
        header, text = await car.next_command(timeout_s=10)
        assert "占道经营" in text.text and "东门菜场" in text.text  # type: ignore[union-attr]
        await page.page.wait_for_function(
            "['queued','sent'].includes(document.getElementById('dispatch-command').dataset.status)"
        )
        await car.acknowledge(header)
        await page.page.wait_for_function(
            "document.getElementById('dispatch-command').dataset.status === 'acknowledged'", timeout=15000
        )
        shown = await page.page.locator("#dispatch-command").text_content()
        assert shown is not None and "终端已确认" in shown
        await page.screenshot("09-dispatch-terminal")
        assert page.errors == []
    finally:
        await car.close()
