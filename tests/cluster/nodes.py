"""Cluster nodes as subprocesses (``gpsd-server ingest`` / ``gpsd-server api``),
and a websocket listener that unpacks batch frames."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import websockets

from gpsd_server.store.leases import LEASE_NS, held
from tests.fixtures.services import REPO, free_port


def cluster_env(*, tag: str, dsn: str, amqp_port: int, partitions: int, workdir: Path) -> dict[str, str]:
    """Settings every node of one test's cluster shares: its own names on the broker, topics and database."""
    geofences = workdir / "geofences"
    geofences.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPSD_")}
    return {
        **env,
        "PYTHONPATH": str(REPO),
        "GPSD_DATABASE__DSN": dsn,
        "GPSD_CLUSTER__ENGINE": "rabbitmq",
        "GPSD_CLUSTER__AMQP_URL": f"amqp://guest:guest@127.0.0.1:{amqp_port}/",
        "GPSD_CLUSTER__PARTITIONS": str(partitions),
        "GPSD_CLUSTER__EXCHANGE": f"gpsd.ingest.{tag}",
        "GPSD_CLUSTER__QUEUE_PREFIX": f"gpsd.ingest.{tag}.p",
        "GPSD_CLUSTER__HUB_EXCHANGE": f"gpsd.hub.{tag}",
        "GPSD_MQTT__TOPIC_PREFIX": f"f{tag}",
        "GPSD_JT808__TOPIC_PREFIX": f"j{tag}",
        "GPSD_OWNTRACKS__ENABLED": "false",
        "GPSD_GEOFENCES__DIR": str(geofences),
        "GPSD_GEOFENCES__ALLOW_EMPTY": "true",
        "GPSD_DATABASE__FLUSH_INTERVAL_MS": "20",
        "GPSD_INGEST__STATS_LOG_INTERVAL_S": "5",
    }


class Node:
    """One ``python -m gpsd_server ROLE`` with its own state folder, client id and log."""

    def __init__(self, role: str, name: str, env: dict[str, str], workdir: Path) -> None:
        self.role, self.name = role, name
        self.dir = workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.http_port = free_port()
        self.env = {
            **env,
            "GPSD_STATE": str(self.dir / "state"),
            "GPSD_MQTT__CLIENT_ID": name,
            "GPSD_HTTP__PORT": str(self.http_port),
        }
        self.log_path = self.dir / "node.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        with self.log_path.open("ab") as log:
            log.write(b"\n==== start ====\n")
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gpsd_server", self.role], cwd=self.dir, env=self.env, stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 60.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return None

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{self.http}/healthz", timeout=2) as r:
                return dict(json.loads(r.read()))
        except urllib.error.HTTPError as exc:
            return dict(json.loads(exc.read()))
        except OSError:
            return None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def post(url: str, token: str) -> dict[str, Any]:
    req = urllib.request.Request(url, method="POST", data=b"{}", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=5) as r:
        return dict(json.loads(r.read()))


def leases(dsn: str) -> tuple[int, int]:
    """(partitions leased, workers joined) in this database."""
    with psycopg.connect(dsn) as conn:
        return held(conn)


def lease_holders(dsn: str) -> set[str]:
    """application_name of the sessions holding partition leases."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT DISTINCT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.classid = %s AND l.objsubid = 2 AND l.granted",
            (LEASE_NS,),
        ).fetchall()
    return {str(r[0]) for r in rows}


@dataclass
class Desk:
    """A /ws/live client: every alert message it got (batch frames unpacked)."""

    url: str
    alerts: list[dict[str, Any]] = field(default_factory=list)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        async with websockets.connect(self.url, max_size=None) as ws:
            async for raw in ws:
                for msg in self._unpack(json.loads(raw)):
                    if msg.get("type") == "snapshot":
                        self.ready.set()
                    elif msg.get("type") == "alert":
                        self.alerts.append(msg)

    def _unpack(self, msg: dict[str, Any]) -> list[dict[str, Any]]:
        if msg.get("type") != "batch":
            return [msg]
        return [m for inner in msg["messages"] for m in self._unpack(inner)]


async def wait_for(predicate: Any, timeout: float, what: str, *, nodes: list[Node] = ()) -> None:  # type: ignore[assignment]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return
        await asyncio.sleep(0.25)
    logs = "\n".join(f"--- {n.name}\n{n.log_tail()}" for n in nodes)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{logs}")
