"""The one settings object of streamsnap: defaults < TOML config file < environment < flags."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "STREAMSNAP_"


def _setting(default: Any, help: str) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    """Every setting of the server, with its default and meaning."""

    host: str = _setting("0.0.0.0", "Address to listen on (HTTP and WebSocket share it).")
    port: int = _setting(8080, "TCP port to listen on.")
    ice_addresses: list[str] = _setting(
        [], "IPv4 addresses to offer as ICE host candidates; empty: every interface, loopback included."
    )
    ice_servers: list[str] = _setting([], "STUN/TURN server urls used when gathering candidates.")
    turn_username: str = _setting("", "User name for the `turn:`/`turns:` urls of `ice_servers`.")
    turn_password: str = _setting("", "Password for the `turn:`/`turns:` urls of `ice_servers`.")
    keepalive_interval: float = _setting(5.0, "Seconds between the server's pings to each client.")
    keepalive_timeout: float = _setting(30.0, "A client silent for this many seconds is dropped.")
    connect_timeout: float = _setting(20.0, "Seconds for a publisher's media to start flowing.")
    max_frame_age_ms: float = _setting(
        1000.0, "Oldest cached frame a snapshot may show; older means asking for a fresh keyframe."
    )
    keyframe_timeout: float = _setting(3.0, "Seconds a snapshot waits for a decodable frame.")
    snapshot_workers: int = _setting(2, "Threads that decode and encode pictures.")
    png_compress_level: int = _setting(1, "zlib level of snapshot PNGs (0-9; 1 is fast).")
    gop_max_frames: int = _setting(300, "Encoded frames kept per stream after its last keyframe.")
    gop_max_bytes: int = _setting(4 * 1024 * 1024, "Bytes kept per stream after its last keyframe.")
    max_publish_bitrate: int = _setting(
        2_500_000, "Bits per second publishers are told (REMB, once a second) they may send."
    )
    event_loop: str = _setting("uvloop", "Event loop of `serve`: uvloop (less CPU per packet) or asyncio.")
    max_streams_per_session: int = _setting(16, "Streams one session may publish at once.")
    max_pending_snapshots: int = _setting(64, "Snapshot requests one session may have in flight.")
    max_message_bytes: int = _setting(1024 * 1024, "Largest WebSocket message accepted (closed with 1009 above).")
    log_level: str = _setting("info", "Log level: debug, info, warning or error.")
    log_format: str = _setting("text", "Log lines as `text` or `json` (one object a line, with session and stream).")
    node_name: str = _setting("", "Name of this server in stream listings; empty: the host name.")
    rest_port: int = _setting(0, "Second TCP port serving only `/rest-api/…` (WCS clients expect 8081); 0: off.")
    tls_port: int = _setting(8443, "TCP port for https and wss when a certificate is configured.")
    tls_cert: str = _setting("", "PEM certificate (chain) file; with `tls_key`, serves https + wss on `tls_port`.")
    tls_key: str = _setting("", "PEM private key file of `tls_cert`.")
    tls_self_signed: bool = _setting(False, "Serve https + wss with a throwaway self-signed certificate.")
    public_ip: str = _setting(
        "", "Address announced in place of local host candidates (a server behind 1:1 NAT); empty: as bound."
    )
    image_max_width: int = _setting(3840, "Largest `width` an image url may ask for.")
    image_max_height: int = _setting(2160, "Largest `height` an image url may ask for.")
    thumbnail_interval: float = _setting(0.0, "Seconds between thumbnails of every live stream; 0: off.")
    thumbnail_dir: str = _setting("thumbnails", "Directory thumbnails are written to (`<name>.jpg`).")
    thumbnail_width: int = _setting(0, "Thumbnail width (height keeps the aspect); 0: the stream's own size.")
    thumbnail_quality: int = _setting(80, "JPEG quality of thumbnails (1-100).")
    thumbnail_history: int = _setting(0, "Older thumbnails kept per stream in `<dir>/<name>/`; 0: none.")
    thumbnail_webhook: str = _setting("", "URL that gets a POST `{name, path, taken_at}` per thumbnail; empty: none.")
    # Reliability and access control (docs/reliability.md).
    max_sessions: int = _setting(1000, "WebSocket sessions the server holds at once; more are refused.")
    max_connections_per_ip: int = _setting(50, "WebSocket sessions one client address may hold at once.")
    max_streams: int = _setting(200, "Published streams on the whole server; more are refused.")
    max_snapshots_in_flight: int = _setting(256, "Snapshot requests in flight on the whole server.")
    message_rate: float = _setting(100.0, "Messages per second one session may send on average.")
    message_burst: int = _setting(200, "Messages one session may send in a burst above the rate; then closed.")
    rtp_timeout: float = _setting(10.0, "A publisher that sends no video for this many seconds is FAILED.")
    shutdown_grace: float = _setting(5.0, "Seconds a stopping server gives in-flight snapshots to finish.")
    allowed_origins: list[str] = _setting(
        [], "Origins (scheme://host[:port]) browsers may connect from; empty: any. '*' allows any."
    )
    auth_secret: str = _setting("", "HS256 secret of access tokens; set: every session needs a valid token.")
    auth_issuer: str = _setting("", "Required `iss` claim of access tokens, when set.")
    backend_url: str = _setting("", "Application backend that authorizes connect, publishStream and snapshot.")
    backend_secret: str = _setting("", "HMAC-SHA256 key to sign backend requests (X-Streamsnap-Signature).")
    backend_timeout: float = _setting(3.0, "Seconds to wait for the backend's answer.")
    backend_fail_open: bool = _setting(False, "Allow the action when the backend cannot be reached (default: refuse).")


class SettingsError(ValueError):
    """A setting could not be read; the message names it."""


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _convert(name: str, kind: Any, value: Any) -> Any:
    target = {"str": str, "int": int, "float": float, "bool": bool, "list[str]": list}[str(kind)]
    if target is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _BOOLEANS:
            return _BOOLEANS[value.strip().lower()]
        raise SettingsError(f"{name}: expected true or false, got {value!r}")
    if target is list:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise SettingsError(f"{name}: expected a list of strings, got {value!r}")
    if target is str and not isinstance(value, str):
        raise SettingsError(f"{name}: expected str, got {value!r}")
    if (target is int and isinstance(value, float)) or isinstance(value, bool):
        raise SettingsError(f"{name}: expected {target.__name__}, got {value!r}")
    try:
        return target(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{name}: expected {target.__name__}, got {value!r}") from None


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from the defaults, then `config_file` (TOML), then STREAMSNAP_* variables, then `overrides`."""
    fields = {f.name: f for f in dataclasses.fields(Settings)}
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"config file {config_file}: {exc}") from None
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in fields:
                raise SettingsError(f"config file {config_file}: unknown setting {key!r}")
            values[name] = _convert(name, fields[name].type, value)
    env = os.environ if environ is None else environ
    for name, f in fields.items():
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = _convert(ENV_PREFIX + name.upper(), f.type, raw)
    for name, value in (overrides or {}).items():
        if value is not None:
            values[name] = _convert(name, fields[name].type, value)
    settings = Settings(**values)
    _check_ranges(settings)
    return settings


_CHOICES = {
    "event_loop": ("uvloop", "asyncio"), "log_format": ("text", "json"),
    "log_level": ("debug", "info", "warning", "error"),
}
_RANGES = {
    "port": (0, 65535), "rest_port": (0, 65535), "tls_port": (0, 65535), "thumbnail_quality": (1, 100),
    "thumbnail_width": (0, 1 << 14), "thumbnail_history": (0, 1 << 20), "image_max_width": (1, 1 << 14),
    "image_max_height": (1, 1 << 14), "thumbnail_interval": (0, 1 << 20),
}


def _check_ranges(settings: Settings) -> None:
    if settings.public_ip:
        try:
            ipaddress.ip_address(settings.public_ip)
        except ValueError:
            raise SettingsError(f"public_ip: expected an IP address, got {settings.public_ip!r}") from None
    for name, choices in _CHOICES.items():
        if getattr(settings, name) not in choices:
            raise SettingsError(f"{name}: expected one of {', '.join(choices)}, got {getattr(settings, name)!r}")
    for name, (low, high) in _RANGES.items():
        if not low <= getattr(settings, name) <= high:
            raise SettingsError(f"{name}: expected {low}..{high}, got {getattr(settings, name)!r}")


def settings_table() -> str:
    """The settings as a markdown table (the README's table is this, checked by a test)."""
    rows = ["| setting | environment | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(Settings):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if isinstance(default, list):
            shown = ",".join(default)
        elif isinstance(default, bool):
            shown = str(default).lower()
        else:
            shown = str(default)
        shown = f"`{shown}`" if shown else "*(empty)*"
        rows.append(f"| `{f.name}` | `{ENV_PREFIX}{f.name.upper()}` | {shown} | {f.metadata['help']} |")
    return "\n".join(rows) + "\n"
