"""Settings: defaults < TOML file < STREAMSNAP_* environment < overrides; errors name it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamsnap.config import Settings, SettingsError, load_settings

pytestmark = pytest.mark.unit


@pytest.fixture
def toml(tmp_path: Path) -> Any:
    def write(text: str) -> Path:
        path = tmp_path / "streamsnap.toml"
        path.write_text(text)
        return path

    return write


def test_defaults() -> None:
    settings = load_settings(environ={})
    assert settings == Settings()
    assert (settings.host, settings.port, settings.ice_addresses) == ("0.0.0.0", 8080, [])
    assert (settings.keepalive_interval, settings.keepalive_timeout) == (5.0, 30.0)


def test_default_lists_are_not_shared() -> None:
    first, second = Settings(), Settings()
    first.ice_addresses.append("10.0.0.1")
    assert second.ice_addresses == []


def test_toml_beats_defaults(toml: Any) -> None:
    path = toml(
        "port = 9000\n"
        'ice-addresses = ["192.0.2.1", "192.0.2.2"]\n'
        "keepalive_interval = 2\n"
        'log_level = "debug"\n'
        "max-streams-per-session = 3\n"
    )
    settings = load_settings(path, environ={})
    assert settings.port == 9000
    assert settings.ice_addresses == ["192.0.2.1", "192.0.2.2"]
    assert settings.keepalive_interval == 2.0
    assert isinstance(settings.keepalive_interval, float)
    assert settings.log_level == "debug"
    assert settings.max_streams_per_session == 3
    assert settings.host == "0.0.0.0"  # untouched


def test_env_beats_toml(toml: Any) -> None:
    path = toml('port = 9000\nhost = "10.0.0.1"\n')
    settings = load_settings(
        path, environ={"STREAMSNAP_PORT": "9100", "STREAMSNAP_KEEPALIVE_TIMEOUT": "7.5"}
    )
    assert settings.port == 9100
    assert settings.host == "10.0.0.1"
    assert settings.keepalive_timeout == 7.5


def test_overrides_beat_env_and_none_means_not_given(toml: Any) -> None:
    path = toml('port = 9000\nlog_level = "warning"\n')
    env = {"STREAMSNAP_PORT": "9100", "STREAMSNAP_LOG_LEVEL": "error"}
    settings = load_settings(path, {"port": 9200, "log_level": None}, environ=env)
    assert settings.port == 9200
    assert settings.log_level == "error"


def test_one_setting_through_every_layer(toml: Any) -> None:
    path = toml('host = "from-file"\n')
    env = {"STREAMSNAP_HOST": "from-env"}
    assert load_settings(environ={}).host == "0.0.0.0"
    assert load_settings(path, environ={}).host == "from-file"
    assert load_settings(path, environ=env).host == "from-env"
    assert load_settings(path, {"host": "from-flag"}, environ=env).host == "from-flag"


def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSNAP_SNAPSHOT_WORKERS", "5")
    assert load_settings().snapshot_workers == 5


def test_unrelated_environment_is_ignored() -> None:
    env = {"PORT": "1", "STREAMSNAP": "x", "streamsnap_port": "2", "STREAMSNAP_PORTS": "3"}
    assert load_settings(environ=env) == Settings()


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("a, b", ["a", "b"]),
        ("127.0.0.1", ["127.0.0.1"]),
        (" 10.0.0.1 ,, 10.0.0.2 , ", ["10.0.0.1", "10.0.0.2"]),
        ("", []),
        (" , ", []),
    ],
)
def test_lists_from_env(raw: str, expected: list[str]) -> None:
    settings = load_settings(
        environ={"STREAMSNAP_ICE_ADDRESSES": raw, "STREAMSNAP_ICE_SERVERS": raw}
    )
    assert settings.ice_addresses == expected
    assert settings.ice_servers == expected


def test_lists_from_overrides() -> None:
    settings = load_settings(
        overrides={"ice_addresses": ["127.0.0.1"], "ice_servers": "stun:a, stun:b"}, environ={}
    )
    assert settings.ice_addresses == ["127.0.0.1"]
    assert settings.ice_servers == ["stun:a", "stun:b"]


@pytest.mark.parametrize(
    "variable, raw",
    [
        ("STREAMSNAP_PORT", "eighty"),
        ("STREAMSNAP_PORT", "80.5"),
        ("STREAMSNAP_PORT", ""),
        ("STREAMSNAP_KEEPALIVE_INTERVAL", "fast"),
        ("STREAMSNAP_GOP_MAX_BYTES", "4MB"),
    ],
)
def test_bad_env_value_names_the_variable(variable: str, raw: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(environ={variable: raw})
    assert str(info.value).startswith(f"{variable}: expected ")
    assert repr(raw) in str(info.value)


@pytest.mark.parametrize(
    "line, setting",
    [
        ('port = "eighty"', "port"),
        ("port = 80.5", "port"),
        ("port = true", "port"),
        ("max_streams_per_session = false", "max_streams_per_session"),
        ('keepalive_timeout = "soon"', "keepalive_timeout"),
        ("keepalive_timeout = [1]", "keepalive_timeout"),
        ("ice_addresses = [1, 2]", "ice_addresses"),
        ("ice_addresses = 5", "ice_addresses"),
    ],
)
def test_bad_toml_value_names_the_setting(toml: Any, line: str, setting: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(toml(line + "\n"), environ={})
    assert str(info.value).startswith(f"{setting}: expected ")


@pytest.mark.parametrize(
    "line, setting",
    [
        ('host = ["0.0.0.0"]', "host"),
        ('log_level = {level = "info"}', "log_level"),
        ("log_level = 10", "log_level"),
        ("host = 2024-01-01", "host"),
    ],
)
def test_non_string_toml_value_for_a_string_setting(toml: Any, line: str, setting: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(toml(line + "\n"), environ={})
    assert str(info.value).startswith(f"{setting}: expected str, got ")


def test_bad_override_value_names_the_setting() -> None:
    with pytest.raises(SettingsError, match=r"^port: expected int, got 'x'$"):
        load_settings(overrides={"port": "x"}, environ={})


def test_unknown_toml_key(toml: Any) -> None:
    path = toml("port = 9000\nkeep_alive = 3\n")
    with pytest.raises(SettingsError) as info:
        load_settings(path, environ={})
    assert str(info.value) == f"config file {path}: unknown setting 'keep_alive'"


def test_broken_toml_names_the_file(toml: Any) -> None:
    path = toml("port = \n")
    with pytest.raises(SettingsError, match=r"^config file .*streamsnap\.toml: "):
        load_settings(path, environ={})


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(SettingsError, match=r"^config file .*absent\.toml: "):
        load_settings(path, environ={})
