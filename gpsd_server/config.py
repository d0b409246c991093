"""``config.toml`` and the environment -> :class:`gpsd_server.settings.Config`, read once.

Where each value comes from, weakest first:

1. the embedded defaults declared in :mod:`gpsd_server.settings`;
2. the four deployment variables shared with ``tools/services.sh``, the demo,
   the simulator and the tests, so that one set moves everything:
   ``GPSD_STATE`` (state folder: spool, logs; default ``<config folder>/.state``),
   ``GPSD_PG_PORT`` (the embedded database's port, in the default DSN),
   ``GPSD_MQTT_PORT`` (``mqtt.port``), ``GPSD_HTTP_PORT`` (``http.port``) and
   ``GPSD_AMQP_PORT`` (the RabbitMQ node's port in ``cluster.amqp_url``);
3. the config file;
4. ``GPSD_<SECTION>__<KEY>`` for single keys (TOML syntax, bare strings allowed).

A bad file, section, key or value raises ``ConfigError`` naming the file (or
the environment variable), the dotted key and what is allowed; an unknown
key also gets a did-you-mean.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
import typing
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from gpsd_server.errors import ConfigError
from gpsd_server.settings import DERIVED_KEYS, ClusterSettings, Config, DatabaseSettings

__all__ = ["Config", "load", "resolve", "state_path"]

_PATH_RE = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
SHORTHANDS = ("GPSD_STATE", "GPSD_PG_PORT", "GPSD_MQTT_PORT", "GPSD_HTTP_PORT", "GPSD_AMQP_PORT")


def _hints(tp: Any) -> dict[str, Any]:
    return typing.get_type_hints(tp, include_extras=True)


def _allowed(path: str) -> str:
    """Describe what a dotted key accepts, from the annotations."""
    tp: Any = Config
    for part in path.split("."):
        hints = _hints(tp)
        if part not in hints:
            return ""
        tp = hints[part]
    args = typing.get_args(tp)
    if typing.get_origin(tp) is Literal:
        return "allowed: " + ", ".join(repr(a) for a in args)
    if typing.get_origin(tp) is Annotated:
        base, *metas = args
        bits = [getattr(base, "__name__", str(base))]
        for m in metas:
            if isinstance(m, Meta):
                for name, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
                    if getattr(m, name) is not None:
                        bits.append(f"{sym} {getattr(m, name)}")
                if m.pattern:
                    bits.append(f"matching {m.pattern}")
        return "allowed: " + " ".join(bits)
    if isinstance(tp, type):
        if issubclass(tp, msgspec.Struct):
            return "allowed keys: " + ", ".join(f for f in tp.__struct_fields__ if f not in DERIVED_KEYS)
        return f"allowed: {tp.__name__}"
    return ""


def _did_you_mean(path: str) -> str:
    parent, _, key = path.rpartition(".")
    tp: Any = Config
    for part in filter(None, parent.split(".")):
        tp = _hints(tp).get(part)
        if not (isinstance(tp, type) and issubclass(tp, msgspec.Struct)):
            return ""
    close = difflib.get_close_matches(key, [f for f in tp.__struct_fields__ if f not in DERIVED_KEYS], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _convert(raw: dict[str, Any], source: str) -> Config:
    try:
        return msgspec.convert(raw, Config, strict=True)
    except msgspec.ValidationError as exc:
        msg = str(exc)
        m = _PATH_RE.search(msg)
        path = m.group("path") if m else ""
        reason = msg[: m.start()] if m else msg
        unknown = re.match(r"Object contains unknown field `(?P<f>[^`]+)`", reason)
        if unknown:
            path = f"{path}.{unknown['f']}" if path else unknown["f"]
            parent = path.rpartition(".")[0]
            reason = "unknown key" + _did_you_mean(path)
            hint = (
                _allowed(parent)
                if parent
                else "allowed sections: " + ", ".join(f for f in Config.__struct_fields__ if f not in DERIVED_KEYS)
            )
        else:
            # Raised by a __post_init__ as "field: reason".
            own = re.match(r"(?P<f>[a-z_]+): (?P<r>.*)", reason)
            if own and own["f"] in _hints(_section_type(path)):
                path, reason = f"{path}.{own['f']}" if path else own["f"], own["r"]
            hint = _allowed(path)
        raise ConfigError(source, path or "(top level)", f"{reason.strip()}; {hint}" if hint else reason) from None


def _section_type(path: str) -> Any:
    tp: Any = Config
    for part in filter(None, path.split(".")):
        tp = _hints(tp).get(part, tp)
    return tp if isinstance(tp, type) else Config


def _env_overrides(raw: dict[str, Any], environ: typing.Mapping[str, str]) -> list[str]:
    applied = []
    for name, value in sorted(environ.items()):
        if not name.startswith("GPSD_") or "__" not in name:
            continue
        section, _, key = name[5:].lower().partition("__")
        try:
            parsed = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            parsed = value
        raw.setdefault(section, {})
        if not isinstance(raw[section], dict):
            raise ConfigError(f"environment {name}", section, "not a section")
        raw[section][key] = parsed
        applied.append(name)
    return applied


def _port(environ: typing.Mapping[str, str], name: str) -> int | None:
    value = environ.get(name, "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= 65535:
        raise ConfigError(f"environment {name}", name, "must be a port number 1..65535")
    return int(value)


def _shorthands(raw: dict[str, Any], environ: typing.Mapping[str, str]) -> list[str]:
    """The deployment variables, as defaults the file may still override."""
    applied = []
    pg = _port(environ, "GPSD_PG_PORT")
    if pg is not None and "dsn" not in raw.get("database", {}):
        default = DatabaseSettings().dsn
        raw.setdefault("database", {})["dsn"] = re.sub(r":\d+/", f":{pg}/", default, count=1)
        applied.append("GPSD_PG_PORT")
    for name, section in (("GPSD_MQTT_PORT", "mqtt"), ("GPSD_HTTP_PORT", "http")):
        port = _port(environ, name)
        if port is not None and "port" not in raw.get(section, {}):
            raw.setdefault(section, {})["port"] = port
            applied.append(name)
    amqp = _port(environ, "GPSD_AMQP_PORT")
    if amqp is not None and "amqp_url" not in raw.get("cluster", {}):
        default = ClusterSettings().amqp_url
        raw.setdefault("cluster", {})["amqp_url"] = re.sub(r":\d+/", f":{amqp}/", default, count=1)
        applied.append("GPSD_AMQP_PORT")
    return applied


def load(path: str | os.PathLike[str] | None, environ: typing.Mapping[str, str] | None = None) -> Config:
    """Read a config file (or only the defaults when ``path`` is None)."""
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    source = "defaults"
    base_dir = Path.cwd()
    if path is not None:
        p = Path(path)
        source = str(p)
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(source, "(file)", "file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(source, "(file)", f"cannot read: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(source, "(syntax)", f"not valid TOML: {exc}") from None
        base_dir = p.resolve().parent
    for key in DERIVED_KEYS:
        if key in raw:
            raise ConfigError(source, key, "unknown key")
    for section, value in raw.items():
        if not isinstance(value, dict) and section in Config.__struct_fields__:
            raise ConfigError(source, section, "must be a [section] table")
    applied = _shorthands(raw, environ) + _env_overrides(raw, environ)
    raw["base_dir"] = str(base_dir)
    state = environ.get("GPSD_STATE", "").strip()
    raw["state_dir"] = str(Path(state).resolve() if state else base_dir / ".state")
    label = source if not applied else f"{source} (with {', '.join(applied)})"
    cfg = _convert(raw, label)
    try:
        zoneinfo.ZoneInfo(cfg.city.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(label, "city.timezone", "unknown time zone; use an IANA name such as Asia/Shanghai") from None
    if cfg.mqtt.reconnect_max_s < cfg.mqtt.reconnect_min_s:
        raise ConfigError(label, "mqtt.reconnect_max_s", "must be >= mqtt.reconnect_min_s")
    if cfg.database.retry_max_s < cfg.database.retry_min_s:
        raise ConfigError(label, "database.retry_max_s", "must be >= database.retry_min_s")
    if not cfg.database.dsn.startswith(("postgresql://", "postgres://")) and "=" not in cfg.database.dsn:
        raise ConfigError(label, "database.dsn", "expected a postgresql:// URL or a key=value DSN")
    return cfg


def resolve(cfg: Config, rel: str) -> Path:
    """A path from the config, relative to the config file's folder."""
    p = Path(rel)
    return p if p.is_absolute() else Path(cfg.base_dir) / p


def state_path(cfg: Config, *parts: str) -> Path:
    """A path inside the state folder (``GPSD_STATE``, default ``<config folder>/.state``)."""
    return Path(cfg.state_dir).joinpath(*parts)


def spool_path(cfg: Config) -> Path:
    """The track writer's spool: one per MQTT session, whose messages it acknowledges."""
    if cfg.database.spool_path:
        return resolve(cfg, cfg.database.spool_path)
    return state_path(cfg, "spool", f"{cfg.mqtt.client_id.replace('/', '_')}.spool")
