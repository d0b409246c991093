"""Headless Chromium (Debian's /usr/bin/chromium, installed by
tools/web_setup.sh) driven by Playwright's async API against the real server
of tests/conftest.py. Playwright's own browser download is never used."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import playwright.async_api as playwright_api  # tools/web_setup.sh installs it
import pytest

from tests.fixtures.server import RunningServer
from tests.fixtures.services import REPO

CHROMIUM = os.environ.get("GPSD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = REPO / "artifacts"
VIEWPORT = {"width": 1600, "height": 900}
CHROMIUM_PRESENT = Path(CHROMIUM).is_file()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM_PRESENT:
        pytest.fail(f"{CHROMIUM} missing: run tools/web_setup.sh (apt-get install -y chromium)")
    async with playwright_api.async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        await b.close()


@pytest.fixture
def web(server: RunningServer) -> RunningServer:
    """The test server with the page mounted (create_app does it once wired;
    until then the test mounts it on the running app)."""
    from gpsd_server.api.web import mount_web

    app = server.server.app
    if not any(getattr(r, "path", None) == "/" for r in app.routes):
        mount_web(app)
    return server


@dataclass
class Page:
    """A Playwright page that records console errors and uncaught exceptions."""

    page: Any
    server: RunningServer
    errors: list[str] = field(default_factory=list)

    async def open(self, role: str | None = "operator") -> None:
        """Load the page logged in as ``role`` (token in localStorage), wait until booted."""
        if role is not None:
            token = self.server.tokens[role]
            await self.page.add_init_script(f"localStorage.setItem('gpsd.token', {token!r})")
        await self.page.goto(self.server.http + "/")
        await self.page.wait_for_function("window.gpsd && document.body.classList.contains('ready')", timeout=15000)
        # Live messages published from now on reach the page: its socket is registered with the hub.
        await self.page.wait_for_function("window.gpsd.liveConnected()", timeout=15000)

    async def js(self, expression: str, arg: Any = None) -> Any:
        return await self.page.evaluate(expression, arg)

    async def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        await self.page.screenshot(path=str(path))
        return path


@pytest.fixture
async def page(browser: Any, web: RunningServer) -> AsyncIterator[Page]:
    # bypass_csp: the helpers' wait_for_function compiles its string with eval, which the
    # page's Content-Security-Policy forbids; tests/api/test_page_csp.py runs the page under it.
    context = await browser.new_context(viewport=VIEWPORT, locale="zh-CN", timezone_id="Asia/Shanghai", bypass_csp=True)
    p = await context.new_page()
    wrapped = Page(p, web)
    p.on("console", lambda m: wrapped.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    p.on("pageerror", lambda e: wrapped.errors.append(f"pageerror: {e}"))
    try:
        yield wrapped
    finally:
        await context.close()
