"""config.toml -> frozen settings; every error names the file and the key."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gpsd_server import config
from gpsd_server.errors import ConfigError
from gpsd_server.settings import Config, RuleSettings

REPO = Path(__file__).resolve().parents[1]


def test_shipped_config_is_valid_and_equals_the_defaults() -> None:
    shipped = config.load(REPO / "config.toml", {})
    defaults = config.load(None, {"GPSD_STATE": str(REPO / ".state")})
    assert {k: getattr(shipped, k) for k in Config.__struct_fields__ if k != "base_dir"} == {
        k: getattr(defaults, k) for k in Config.__struct_fields__ if k != "base_dir"
    }
    raw = tomllib.loads((REPO / "config.toml").read_text())
    assert set(raw["rules"]) == set(RuleSettings.__struct_fields__)  # every rule key documented


def test_sections_are_frozen() -> None:
    cfg = config.load(None, {})
    with pytest.raises(AttributeError):
        cfg.mqtt.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ('[mqtt]\nport = "x"', "mqtt.port", "int >= 1 <= 65535"),
        ("[mqtt]\nport = 70000", "mqtt.port", "<= 65535"),
        ("[mqtt]\nqos = 2", "mqtt.qos", "allowed: 0, 1"),
        ("[mqtt]\nprot = 1", "mqtt.prot", "unknown key (did you mean 'port'?); allowed keys: host, port"),
        ("[mqtt]\nxyz = 1", "mqtt.xyz", "unknown key; allowed keys: host, port"),
        ("[rules]\ncorridor = 1", "rules.corridor", "did you mean 'corridor_m'?"),
        ("[rules]\nalarm_bits = [40]", "rules.alarm_bits[0]", "<= 31"),
        ("[rules]\ncorridor_m = 10\ndeviation_band_m = 20", "rules.deviation_band_m", "smaller than corridor_m"),
        ("[mqt]\nport = 1", "mqt", "allowed sections: city, mqtt"),
        ('[city]\ntimezone = "Mars/Olympus"', "city.timezone", "unknown time zone"),
        ('[database]\ndsn = "mysql"', "database.dsn", "postgresql://"),
        ("[ingest]\nmax_future_s = -1", "ingest.max_future_s", ">= 0"),
        ("[mqtt]\nreconnect_min_s = 5\nreconnect_max_s = 1", "mqtt.reconnect_max_s", ">= mqtt.reconnect_min_s"),
        ("x =", "(syntax)", "not valid TOML"),
        ("[cases]\narrive_radius = 3", "cases.arrive_radius", "did you mean 'arrive_radius_m'?"),
        ("[cases]\nurgent_arrive_s = -1", "cases.urgent_arrive_s", ">= 0"),
        ('[cases.categories]\n"Bad Id" = "x"', "cases.categories", "must match"),
        ("[cases.categories]", "cases.categories", "at least one category"),
    ],
)
def test_bad_values_name_file_key_and_what_is_allowed(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        config.load(path, {})
    assert err.value.file == str(path)
    assert err.value.key == key
    assert fragment in str(err.value)


def test_environment_overrides_are_named_in_errors() -> None:
    assert config.load(None, {"GPSD_MQTT__PORT": "1999"}).mqtt.port == 1999
    assert config.load(None, {"GPSD_MQTT__HOST": "broker.local"}).mqtt.host == "broker.local"
    with pytest.raises(ConfigError) as err:
        config.load(None, {"GPSD_MQTT__PORT": "0"})
    assert "GPSD_MQTT__PORT" in err.value.file and err.value.key == "mqtt.port"


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="file not found"):
        config.load("/nonexistent/gpsd.toml", {})


def test_check_config_cli(tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text("[http]\nport = -3\n")
    run = subprocess.run(
        [sys.executable, "-m", "gpsd_server", "check-config", "--config", str(bad)], capture_output=True, text=True
    )
    assert run.returncode == 2
    assert str(bad) in run.stderr and "http.port" in run.stderr and ">= 0" in run.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "gpsd_server", "check-config", "--config", str(REPO / "config.toml")],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    for sub in ("run", "ingest", "api", "check-config", "migrate"):
        helped = subprocess.run([sys.executable, "-m", "gpsd_server", sub, "--help"], capture_output=True, text=True)
        assert helped.returncode == 0 and "--config" in helped.stdout


def test_the_deployment_variables_move_every_port_and_the_state_folder(tmp_path: Path) -> None:
    env = {"GPSD_STATE": str(tmp_path), "GPSD_PG_PORT": "56001", "GPSD_MQTT_PORT": "19001", "GPSD_HTTP_PORT": "8181"}
    cfg = config.load(REPO / "config.toml", env)
    assert cfg.database.dsn == "postgresql://postgres@127.0.0.1:56001/gpsd"
    assert (cfg.mqtt.port, cfg.http.port) == (19001, 8181)
    assert config.spool_path(cfg) == tmp_path / "spool" / "gpsd-server.spool"
    # A key set in the file or by its own variable wins over the shorthand.
    pinned = tmp_path / "pinned.toml"
    pinned.write_text('[mqtt]\nport = 1883\n[database]\ndsn = "postgresql://db.city/gpsd"\n')
    cfg = config.load(pinned, {**env, "GPSD_HTTP__PORT": "9090"})
    assert (cfg.mqtt.port, cfg.database.dsn, cfg.http.port) == (1883, "postgresql://db.city/gpsd", 9090)
    with pytest.raises(ConfigError) as err:
        config.load(None, {"GPSD_PG_PORT": "abc"})
    assert err.value.file == "environment GPSD_PG_PORT"


def test_cli_options_are_accepted_before_and_after_the_command(tmp_path: Path) -> None:
    from gpsd_server.cli import build_parser

    for argv in (
        ["--config", "x.toml", "token", "create", "--name", "a", "--role", "viewer"],
        ["token", "--config", "x.toml", "create", "--name", "a", "--role", "viewer"],
        ["token", "create", "--config", "x.toml", "--name", "a", "--role", "viewer"],
        ["check-config", "--config", "x.toml"],
        ["--config", "x.toml", "check-config"],
    ):
        assert build_parser().parse_args(argv).config == "x.toml", argv


def test_check_config_validates_the_geofence_folder(tmp_path: Path) -> None:
    (tmp_path / "city").mkdir()
    (tmp_path / "city" / "zones.geojson").write_text('{"type": "FeatureCollection", "features": [{"type": "x"}]}')
    cfg = tmp_path / "c.toml"
    cfg.write_text('[geofences]\ndir = "city"\n')
    run = subprocess.run(
        [sys.executable, "-m", "gpsd_server", "check-config", "--config", str(cfg)], capture_output=True, text=True
    )
    assert run.returncode == 2
    assert "zones.geojson" in run.stderr and "#0" in run.stderr


def test_cluster_section_defaults_to_one_process_and_gpsd_amqp_port_moves_the_broker(tmp_path: Path) -> None:
    cfg = config.load(REPO / "config.toml", {})
    assert cfg.cluster.engine == "none" and cfg.cluster.partitions == 12
    cfg = config.load(REPO / "config.toml", {"GPSD_AMQP_PORT": "5681", "GPSD_CLUSTER__ENGINE": "rabbitmq"})
    assert (cfg.cluster.engine, cfg.cluster.amqp_url) == ("rabbitmq", "amqp://guest:guest@127.0.0.1:5681/")
    with pytest.raises(ConfigError) as err:
        config.load(None, {"GPSD_CLUSTER__ENGINE": "kafka"})
    assert err.value.key == "cluster.engine"


def test_ingest_and_api_need_a_cluster_engine_and_run_needs_none() -> None:
    from gpsd_server.app import Server, StartupError

    with pytest.raises(StartupError, match="gpsd-server run"):
        Server(config.load(None, {}), roles=("ingest",))
    with pytest.raises(StartupError, match="processes of their own"):
        Server(config.load(None, {"GPSD_CLUSTER__ENGINE": "rabbitmq"}))
