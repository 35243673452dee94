"""Settings added for the HTTP side (booleans, precedence), JSON log lines, the SDP address rewrite."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from streamsnap.config import SettingsError, WebRtcSettings, load_settings
from streamsnap.logs import ContextAdapter, JsonFormatter
from streamsnap.media.candidates import announce_public_address
from streamsnap.media.webrtc import ice_server

pytestmark = pytest.mark.unit


def test_defaults_keep_the_extras_off() -> None:
    settings = load_settings(environ={})
    assert settings.http.rest_port == 0
    assert settings.tls.self_signed is False
    assert settings.thumbnails.interval == 0.0
    assert settings.webrtc.public_ip == ""
    assert settings.log.format == "text"


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    config = tmp_path / "streamsnap.toml"
    config.write_text('tls_self_signed = true\nrest_port = 8081\nthumbnail_interval = 10\npublic_ip = "203.0.113.7"\n')
    settings = load_settings(config, environ={})
    assert (settings.tls.self_signed, settings.http.rest_port, settings.thumbnails.interval) == (True, 8081, 10.0)
    settings = load_settings(config, environ={"STREAMSNAP_TLS_SELF_SIGNED": "no", "STREAMSNAP_REST_PORT": "9091"})
    assert (settings.tls.self_signed, settings.http.rest_port) == (False, 9091)
    settings = load_settings(config, {"tls_self_signed": True, "public_ip": "198.51.100.1"},
                             environ={"STREAMSNAP_TLS_SELF_SIGNED": "0", "STREAMSNAP_PUBLIC_IP": "192.0.2.1"})
    assert (settings.tls.self_signed, settings.webrtc.public_ip) == (True, "198.51.100.1")


@pytest.mark.parametrize("raw", ["maybe", "2", ""])
def test_bad_booleans_are_refused_by_name(raw: str) -> None:
    with pytest.raises(SettingsError, match="STREAMSNAP_TLS_SELF_SIGNED"):
        load_settings(environ={"STREAMSNAP_TLS_SELF_SIGNED": raw})


def test_a_number_is_not_a_boolean_in_toml(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("tls_self_signed = 1\n")
    with pytest.raises(SettingsError, match="tls_self_signed"):
        load_settings(config, environ={})


def test_json_log_lines_merge_fixed_and_per_call_context() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("streamsnap.test.json")
    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)
    log = ContextAdapter(logger, {"session": "abc"})
    log.info("stream %s publishing", "cam", extra={"stream": "cam"})
    log.info("no stream here")
    lines = [json.loads(JsonFormatter().format(record)) for record in records]
    assert lines[0]["message"] == "stream cam publishing"
    assert (lines[0]["session"], lines[0]["stream"]) == ("abc", "cam")
    assert lines[1]["session"] == "abc" and "stream" not in lines[1]
    assert lines[0]["level"] == "info" and lines[0]["logger"] == "streamsnap.test.json"


@pytest.mark.parametrize(
    ("variable", "value"),
    [("STREAMSNAP_LOG_FORMAT", "xml"), ("STREAMSNAP_THUMBNAIL_QUALITY", "0"), ("STREAMSNAP_REST_PORT", "70000"),
     ("STREAMSNAP_IMAGE_MAX_WIDTH", "0")],
)
def test_out_of_range_settings_are_refused_by_name(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"^{variable}: expected "):
        load_settings(environ={variable: value})


ANSWER = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 0.0.0.0", "s=-", "t=0 0",
    "m=video 40001 UDP/TLS/RTP/SAVPF 96", "c=IN IP4 10.0.0.5",
    "a=candidate:1 1 udp 2130706431 10.0.0.5 40001 typ host",
    "a=candidate:2 1 udp 2130706431 172.17.0.1 40002 typ host",
    "a=candidate:3 1 udp 1694498815 198.51.100.9 40001 typ srflx raddr 10.0.0.5 rport 40001",
    "a=end-of-candidates", "",
])


def test_public_address_replaces_host_candidates_only() -> None:
    rewritten = announce_public_address(ANSWER, "203.0.113.7")
    lines = rewritten.split("\r\n")
    assert "c=IN IP4 203.0.113.7" in lines
    assert "a=candidate:1 1 udp 2130706431 203.0.113.7 40001 typ host" in lines
    assert "a=candidate:2 1 udp 2130706431 203.0.113.7 40002 typ host" in lines
    assert "a=candidate:3 1 udp 1694498815 198.51.100.9 40001 typ srflx raddr 10.0.0.5 rport 40001" in lines
    assert announce_public_address(ANSWER, "") == ANSWER
    with pytest.raises(ValueError):
        announce_public_address(ANSWER, "not-an-address")


def test_turn_urls_carry_the_configured_credentials() -> None:
    settings = WebRtcSettings(ice_servers=["stun:stun.invalid:3478", "turn:turn.invalid:3478"],
                              turn_username="snap", turn_password="secret")
    stun, turn = (ice_server(url, settings) for url in settings.ice_servers)
    assert (stun.urls, stun.username, stun.credential) == ("stun:stun.invalid:3478", None, None)
    assert (turn.urls, turn.username, turn.credential) == ("turn:turn.invalid:3478", "snap", "secret")
