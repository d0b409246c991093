"""Shared fixtures. Integration tests use the real Mosquitto and PostgreSQL
started by tools/services.sh (``make test`` starts them; this file starts
them too when they are not running). Nothing here mocks either."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

REPO = Path(__file__).resolve().parent.parent
PG_PORT = int(os.environ.get("GPSD_PG_PORT", "55432"))
MQTT_PORT = int(os.environ.get("GPSD_MQTT_PORT", "18830"))
ADMIN_DSN = f"postgresql://postgres@127.0.0.1:{PG_PORT}/postgres"
# One database per test session, so sessions running side by side (several
# engineers, CI) never drop each other's tables.
TEST_DB = f"gpsd_test_{os.getpid()}"
TEST_DSN = f"postgresql://postgres@127.0.0.1:{PG_PORT}/{TEST_DB}"


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def services() -> None:
    """The real broker and database, started by the project's own script."""
    if not (_port_open(PG_PORT) and _port_open(MQTT_PORT)):
        subprocess.run(["bash", str(REPO / "tools" / "services.sh"), "start"], check=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def database(services: None) -> Iterator[str]:
    """A fresh database for this test session (dropped after); returns its DSN."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        for (name,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'gpsd\\_test\\_%'"):
            if not _pid_alive(int(name.rsplit("_", 1)[1])):  # left by a killed run
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f"DROP DATABASE IF EXISTS {TEST_DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {TEST_DB}")
    yield TEST_DSN
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {TEST_DB} WITH (FORCE)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    server: Any  # gpsd_server.app.Server
    prefix: str
    http: str
    dsn: str
    tokens: dict[str, str]

    def headers(self, role: str = "viewer") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def ws_url(self, path: str = "/ws/live", role: str = "viewer") -> str:
        return self.http.replace("http://", "ws://") + f"{path}?token={self.tokens[role]}"


def make_tokens(dsn: str, tag: str) -> dict[str, str]:
    """One token per role, inserted the way `gpsd-server token create` does."""
    from gpsd_server.api.auth import ROLES, digest, new_token

    tokens = {role: new_token() for role in ROLES}
    with psycopg.connect(dsn, autocommit=True) as conn:
        for role, token in tokens.items():
            conn.execute(
                "INSERT INTO api_tokens (name, role, digest) VALUES (%s, %s, %s)",
                (f"{role}-{tag}", role, digest(token)),
            )
    return tokens


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture
def server_overrides() -> dict[str, str]:
    """Extra GPSD_* settings for the ``server`` fixture; override per module."""
    return {}


@pytest.fixture
async def server(database: str, unique: str, server_overrides: dict[str, str]) -> AsyncIterator[RunningServer]:
    """A server in this event loop with its own topic prefix and client id."""
    from gpsd_server import config
    from gpsd_server.app import Server

    env = {
        "GPSD_DATABASE__DSN": database,
        "GPSD_MQTT__PORT": str(MQTT_PORT),
        "GPSD_MQTT__CLIENT_ID": f"test-{unique}",
        "GPSD_MQTT__TOPIC_PREFIX": f"t{unique}",
        "GPSD_MQTT__PERSISTENT_SESSION": "false",
        "GPSD_MQTT__DEAD_LETTER_TOPIC": f"t{unique}-dead",
        "GPSD_HTTP__PORT": "0",
        "GPSD_DATABASE__FLUSH_INTERVAL_MS": "20",
        "GPSD_INGEST__REJECT_LOG_INTERVAL_S": "1",
        **server_overrides,
    }
    cfg = config.load(None, env)
    srv = Server(cfg)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(srv.run(stop, ready))
    waiter = asyncio.create_task(ready.wait())
    done, _ = await asyncio.wait([task, waiter], timeout=30, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        await task
    assert ready.is_set(), "server did not become ready"
    await asyncio.wait_for(srv.ingest.connected.wait(), 10)
    try:
        tokens = make_tokens(database, unique)
        yield RunningServer(srv, f"t{unique}", f"http://127.0.0.1:{srv.http_port}", database, tokens)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.fixture
def db(database: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(database, autocommit=True) as conn:
        yield conn
