"""config.toml -> frozen settings; every error names the file and the key."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from gpsd_server import config
from gpsd_server.core.settings import RuleSettings
from gpsd_server.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_is_valid_and_equals_the_defaults() -> None:
    shipped = config.load(REPO / "config.toml", {})
    defaults = config.load(None, {})
    skip = ("base_dir", "rules")
    assert {k: getattr(shipped, k) for k in shipped.__struct_fields__ if k not in skip} == {
        k: getattr(defaults, k) for k in defaults.__struct_fields__ if k not in skip
    }
    assert config.rule_settings(shipped) == config.rule_settings(defaults)
    assert set(shipped.rules) == {f.name for f in dataclasses.fields(RuleSettings)}  # every key documented


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
        ("[mqtt]\nprot = 1", "mqtt.prot", "unknown key; allowed keys: host, port"),
        ("[mqt]\nport = 1", "mqt", "allowed sections: city, mqtt"),
        ('[city]\ntimezone = "Mars/Olympus"', "city.timezone", "unknown time zone"),
        ('[database]\ndsn = "mysql"', "database.dsn", "postgresql://"),
        ("[ingest]\nmax_future_s = -1", "ingest.max_future_s", ">= 0"),
        ("[mqtt]\nreconnect_min_s = 5\nreconnect_max_s = 1", "mqtt.reconnect_max_s", ">= mqtt.reconnect_min_s"),
        ("x =", "(syntax)", "not valid TOML"),
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
    for sub in ("run", "check-config", "migrate"):
        helped = subprocess.run([sys.executable, "-m", "gpsd_server", sub, "--help"], capture_output=True, text=True)
        assert helped.returncode == 0 and "--config" in helped.stdout
