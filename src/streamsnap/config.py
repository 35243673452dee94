"""The one settings object of streamsnap: defaults < TOML config file < environment < flags.

Each setting is declared once, as a field of `Settings`: its type carries the values it
allows (msgspec constraints, a `Literal` of choices, or a pattern), then its default and
help text. msgspec checks every value against that type, whether it comes from the config
file, the environment, flags or a direct `Settings(...)`; a refusal is one `SettingsError`
line naming the setting (or its environment variable) and the value given.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

ENV_PREFIX = "STREAMSNAP_"

# Kinds of value. `extra={"range": …}` words a range msgspec's bounds cannot (patterns, free text);
# the README table and the error messages show it.
Port = Annotated[int, Meta(ge=0, le=65535)]
Count = Annotated[int, Meta(ge=1)]
# A day bounds every wait: larger (or inf, which TOML and float() accept) is a typo, not a plan.
Seconds = Annotated[float, Meta(gt=0, le=86400)]
Pixels = Annotated[int, Meta(ge=1, le=16384)]
Text = Annotated[str, Meta(extra={"range": "any string"})]

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_H16 = r"[0-9A-Fa-f]{1,4}"
_LS32 = rf"(?:{_H16}:{_H16}|{_IPV4})"
# RFC 3986's IPv6address, alternative by alternative (no zone index).
_IPV6 = "(?:" + "|".join([
    rf"(?:{_H16}:){{6}}{_LS32}",
    rf"::(?:{_H16}:){{5}}{_LS32}",
    rf"(?:{_H16})?::(?:{_H16}:){{4}}{_LS32}",
    rf"(?:(?:{_H16}:){{0,1}}{_H16})?::(?:{_H16}:){{3}}{_LS32}",
    rf"(?:(?:{_H16}:){{0,2}}{_H16})?::(?:{_H16}:){{2}}{_LS32}",
    rf"(?:(?:{_H16}:){{0,3}}{_H16})?::{_H16}:{_LS32}",
    rf"(?:(?:{_H16}:){{0,4}}{_H16})?::{_LS32}",
    rf"(?:(?:{_H16}:){{0,5}}{_H16})?::{_H16}",
    rf"(?:(?:{_H16}:){{0,6}}{_H16})?::",
]) + ")"
IPv4Addresses = Annotated[
    list[Annotated[str, Meta(pattern=rf"^{_IPV4}\Z")]], Meta(extra={"range": "IPv4 addresses"})
]
IPAddressOrEmpty = Annotated[
    str, Meta(pattern=rf"^(?:{_IPV4}|{_IPV6})?\Z", extra={"range": "an IPv4 or IPv6 address or empty"})
]
IceServerUrls = Annotated[
    list[Annotated[str, Meta(pattern=r"^(?:stun|stuns|turn|turns):\S+\Z")]],
    Meta(extra={"range": "`stun:`/`stuns:`/`turn:`/`turns:` urls"}),
]
HttpUrlOrEmpty = Annotated[
    str, Meta(pattern=r"^(?:https?://\S+)?\Z", extra={"range": "an http:// or https:// url or empty"})
]
Texts = Annotated[list[str], Meta(extra={"range": "any strings"})]
RedisUrlOrEmpty = Annotated[
    str, Meta(pattern=r"^(?:(?:redis|rediss|unix)://\S+)?\Z",
              extra={"range": "a redis://, rediss:// or unix:// url or empty"})
]
KeyPrefix = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,64}\Z", extra={"range": "1-64 of A-Z a-z 0-9 _ . -"})]
Cidrs = Annotated[
    list[Annotated[str, Meta(pattern=rf"^(?:{_IPV4}(?:/[0-9]{{1,2}})?|{_IPV6}(?:/[0-9]{{1,3}})?)\Z")]],
    Meta(extra={"range": "IPv4 or IPv6 addresses or networks (10.0.0.0/8, fd00::/8)"}),
]
RtspHosts = Annotated[
    list[Annotated[str, Meta(pattern=r"^[0-9A-Za-z._:-]+(?:/[0-9]{1,3})?\Z")]],
    Meta(extra={"range": "host names, IP addresses or networks (10.0.0.0/8)"}),
]


class Camera(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One `[[cameras]]` table of the config file: a camera pulled from start and kept up."""

    name: Annotated[str, Meta(min_length=1, max_length=256)]
    "The stream name its pictures are asked by."
    uri: Annotated[str, Meta(pattern=r"^rtsp://\S+\Z")]
    "The camera's rtsp:// url (credentials in it are never shown)."
    transport: Literal["tcp", "udp"] | None = None
    "RTSP transport; None: `rtsp_transport`."


Cameras = Annotated[list[Camera], Meta(extra={"range": "`[[cameras]]` tables: name, uri (rtsp://), transport"})]


def _setting(default: Any, help: str) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Settings:
    """Every setting of the server: allowed values (the type), default and meaning."""

    host: Text = _setting("0.0.0.0", "Address to listen on (HTTP and WebSocket share it).")
    port: Port = _setting(8080, "TCP port to listen on.")
    ice_addresses: IPv4Addresses = _setting(
        [], "IPv4 addresses to offer as ICE host candidates; empty: every interface, loopback included."
    )
    ice_servers: IceServerUrls = _setting([], "STUN/TURN server urls used when gathering candidates.")
    turn_username: Text = _setting("", "User name for the `turn:`/`turns:` urls of `ice_servers`.")
    turn_password: Text = _setting("", "Password for the `turn:`/`turns:` urls of `ice_servers`.")
    keepalive_interval: Seconds = _setting(5.0, "Seconds between the server's pings to each client.")
    keepalive_timeout: Seconds = _setting(30.0, "A client silent for this many seconds is dropped.")
    connect_timeout: Seconds = _setting(20.0, "Seconds for a publisher's media to start flowing.")
    max_frame_age_ms: Annotated[float, Meta(ge=0, le=86_400_000)] = _setting(
        1000.0, "Oldest cached frame a snapshot may show; older means asking for a fresh keyframe."
    )
    keyframe_timeout: Seconds = _setting(3.0, "Seconds a snapshot waits for a decodable frame.")
    max_keyframe_requests_per_second: Annotated[float, Meta(gt=0, le=100)] = _setting(
        2.0, "Keyframe requests (PLI) sent to one publisher per second at most, however many pictures are asked."
    )
    snapshot_workers: Count = _setting(2, "Threads that decode and encode pictures.")
    png_compress_level: Annotated[int, Meta(ge=0, le=9)] = _setting(1, "zlib level of snapshot PNGs (1 is fast).")
    gop_max_frames: Count = _setting(300, "Encoded frames kept per stream after its last keyframe.")
    gop_max_bytes: Count = _setting(4 * 1024 * 1024, "Bytes kept per stream after its last keyframe.")
    picture_cache_bytes: Annotated[int, Meta(ge=0)] = _setting(
        32 * 1024 * 1024,
        "Bytes of encoded pictures kept for reuse by requests whose max_age_ms allows an older picture; 0: off.",
    )
    # Below ~10 kbit/s no browser encoder gets a picture through.
    max_publish_bitrate: Annotated[int, Meta(ge=10_000)] = _setting(
        2_500_000, "Bits per second publishers are told (REMB, once a second) they may send."
    )
    event_loop: Literal["uvloop", "asyncio"] = _setting(
        "uvloop", "Event loop of `serve`: uvloop (less CPU per packet) or asyncio."
    )
    max_streams_per_session: Count = _setting(16, "Streams one session may publish at once.")
    max_pending_snapshots: Count = _setting(64, "Snapshot requests one session may have in flight.")
    # A WCS `connect` or an SDP offer alone is a few hundred bytes to a few kB.
    max_message_bytes: Annotated[int, Meta(ge=1024)] = _setting(
        1024 * 1024, "Largest WebSocket message accepted (closed with 1009 above)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = _setting("info", "Log level.")
    log_format: Literal["text", "json"] = _setting(
        "text", "Log lines as `text` or `json` (one object a line, with session and stream)."
    )
    node_name: Text = _setting("", "Name of this server in stream listings; empty: the host name.")
    rest_port: Port = _setting(0, "Second TCP port serving only `/rest-api/…` (WCS clients expect 8081); 0: off.")
    tls_port: Port = _setting(8443, "TCP port for https and wss when a certificate is configured.")
    tls_cert: Text = _setting("", "PEM certificate (chain) file; with `tls_key`, serves https + wss on `tls_port`.")
    tls_key: Text = _setting("", "PEM private key file of `tls_cert`.")
    tls_self_signed: bool = _setting(False, "Serve https + wss with a throwaway self-signed certificate.")
    public_ip: IPAddressOrEmpty = _setting(
        "", "Address announced in place of local host candidates (a server behind 1:1 NAT); empty: as bound."
    )
    image_max_width: Pixels = _setting(3840, "Largest `width` an image url may ask for.")
    image_max_height: Pixels = _setting(2160, "Largest `height` an image url may ask for.")
    thumbnail_interval: Annotated[float, Meta(ge=0, le=1 << 20)] = _setting(
        0.0, "Seconds between thumbnails of every live stream; 0: off."
    )
    thumbnail_dir: Text = _setting("thumbnails", "Directory thumbnails are written to (`<name>.jpg`).")
    thumbnail_width: Annotated[int, Meta(ge=0, le=16384)] = _setting(
        0, "Thumbnail width (height keeps the aspect); 0: the stream's own size."
    )
    thumbnail_quality: Annotated[int, Meta(ge=1, le=100)] = _setting(80, "JPEG quality of thumbnails.")
    thumbnail_history: Annotated[int, Meta(ge=0, le=1 << 20)] = _setting(
        0, "Older thumbnails kept per stream in `<dir>/<name>/`; 0: none."
    )
    thumbnail_webhook: HttpUrlOrEmpty = _setting(
        "", "URL that gets a POST `{name, path, taken_at}` per thumbnail; empty: none."
    )
    # Reliability and access control (docs/reliability.md).
    max_sessions: Count = _setting(1000, "WebSocket sessions the server holds at once; more are refused.")
    max_connections_per_ip: Count = _setting(500, "WebSocket sessions one client address may hold at once.")
    max_streams: Count = _setting(200, "Published streams on the whole server; more are refused.")
    max_snapshots_in_flight: Count = _setting(256, "Snapshot requests in flight on the whole server.")
    max_snapshots_per_client: Count = _setting(
        128, "Snapshot requests one client address may have in flight, over every transport."
    )
    message_rate: Annotated[float, Meta(gt=0)] = _setting(100.0, "Messages per second one session may send on average.")
    message_burst: Count = _setting(200, "Messages one session may send in a burst above the rate; then closed.")
    rtp_timeout: Seconds = _setting(10.0, "A publisher that sends no video for this many seconds is FAILED.")
    shutdown_grace: Annotated[float, Meta(ge=0, le=86400)] = _setting(
        5.0, "Seconds a stopping server gives in-flight snapshots to finish."
    )
    allowed_origins: Texts = _setting(
        [], "Origins (scheme://host[:port]) browsers may connect from; empty: any. '*' allows any."
    )
    auth_secret: Text = _setting("", "HS256 secret of access tokens; set: every session needs a valid token.")
    auth_issuer: Text = _setting("", "Required `iss` claim of access tokens, when set.")
    backend_url: HttpUrlOrEmpty = _setting(
        "", "Application backend that authorizes connect, publishStream and snapshot."
    )
    backend_secret: Text = _setting("", "HMAC-SHA256 key to sign backend requests (X-Streamsnap-Signature).")
    backend_timeout: Seconds = _setting(3.0, "Seconds to wait for the backend's answer.")
    backend_fail_open: bool = _setting(False, "Allow the action when the backend cannot be reached (default: refuse).")
    # Cluster
    redis_url: RedisUrlOrEmpty = _setting(
        "", "Redis (redis://host:6379/0, rediss://, or a Redis Cluster node) shared by the nodes of a cluster; "
        "empty: this node runs alone."
    )
    cluster_secret: Text = _setting(
        "", "Secret the nodes of a cluster sign their requests to each other with (at least 16 characters; "
        "required with `redis_url`)."
    )
    advertise_url: HttpUrlOrEmpty = _setting(
        "", "URL other nodes reach this node's cluster listener at; empty: http://<cluster_host>:<bound port>."
    )
    cluster_host: Text = _setting("", "Address of the cluster listener (node-to-node requests); empty: `host`.")
    cluster_port: Port = _setting(0, "Port of the cluster listener; 0: any free port (announced in Redis).")
    cluster_ttl: Annotated[float, Meta(ge=1, le=600)] = _setting(
        5.0, "Seconds a node's stream records live without a heartbeat (a dead node's streams vanish after it)."
    )
    cluster_prefix: KeyPrefix = _setting(
        "streamsnap", "Namespace of this cluster's keys in Redis (one hash tag, so Redis Cluster keeps them together)."
    )
    workers: Annotated[int, Meta(ge=1, le=64)] = _setting(
        1, "Processes `serve` runs on this machine, one node each, sharing `port` (needs `redis_url` when > 1)."
    )
    # RTMP and WHIP
    rtmp_port: Port = _setting(0, "TCP port of the RTMP listener for encoders (1935 is the usual one); 0: off.")
    rtmp_host: Text = _setting("", "Address the RTMP listener binds; empty: the same as `host`.")
    rtmp_max_connections: Count = _setting(100, "RTMP connections held at once; more are closed on arrival.")
    rtmp_max_chunk_size: Annotated[int, Meta(ge=128, le=16_777_215)] = _setting(
        65536, "Largest chunk size an RTMP publisher may set (larger closes the connection)."
    )
    rtmp_max_message_bytes: Annotated[int, Meta(ge=65536, le=64 * 1024 * 1024)] = _setting(
        4 * 1024 * 1024, "Largest RTMP message (one encoded video frame) accepted."
    )
    rtmp_handshake_timeout: Seconds = _setting(10.0, "Seconds an RTMP connection has from accept to `publish`.")
    rtmp_idle_timeout: Seconds = _setting(30.0, "An RTMP connection that sends nothing this many seconds is closed.")
    cors_origins: Texts = _setting(
        [], "Origins (scheme://host[:port]) whose pages may read pictures, /streams and REST and call WHIP "
        "across origins (CORS); '*': any; empty: none."
    )
    # RTSP cameras
    rtsp_transport: Literal["tcp", "udp"] = _setting(
        "tcp", "RTSP transport of pulls that name none: tcp (interleaved in the RTSP connection) or udp."
    )
    rtsp_open_timeout: Seconds = _setting(5.0, "Seconds a camera has to answer and describe its stream.")
    rtsp_packet_timeout: Seconds = _setting(5.0, "A camera that sends no packet for this many seconds has failed.")
    rtsp_on_demand: bool = _setting(True, "Pull a camera when a picture of an `rtsp://` stream name is asked.")
    rtsp_idle_timeout: Seconds = _setting(
        60.0, "A pull started by a picture of an `rtsp://` name stops after this many seconds without pictures."
    )
    rtsp_allowed_hosts: RtspHosts = _setting(
        [], "Hosts (names, addresses, CIDR networks) cameras may be pulled from; empty: any."
    )
    rtsp_reconnect_max: Seconds = _setting(
        30.0, "Longest wait between reconnections of a configured camera (exponential back-off with jitter)."
    )
    rtsp_max_redirects: Annotated[int, Meta(ge=0, le=10)] = _setting(
        3, "RTSP redirects a pull follows (each target host checked against `rtsp_allowed_hosts`)."
    )
    cameras: Cameras = _setting(
        [], "Cameras pulled from start and kept up: `[[cameras]]` tables of `name`, `uri`, `transport` "
        "(config file only)."
    )

    # Dashboards: thumbnails served, MJPEG
    thumbnail_remove_ended: bool = _setting(
        False, "Remove a stream's thumbnail files (and its history) at the first round after the stream ended."
    )
    mjpeg_max_fps: Annotated[float, Meta(ge=0.1, le=60)] = _setting(
        10.0, "Highest `fps` an MJPEG watcher may ask (`/streams/{name}/stream.mjpeg`); the default is 5 or this."
    )
    mjpeg_max_watchers_per_stream: Annotated[int, Meta(ge=1, le=100_000)] = _setting(
        20, "MJPEG watchers of one stream at once; more are answered 429."
    )
    mjpeg_max_watchers: Annotated[int, Meta(ge=1, le=100_000)] = _setting(
        200, "MJPEG watchers on the whole server at once; more are answered 503."
    )

    # Hostile clients
    sdp_max_bytes: Annotated[int, Meta(ge=1024, le=1024 * 1024)] = _setting(
        65536, "Largest SDP offer read (bytes); larger is refused \"Invalid SDP\" before any parsing."
    )
    sdp_max_media: Annotated[int, Meta(ge=1, le=256)] = _setting(8, "Media sections (m= lines) an offer may have.")
    sdp_max_lines: Annotated[int, Meta(ge=16, le=100_000)] = _setting(
        1000, "Lines (attributes included) an offer may have."
    )
    sdp_max_candidates: Annotated[int, Meta(ge=0, le=10_000)] = _setting(
        32, "ICE candidates an offer may carry (each is a target of connectivity checks)."
    )
    login_timeout: Seconds = _setting(
        5.0, "Seconds a new WebSocket has to send `connection`; nothing before it keeps the session alive."
    )
    auth_allow_no_exp: bool = _setting(False, "Accept access tokens without an `exp` claim (they never expire).")
    metrics_host: Text = _setting("", "Address of the separate metrics listener; empty: `host`.")
    metrics_port: Port = _setting(
        0, "Port of a separate listener serving only `/metrics` without a token; 0: off (`/metrics` on the "
        "main port needs a token with the `metrics` right when `auth_secret` is set)."
    )
    metrics_max_streams: Annotated[int, Meta(ge=0, le=100_000)] = _setting(
        100, "Live streams that get per-stream series in `/metrics`, at most; 0: no per-stream series."
    )
    http_header_timeout: Seconds = _setting(
        10.0, "Seconds an HTTP connection has to send complete request headers (the first request's, and the "
        "next one's on a kept-alive connection: an idle one is closed after it too); then it is closed."
    )
    max_http_connections_per_ip: Count = _setting(
        1024, "Open HTTP connections (WebSockets included) one client address may hold; more are closed at once."
    )
    trusted_proxies: Cidrs = _setting(
        [], "Networks of reverse proxies (10.0.0.0/8, ::1/128) whose X-Forwarded-For / Forwarded name the "
        "client address (for limits, logs and hooks); empty: none."
    )
    max_streams_per_subject: Annotated[int, Meta(ge=0)] = _setting(
        100, "Streams (pending or live) the tokens of one subject (`sub`) may hold at once; 0: no quota."
    )
    max_snapshots_per_subject: Annotated[int, Meta(ge=0)] = _setting(
        128, "Snapshot requests the tokens of one subject (`sub`) may have in flight; 0: no quota."
    )
    rtp_max_packets_per_frame: Annotated[int, Meta(ge=16, le=65536)] = _setting(
        4096, "RTP packets one video frame being assembled may hold; a frame over it is given up (its bytes count "
        "too: frames being assembled hold at most `gop_max_bytes` per stream)."
    )
    rtp_max_sources: Annotated[int, Meta(ge=1, le=1024)] = _setting(
        8, "RTP sources (SSRCs, RTX included) one published stream may send; packets of further ones are dropped."
    )

    # Load
    snapshot_deadline_ms: Annotated[float, Meta(ge=10, le=60_000)] = _setting(
        500.0, "A picture the workers cannot make within this many ms, at the rate they are measured to "
        "achieve, is refused at once (`overloaded`, HTTP 503 with Retry-After)."
    )
    keyframe_request_cost_frames: Annotated[float, Meta(ge=0, le=10_000)] = _setting(
        10.0, "The extra keyframe a PLI makes the publisher send, counted as this many frames of decoding "
        "when the engine chooses between the cached group and a PLI."
    )
    gc_freeze: bool = _setting(
        True, "Keep the objects of live streams out of the garbage collector's full passes (which stall the "
        "event loop for tens of ms with many streams); an ended stream's garbage is collected within 12 s."
    )
    max_event_loop_lag_ms: Annotated[float, Meta(ge=1, le=60_000)] = _setting(
        250.0, "New pictures are refused (`overloaded`) while the event loop that receives media runs this "
        "many ms late (mean over the last second)."
    )

    def __post_init__(self) -> None:
        # Direct construction is checked like every other layer; ints given for floats become floats.
        for name, kind in _kinds().items():
            value = getattr(self, name)
            object.__setattr__(self, name, _check(name, kind, value, value))
        _check_together(self)


class SettingsError(ValueError):
    """A setting could not be read; the one-line message names it."""


MIN_CLUSTER_SECRET = 16
MIN_AUTH_SECRET_BYTES = 32
"HS256 keys shorter than the hash (RFC 7518, section 3.2) are refused."


def _check_together(settings: Settings) -> None:
    """Settings that only make sense with others."""
    secret_bytes = len(settings.auth_secret.encode())
    if 0 < secret_bytes < MIN_AUTH_SECRET_BYTES:
        raise SettingsError(f"auth_secret is {secret_bytes} bytes; HS256 needs at least {MIN_AUTH_SECRET_BYTES} "
                            "(RFC 7518), e.g. from `openssl rand -base64 32`")
    for network in settings.trusted_proxies:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise SettingsError(f"trusted_proxies: {network!r} is not an address or network") from None
    if settings.workers > 1 and not settings.redis_url:
        raise SettingsError(f"workers: {settings.workers} workers need `redis_url` (they coordinate through Redis)")
    # With several workers and no secret, `serve` makes one for its workers (they share one machine).
    needs_secret = settings.redis_url and (settings.workers == 1 or settings.cluster_secret)
    if needs_secret and len(settings.cluster_secret) < MIN_CLUSTER_SECRET:
        raise SettingsError(f"cluster_secret: at least {MIN_CLUSTER_SECRET} characters are needed with `redis_url` "
                            "(the nodes sign their requests to each other with it)")


@functools.cache
def _kinds() -> dict[str, Any]:
    """Each setting's declared type, constraints included."""
    hints = typing.get_type_hints(Settings, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings)}


def _metas(kind: Any) -> list[Meta]:
    if typing.get_origin(kind) is Annotated:
        return [meta for meta in typing.get_args(kind)[1:] if isinstance(meta, Meta)]
    return []


def _bare(kind: Any) -> Any:
    """`kind` without its constraints: what a value must be before its range is looked at."""
    if typing.get_origin(kind) is Annotated:
        return _bare(typing.get_args(kind)[0])
    if typing.get_origin(kind) is Literal:
        return type(typing.get_args(kind)[0])
    if typing.get_origin(kind) is list:
        return list[_bare(typing.get_args(kind)[0])]  # type: ignore[misc]
    return kind


def _type_words(kind: Any) -> str:
    bare = _bare(kind)
    if bare is bool:
        return "true or false"
    if typing.get_origin(bare) is list and typing.get_args(bare)[0] is Camera:
        return "`[[cameras]]` tables (name, uri rtsp://..., transport tcp or udp)"
    if typing.get_origin(bare) is list:
        return "a list of strings"
    return str(bare.__name__)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _range_words(kind: Any) -> str:
    """The values `kind` allows, in words: '0..65535', '> 0 and <= 100', 'one of text, json'."""
    if kind is bool:
        return "true or false"
    if typing.get_origin(kind) is Literal:
        return "one of " + ", ".join(str(choice) for choice in typing.get_args(kind))
    metas = _metas(kind)
    for meta in metas:
        if meta.extra and "range" in meta.extra:
            return str(meta.extra["range"])
    bounds = {key: getattr(meta, key) for meta in metas for key in ("ge", "gt", "le", "lt")
              if getattr(meta, key) is not None}
    if "ge" in bounds and "le" in bounds:
        return f"{_number(bounds['ge'])}..{_number(bounds['le'])}"
    symbols = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    words = " and ".join(f"{symbols[key]} {_number(bound)}" for key, bound in bounds.items())
    if not words:
        raise TypeError(f"no range declared for {kind!r}")
    return words


def setting_ranges() -> dict[str, str]:
    """Each setting's allowed values in words, as the README table and the error messages show them."""
    return {name: _range_words(kind) for name, kind in _kinds().items()}


def _check(label: str, kind: Any, value: Any, given: Any, *, from_text: bool = False) -> Any:
    """`value` converted to `kind` by msgspec, or a SettingsError naming `label` and the value as `given`."""
    try:
        return msgspec.convert(value, kind, strict=not from_text)
    except msgspec.ValidationError:
        pass
    try:
        msgspec.convert(value, _bare(kind), strict=not from_text)
    except msgspec.ValidationError:
        raise SettingsError(f"{label}: expected {_type_words(kind)}, got {given!r}") from None
    raise SettingsError(f"{label}: expected {_range_words(kind)}, got {given!r}") from None


_BOOLEANS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _read(label: str, kind: Any, value: Any, *, text_layer: bool) -> Any:
    """One value of one layer: a string for a list is comma-separated; in the environment and flags a
    string for a number or a boolean is parsed (a TOML file has typed values and gets no such help)."""
    bare = _bare(kind)
    parsed: Any = value
    from_text = False
    if isinstance(value, str):
        if typing.get_origin(bare) is list:
            parsed = [part.strip() for part in value.split(",") if part.strip()]
        elif text_layer and bare is bool:
            parsed = _BOOLEANS.get(value.strip().lower(), value)
        elif text_layer and bare in (int, float):
            parsed, from_text = value.strip(), True
    return _check(label, kind, parsed, value, from_text=from_text)


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from the defaults, then `config_file` (TOML), then STREAMSNAP_* variables, then `overrides`.

    `None` in `overrides` means "not given". Any unknown name or refused value raises SettingsError.
    """
    kinds = _kinds()
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = tomllib.loads(Path(config_file).read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise SettingsError(f"config file {config_file}: {exc}") from None
        for key, value in data.items():
            name = key.replace("-", "_")
            if name not in kinds:
                raise SettingsError(f"config file {config_file}: unknown setting {key!r}")
            values[name] = _read(name, kinds[name], value, text_layer=False)
    env = os.environ if environ is None else environ
    for name, kind in kinds.items():
        variable = ENV_PREFIX + name.upper()
        raw = env.get(variable)
        if raw is not None:
            values[name] = _read(variable, kind, raw, text_layer=True)
    for name, value in (overrides or {}).items():
        if name not in kinds:
            raise SettingsError(f"unknown setting {name!r}")
        if value is not None:
            values[name] = _read(name, kinds[name], value, text_layer=True)
    return Settings(**values)


def settings_table() -> str:
    """The settings as a markdown table (the README's table is this, checked by a test)."""
    rows = ["| setting | environment | default | allowed | meaning |", "|---|---|---|---|---|"]
    ranges = setting_ranges()
    for f in dataclasses.fields(Settings):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if isinstance(default, list):
            shown = ",".join(default)
        elif isinstance(default, bool):
            shown = str(default).lower()
        else:
            shown = str(default)
        shown = f"`{shown}`" if shown else "*(empty)*"
        rows.append(
            f"| `{f.name}` | `{ENV_PREFIX}{f.name.upper()}` | {shown} | {ranges[f.name]} | {f.metadata['help']} |"
        )
    return "\n".join(rows) + "\n"
