"""The ``gpsd-server`` command: run (or, in a ``[cluster]``, ingest and api),
check-config, migrate, token.

``--config`` and ``--log-level`` are accepted before or after the command
(``gpsd-server --config X token create ...`` and ``gpsd-server token create
--config X ...`` mean the same).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from gpsd_server import __version__, config
from gpsd_server.errors import ConfigError, DataError
from gpsd_server.settings import Config

ROLES = ("viewer", "operator", "admin", "company")  # api/auth.py: TOKEN_ROLES (not imported: keeps --help light)


def _default_config() -> str | None:
    """``$GPSD_CONFIG``, else ./config.toml when present, else the defaults."""
    env = os.environ.get("GPSD_CONFIG")
    if env:
        return env
    return "config.toml" if Path("config.toml").is_file() else None


def _load(path: str | None) -> Config:
    try:
        return config.load(path)
    except ConfigError as exc:
        print(f"gpsd-server: invalid configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    from gpsd_server.cityfolder import CityFolder, parse

    cfg = _load(args.config)
    folder = CityFolder(config.resolve(cfg, cfg.geofences.dir))
    try:
        if not folder.folder.is_dir():
            raise DataError(str(folder.folder), "(folder)", "not found: set [geofences] dir")
        city, _ = parse(folder.geofence_files(), folder.vehicles(), label=folder.folder, roads=folder.road_files())
        if not city.zones and not cfg.geofences.allow_empty:
            raise DataError(str(folder.folder), "(folder)", "no zones: nothing would be checked (allow_empty = true)")
    except DataError as exc:
        print(f"gpsd-server: invalid city data: {exc}", file=sys.stderr)
        return 2
    print(f"{args.config or 'defaults'}: OK")
    print(f"  mqtt      {cfg.mqtt.host}:{cfg.mqtt.port} topics {cfg.mqtt.topic_prefix}/+/fix")
    print(f"  database  {_redact(cfg.database.dsn)}")
    print(f"  http      {cfg.http.host}:{cfg.http.port}")
    print(f"  city      {cfg.city.name} ({cfg.city.timezone})")
    print(
        f"  geofences {folder.folder}: {len(city.zones)} zones, {len(city.routes)} routes, "
        f"{len(city.vehicles or {})} vehicles, {len(city.roads)} roads"
    )
    print(f"  state     {cfg.state_dir}")
    return 0


def _redact(dsn: str) -> str:
    if "://" in dsn and "@" in dsn:
        scheme, rest = dsn.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        user = cred.split(":", 1)[0]
        return f"{scheme}://{user}{':***' if ':' in cred else ''}@{host}"
    return dsn


def _serve(args: argparse.Namespace, roles: tuple[str, ...]) -> int:
    cfg = _load(args.config)
    from gpsd_server.app import Server, StartupError  # heavy imports only when running
    from gpsd_server.errors import ClusterError

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await Server(cfg, roles=roles).run(stop)

    try:
        run_bounded(main(), cleanup_s=cfg.database.shutdown_timeout_s + cfg.http.shutdown_timeout_s + 10)
    except StartupError as exc:
        print(f"gpsd-server: cannot start: {exc}", file=sys.stderr)
        return 2
    except ExceptionGroup as group:
        lost = group.subgroup(ClusterError)
        if lost is None:
            raise
        # The engine or the lease session went: exit, the partitions move on.
        print(f"gpsd-server: stopped: {lost.exceptions[0]}", file=sys.stderr)
        return 3
    return 0


CLEANUP_EXIT = 70  # the process gave up waiting for its tasks to end (EX_SOFTWARE)


def run_bounded(main: Coroutine[Any, Any, None], *, cleanup_s: float) -> None:
    """``asyncio.run(main)``, except that once ``main`` has returned or raised,
    the cancelling of the tasks still running may take at most ``cleanup_s``:
    then the process exits with ``CLEANUP_EXIT``. A task that ignores its
    cancellation (seen once after the writer failed, not reproduced) must not
    leave a server hanging half-stopped where a supervisor would restart it."""

    def give_up() -> None:
        print(f"gpsd-server: tasks still running {cleanup_s:g} s after stopping; exiting", file=sys.stderr, flush=True)
        os._exit(CLEANUP_EXIT)

    runner = asyncio.Runner()
    try:
        runner.run(main)
    finally:
        timer = threading.Timer(cleanup_s, give_up)
        timer.daemon = True
        timer.start()
        try:
            runner.close()
        finally:
            timer.cancel()


def cmd_run(args: argparse.Namespace) -> int:
    return _serve(args, ("ingest", "api"))


def cmd_ingest(args: argparse.Namespace) -> int:
    return _serve(args, ("ingest",))


def cmd_api(args: argparse.Namespace) -> int:
    return _serve(args, ("api",))


def cmd_migrate(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    import psycopg

    from gpsd_server.store.schema import migrate

    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(cfg.database.dsn) as conn:
            info = await migrate(conn, chunk_interval=cfg.database.chunk_interval)
        print(f"applied: {', '.join(info.applied) or 'nothing (up to date)'}; timescaledb: {info.timescaledb}")

    asyncio.run(main())
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    import psycopg

    from gpsd_server.api.auth import create_token
    from gpsd_server.store import tokens
    from gpsd_server.store.schema import migrate
    from gpsd_server.store.vehicles import companies

    async def main() -> int:
        async with await psycopg.AsyncConnection.connect(cfg.database.dsn, autocommit=True) as conn:
            await migrate(conn, chunk_interval=cfg.database.chunk_interval)
            if args.action == "create":
                company = getattr(args, "company", None)
                if args.role == "company" and company and company not in await companies(conn):
                    print(
                        f"gpsd-server: warning: no vehicle of the registry (as last synced to the database)"
                        f" belongs to {company!r}; the token sees nothing until one does",
                        file=sys.stderr,
                    )
                try:
                    print(await create_token(conn, name=args.name, role=args.role, company=company))
                except ValueError as exc:
                    print(f"gpsd-server: --company: {exc}", file=sys.stderr)
                    return 2
            elif args.action == "list":
                for t in await tokens.all_tokens(conn):
                    revoked = "revoked" if t.revoked_at else ""
                    print(
                        f"{t.id:>5}  {t.role:<8}  {t.name:<24}  {t.created_at:%Y-%m-%d %H:%M}  {revoked:<7}"
                        f"  {t.company or ''}".rstrip()
                    )
            elif await tokens.revoke(conn, args.id):
                print(f"revoked {args.id}")
            else:
                print(f"gpsd-server: no active token {args.id}", file=sys.stderr)
                return 1
        return 0

    return asyncio.run(main())


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """Options every command takes; on a command they override the top level's."""
    default = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    parser.add_argument(
        "--config",
        "-c",
        default=default(_default_config()),
        help="config file (default: $GPSD_CONFIG, else ./config.toml if present, else built-in defaults)",
    )
    parser.add_argument(
        "--log-level", default=default(os.environ.get("GPSD_LOG_LEVEL", "INFO")), help="DEBUG, INFO, WARNING"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpsd-server", description="Real-time GPS monitoring server for urban-management control rooms."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, func, text in (
        ("run", cmd_run, "run the server: MQTT ingest, database writer, HTTP API and websockets"),
        ("ingest", cmd_ingest, "run an ingest worker of a [cluster]: partitions of the fleet, rules, database writer"),
        ("api", cmd_api, "run an API node of a [cluster]: HTTP API, websockets and the page, fed over the broker"),
        ("check-config", cmd_check_config, "validate a config file and its city; exits 2 naming file, key and reason"),
        ("migrate", cmd_migrate, "apply database migrations and exit"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        _common(p, top=False)
        p.set_defaults(func=func)
    tok = sub.add_parser("token", help="create, list or revoke API tokens", description="manage API tokens")
    _common(tok, top=False)
    tok.set_defaults(func=cmd_token)
    actions = tok.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a token and print it (shown only once)")
    _common(create, top=False)
    create.add_argument("--name", required=True, help="who or what uses the token")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--company", help="role company: the registry's company the token is bound to (required)")
    _common(actions.add_parser("list", help="list tokens (never their values)"), top=False)
    revoke = actions.add_parser("revoke", help="revoke a token by id")
    _common(revoke, top=False)
    revoke.add_argument("id", type=int)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
