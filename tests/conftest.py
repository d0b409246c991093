"""Fixtures by concern live in tests/fixtures: the real services and a
database per session (services), a server in the test's event loop (server).

Every test that needs the real broker or database (the ``services`` fixture,
directly or through ``database``/``server``) is marked ``integration``, so
``pytest -m "not integration"`` runs the pure and unit tests alone.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.fixtures.services", "tests.fixtures.server"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "services" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
