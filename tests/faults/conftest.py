"""Fault tests stop, restart and kill their own services and server process
(tools/procs.py): once per session a private PostgreSQL and Mosquitto in a
temporary folder, and per test a server subprocess with its own database."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.fixtures.server import make_tokens
from tools import procs
from tools.procs import PrivateServices, ServerProcess


@pytest.fixture(scope="session")
def private_services() -> Iterator[PrivateServices]:
    with procs.private_services("gpsd-faults-") as svc:
        yield svc


@pytest.fixture
def services_up(private_services: PrivateServices) -> PrivateServices:
    """The private services, running (a failed test may have left one stopped)."""
    svc = private_services
    try:
        psycopg.connect(svc.admin_dsn, connect_timeout=2).close()
    except psycopg.OperationalError:
        svc.pg_start()
    pid = svc.mq_pid()
    try:
        if pid is None:
            raise ProcessLookupError
        os.kill(pid, 0)
    except ProcessLookupError:
        svc.mq_start()
    return svc


@pytest.fixture
def server_process(services_up: PrivateServices, tmp_path: Path) -> Iterator[ServerProcess]:
    """A not yet started server subprocess with its own database, topics and client id."""
    tag = uuid.uuid4().hex[:8]
    db = f"faults_{tag}"
    services_up.create_db(db)
    # An empty geofences folder (ServerProcess allows it): the fault tests check storage, not rules.
    srv = ServerProcess(services_up, tmp_path, db=db, tag=tag, env={}, make_tokens=make_tokens)
    try:
        yield srv
    finally:
        if srv.proc is not None and srv.proc.poll() is None:
            srv.proc.kill()
            srv.proc.wait(10)


@pytest.fixture
def make_server(services_up: PrivateServices, tmp_path: Path) -> Iterator[Any]:
    """Like ``server_process``, with extra GPSD_* settings: ``make_server({...})``."""
    made: list[ServerProcess] = []

    def make(env: dict[str, str] | None = None) -> ServerProcess:
        tag = uuid.uuid4().hex[:8]
        db = f"faults_{tag}"
        services_up.create_db(db)
        workdir = tmp_path / tag
        workdir.mkdir()
        srv = ServerProcess(services_up, workdir, db=db, tag=tag, env=env or {}, make_tokens=make_tokens)
        made.append(srv)
        return srv

    try:
        yield make
    finally:
        for srv in made:
            if srv.proc is not None and srv.proc.poll() is None:
                srv.proc.kill()
                srv.proc.wait(10)
