"""The cases tab in headless Chromium against the real server: file a case
by clicking the map, dispatch the proposed car, take it to closed; a case
filed elsewhere appears live; viewers see no buttons."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.browser.conftest import Page
from tests.fixtures.server import RunningServer
from tests.helpers import publish, wait_for

PLACE = (112.3585, 28.5855)
CARS = {"PC-001": (112.3600, 28.5890), "PC-002": (112.3720, 28.6010), "PC-003": (112.3400, 28.5600)}


@pytest.fixture
def server_overrides(own_database: str) -> dict[str, str]:
    """A database of this module's own: the patrol cars it moves (and the cases
    it files) must not become other tests' restored positions."""
    return {"GPSD_DATABASE__DSN": own_database}


async def cars_online(server: RunningServer) -> None:
    now = time.time()
    await publish(
        [
            (f"{server.prefix}/{vid}/fix", json.dumps({"ts": now, "lon": lon, "lat": lat, "speed_kmh": 25}).encode())
            for vid, (lon, lat) in CARS.items()
        ]
    )
    await wait_for(lambda: all(v in server.server.hub.positions for v in CARS), what="patrol cars online")


async def click_map_at(page: Page, lon: float, lat: float) -> None:
    x, y = await page.js(
        "([lon, lat]) => { const a = window.gpsd.app;"
        " const p = a.map.latLngToContainerPoint(a.toDisplayLatLng(lon, lat)); return [p.x, p.y]; }",
        [lon, lat],
    )
    box = await page.page.locator("#map").bounding_box()
    await page.page.mouse.click(box["x"] + x, box["y"] + y)


async def act(page: Page, action: str, comment: str, state: str) -> None:
    await page.page.click(f"#case-actions button[data-action={action}]")
    await page.page.fill("#modal-comment", comment)
    await page.page.click("#modal-ok")
    await page.page.locator(f"#case-detail[data-state={state}]").wait_for()


async def test_file_dispatch_and_close_a_case_from_the_page(page: Page) -> None:
    await cars_online(page.server)
    async with httpx.AsyncClient(base_url=page.server.http, headers=page.server.headers("operator")) as http:
        body = {"category": "muck_spill", "lon": PLACE[0], "lat": PLACE[1]}  # its pin is where the next one is filed
        assert (await http.post("/api/cases", json=body)).status_code == 201
    await page.open("operator")
    await page.page.click("button[data-tab=cases]")
    await page.js(
        "([lon, lat]) => { const a = window.gpsd.app;"
        " a.map.setView(a.toDisplayLatLng(lon, lat), 15, {animate: false}); }",
        list(PLACE),
    )
    await page.page.click("#case-new")
    await page.page.locator("#case-form").wait_for()
    await page.page.locator(".case-pin").first.wait_for()
    await click_map_at(page, *PLACE)  # the form is in picking mode: the pin there is the place, not a link
    await page.page.wait_for_function("document.getElementById('case-place').dataset.ready === '1'")
    place = await page.page.locator("#case-place").text_content()
    assert place is not None and "网格" in place
    await page.page.select_option("#case-category-input", "night_market")
    await page.page.select_option("#case-priority-input", "urgent")
    await page.page.fill("#case-address", "东门夜市")
    await page.page.fill("#case-description", "夜市摊点占用人行道")
    await page.page.fill("#case-reporter", "张先生 13900000000")
    await page.page.click("#case-submit")
    await page.page.locator("#case-detail[data-state=accepted]").wait_for()
    await page.page.locator("#case-proposal .car[data-vehicle-id='PC-001']").wait_for()
    first = await page.page.locator("#case-proposal .car").first.get_attribute("data-vehicle-id")
    assert first == "PC-001"
    assert "路网" in (await page.page.locator("#case-proposal .car").first.text_content() or "")
    # The case's own live update re-renders the card (under load it arrived after the
    # proposal and wiped it: CI waited 30 s for PC-001): the proposal stays.
    await page.js(
        "() => { document.getElementById('case-proposal').dataset.old = '1';"
        " const p = window.gpsd.app.cases, id = Number(document.getElementById('case-detail').dataset.caseId);"
        " p.upsert({...p.cases.get(id), updated_at: new Date(Date.now() + 1000).toISOString()}); }"
    )
    await page.page.locator("#case-proposal:not([data-old])").wait_for(state="attached")
    assert await page.page.locator("#case-proposal .car[data-vehicle-id='PC-001']").count() == 1
    await page.page.click("#case-dispatch")
    await page.page.locator("#case-detail[data-state=dispatched]").wait_for()
    await page.page.locator("#case-timeline .ev[data-kind=dispatched]").wait_for()
    await page.screenshot("10-case-dispatched")
    for action, comment, state in (
        ("arrive", "车辆无定位，电话确认到场", "arrived"),
        ("handle", "摊点已劝离", "handled"),
        ("callback", "市民表示满意", "called_back"),
        ("close", "结案", "closed"),
    ):
        await act(page, action, comment, state)
    kinds = await page.page.locator("#case-timeline .ev").evaluate_all("els => els.map(e => e.dataset.kind)")
    assert kinds == ["created", "dispatched", "arrived", "handled", "called_back", "closed"]
    assert "校验完整" in (await page.page.locator("#case-detail").text_content() or "")
    case_id = int(await page.page.locator("#case-detail").get_attribute("data-case-id") or 0)
    async with httpx.AsyncClient(base_url=page.server.http, headers=page.server.headers("viewer")) as http:
        stored = (await http.get(f"/api/cases/{case_id}")).json()["case"]
    assert (stored["state"], stored["category"], stored["priority"], stored["vehicle_id"]) == (
        "closed", "night_market", "urgent", "PC-001",
    )  # fmt: skip
    await page.page.click("#case-view-report")
    await page.page.locator("#case-report-steps").wait_for()
    steps = await page.page.locator("#case-report-steps").text_content()
    assert steps is not None and "派遣" in steps and "回访" in steps
    assert page.errors == []


async def test_cases_arrive_live_and_viewers_only_read(page: Page) -> None:
    await page.open("viewer")
    await page.page.click("button[data-tab=cases]")
    assert await page.page.locator("#case-new").is_hidden()
    async with httpx.AsyncClient(base_url=page.server.http, headers=page.server.headers("operator")) as http:
        body = {"category": "muck_spill", "priority": "high", "lon": PLACE[0], "lat": PLACE[1], "address": "辐射3路"}
        case = (await http.post("/api/cases", json=body)).json()
    row = page.page.locator(f"#case-list .case-row[data-case-id='{case['id']}']")
    await row.wait_for()
    assert "渣土撒漏" in (await row.text_content() or "")
    badge = await page.page.locator("#case-badge").text_content()
    assert badge is not None and int(badge) >= 1
    await row.click()
    await page.page.locator("#case-detail[data-state=accepted]").wait_for()
    assert await page.page.locator("#case-actions").count() == 0
    assert page.errors == []
