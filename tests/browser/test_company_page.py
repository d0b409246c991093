"""A company account in headless Chromium: the map, the alert desk and the
reports tab show its own vehicles only (company B's ids, plates and name are
nowhere on the page), no 12319 dispatch or cases; and /docs with no network:
Swagger UI renders from local files and "Authorize" takes a token."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.browser.conftest import Page
from tests.browser.test_supervisor import set_date, wait_report
from tests.fixtures.companies import NIGHT, Company, city_folder, companies_for, company_tokens, go_live, store_history
from tests.fixtures.server import RunningServer


@pytest.fixture
def companies(unique: str) -> tuple[Company, Company]:
    return companies_for(unique)


@pytest.fixture
def server_overrides(own_database: str, tmp_path: Path, companies: tuple[Company, Company]) -> dict[str, str]:
    return {"GPSD_DATABASE__DSN": own_database, "GPSD_GEOFENCES__DIR": str(city_folder(tmp_path, companies))}


@pytest.fixture
async def company_page(page: Page, companies: tuple[Company, Company]) -> AsyncIterator[Page]:
    server: RunningServer = page.server
    store_history(server.dsn, companies)
    await go_live(server, companies)
    await company_tokens(server, companies)
    server.tokens["company-a"] = companies[0].token
    yield page


def leaks(b: Company, text: str) -> list[str]:
    return [m for m in b.markers() if re.search(re.escape(m) + r"(?![0-9A-Za-z-])", text)]


async def test_a_company_sees_only_its_own_vehicles_on_map_desk_and_reports(
    company_page: Page, companies: tuple[Company, Company]
) -> None:
    page, (a, b) = company_page, companies
    await page.open("company-a")
    assert await page.js("window.gpsd.app.user.company") == a.name
    assert "企业" in await page.page.inner_text("#user") and a.name in await page.page.inner_text("#user")
    assert not await page.page.is_visible("#company-filter")  # one company: nothing to choose
    # The map: A's two vehicles, from the list and the live snapshot, and no other.
    await page.page.wait_for_function("window.gpsd.vehicleCount() >= 2")
    await asyncio.sleep(1.0)  # live frames that would bring more
    assert sorted(await page.js("[...window.gpsd.app.store.vehicles.keys()]")) == sorted(a.vehicles)
    companies_offered = await page.js("[...document.querySelectorAll('#company-filter option')].map(o => o.value)")
    assert b.name not in companies_offered and a.name in companies_offered
    # No 12319 cases or dispatch for a company; no acknowledging ([desk] company_may_ack is off).
    assert not await page.page.is_visible(".tabs button[data-tab=cases]")
    assert not await page.page.is_visible(".tabs button[data-tab=dispatch]")
    # The alert desk: A's three open alerts.
    rows = page.page.locator("#alert-list .alert-row")
    await page.page.wait_for_function("document.querySelectorAll('#alert-list .alert-row').length >= 3")
    texts = await rows.all_inner_texts()  # the three stored, and what the live fixes raised (zone, curfew)
    assert all(a.plates[0] in t or a.plates[1] in t for t in texts), texts
    desk = await page.page.inner_text("#tab-alerts")
    assert a.plates[0] in desk and not leaks(b, desk)
    assert not await page.page.is_visible("#alert-bulk")
    assert not await page.page.locator("#alert-list .actions").first.is_visible()
    await page.js("(id) => window.gpsd.select(id)", a.muck)
    await page.page.wait_for_selector("#card:not([hidden])")
    await asyncio.sleep(1.0)  # the fly-to
    await page.screenshot("company-map")  # README: docs/screenshots/company.png
    assert not leaks(b, await page.page.inner_text("body"))
    # The reports: the night's mileage, permits and violations are A's.
    await page.page.click("#views button[data-view=reports]")
    await wait_report(page, "mileage")
    kinds = await page.js("[...document.querySelectorAll('#report-kinds button')].map(b => b.dataset.report)")
    assert "dispatches" not in kinds and "mileage" in kinds
    day = NIGHT.astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
    await set_date(page, "#report-day", day)
    await wait_report(page, "mileage")
    await page.page.locator("#report-table tr", has_text=a.plates[0]).wait_for()
    for kind, selector in (("mileage", "#report-day"), ("permits", "#report-day"), ("violations", "#report-to")):
        await page.page.click(f"#report-kinds button[data-report={kind}]")
        await wait_report(page, kind)
        if selector == "#report-to":
            await set_date(page, "#report-from", day)
            await set_date(page, "#report-to", day)
        else:
            await set_date(page, selector, day)
        await wait_report(page, kind)
        await page.page.locator("#report-table tr", has_text=a.muck).first.wait_for()
        table = await page.page.inner_text("#view-reports")
        assert a.muck in table and not leaks(b, table), (kind, leaks(b, table))
    await page.screenshot("company-reports")
    assert page.errors == []


async def test_docs_render_offline_and_authorize_takes_a_token(page: Page) -> None:
    """/docs with every request off this server refused: Swagger UI from local
    files; Authorize with a token; "Try it out" on /api/me answers 200 with the
    token's name."""
    server = page.server
    outside: list[str] = []

    async def only_local(route: object) -> None:
        request = route.request  # type: ignore[attr-defined]
        if request.url.startswith(server.http):
            await route.continue_()  # type: ignore[attr-defined]
        else:
            outside.append(request.url)
            await route.abort()  # type: ignore[attr-defined]

    await page.page.context.route("**/*", only_local)
    await page.page.goto(server.http + "/docs")
    await page.page.wait_for_selector(".swagger-ui .information-container .title", timeout=15000)
    assert "gpsd-server" in await page.page.inner_text(".swagger-ui .information-container .title")
    await page.page.click("button.authorize")
    dialog = page.page.locator(".dialog-ux .modal-ux")
    await dialog.locator("input[type=text], input[type=password]").first.fill(server.tokens["viewer"])
    await dialog.locator("button.authorize").click()
    await dialog.locator("button.close-modal").click()
    op = page.page.locator(".opblock-get", has=page.page.locator("[data-path='/api/me']")).first
    await op.locator(".opblock-summary").first.click()
    execute = op.locator("button.execute")
    await op.locator("button.try-out__btn").wait_for()
    if not await execute.is_visible():  # "Try it out" is on by default here (docs.js); else turn it on
        await op.locator("button.try-out__btn").click()
    async with page.page.expect_response(lambda r: r.url.endswith("/api/me")) as answer:
        await execute.click()
    response = await answer.value
    assert response.status == 200
    assert (await response.request.all_headers())["authorization"] == f"Bearer {server.tokens['viewer']}"
    body = op.locator(".live-responses-table tbody .response-col_status").first
    await body.wait_for()
    assert "200" in await body.inner_text()
    assert (await response.json())["role"] == "viewer"
    assert outside == [], outside
    await page.screenshot("docs-authorized")
