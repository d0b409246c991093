"""``config.toml`` -> frozen, typed settings, read once at start.

Every section is a frozen ``msgspec.Struct`` whose defaults are the embedded
defaults (the private services started by ``tools/services.sh``). A file may
set any subset of keys. Environment variables ``GPSD_<SECTION>__<KEY>``
override single keys (values in TOML syntax, bare strings allowed), which is
how tests and containers point the server elsewhere.

A bad file, section, key or value raises ``ConfigError`` naming the file (or
the environment variable), the dotted key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tomllib
import typing
import zoneinfo
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from gpsd_server.core.settings import RuleSettings
from gpsd_server.errors import ConfigError

Port = Annotated[int, Meta(ge=1, le=65535)]
Positive = Annotated[float, Meta(gt=0)]
PositiveInt = Annotated[int, Meta(ge=1)]
NonNegative = Annotated[float, Meta(ge=0)]


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class CitySettings(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: str = "Demo City"
    timezone: str = "Asia/Shanghai"


class MqttSettings(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Port = 18830
    username: str = ""
    password: str = ""
    tls: bool = False
    ca_file: str = ""
    client_id: str = "gpsd-server"
    topic_prefix: Annotated[str, Meta(pattern=r"^[^#+/][^#+]*$")] = "fleet"
    qos: Literal[0, 1] = 1
    persistent_session: bool = True
    keepalive_s: Annotated[int, Meta(ge=5, le=3600)] = 30
    reconnect_min_s: Positive = 0.5
    reconnect_max_s: Positive = 30.0
    dead_letter_topic: str = "gpsd/rejected"
    max_queued_incoming: PositiveInt = 100000
    receive_maximum: Annotated[int, Meta(ge=10, le=65535)] = 10000


class DatabaseSettings(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    dsn: str = "postgresql://postgres@127.0.0.1:55432/gpsd"
    batch_max_rows: Annotated[int, Meta(ge=1, le=100000)] = 5000
    flush_interval_ms: Annotated[int, Meta(ge=0, le=60000)] = 5
    queue_max_rows: Annotated[int, Meta(ge=100)] = 200000
    connect_timeout_s: Positive = 5.0
    retry_min_s: Positive = 0.5
    retry_max_s: Positive = 10.0
    chunk_interval: Literal["1 hour", "6 hours", "1 day", "7 days"] = "1 day"
    spool_path: str = ""
    spool_max_mb: Annotated[int, Meta(ge=1)] = 1024
    spool_fsync_ms: Annotated[int, Meta(ge=1, le=10000)] = 50
    write_timeout_s: Positive = 30.0
    shutdown_timeout_s: Positive = 30.0


class HttpSettings(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8080  # 0 = any free port (tests)
    ws_max_clients: PositiveInt = 500
    ws_send_queue: Annotated[int, Meta(ge=10)] = 2000
    ws_snapshot_max: PositiveInt = 100000


class IngestSettings(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    max_payload_bytes: Annotated[int, Meta(ge=256, le=16 * 1024 * 1024)] = 262144
    max_batch_items: Annotated[int, Meta(ge=1, le=100000)] = 1000
    max_future_s: NonNegative = 300.0
    max_age_days: Positive = 30.0
    reject_log_interval_s: Positive = 10.0
    stats_log_interval_s: Positive = 10.0
    cycle_max_messages: Annotated[int, Meta(ge=1)] = 5000
    cycle_max_bytes: Annotated[int, Meta(ge=1024)] = 1048576


class GeofenceSettings(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    dir: str = "geofences"


class HistorySettings(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    max_range_days: Annotated[float, Meta(gt=0, le=366)] = 31.0
    stop_radius_m: Annotated[float, Meta(gt=0, le=5000)] = 50.0
    stop_min_s: Annotated[float, Meta(gt=0, le=86400)] = 300.0
    moving_kmh: Positive = 5.0
    gap_s: Positive = 300.0
    simplify_max_points: PositiveInt = 1_000_000
    retention_days: NonNegative = 0.0
    retention_check_s: Annotated[float, Meta(ge=60)] = 3600.0
    retention_batch_rows: Annotated[int, Meta(ge=100, le=100000)] = 5000
    replay_max_vehicles: Annotated[int, Meta(ge=1, le=1000)] = 50
    replay_max_range_days: Annotated[float, Meta(gt=0, le=31)] = 7.0
    replay_page_rows: Annotated[int, Meta(ge=100, le=100000)] = 2000
    replay_max_alerts: PositiveInt = 5000
    replay_clock_s: Annotated[float, Meta(ge=0.1, le=60)] = 1.0


class Jt808Settings(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = False
    host: str = "0.0.0.0"
    port: Annotated[int, Meta(ge=0, le=65535)] = 7611
    auth_code: str = "gpsd-808"
    require_auth: bool = True
    idle_timeout_s: Positive = 180.0
    max_connections: PositiveInt = 20000
    max_bad_frames: PositiveInt = 20
    max_frame_bytes: Annotated[int, Meta(ge=64, le=65536)] = 4096
    auto_register: bool = False
    topic_prefix: Annotated[str, Meta(pattern=r"^[^#+/][^#+]*$")] = "jt808"


class OwnTracksSettings(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True
    topic_prefix: Annotated[str, Meta(pattern=r"^[^#+/][^#+]*$")] = "owntracks"
    max_accuracy_m: Positive = 500.0


class DispatchSettings(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    city_speed_kmh: Positive = 25.0
    road_factor: Annotated[float, Meta(ge=1.0, le=3.0)] = 1.3
    online_max_age_s: Positive = 600.0


class MapSettings(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    tile_url: str = ""
    tile_crs: Literal["wgs84", "gcj02", "bd09"] = "wgs84"
    tile_attribution: str = ""
    center: tuple[float, float] | None = None
    zoom: Annotated[int, Meta(ge=1, le=20)] = 12


class Config(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    city: CitySettings = msgspec.field(default_factory=CitySettings)
    mqtt: MqttSettings = msgspec.field(default_factory=MqttSettings)
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    ingest: IngestSettings = msgspec.field(default_factory=IngestSettings)
    geofences: GeofenceSettings = msgspec.field(default_factory=GeofenceSettings)
    jt808: Jt808Settings = msgspec.field(default_factory=Jt808Settings)
    owntracks: OwnTracksSettings = msgspec.field(default_factory=OwnTracksSettings)
    map: MapSettings = msgspec.field(default_factory=MapSettings)
    dispatch: DispatchSettings = msgspec.field(default_factory=DispatchSettings)
    history: HistorySettings = msgspec.field(default_factory=HistorySettings)
    # Rule thresholds: keys are the fields of gpsd_server.core.settings.RuleSettings.
    rules: dict[str, Any] = msgspec.field(default_factory=dict)
    # The folder of the config file; relative paths in it resolve from here.
    base_dir: str = "."


_PATH_RE = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")


def _allowed(path: str) -> str:
    """Describe what a dotted key accepts, from the annotations."""
    tp: Any = Config
    for part in path.split("."):
        hints = typing.get_type_hints(tp, include_extras=True)
        if part not in hints:
            return ""
        tp = hints[part]
    args = typing.get_args(tp)
    if typing.get_origin(tp) is Literal:
        return "allowed: " + ", ".join(repr(a) for a in args)
    if typing.get_origin(tp) is Annotated:
        base, *metas = args
        bits = [base.__name__]
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
            return "allowed keys: " + ", ".join(f for f in tp.__struct_fields__)
        return f"allowed: {tp.__name__}"
    return ""


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
            reason = "unknown key"
            hint = (
                _allowed(parent)
                if parent
                else "allowed sections: " + ", ".join(f for f in Config.__struct_fields__ if f != "base_dir")
            )
        else:
            hint = _allowed(path)
        raise ConfigError(source, path or "(top level)", f"{reason}; {hint}" if hint else reason) from None


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
    if "base_dir" in raw:
        raise ConfigError(source, "base_dir", "unknown key")
    applied = _env_overrides(raw, environ)
    raw["base_dir"] = str(base_dir)
    label = source if not applied else f"{source} (with {', '.join(applied)})"
    cfg = _convert(raw, label)
    try:
        zoneinfo.ZoneInfo(cfg.city.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(label, "city.timezone", "unknown time zone; use an IANA name such as Asia/Shanghai") from None
    if cfg.mqtt.reconnect_max_s < cfg.mqtt.reconnect_min_s:
        raise ConfigError(label, "mqtt.reconnect_max_s", "must be >= mqtt.reconnect_min_s")
    if not cfg.database.dsn.startswith(("postgresql://", "postgres://")) and "=" not in cfg.database.dsn:
        raise ConfigError(label, "database.dsn", "expected a postgresql:// URL or a key=value DSN")
    rule_settings(cfg, label)
    return cfg


def rule_settings(cfg: Config, source: str = "config") -> RuleSettings:
    """The ``[rules]`` section as the engine's RuleSettings; names a bad key."""
    allowed = [f.name for f in dataclasses.fields(RuleSettings)]
    for key in cfg.rules:
        if key not in allowed:
            raise ConfigError(source, f"rules.{key}", "unknown key; allowed keys: " + ", ".join(allowed))
    try:
        return msgspec.convert(cfg.rules, RuleSettings, strict=False)
    except msgspec.ValidationError as exc:
        m = _PATH_RE.search(str(exc))
        if m:
            key, reason = m.group("path").split(".")[0].split("[")[0], str(exc)[: m.start()]
        else:  # raised by RuleSettings.__post_init__ as "field: reason"
            key, _, reason = str(exc).partition(":")
        raise ConfigError(source, f"rules.{key}", reason.strip()) from None
    except ValueError as exc:
        key, _, reason = str(exc).partition(":")
        raise ConfigError(source, f"rules.{key}", reason.strip() or str(exc)) from None


def resolve(cfg: Config, rel: str) -> Path:
    """A path from the config, relative to the config file's folder."""
    p = Path(rel)
    return p if p.is_absolute() else Path(cfg.base_dir) / p
