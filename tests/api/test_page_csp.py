"""The control-room page under its real Content-Security-Policy, in headless
Chromium: it boots, signs in, opens its live socket and shows a vehicle, with
no console error and no CSP violation. (The browser tests in tests/browser
bypass the policy for their eval-based helpers; this one polls from Python.)"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import playwright.async_api as playwright_api
import pytest

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, CHROMIUM_PRESENT
from tests.fixtures.server import RunningServer
from tests.helpers import publish

pytestmark = pytest.mark.browser


async def until(page: Any, expression: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await page.evaluate(expression):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not true after {timeout} s: {expression}")


async def test_the_page_runs_under_its_policy(server: RunningServer) -> None:
    if not CHROMIUM_PRESENT:
        pytest.fail(f"{CHROMIUM} missing: run tools/web_setup.sh (apt-get install -y chromium)")
    errors: list[str] = []
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 800})
            page = await context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            token = server.tokens["operator"]
            await page.add_init_script(f"localStorage.setItem('gpsd.token', {token!r})")
            response = await page.goto(server.http + "/")
            assert response is not None and "script-src 'self'" in response.headers["content-security-policy"]
            await until(page, "window.gpsd && document.body.classList.contains('ready')")
            await until(page, "window.gpsd.liveConnected()")
            vid = f"{server.prefix}-csp"
            body = json.dumps({"ts": time.time(), "lon": 112.95, "lat": 28.23, "speed_kmh": 20.0})
            await publish([(f"{server.prefix}/{vid}/fix", body.encode())])
            await until(page, f"!!window.gpsd.vehicle({vid!r})", timeout=10)
        finally:
            await browser.close()
    violations = [e for e in errors if "Content Security Policy" in e or "Refused to" in e]
    assert not violations, violations
    assert not errors, errors
