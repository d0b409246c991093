"""Every setting of gpsd-server, declared once, in its unit.

Each ``[section]`` of ``config.toml`` is one frozen struct here; its field
defaults are the embedded defaults. Components take their own section (or a
few named fields of it) and nothing else. The names carry the unit: ``_s``
seconds, ``_ms`` milliseconds, ``_m`` metres, ``_kmh`` km/h, ``_mb`` MiB.

This module is pure (the core imports :class:`RuleSettings`): reading the
file and the environment is :mod:`gpsd_server.config`'s job, which also
fills the few defaults that depend on where the embedded services run
(``GPSD_PG_PORT``, ``GPSD_MQTT_PORT``, ``GPSD_HTTP_PORT``, ``GPSD_STATE``).
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

Port = Annotated[int, Meta(ge=1, le=65535)]
AnyPort = Annotated[int, Meta(ge=0, le=65535)]  # 0 = any free port (tests)
Positive = Annotated[float, Meta(gt=0)]
PositiveInt = Annotated[int, Meta(ge=1)]
NonNegative = Annotated[float, Meta(ge=0)]
TopicPrefix = Annotated[str, Meta(pattern=r"^[^#+/][^#+]*$")]

# The ports and database name of the embedded services (tools/services.sh).
EMBEDDED_PG_PORT = 55432
EMBEDDED_MQTT_PORT = 18830
EMBEDDED_HTTP_PORT = 8080

# JT/T 808 alarm bits raised as alerts by default. Left out on purpose: the
# terminal's own overspeed (1), pre-warnings (13, 14), area/route/segment
# alarms (20-23) -- the server's rules decide those from positions.
DEFAULT_ALARM_BITS: tuple[int, ...] = (0, 2, 3, 4, 5, 6, 7, 8, 18, 19, 26, 27, 28, 29, 30)


class Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every section: frozen, keyword-only, unknown keys refused."""


class CitySettings(Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    name: str = "Demo City"
    timezone: str = "Asia/Shanghai"  # IANA zone: schedules, permits, daily reports


class MqttSettings(Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Port = EMBEDDED_MQTT_PORT
    username: str = ""
    password: str = ""
    tls: bool = False
    ca_file: str = ""
    client_id: str = "gpsd-server"
    protocol: Literal[4, 5] = 5  # 5 = MQTT 5, 4 = MQTT 3.1.1
    topic_prefix: TopicPrefix = "fleet"
    qos: Literal[0, 1] = 1
    persistent_session: bool = True
    session_expiry_s: Annotated[int, Meta(ge=0, le=4294967295)] = 3600
    keepalive_s: Annotated[int, Meta(ge=5, le=3600)] = 30
    reconnect_min_s: Positive = 0.5
    reconnect_max_s: Positive = 30.0
    dead_letter_topic: str = "gpsd/rejected"
    max_buffered_mb: Annotated[int, Meta(ge=1, le=4096)] = 16  # received payload not yet taken by ingest
    receive_maximum: Annotated[int, Meta(ge=10, le=65535)] = 10000


class DatabaseSettings(Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    dsn: str = f"postgresql://postgres@127.0.0.1:{EMBEDDED_PG_PORT}/gpsd"
    batch_rows: Annotated[int, Meta(ge=1, le=100000)] = 5000  # a batch is full (capped at batch_max_rows)
    batch_max_rows: Annotated[int, Meta(ge=1, le=100000)] = 25000  # past batch_rows: half of the queue, up to this
    flush_interval_ms: Annotated[int, Meta(ge=0, le=60000)] = 50
    queue_max_rows: Annotated[int, Meta(ge=100)] = 200000
    connect_timeout_s: Positive = 5.0
    retry_min_s: Positive = 0.5
    retry_max_s: Positive = 10.0
    chunk_interval: Literal["1 hour", "6 hours", "1 day", "7 days"] = "1 day"
    spool_path: str = ""  # empty: <state>/spool/<mqtt.client_id>.spool
    spool_max_mb: Annotated[float, Meta(gt=0)] = 1024.0
    spool_fsync_ms: Annotated[int, Meta(ge=1, le=10000)] = 50
    write_timeout_s: Positive = 30.0
    shutdown_timeout_s: Positive = 30.0
    pool_max_size: Annotated[int, Meta(ge=1, le=100)] = 8  # API connections
    health_check_s: Annotated[float, Meta(ge=0.1, le=60)] = 1.0  # background probe; /healthz reads its answer
    request_wait_s: Annotated[float, Meta(gt=0, le=60)] = 5.0  # a request waits this long for a pool connection


class HttpSettings(Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    host: str = "127.0.0.1"
    port: AnyPort = EMBEDDED_HTTP_PORT
    ws_max_clients: PositiveInt = 500
    ws_send_queue: Annotated[int, Meta(ge=10)] = 2000
    ws_snapshot_max: PositiveInt = 100000
    limit_concurrency: Annotated[int, Meta(ge=10, le=1_000_000)] = 1000  # open HTTP + websocket connections
    header_timeout_s: Annotated[float, Meta(gt=0, le=300)] = 10.0  # request line + headers complete within
    timeout_keep_alive_s: Annotated[int, Meta(ge=1, le=3600)] = 5  # idle keep-alive connection closed after
    backlog: Annotated[int, Meta(ge=16, le=65535)] = 2048  # listen() queue
    refused_log_interval_s: Positive = 10.0  # refusals are logged at most once per interval
    token_check_s: Annotated[float, Meta(ge=0.1, le=60)] = 1.0  # revocations take effect within this
    shutdown_timeout_s: Positive = 5.0  # at shutdown, requests still running after this are cut
    ws_flush_ms: Annotated[int, Meta(ge=0, le=10000)] = 100  # one frame of positions per client per interval
    ws_compression: bool = False  # permessage-deflate: compresses every frame once per client
    ws_heartbeat_s: Annotated[float, Meta(ge=0.5, le=60)] = 5.0
    """A quiet /ws/live carries a heartbeat this often, so the page tells a quiet night from a stalled server."""


class IngestSettings(Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    max_payload_bytes: Annotated[int, Meta(ge=256, le=16 * 1024 * 1024)] = 262144
    max_batch_items: Annotated[int, Meta(ge=1, le=100000)] = 1000
    max_future_s: NonNegative = 300.0
    max_age_days: Positive = 30.0
    reject_log_interval_s: Positive = 10.0
    stats_log_interval_s: Positive = 10.0
    cycle_max_messages: Annotated[int, Meta(ge=1)] = 5000
    cycle_max_bytes: Annotated[int, Meta(ge=1024)] = 1048576


class GeofenceSettings(Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    dir: str = "geofences"  # relative to the config file's folder
    allow_empty: bool = False  # start (and pass check-config) with no zones at all
    max_feature_vertices: Annotated[int, Meta(ge=4, le=10_000_000)] = 100_000  # positions in one feature
    max_city_vertices: Annotated[int, Meta(ge=4, le=100_000_000)] = 1_000_000  # positions in every file together


class HistorySettings(Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    max_range_days: Annotated[float, Meta(gt=0, le=366)] = 31.0
    stop_radius_m: Annotated[float, Meta(gt=0, le=5000)] = 50.0
    stop_min_s: Annotated[float, Meta(gt=0, le=86400)] = 300.0
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


class Jt808Settings(Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = False
    host: str = "0.0.0.0"
    port: AnyPort = 7611
    auth_code: str = "gpsd-808"  # handed out on register; "" accepts any code
    require_auth: bool = True
    idle_timeout_s: Positive = 180.0
    max_connections: PositiveInt = 20000
    max_bad_frames: PositiveInt = 20
    max_frame_bytes: Annotated[int, Meta(ge=64, le=65536)] = 4096
    publish_timeout_s: Positive = 10.0
    write_timeout_s: Positive = 10.0
    auto_register: bool = False
    topic_prefix: TopicPrefix = "jt808"
    # Terminals as they are in the field, bounded connections, commands (docs/terminals.md).
    max_connections_per_address: PositiveInt = 64
    fd_reserve: Annotated[int, Meta(ge=16)] = 256
    auth_timeout_s: Positive = 30.0
    max_garbage_bytes: Annotated[int, Meta(ge=1024, le=16 * 1024 * 1024)] = 16384
    max_reassembly_bytes: Annotated[int, Meta(ge=1024, le=16 * 1024 * 1024)] = 65536
    read_chunk_bytes: Annotated[int, Meta(ge=256, le=65536)] = 4096
    error_log_interval_s: Positive = 10.0
    accept_length_mismatch: bool = True
    string_encoding: Literal["gbk", "utf8"] = "gbk"
    check_registry: bool = True
    downlink_mqtt: bool = False
    mqtt_online_s: Positive = 300.0
    command_ack_timeout_s: Positive = 60.0
    command_expire_s: Positive = 3600.0
    command_max_attempts: PositiveInt = 3
    command_poll_s: Positive = 1.0
    health_flush_s: Positive = 2.0


class OwnTracksSettings(Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True
    topic_prefix: TopicPrefix = "owntracks"
    max_accuracy_m: Positive = 500.0


class DispatchSettings(Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    city_speed_kmh: Positive = 25.0
    road_factor: Annotated[float, Meta(ge=1.0, le=3.0)] = 1.3
    online_max_age_s: Positive = 600.0
    # Road-aware ETA for 12319 cases (core/roadnet.py), where the city has a road layer.
    road_speed_kmh: Positive = 35.0
    """Speed along the network's roads (never above a road's own ``speed_limit_kmh``)."""
    road_snap_max_m: Annotated[float, Meta(gt=0, le=20000)] = 1500.0
    """A car or case farther than this from every road: straight line, as without roads."""


# -- 12319 cases (issue 17) ---------------------------------------------------------------

CASE_PRIORITIES: tuple[str, ...] = ("urgent", "high", "normal")
CASE_CATEGORY_ID = r"^[a-z][a-z0-9_]{0,31}$"
DEFAULT_CASE_CATEGORIES: dict[str, str] = {
    "street_vending": "流动摊贩",
    "night_market": "夜市占道经营",
    "illegal_posters": "乱张贴小广告",
    "muck_spill": "渣土撒漏",
    "illegal_dumping": "偷倒乱倒",
    "construction_noise": "施工噪音扰民",
    "outdoor_ads": "违规户外广告",
    "illegal_construction": "违法建设",
    "other": "其他",
}
CaseDeadline = Annotated[float, Meta(ge=0, le=30 * 86400)]  # seconds; 0 = no deadline for the step


class CaseSettings(Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """12319 cases: categories, arrival detection and the deadlines per priority.

    A step's deadline runs from the end of the step before it: ``dispatch``
    from acceptance, ``arrive`` from the first dispatch, ``handle`` from
    arrival, ``callback`` from handling. 0 = the step has no deadline.
    """

    categories: dict[str, str] = msgspec.field(default_factory=lambda: dict(DEFAULT_CASE_CATEGORIES))
    """Category id -> the name people read (ids: lower case letters, digits, ``_``)."""
    arrive_radius_m: Annotated[float, Meta(gt=0, le=5000)] = 100.0
    """The dispatched car stopping this close to the case marks it arrived."""
    arrive_stop_s: Annotated[float, Meta(ge=0, le=3600)] = 60.0
    """... for at least this long (fix time), staying within the radius."""
    leave_band_m: Annotated[float, Meta(ge=0, le=5000)] = 50.0
    """Arrived, the car has left once it is farther than radius + this (GPS noise)."""
    urgent_dispatch_s: CaseDeadline = 300.0
    urgent_arrive_s: CaseDeadline = 1200.0
    urgent_handle_s: CaseDeadline = 3600.0
    urgent_callback_s: CaseDeadline = 7200.0
    high_dispatch_s: CaseDeadline = 900.0
    high_arrive_s: CaseDeadline = 2700.0
    high_handle_s: CaseDeadline = 14400.0
    high_callback_s: CaseDeadline = 86400.0
    normal_dispatch_s: CaseDeadline = 1800.0
    normal_arrive_s: CaseDeadline = 7200.0
    normal_handle_s: CaseDeadline = 86400.0
    normal_callback_s: CaseDeadline = 172800.0
    sync_s: Annotated[float, Meta(gt=0, le=60)] = 1.0
    """How often the case driver writes GPS findings and follows the terminal's answer."""

    def __post_init__(self) -> None:
        if not self.categories:
            raise ValueError("categories: at least one category is needed")
        for key, name in self.categories.items():
            if not re.match(CASE_CATEGORY_ID, key):
                raise ValueError(f"categories: id {key[:40]!r} must match {CASE_CATEGORY_ID}")
            if not name.strip() or len(name) > 40:
                raise ValueError(f"categories: name of {key!r} must be 1-40 characters")

    def deadline_s(self, priority: str, step: str) -> float:
        """The step's deadline for a priority (0: none)."""
        value: float = getattr(self, f"{priority}_{step}_s")
        return value


Basemap = Literal["tianditu", "amap", "osm", "offline", "custom"]


class MapSettings(Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    tile_url: str = ""
    tile_crs: Literal["wgs84", "gcj02", "bd09"] = "wgs84"
    tile_attribution: str = ""
    center: tuple[float, float] | None = None
    zoom: Annotated[int, Meta(ge=1, le=20)] = 12
    # Basemap presets offered by the page's switcher, the first shown by default
    # (api/basemaps.py). Empty: "custom" when tile_url is set, else no basemap.
    basemaps: tuple[Basemap, ...] = ()
    tianditu_key: str = ""  # 天地图 browser key (required by the "tianditu" preset)
    offline_path: str = ""  # an .mbtiles or .pmtiles file, or a folder of {z}/{x}/{y}.png|jpg|webp

    def __post_init__(self) -> None:
        if "tianditu" in self.basemaps and not self.tianditu_key:
            raise ValueError("tianditu_key: required by the 'tianditu' basemap (a 天地图 key)")
        if "offline" in self.basemaps and not self.offline_path:
            raise ValueError("offline_path: required by the 'offline' basemap (an .mbtiles/.pmtiles file or folder)")
        if "custom" in self.basemaps and not self.tile_url:
            raise ValueError("tile_url: required by the 'custom' basemap")
        if len(set(self.basemaps)) != len(self.basemaps):
            raise ValueError("basemaps: a preset is listed twice")


class DeskSettings(Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The control-room page's alert desk."""

    stall_s: Annotated[float, Meta(ge=3, le=600)] = 15.0
    """No live message (not even a heartbeat) for this long: a full-width banner and the alarm sound."""
    company_may_ack: bool = False
    """A company account may acknowledge and close its own vehicles' alerts
    (never another company's); off: it only reads them."""


class RuleSettings(Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Every threshold of the rule engine (see docs/geofences.md for the rules).

    Distances are metres, speeds km/h, times seconds of *fix* time. Per-zone
    values (speed limit, dwell, corridor width, schedule) live in the
    geofence files; these are the fall-backs and the noise bands around them.
    """

    moving_kmh: NonNegative = 5.0
    """At or above this speed a vehicle counts as moving: rules, the map's
    status, driving time in reports."""
    zone_exit_band_m: NonNegative = 30.0
    """A vehicle leaves a zone only once it is this far outside the polygon,
    so a truck parked on a boundary does not flap in and out."""
    default_speed_limit_kmh: NonNegative = 80.0
    muck_truck_speed_limit_kmh: NonNegative = 40.0
    mixer_truck_speed_limit_kmh: NonNegative = 50.0
    overspeed_band_kmh: NonNegative = 5.0
    """An overspeed ends only below limit minus this band."""
    overspeed_min_s: NonNegative = 15.0
    corridor_m: NonNegative = 50.0
    """Corridor half-width for routes whose file does not give ``corridor_m``."""
    deviation_band_m: NonNegative = 15.0
    """A deviation ends only once the truck is closer than corridor minus this."""
    deviation_min_s: NonNegative = 60.0
    curfew_min_s: NonNegative = 60.0
    curfew_end_s: NonNegative = 120.0
    stop_radius_m: NonNegative = 50.0
    """Fixes within this distance of where a stop began belong to the stop."""
    stop_exit_band_m: NonNegative = 20.0
    stop_min_s: NonNegative = 300.0
    """A loaded muck truck stopped this long outside every site is suspected of dumping."""
    uncovered_min_s: NonNegative = 30.0
    offline_s: NonNegative = 600.0
    offline_moving_s: NonNegative = 120.0
    alarm_bits: tuple[Annotated[int, Meta(ge=0, le=31)], ...] = DEFAULT_ALARM_BITS
    """JT/T 808 alarm bits that raise alerts (start when set, end when cleared)."""
    delivery_max_s: NonNegative = 5400.0
    backfill_gap_s: Positive = 120.0
    """A silence longer than this between two live fixes is a gap whose state is
    kept, so blind-area fixes that arrive later are run through the rules."""
    backfill_window_s: Positive = 86400.0
    """How long such a gap stays open for backfill (fix time)."""
    backfill_gaps_kept: Annotated[int, Meta(ge=0, le=16)] = 2
    """Gaps remembered per vehicle (0: late fixes are stored but no rule sees them)."""

    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{name}: must be a finite number")
        if self.deviation_band_m >= self.corridor_m:
            raise ValueError("deviation_band_m: must be smaller than corridor_m")

    def class_speed_limit_kmh(self, vehicle_class: str) -> float:
        if vehicle_class == "muck_truck":
            return self.muck_truck_speed_limit_kmh
        if vehicle_class == "mixer_truck":
            return self.mixer_truck_speed_limit_kmh
        return self.default_speed_limit_kmh


class FilterSettings(Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The filter stage (``core/filters.py``): drift, outliers, the late decision."""

    enabled: bool = True
    drift_speed_kmh: NonNegative = 3.0
    """Below this reported speed (or with the ignition off) a vehicle is standing."""
    drift_radius_m: Positive = 50.0
    """A standing vehicle's fixes this close to where it stopped are drift."""
    drift_radius_ignition_off_m: Positive = 100.0
    jump_min_m: Positive = 300.0
    """A jump shorter than this is never an outlier (GPS noise, a slow terminal)."""
    max_speed_muck_truck_kmh: Positive = 120.0
    """An implied speed above the class's maximum makes a jump a suspect."""
    max_speed_mixer_truck_kmh: Positive = 120.0
    max_speed_patrol_kmh: Positive = 180.0
    max_speed_other_kmh: Positive = 200.0
    confirm_fixes: Annotated[int, Meta(ge=2, le=10)] = 3
    """Fixes agreeing at a new place that make a jump a real move (3: two multipath
    fixes in a row that agree with each other are not enough; each one more delays
    a real move's alerts by a reporting interval, the released fixes are not lost)."""
    max_hdop: Positive = 20.0
    min_sats: Annotated[int, Meta(ge=0, le=64)] = 3

    def max_speed_kmh(self, vehicle_class: str) -> float:
        if vehicle_class == "muck_truck":
            return self.max_speed_muck_truck_kmh
        if vehicle_class == "mixer_truck":
            return self.max_speed_mixer_truck_kmh
        if vehicle_class == "patrol":
            return self.max_speed_patrol_kmh
        return self.max_speed_other_kmh


EMBEDDED_AMQP_PORT = 5672


class ClusterSettings(Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Scale-out (docs/scale-out-research.md): ``gpsd-server ingest`` workers and
    ``gpsd-server api`` nodes around a RabbitMQ engine. ``engine = "none"`` is the
    single process (``gpsd-server run``, embedded Mosquitto)."""

    engine: Literal["none", "rabbitmq"] = "none"
    amqp_url: str = f"amqp://guest:guest@127.0.0.1:{EMBEDDED_AMQP_PORT}/"
    # Partition queues behind the consistent-hash exchange: fixed per deployment
    # (changing it moves vehicles between queues); one worker uses at most P.
    partitions: Annotated[int, Meta(ge=1, le=1024)] = 12
    # Points per queue on the hash ring (1 leaves partitions 2x apart in size).
    ring_weight: Annotated[int, Meta(ge=1, le=1000)] = 20
    # Unacknowledged deliveries per partition channel.
    prefetch: Annotated[int, Meta(ge=1, le=65535)] = 500
    # Seconds between ownership checks (take free partitions, give extra ones back).
    rebalance_s: Annotated[float, Meta(gt=0, le=60)] = 0.25
    # Seconds a short batch waits for more deliveries.
    linger_s: Annotated[float, Meta(ge=0, le=1)] = 0.01
    # AMQP heartbeat: a vanished worker host frees its partitions after ~2 of these.
    heartbeat_s: Annotated[int, Meta(ge=1, le=600)] = 10
    # Server-side keepalive of the lease session (idle, interval, count seconds):
    # a vanished worker host loses its leases after idle + interval * count.
    lease_keepalive: tuple[int, int, int] = (5, 2, 3)
    # Names on the broker.
    exchange: str = "gpsd.ingest"
    queue_prefix: str = "gpsd.ingest.p"
    hub_exchange: str = "gpsd.hub"


class Config(Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    city: CitySettings = msgspec.field(default_factory=CitySettings)
    mqtt: MqttSettings = msgspec.field(default_factory=MqttSettings)
    database: DatabaseSettings = msgspec.field(default_factory=DatabaseSettings)
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)
    ingest: IngestSettings = msgspec.field(default_factory=IngestSettings)
    geofences: GeofenceSettings = msgspec.field(default_factory=GeofenceSettings)
    jt808: Jt808Settings = msgspec.field(default_factory=Jt808Settings)
    owntracks: OwnTracksSettings = msgspec.field(default_factory=OwnTracksSettings)
    map: MapSettings = msgspec.field(default_factory=MapSettings)
    desk: DeskSettings = msgspec.field(default_factory=DeskSettings)
    dispatch: DispatchSettings = msgspec.field(default_factory=DispatchSettings)
    cases: CaseSettings = msgspec.field(default_factory=CaseSettings)
    history: HistorySettings = msgspec.field(default_factory=HistorySettings)
    rules: RuleSettings = msgspec.field(default_factory=RuleSettings)
    filters: FilterSettings = msgspec.field(default_factory=FilterSettings)
    cluster: ClusterSettings = msgspec.field(default_factory=ClusterSettings)
    # Filled by config.load, never from the file: the folder of the config
    # file (relative paths resolve from here) and the state folder.
    base_dir: str = "."
    state_dir: str = ".state"


# Keys a file may not set (config.load fills them).
DERIVED_KEYS = ("base_dir", "state_dir")
