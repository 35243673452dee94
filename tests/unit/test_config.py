"""Settings: defaults < TOML file < STREAMSNAP_* environment < overrides; errors name it."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import subprocess
import sys
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamsnap.config import (
    ENV_PREFIX,
    SECTIONS,
    HttpSettings,
    Settings,
    SettingsError,
    SignalingSettings,
    declarations,
    load_settings,
    sample_config,
    setting_ranges,
    settings_table,
)

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
    assert (settings.http.host, settings.http.port, settings.webrtc.ice_addresses) == ("0.0.0.0", 8080, [])
    assert (settings.signaling.keepalive_interval, settings.signaling.keepalive_timeout) == (5.0, 30.0)

def test_default_lists_are_not_shared() -> None:
    first, second = Settings(), Settings()
    first.webrtc.ice_addresses.append("10.0.0.1")
    assert second.webrtc.ice_addresses == []


def test_toml_beats_defaults(toml: Any) -> None:
    path = toml(
        "port = 9000\n"
        'ice-addresses = ["192.0.2.1", "192.0.2.2"]\n'
        "keepalive_interval = 2\n"
        'log_level = "debug"\n'
        "max-streams-per-session = 3\n"
    )
    settings = load_settings(path, environ={})
    assert settings.http.port == 9000
    assert settings.webrtc.ice_addresses == ["192.0.2.1", "192.0.2.2"]
    assert settings.signaling.keepalive_interval == 2.0
    assert isinstance(settings.signaling.keepalive_interval, float)
    assert settings.log.level == "debug"
    assert settings.signaling.max_streams_per_session == 3
    assert settings.http.host == "0.0.0.0"  # untouched


def test_env_beats_toml(toml: Any) -> None:
    path = toml('port = 9000\nhost = "10.0.0.1"\n')
    settings = load_settings(
        path, environ={"STREAMSNAP_PORT": "9100", "STREAMSNAP_KEEPALIVE_TIMEOUT": "7.5"}
    )
    assert settings.http.port == 9100
    assert settings.http.host == "10.0.0.1"
    assert settings.signaling.keepalive_timeout == 7.5


def test_overrides_beat_env_and_none_means_not_given(toml: Any) -> None:
    path = toml('port = 9000\nlog_level = "warning"\n')
    env = {"STREAMSNAP_PORT": "9100", "STREAMSNAP_LOG_LEVEL": "error"}
    settings = load_settings(path, {"port": 9200, "log_level": None}, environ=env)
    assert settings.http.port == 9200
    assert settings.log.level == "error"

def test_one_setting_through_every_layer(toml: Any) -> None:
    path = toml('host = "from-file"\n')
    env = {"STREAMSNAP_HOST": "from-env"}
    assert load_settings(environ={}).http.host == "0.0.0.0"
    assert load_settings(path, environ={}).http.host == "from-file"
    assert load_settings(path, environ=env).http.host == "from-env"
    assert load_settings(path, {"host": "from-flag"}, environ=env).http.host == "from-flag"

def test_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSNAP_SNAPSHOT_WORKERS", "5")
    assert load_settings().snapshots.workers == 5


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
    assert load_settings(environ={"STREAMSNAP_ALLOWED_ORIGINS": raw}).access.allowed_origins == expected


def test_checked_lists_from_env() -> None:
    settings = load_settings(
        environ={"STREAMSNAP_ICE_ADDRESSES": "127.0.0.1, 10.0.0.2", "STREAMSNAP_ICE_SERVERS": "stun:a:3478,turn:b"}
    )
    assert settings.webrtc.ice_addresses == ["127.0.0.1", "10.0.0.2"]
    assert settings.webrtc.ice_servers == ["stun:a:3478", "turn:b"]


def test_lists_from_overrides() -> None:
    settings = load_settings(
        overrides={"ice_addresses": ["127.0.0.1"], "ice_servers": "stun:a, stun:b"}, environ={}
    )
    assert settings.webrtc.ice_addresses == ["127.0.0.1"]
    assert settings.webrtc.ice_servers == ["stun:a", "stun:b"]


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
    assert str(info.value).startswith(f"config file {path}: unknown setting 'keep_alive' (did you mean 'keepalive_")


@pytest.mark.parametrize("text, message", [
    ("prot = 9000\n", "unknown setting 'prot' (did you mean 'port'?)"),
    ("[http]\nprot = 9000\n", "unknown setting http.'prot' in [http] (did you mean 'http.port'?)"),
    ("[rtmp]\nmax_conections = 5\n", "unknown setting rtmp.'max_conections' in [rtmp] (did you mean "
                                     "'rtmp.max_connections'?)"),
    ("snapshot_worker = 3\n", "unknown setting 'snapshot_worker' (did you mean 'snapshot_workers'?)"),
])
def test_an_unknown_key_suggests_the_nearest_known_one(toml: Any, text: str, message: str) -> None:
    path = toml(text)
    with pytest.raises(SettingsError) as info:
        load_settings(path, environ={})
    assert str(info.value) == f"config file {path}: {message}"


@pytest.mark.parametrize("text", ["port: 9000\nhost: 0.0.0.0\n", '{"port": 9000}\n', "port = \n"])
def test_a_file_that_is_not_toml_says_so(toml: Any, text: str) -> None:
    path = toml(text)
    with pytest.raises(SettingsError) as info:
        load_settings(path, environ={})
    message = str(info.value)
    assert message.startswith(f"config file {path} is not TOML (")
    assert message.endswith("settings are written `name = value` under `[section]` headers, see "
                            "`streamsnap config --sample`")
    assert "\n" not in message


def test_broken_toml_names_the_file(toml: Any) -> None:
    path = toml("port = \n")
    with pytest.raises(SettingsError, match=r"^config file .*streamsnap\.toml is not TOML \("):
        load_settings(path, environ={})


def test_missing_config_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(SettingsError, match=r"^config file .*absent\.toml: "):
        load_settings(path, environ={})


# One value of each setting that must be refused: (as TOML/override value, as environment string).
# None for the environment where every string is a valid value (free text).
BAD_VALUES: dict[str, tuple[Any, str | None]] = {
    "host": (5, None),
    "port": (65536, "-1"),
    "ice_addresses": (["host.example"], "10.0.0.1,300.1.1.1"),
    "ice_servers": (["http://stun.example"], "stun.example:3478"),
    "turn_username": (["snap"], None),
    "turn_password": (1234, None),
    "keepalive_interval": (0, "0"),
    "keepalive_timeout": (-1.0, "-5"),
    "connect_timeout": (-0.5, "inf"),
    "max_frame_age_ms": (-1, "-1"),
    "keyframe_timeout": (0.0, "nan"),
    "max_keyframe_requests_per_second": (0, "101"),
    "snapshot_workers": (0, "0"),
    "png_compress_level": (42, "-1"),
    "gop_max_frames": (0, "0"),
    "gop_max_bytes": (-1, "4MB"),
    "picture_cache_bytes": (-1, "-1"),
    "max_publish_bitrate": (0, "1000"),
    "event_loop": ("trio", "trio"),
    "max_streams_per_session": (0, "0"),
    "max_pending_snapshots": (0, "-3"),
    "max_message_bytes": (100, "512"),
    "log_level": ("verbose", "WARN"),
    "log_format": ("xml", "xml"),
    "node_name": (False, None),
    "rest_port": (70000, "70000"),
    "tls_port": (-1, "https"),
    "tls_cert": (["a.pem"], None),
    "tls_key": (1, None),
    "tls_self_signed": (1, "maybe"),
    "tls_self_signed_file": (["cert.pem"], None),
    "public_ip": ("example.com", "1.2.3"),
    "image_max_width": (0, "0"),
    "image_max_height": (16385, "99999"),
    "thumbnail_interval": (-1, "-1"),
    "thumbnail_dir": (0, None),
    "thumbnail_width": (-1, "20000"),
    "thumbnail_quality": (0, "101"),
    "thumbnail_history": (-1, "-1"),
    "thumbnail_webhook": ("ftp://example.com/hook", "example.com/hook"),
    "max_sessions": (0, "0"),
    "max_connections_per_ip": (0, "0"),
    "max_streams": (0, "0"),
    "max_snapshots_in_flight": (0, "0"),
    "max_snapshots_per_client": (0, "0"),
    "message_rate": (0, "-1"),
    "message_burst": (0, "0"),
    "rtp_timeout": (0, "0"),
    "shutdown_grace": (-1, "-0.5"),
    "allowed_origins": ([1], None),
    "auth_secret": (123, None),
    "auth_issuer": (True, None),
    "backend_url": ("backend.example", "file:///etc/passwd"),
    "backend_secret": (0, None),
    "backend_timeout": (0, "0"),
    "backend_fail_open": ("sometimes", "2"),
    # Cluster
    "redis_url": ("http://redis.example", "localhost:6379"),
    "cluster_secret": (16, None),
    "advertise_url": ("node-a:8080", "ftp://node-a"),
    "cluster_host": (0, None),
    "cluster_port": (65536, "-1"),
    "cluster_ttl": (0.5, "601"),
    "cluster_prefix": ("a b", "{tag}"),
    "cluster_max_connections_per_ip": (0, "0"),
    "workers": (0, "65"),
    # RTMP and WHIP
    "rtmp_port": (65536, "rtmp"),
    "rtmp_host": (1935, None),
    "rtmp_max_connections": (0, "0"),
    "rtmp_max_chunk_size": (127, "16777216"),
    "rtmp_max_message_bytes": (1024, "1GB"),
    "rtmp_handshake_timeout": (0, "-1"),
    "rtmp_idle_timeout": (0, "inf"),
    "rtmp_max_chunk_streams": (1, "65600"),
    "rtmp_max_connections_per_ip": (0, "-3"),
    "rtmp_max_command_bytes": (511, "65537"),
    "rtmp_max_bytes_before_publish": (8191, "16777217"),
    "rtmp_max_write_buffer_bytes": (16383, "67108865"),
    "rtmp_max_nal_units_per_frame": (15, "65537"),
    "cors_origins": ([7], None),
    # RTSP cameras
    "rtsp_transport": ("http", "rtp"),
    "rtsp_open_timeout": (0, "-1"),
    "rtsp_packet_timeout": (-1.0, "inf"),
    "rtsp_on_demand": ("yes please", "2"),
    "rtsp_idle_timeout": (0, "0"),
    "rtsp_allowed_hosts": (["a b"], "a b"),
    "rtsp_reconnect_max": (0, "100000"),
    "rtsp_max_redirects": (-1, "11"),
    "rtsp_max_sdp_bytes": (1000, "2000000"),
    "rtsp_max_tracks": (0, "257"),
    "rtsp_max_frame_nals": (15, "70000"),
    "rtsp_max_packets_per_second": (99, "2000000"),
    "rtsp_ca_file": ([], None),
    "cameras": (["rtsp://camera.example/"], "rtsp://camera.example/"),
    # Dashboards: thumbnails served, MJPEG
    "thumbnail_remove_ended": ("sometimes", "2"),
    "mjpeg_max_fps": (0, "61"),
    "mjpeg_max_watchers_per_stream": (0, "many"),
    "mjpeg_max_watchers": (-1, "100001"),
    "mjpeg_write_timeout": (0, "-1"),
    "mjpeg_max_sizes_per_stream": (0, "1001"),
    # Load
    "snapshot_deadline_ms": (5, "61000"),
    "keyframe_request_cost_frames": (-1, "lots"),
    "max_event_loop_lag_ms": (0, "-1"),
    "gc_freeze": ("sometimes", "2"),
    # Hostile clients
    "sdp_max_bytes": (1023, "2000000"),
    "sdp_max_media": (0, "257"),
    "sdp_max_lines": (15, "lots"),
    "sdp_max_candidates": (-1, "10001"),
    "login_timeout": (0, "-1"),
    "auth_allow_no_exp": ("yes please", "2"),
    "metrics_host": (5, None),
    "metrics_port": (65536, "-1"),
    "metrics_max_streams": (-1, "100001"),
    "http_header_timeout": (0, "100000"),
    "max_http_connections_per_ip": (0, "0"),
    "trusted_proxies": (["proxy.example"], "10.0.0.0/8,not-an-address"),
    "max_streams_per_subject": (-1, "-1"),
    "max_streams_per_address": (-1, "many"),
    "max_snapshots_per_subject": (-1, "many"),
    "rtp_max_packets_per_frame": (15, "65537"),
    "rtp_max_sources": (0, "1025"),
}
NAMES = [declaration.flat for declaration in declarations().values()]
"Every setting by its flat name: the names of the config files and environments written before sections."
PATHS = {declaration.flat: declaration.path for declaration in declarations().values()}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return repr(value)


def _assert_refusal(error: SettingsError, label: str, given: Any) -> None:
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"{label}: expected "), message
    assert message.endswith(f", got {given!r}"), message

def test_every_setting_declares_the_values_it_allows() -> None:
    for path, declaration in declarations().items():
        kind = declaration.kind
        assert kind is bool or typing.get_origin(kind) in (Annotated, Literal), f"{path}: bare {kind}"
        if typing.get_origin(kind) is Annotated and typing.get_args(kind)[0] in (int, float):
            metas = [m for m in typing.get_args(kind)[1:] if isinstance(m, msgspec.Meta)]
            assert any(m.ge is not None or m.gt is not None for m in metas), f"{path}: no lower bound"
    assert list(setting_ranges()) == list(declarations())
    assert all(setting_ranges().values())
    assert len(NAMES) == len(set(NAMES)) == 120


def test_every_setting_has_a_bad_value_below() -> None:
    assert sorted(BAD_VALUES) == sorted(NAMES)


def test_new_settings_and_their_defaults() -> None:
    settings = Settings()
    assert settings.signaling.max_connections_per_ip == 500  # a few hundred users behind one NAT or proxy
    assert settings.signaling.login_timeout == 5.0 and not settings.access.allow_no_exp
    assert settings.snapshots.max_per_client == 128
    assert settings.snapshots.max_keyframe_requests_per_second == 2.0
    assert settings.snapshots.picture_cache_bytes == 32 * 1024 * 1024


@pytest.mark.parametrize("name", NAMES)
def test_bad_value_in_the_config_file_is_refused_by_name(toml: Any, name: str) -> None:
    value, _ = BAD_VALUES[name]
    with pytest.raises(SettingsError) as info:
        load_settings(toml(f"{name} = {_toml_value(value)}\n"), environ={})
    _assert_refusal(info.value, name, value)


@pytest.mark.parametrize("name", [name for name in NAMES if BAD_VALUES[name][1] is not None])
def test_bad_value_in_the_environment_is_refused_by_name(name: str) -> None:
    raw = BAD_VALUES[name][1]
    variable = ENV_PREFIX + name.upper()
    with pytest.raises(SettingsError) as info:
        load_settings(environ={variable: raw})  # type: ignore[dict-item]
    _assert_refusal(info.value, variable, raw)


@pytest.mark.parametrize("name", NAMES)
def test_bad_override_and_bad_construction_are_refused_by_name(name: str) -> None:
    value, _ = BAD_VALUES[name]
    with pytest.raises(SettingsError) as info:
        load_settings(overrides={name: value}, environ={})
    _assert_refusal(info.value, name, value)
    with pytest.raises(SettingsError) as info:
        Settings().replace(**{name: value})
    _assert_refusal(info.value, name, value)
    path = PATHS[name]
    with pytest.raises(SettingsError) as info:
        load_settings(overrides={path: value}, environ={})
    _assert_refusal(info.value, path, value)
    if "." in path:  # a section built directly is checked as well, and names the setting by its path
        section, field = path.split(".")
        section_type = next(s for s in SECTIONS if s.NAME == section)
        with pytest.raises(SettingsError) as info:
            section_type(**{field: value})
        _assert_refusal(info.value, path, value)


@pytest.mark.parametrize("name", [name for name in NAMES if "." in PATHS[name]])
def test_bad_value_in_a_section_of_the_config_file_is_refused_by_its_path(toml: Any, name: str) -> None:
    value, _ = BAD_VALUES[name]
    section, field = PATHS[name].split(".")
    with pytest.raises(SettingsError) as info:
        load_settings(toml(f"[{section}]\n{field} = {_toml_value(value)}\n"), environ={})
    _assert_refusal(info.value, PATHS[name], value)


@pytest.mark.parametrize("name", [name for name in NAMES if BAD_VALUES[name][1] is not None])
def test_bad_value_in_the_sectioned_environment_name_is_refused_by_it(name: str) -> None:
    raw = BAD_VALUES[name][1]
    variable = declarations()[PATHS[name]].env
    with pytest.raises(SettingsError) as info:
        load_settings(environ={variable: raw})  # type: ignore[dict-item]
    _assert_refusal(info.value, variable, raw)


@pytest.mark.parametrize(
    "message, kwargs",
    [
        ("snapshot_workers: expected >= 1, got 0", {"snapshot_workers": 0}),
        ("png_compress_level: expected 0..9, got 42", {"png_compress_level": 42}),
        ("keepalive_timeout: expected > 0 and <= 86400, got -1.0", {"keepalive_timeout": -1.0}),
        ("log_format: expected one of text, json, got 'xml'", {"log_format": "xml"}),
        ("port: expected int, got 80.5", {"port": 80.5}),
        ("port: expected int, got True", {"port": True}),
    ],
)
def test_refusal_wording(message: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(overrides=kwargs, environ={})
    assert str(info.value) == message


def test_unknown_override() -> None:
    with pytest.raises(SettingsError, match=r"^unknown setting 'keep_alive' \(did you mean 'keepalive_\w+'\?\)$"):
        load_settings(overrides={"keep_alive": 3}, environ={})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port": 0, "rest_port": 65535, "png_compress_level": 0, "thumbnail_quality": 100},
        {"png_compress_level": 9, "thumbnail_quality": 1, "picture_cache_bytes": 0, "shutdown_grace": 0},
        {"max_keyframe_requests_per_second": 100, "thumbnail_interval": 0, "max_frame_age_ms": 0},
        {"public_ip": "2001:db8::7", "backend_url": "https://auth.example/hooks", "thumbnail_webhook": "http://h/x"},
        {"ice_addresses": ["192.0.2.1"], "ice_servers": ["stun:stun.example:3478", "turns:t.example?transport=tcp"]},
    ],
)
def test_values_at_the_edges_are_accepted(kwargs: dict[str, Any]) -> None:
    settings = load_settings(overrides=kwargs, environ={})
    assert settings == Settings().replace(**kwargs)
    assert {name: value_of(settings, name) for name in kwargs} == kwargs


def value_of(settings: Settings, flat: str) -> Any:
    """A setting's value in `settings`, by its flat name."""
    section, _, field = PATHS[flat].rpartition(".")
    return getattr(getattr(settings, section), field) if section else getattr(settings, field)

def test_construction_turns_ints_into_floats() -> None:
    section = SignalingSettings(keepalive_interval=1)
    assert section.keepalive_interval == 1.0 and isinstance(section.keepalive_interval, float)
    settings = Settings().replace(keepalive_interval=1)
    assert isinstance(settings.signaling.keepalive_interval, float)

def test_settings_stay_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().http = HttpSettings()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().http.port = 1  # type: ignore[misc]

def test_table_shows_every_setting_with_its_range() -> None:
    rows = [row for row in settings_table().splitlines() if row.startswith("| `")]
    assert len(rows) == len(NAMES)
    assert ("| `png_compress_level`<br>`STREAMSNAP_SNAPSHOTS_PNG_COMPRESS_LEVEL`<br>was `png_compress_level` | "
            "`1` | 0..9 | ") in settings_table()
    assert ("| `workers`<br>`STREAMSNAP_SNAPSHOTS_WORKERS`<br>was `snapshot_workers` | `2` | >= 1 | "
            in settings_table())


def test_every_old_flat_key_and_both_environment_names_set_the_same_setting(toml: Any) -> None:
    for name in NAMES:
        declaration = declarations()[PATHS[name]]
        good = declaration.default
        given_ways = [load_settings(environ={declaration.flat_env: _env_value(good)}),
                      load_settings(environ={declaration.env: _env_value(good)}),
                      load_settings(overrides={name: good}, environ={})]
        if name != "cameras":
            given_ways.append(load_settings(toml(f"{name} = {_toml_value(good)}\n"), environ={}))
        for loaded in given_ways:
            assert value_of(loaded, name) == good, name
    # and a value other than the default through each way, for a few of every kind
    for name, value, text in (("rtmp_port", 1935, "1935"), ("snapshot_workers", 3, "3"), ("node_name", "n1", "n1"),
                              ("rtsp_allowed_hosts", ["10.0.0.0/8"], "10.0.0.0/8"), ("gc_freeze", False, "false")):
        declaration = declarations()[PATHS[name]]
        for loaded in (load_settings(toml(f"{name} = {_toml_value(value)}\n"), environ={}),
                       load_settings(environ={declaration.flat_env: text}),
                       load_settings(environ={declaration.env: text}),
                       load_settings(overrides={name: value}, environ={})):
            assert value_of(loaded, name) == value, name


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def test_sectioned_and_flat_forms_mix_and_each_setting_is_given_once(toml: Any) -> None:
    settings = load_settings(toml("port = 9000\n[rtmp]\nport = 1935\n[snapshots]\nworkers = 3\n"), environ={})
    assert (settings.http.port, settings.rtmp.port, settings.snapshots.workers) == (9000, 1935, 3)
    with pytest.raises(SettingsError, match=r"^rtmp_port and rtmp\.port are the same setting \(rtmp\.port\)"):
        load_settings(toml("rtmp_port = 1\n[rtmp]\nport = 2\n"), environ={})
    with pytest.raises(SettingsError, match="STREAMSNAP_HTTP_PORT and STREAMSNAP_PORT are the same setting"):
        load_settings(environ={"STREAMSNAP_PORT": "1", "STREAMSNAP_HTTP_PORT": "2"})

def test_the_sample_config_covers_every_setting_and_is_the_defaults() -> None:
    sample = sample_config()
    tomllib.loads(sample)  # the file as shipped is TOML (every setting commented out)
    settings_part, _, cameras_part = sample.partition("# [[cameras]]")
    tables: dict[str, dict[str, Any]] = {}
    for line in settings_part.splitlines():
        if line.startswith("[") and line.endswith("]"):
            section = tables.setdefault(line.strip("[]"), {})
        elif line.startswith("# ") and " = " in line:  # a setting, commented out: uncommented it is TOML
            section.update(tomllib.loads(line[2:]))
    for declaration in declarations().values():
        if declaration.section is None:
            assert "uri = " in cameras_part
            continue
        assert tables[declaration.section][declaration.name] == declaration.default, declaration.path
        assert f"${declaration.env}" in sample
    assert sum(len(table) for table in tables.values()) == len(declarations()) - 1


@given(st.ip_addresses())
def test_every_ip_address_is_a_public_ip(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert Settings().replace(public_ip=str(address)).webrtc.public_ip == str(address)
    assert Settings().replace(public_ip=address.exploded).webrtc.public_ip == address.exploded


@given(st.text(alphabet="0123456789abcdefABCDEF:.", max_size=45))
def test_public_ip_accepts_what_ipaddress_accepts(text: str) -> None:
    try:
        ipaddress.ip_address(text)
        valid = True
    except ValueError:
        valid = text == ""
    try:
        Settings().replace(public_ip=text)
        accepted = True
    except SettingsError:
        accepted = False
    assert accepted == valid


STREAMSNAP = Path(sys.executable).parent / "streamsnap"


@pytest.mark.parametrize(
    "args, env, config, setting",
    [
        ([], {"STREAMSNAP_SNAPSHOT_WORKERS": "0"}, None, "STREAMSNAP_SNAPSHOT_WORKERS"),
        ([], {}, "png_compress_level = 42\n", "png_compress_level"),
        (["--port", "70000"], {}, None, "port"),
    ],
)
def test_serve_refuses_a_bad_setting_in_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], config: str | None, setting: str
) -> None:
    if config is not None:
        (tmp_path / "bad.toml").write_text(config)
        args = [*args, "--config", str(tmp_path / "bad.toml")]
    clean = {key: value for key, value in os.environ.items() if not key.startswith(ENV_PREFIX)}
    done = subprocess.run([str(STREAMSNAP), "serve", *args], env=clean | env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"streamsnap: {setting}: expected "), done.stderr

def test_short_auth_secrets_and_bad_proxy_networks_are_refused() -> None:
    with pytest.raises(SettingsError, match=r"access\.secret is 1 bytes; HS256 needs at least 32"):
        Settings().replace(auth_secret="a")
    assert Settings().replace(auth_secret="x" * 32).access.secret == "x" * 32
    with pytest.raises(SettingsError, match="trusted_proxies"):
        Settings().replace(trusted_proxies=["10.0.0.0/33"])
    assert Settings().replace(trusted_proxies=["10.0.0.0/8", "::1/128", "192.0.2.7"]).http.trusted_proxies


@pytest.mark.parametrize("secret, words", [
    ("x" * 15, "at least 16 characters"),
    ("a" * 16, "at least 8 different characters"),
    ("abcabcabcabcabcabcabc", "at least 8 different characters"),
])
def test_a_weak_cluster_secret_is_refused(secret: str, words: str) -> None:
    with pytest.raises(SettingsError, match=words):
        Settings().replace(redis_url="redis://127.0.0.1:6379/0", cluster_secret=secret)
    assert Settings().replace(redis_url="redis://127.0.0.1:6379/0", cluster_secret="0123456789abcdef").cluster.secret
