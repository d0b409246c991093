"""Private services and server processes that tests and benchmarks may stop,
restart and kill freely.

:class:`PrivateServices` runs an own PostgreSQL cluster (the same binaries,
TimescaleDB preloaded) and an own Mosquitto (persistence and queue limits as
in tools/services.sh) on free loopback ports under a folder of its own: the
shared services of tools/services.sh serve other runs at the same time and
must never be touched. :class:`ServerProcess` runs ``python -m gpsd_server
run`` against them as a subprocess, so it can be SIGKILLed, and reads its
health and metrics over HTTP.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PG_BIN = Path("/usr/lib/postgresql/15/bin")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
INITDB_ARGS = ("-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync")


def _as_postgres(cmd: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root: the cluster belongs to the postgres user.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _wait_port(port: int, up: bool, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if (s.connect_ex(("127.0.0.1", port)) == 0) == up:
                return
        time.sleep(0.05)
    raise AssertionError(f"port {port} not {'open' if up else 'closed'} after {timeout} s")


class PrivateServices:
    """An own PostgreSQL cluster and Mosquitto broker under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pg_port = free_port()
        self.mqtt_port = free_port()
        self.pg_data = root / "pg"
        self.pg_log = self.pg_data / "server.log"  # the postgres user writes it
        self.mq_dir = root / "mosquitto"

    # -- PostgreSQL ----------------------------------------------------------

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/postgres"

    def dsn(self, db: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}/{db}"

    def pg_init(self) -> None:
        sock = self.root / "pgsock"
        sock.mkdir()
        self.pg_data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.pg_data, "postgres")
            shutil.chown(sock, "postgres")
        subprocess.run(
            _as_postgres([str(PG_BIN / "initdb"), "-D", str(self.pg_data), *INITDB_ARGS]),
            check=True,
            capture_output=True,
        )
        conf = f"""
listen_addresses = '127.0.0.1'
port = {self.pg_port}
unix_socket_directories = '{sock}'
shared_preload_libraries = 'timescaledb'
timescaledb.telemetry_level = off
max_connections = 60
shared_buffers = 64MB
fsync = on
synchronous_commit = on
wal_level = minimal
max_wal_senders = 0
timezone = 'UTC'
log_min_messages = warning
"""
        with (self.pg_data / "postgresql.conf").open("a") as f:
            f.write(conf)

    def pg_start(self) -> None:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.pg_data), "-l", str(self.pg_log), "-w", "start"]),
            check=True,
            capture_output=True,
        )

    def pg_stop(self) -> None:
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.pg_data), "-m", "fast", "-w", "stop"]),
            check=True,
            capture_output=True,
        )

    def create_db(self, name: str) -> str:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.dsn(name)

    # -- Mosquitto -----------------------------------------------------------

    def mq_init(self) -> None:
        (self.mq_dir / "data").mkdir(parents=True)
        # Queue limits as in tools/services.sh: stale persistent sessions must not grow the broker.
        (self.mq_dir / "mosquitto.conf").write_text(
            f"""listener {self.mqtt_port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {self.mq_dir}/data/
autosave_interval 30
pid_file {self.mq_dir}/mosquitto.pid
log_dest file {self.mq_dir}/mosquitto.log
log_type error
log_type warning
max_inflight_messages 1000
max_queued_messages 200000
max_queued_bytes 268435456
persistent_client_expiration 1h
max_packet_size 1048576
set_tcp_nodelay true
"""
        )
        if os.geteuid() == 0:
            for p in (self.mq_dir, self.mq_dir / "data"):
                shutil.chown(p, "mosquitto")

    def mq_pid(self) -> int | None:
        try:
            return int((self.mq_dir / "mosquitto.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def mq_start(self) -> None:
        subprocess.run([MOSQUITTO, "-c", str(self.mq_dir / "mosquitto.conf"), "-d"], check=True)
        _wait_port(self.mqtt_port, up=True)

    def destroy(self) -> None:
        """Stop both at once (end of session: nothing to flush)."""
        self.mq_stop()
        subprocess.run(
            _as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.pg_data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
        )

    def mq_stop(self) -> None:
        """A clean stop (SIGTERM): Mosquitto saves its sessions and queues."""
        pid = self.mq_pid()
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        _wait_port(self.mqtt_port, up=False)


@contextmanager
def private_services(prefix: str) -> Iterator[PrivateServices]:
    """Both services, started under a new temporary folder (``prefix``), and at
    the end stopped and their folder removed, however the block ends."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    root.chmod(0o755)  # the postgres and mosquitto users must reach their folders
    svc = PrivateServices(root)
    try:
        svc.pg_init()
        svc.pg_start()
        svc.mq_init()
        svc.mq_start()
        yield svc
    finally:
        svc.destroy()
        shutil.rmtree(root, ignore_errors=True)


class ServerProcess:
    """``python -m gpsd_server run`` against the private services."""

    def __init__(
        self,
        svc: PrivateServices,
        workdir: Path,
        *,
        db: str,
        tag: str,
        env: dict[str, str],
        make_tokens: Callable[[str, str], dict[str, str]],
    ) -> None:
        self._make_tokens = make_tokens
        self.svc = svc
        self.workdir = workdir
        self.dsn = svc.dsn(db)
        self.tag = tag
        self.prefix = f"f{tag}"
        self.http_port = free_port()
        self.log_path = workdir / "server.log"
        geofences = workdir / "geofences"
        geofences.mkdir(exist_ok=True)
        self.env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            # Its own state folder (spool): never the shared services' one a GPSD_STATE may name.
            "GPSD_STATE": str(workdir / ".state"),
            "GPSD_DATABASE__DSN": self.dsn,
            "GPSD_MQTT__PORT": str(svc.mqtt_port),
            "GPSD_MQTT__CLIENT_ID": f"faults-{tag}",
            "GPSD_MQTT__TOPIC_PREFIX": self.prefix,
            "GPSD_MQTT__DEAD_LETTER_TOPIC": f"{self.prefix}-dead",
            "GPSD_MQTT__RECONNECT_MAX_S": "2",
            "GPSD_HTTP__PORT": str(self.http_port),
            "GPSD_GEOFENCES__DIR": str(geofences),
            "GPSD_GEOFENCES__ALLOW_EMPTY": "true",  # the folder starts empty; tests that need zones write them
            "GPSD_DATABASE__FLUSH_INTERVAL_MS": "50",
            "GPSD_DATABASE__RETRY_MAX_S": "2",
            "GPSD_DATABASE__CONNECT_TIMEOUT_S": "2",
            "GPSD_INGEST__STATS_LOG_INTERVAL_S": "5",
            **env,
        }
        self.env.pop("GPSD_CONFIG", None)
        self.proc: subprocess.Popen[bytes] | None = None
        self.tokens: dict[str, str] = {}
        self.starts = 0

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.http_port}/ws/live?token={self.tokens['viewer']}"

    def start(self, timeout: float = 30.0, *, wait_database: bool = True) -> None:
        """Start and wait until HTTP answers and the broker is connected (and,
        with ``wait_database``, the database is migrated and restored)."""
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"\n==== start {self.starts} ====\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gpsd_server", "run"],
                cwd=self.workdir,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            health = self.health() or {}
            if health.get("mqtt") and (health.get("database") or not wait_database):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"server not ready after {timeout} s:\n{self.log_tail()}")
        if not self.tokens and wait_database:
            self.tokens = self._make_tokens(self.dsn, self.tag)

    def health(self) -> dict[str, object] | None:
        try:
            with urllib.request.urlopen(f"{self.http}/healthz", timeout=2) as r:
                return dict(json.loads(r.read()))
        except urllib.error.HTTPError as exc:
            return dict(json.loads(exc.read()))
        except OSError:
            return None

    def metrics(self) -> dict[str, float]:
        """The unlabelled samples of /metrics (empty when unreachable)."""
        req = urllib.request.Request(
            f"{self.http}/metrics", headers={"Authorization": f"Bearer {self.tokens.get('viewer', '')}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return {}
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, _, value = line.partition(" ")
                out[name] = float(value)
        return out

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful shutdown); returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"server did not stop within {timeout} s:\n{self.log_tail()}") from None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")
