"""Fixtures by concern live in tests/fixtures: the real services and a
database per session (services), a server in the test's event loop (server)."""

pytest_plugins = ["tests.fixtures.services", "tests.fixtures.server"]
