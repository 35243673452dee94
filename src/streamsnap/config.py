"""The settings of streamsnap, in sections: defaults < TOML config file < environment < flags.

Each setting is declared once, as a field of its section (`HttpSettings.port`, `RtmpSettings.port`, ...):
its type carries the values it allows (msgspec constraints, a `Literal` of choices, or a pattern),
then its default and help text. Each section is handed as it is to the part that uses it (the node
is built in `server/node.py`); no part keeps a copy of a default.

Every setting also keeps the flat name it had before sections (`port`, `rtmp_port`,
`snapshot_workers`): a config file may write `[http] port = 8080` or `port = 8080`, and both
`STREAMSNAP_HTTP_PORT` and `STREAMSNAP_PORT` set it. msgspec checks every value against its
type, whether it comes from the file, the environment, flags or a direct construction; a refusal
is one `SettingsError` line naming the setting as it was given, and the value.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import ipaddress
import os
import tomllib
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import msgspec
from msgspec import Meta

ENV_PREFIX = "STREAMSNAP_"

# Kinds of value. `extra={"range": …}` words a range msgspec's bounds cannot (patterns, free text);
# the configuration reference (docs/configuration.md) and the error messages show it.
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
    uri: Annotated[str, Meta(pattern=r"^[Rr][Tt][Ss][Pp][Ss]?://\S+\Z")]
    "The camera's rtsp:// or rtsps:// url (credentials in it are never shown)."
    transport: Literal["tcp", "udp"] | None = None
    "RTSP transport; None: `rtsp_transport` (rtsps:// is always tcp)."
    tls_verify: bool = True
    "For rtsps://: verify the camera's certificate (system CAs, or `rtsp.ca_file`); false: accept any."

    def __post_init__(self) -> None:
        if self.transport == "udp" and self.uri[:8].lower() == "rtsps://":
            raise ValueError("an rtsps:// camera is pulled over tcp (its media inside the TLS connection), "
                             "not transport = \"udp\"")


Cameras = Annotated[
    list[Camera], Meta(extra={"range": "`[[cameras]]` tables: name, uri (rtsp:// or rtsps://), transport, tls_verify"})
]


def _setting(default: Any, help: str, *, flat: str | None = None) -> Any:
    """A field of a section: its default, one line of help, and its flat name when not `<prefix><field>`."""
    metadata = {"help": help} if flat is None else {"help": help, "flat": flat}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


class SettingsError(ValueError):
    """A setting could not be read; the one-line message names it."""


@dataclass(frozen=True)
class Section:
    """A group of settings handed as a whole to the part that uses them; checked on construction."""

    NAME: ClassVar[str]
    "The section's name: its TOML table, and the middle of its environment names."
    FLAT_PREFIX: ClassVar[str] = ""
    "What its settings' flat names start with (`rtmp_` for `rtmp_port`)."
    HELP: ClassVar[str]
    "One line about the section."

    def __post_init__(self) -> None:
        # Direct construction is checked like every other layer; ints given for floats become floats.
        for name, kind in _kinds(type(self)).items():
            value = getattr(self, name)
            object.__setattr__(self, name, _check(f"{self.NAME}.{name}", kind, value, value))


@dataclass(frozen=True)
class HttpSettings(Section):
    NAME = "http"
    HELP = "The public HTTP listener (WebSocket signaling, pictures, REST, pages) and its guard."

    host: Text = _setting("0.0.0.0", "Address to listen on (HTTP and WebSocket share it).")
    port: Port = _setting(8080, "TCP port to listen on.")
    rest_port: Port = _setting(0, "Second TCP port serving only `/rest-api/…` (WCS clients expect 8081); 0: off.")
    header_timeout: Seconds = _setting(
        10.0, "Seconds an HTTP connection has to send complete request headers (the first request's, and the "
        "next one's on a kept-alive connection: an idle one is closed after it too); then it is closed.",
        flat="http_header_timeout",
    )
    max_connections_per_ip: Count = _setting(
        1024, "Open HTTP connections (WebSockets included) one client address may hold; more are closed at once.",
        flat="max_http_connections_per_ip",
    )
    trusted_proxies: Cidrs = _setting(
        [], "Networks of reverse proxies (10.0.0.0/8, ::1/128) whose X-Forwarded-For / Forwarded name the "
        "client address (for limits, logs and hooks); empty: none."
    )
    cors_origins: Texts = _setting(
        [], "Origins (scheme://host[:port]) whose pages may read pictures, /streams and REST and call WHIP "
        "across origins (CORS); '*': any; empty: none."
    )


@dataclass(frozen=True)
class TlsSettings(Section):
    NAME = "tls"
    FLAT_PREFIX = "tls_"
    HELP = "https and wss beside http, with a certificate of yours or a throwaway one."

    port: Port = _setting(8443, "TCP port for https and wss when a certificate is configured.")
    cert: Text = _setting("", "PEM certificate (chain) file; with `tls.key`, serves https + wss on `tls.port`.")
    key: Text = _setting("", "PEM private key file of `tls.cert`.")
    self_signed: bool = _setting(False, "Serve https + wss with a throwaway self-signed certificate.")
    self_signed_file: Text = _setting(
        "", "Where `tls.self_signed` writes its certificate (PEM, for clients' `--cacert`); empty: "
        "`streamsnap-self-signed-<tls.port>.pem` in the system's temporary folder."
    )


@dataclass(frozen=True)
class MetricsSettings(Section):
    NAME = "metrics"
    FLAT_PREFIX = "metrics_"
    HELP = "Prometheus `/metrics`, on the main port (with a token) and on a listener of its own."

    host: Text = _setting("", "Address of the separate metrics listener; empty: `http.host`.")
    port: Port = _setting(
        0, "Port of a separate listener serving only `/metrics` without a token; 0: off (`/metrics` on the "
        "main port needs a token with the `metrics` right when `access.secret` is set)."
    )
    max_streams: Annotated[int, Meta(ge=0, le=100_000)] = _setting(
        100, "Live streams that get per-stream series in `/metrics`, at most; 0: no per-stream series."
    )


@dataclass(frozen=True)
class LogSettings(Section):
    NAME = "log"
    FLAT_PREFIX = "log_"
    HELP = "Log lines."

    level: Literal["debug", "info", "warning", "error"] = _setting("info", "Log level.")
    format: Literal["text", "json"] = _setting(
        "text", "Log lines as `text` or `json` (one object a line, with session and stream)."
    )


@dataclass(frozen=True)
class NodeSettings(Section):
    NAME = "node"
    HELP = "This server as a whole: its name, its processes, its event loop, its shutdown."

    name: Text = _setting("", "Name of this server in stream listings; empty: the host name.", flat="node_name")
    workers: Annotated[int, Meta(ge=1, le=64)] = _setting(
        1, "Processes `serve` runs on this machine, one node each, sharing `http.port` (needs `cluster.redis_url` "
        "when > 1)."
    )
    event_loop: Literal["uvloop", "asyncio"] = _setting(
        "uvloop", "Event loop of `serve`: uvloop (less CPU per packet) or asyncio."
    )
    shutdown_grace: Annotated[float, Meta(ge=0, le=86400)] = _setting(
        5.0, "Seconds a stopping server gives in-flight snapshots to finish."
    )
    gc_freeze: bool = _setting(
        True, "Keep the objects of live streams out of the garbage collector's full passes (which stall the "
        "event loop for tens of ms with many streams); an ended stream's garbage is collected within 12 s."
    )


@dataclass(frozen=True)
class SignalingSettings(Section):
    NAME = "signaling"
    HELP = "WCS WebSocket sessions: keepalive, message limits, sessions held."

    keepalive_interval: Seconds = _setting(5.0, "Seconds between the server's pings to each client.")
    keepalive_timeout: Seconds = _setting(30.0, "A client silent for this many seconds is dropped.")
    login_timeout: Seconds = _setting(
        5.0, "Seconds a new WebSocket has to send `connection`; nothing before it keeps the session alive."
    )
    # A WCS `connect` or an SDP offer alone is a few hundred bytes to a few kB.
    max_message_bytes: Annotated[int, Meta(ge=1024)] = _setting(
        1024 * 1024, "Largest WebSocket message accepted (closed with 1009 above)."
    )
    message_rate: Annotated[float, Meta(gt=0)] = _setting(100.0, "Messages per second one session may send on average.")
    message_burst: Count = _setting(200, "Messages one session may send in a burst above the rate; then closed.")
    max_sessions: Count = _setting(1000, "WebSocket sessions the server holds at once; more are refused.")
    max_connections_per_ip: Count = _setting(500, "WebSocket sessions one client address may hold at once.")
    max_streams_per_session: Count = _setting(16, "Streams one session may publish at once.")
    max_pending_snapshots: Count = _setting(64, "Snapshot requests one session may have in flight.")


@dataclass(frozen=True)
class AccessSettings(Section):
    NAME = "access"
    FLAT_PREFIX = "auth_"
    HELP = "Access tokens (HS256 JWT) and the origins browsers may connect from."

    secret: Text = _setting("", "HS256 secret of access tokens; set: every session needs a valid token.")
    issuer: Text = _setting("", "Required `iss` claim of access tokens, when set.")
    allow_no_exp: bool = _setting(False, "Accept access tokens without an `exp` claim (they never expire).")
    allowed_origins: Texts = _setting(
        [], "Origins (scheme://host[:port]) browsers may connect from; empty: any. '*' allows any.",
        flat="allowed_origins",
    )


@dataclass(frozen=True)
class BackendSettings(Section):
    NAME = "backend"
    FLAT_PREFIX = "backend_"
    HELP = "An application backend asked to authorize connect, publish and snapshot."

    url: HttpUrlOrEmpty = _setting("", "Application backend that authorizes connect, publishStream and snapshot.")
    secret: Text = _setting("", "HMAC-SHA256 key to sign backend requests (X-Streamsnap-Signature).")
    timeout: Seconds = _setting(3.0, "Seconds to wait for the backend's answer.")
    fail_open: bool = _setting(False, "Allow the action when the backend cannot be reached (default: refuse).")


@dataclass(frozen=True)
class WebRtcSettings(Section):
    NAME = "webrtc"
    HELP = "WebRTC ingest (WCS publish and WHIP): ICE, bandwidth, and the bounds on offers and packets."

    ice_addresses: IPv4Addresses = _setting(
        [], "IPv4 addresses to offer as ICE host candidates; empty: every interface, loopback included."
    )
    ice_servers: IceServerUrls = _setting([], "STUN/TURN server urls used when gathering candidates.")
    turn_username: Text = _setting("", "User name for the `turn:`/`turns:` urls of `ice_servers`.")
    turn_password: Text = _setting("", "Password for the `turn:`/`turns:` urls of `ice_servers`.")
    public_ip: IPAddressOrEmpty = _setting(
        "", "Address announced in place of local host candidates (a server behind 1:1 NAT); empty: as bound."
    )
    # Below ~10 kbit/s no browser encoder gets a picture through.
    max_publish_bitrate: Annotated[int, Meta(ge=10_000)] = _setting(
        2_500_000, "Bits per second publishers are told (REMB, once a second) they may send."
    )
    rtp_max_packets_per_frame: Annotated[int, Meta(ge=16, le=65536)] = _setting(
        4096, "RTP packets one video frame being assembled may hold; a frame over it is given up (its bytes count "
        "too: frames being assembled hold at most `gop.max_bytes` per stream)."
    )
    rtp_max_sources: Annotated[int, Meta(ge=1, le=1024)] = _setting(
        8, "RTP sources (SSRCs, RTX included) one published stream may send; packets of further ones are dropped."
    )
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


@dataclass(frozen=True)
class GopSettings(Section):
    NAME = "gop"
    FLAT_PREFIX = "gop_"
    HELP = "The frame cache of every stream: what is kept after its last keyframe."

    max_frames: Count = _setting(300, "Encoded frames kept per stream after its last keyframe.")
    max_bytes: Count = _setting(4 * 1024 * 1024, "Bytes kept per stream after its last keyframe.")


@dataclass(frozen=True)
class SnapshotSettings(Section):
    NAME = "snapshots"
    HELP = "Pictures: freshness, the workers that make them, sizes, limits and load shedding."

    max_frame_age_ms: Annotated[float, Meta(ge=0, le=86_400_000)] = _setting(
        1000.0, "Oldest cached frame a snapshot may show; older means asking for a fresh keyframe."
    )
    keyframe_timeout: Seconds = _setting(3.0, "Seconds a snapshot waits for a decodable frame.")
    max_keyframe_requests_per_second: Annotated[float, Meta(gt=0, le=100)] = _setting(
        2.0, "Keyframe requests (PLI) sent to one publisher per second at most, however many pictures are asked."
    )
    workers: Count = _setting(2, "Threads that decode and encode pictures.", flat="snapshot_workers")
    png_compress_level: Annotated[int, Meta(ge=0, le=9)] = _setting(1, "zlib level of snapshot PNGs (1 is fast).")
    picture_cache_bytes: Annotated[int, Meta(ge=0)] = _setting(
        32 * 1024 * 1024,
        "Bytes of encoded pictures kept for reuse by requests whose max_age_ms allows an older picture; 0: off.",
    )
    max_width: Pixels = _setting(3840, "Largest `width` an image url may ask for.", flat="image_max_width")
    max_height: Pixels = _setting(2160, "Largest `height` an image url may ask for.", flat="image_max_height")
    max_in_flight: Count = _setting(
        256, "Snapshot requests in flight on the whole server.", flat="max_snapshots_in_flight"
    )
    max_per_client: Count = _setting(
        128, "Snapshot requests one client address may have in flight, over every transport.",
        flat="max_snapshots_per_client",
    )
    max_per_subject: Annotated[int, Meta(ge=0)] = _setting(
        128, "Snapshot requests the tokens of one subject (`sub`) may have in flight; 0: no quota.",
        flat="max_snapshots_per_subject",
    )
    deadline_ms: Annotated[float, Meta(ge=10, le=60_000)] = _setting(
        500.0, "A picture the workers cannot make within this many ms, at the rate they are measured to "
        "achieve, is refused at once (`overloaded`, HTTP 503 with Retry-After).", flat="snapshot_deadline_ms",
    )
    keyframe_request_cost_frames: Annotated[float, Meta(ge=0, le=10_000)] = _setting(
        10.0, "The extra keyframe a PLI makes the publisher send, counted as this many frames of decoding "
        "when the engine chooses between the cached group and a PLI."
    )
    max_event_loop_lag_ms: Annotated[float, Meta(ge=1, le=60_000)] = _setting(
        250.0, "New pictures are refused (`overloaded`) while the event loop that receives media runs this "
        "many ms late (mean over the last second)."
    )


@dataclass(frozen=True)
class PublishingSettings(Section):
    NAME = "publishing"
    HELP = "Published streams of every kind: how many, and how long media may take or pause."

    max_streams: Count = _setting(200, "Published streams on the whole server; more are refused.")
    max_per_subject: Annotated[int, Meta(ge=0)] = _setting(
        100, "Streams (pending or live) the tokens of one subject (`sub`) may hold at once; 0: no quota.",
        flat="max_streams_per_subject",
    )
    max_per_address: Annotated[int, Meta(ge=0)] = _setting(
        32, "Streams (pending or live, every way of publishing) one client address may hold at once, with or "
        "without access control (an IPv6 client counts by its /64; behind a proxy, see `http.trusted_proxies`); "
        "0: no quota.", flat="max_streams_per_address",
    )
    connect_timeout: Seconds = _setting(20.0, "Seconds for a publisher's media to start flowing.")
    rtp_timeout: Seconds = _setting(10.0, "A publisher that sends no video for this many seconds is FAILED.")


@dataclass(frozen=True)
class ClusterSettings(Section):
    NAME = "cluster"
    FLAT_PREFIX = "cluster_"
    HELP = "Several nodes, one namespace of streams, coordinated through Redis."

    redis_url: RedisUrlOrEmpty = _setting(
        "", "Redis (redis://host:6379/0, rediss://, or a Redis Cluster node) shared by the nodes of a cluster; "
        "empty: this node runs alone.", flat="redis_url",
    )
    secret: Text = _setting(
        "", "Secret the nodes of a cluster sign their requests to each other with (at least 16 characters; "
        "required with `redis_url`)."
    )
    advertise_url: HttpUrlOrEmpty = _setting(
        "", "URL other nodes reach this node's cluster listener at; empty: http://<cluster.host>:<bound port>.",
        flat="advertise_url",
    )
    host: Text = _setting(
        "", "Address the cluster listener (node-to-node requests) binds; empty: `http.host` when that is one "
        "address, else this machine's first non-loopback IPv4 address (its private address), else 127.0.0.1 "
        "(never every interface unless given `0.0.0.0`)."
    )
    port: Port = _setting(0, "Port of the cluster listener; 0: any free port (announced in Redis).")
    max_connections_per_ip: Count = _setting(
        256, "Open connections one address may hold on the cluster listener (a node keeps up to 64 to each "
        "other node); more are closed at once."
    )
    ttl: Annotated[float, Meta(ge=1, le=600)] = _setting(
        5.0, "Seconds a node's stream records live without a heartbeat (a dead node's streams vanish after it)."
    )
    prefix: KeyPrefix = _setting(
        "streamsnap", "Namespace of this cluster's keys in Redis (one hash tag, so Redis Cluster keeps them together)."
    )


@dataclass(frozen=True)
class RtmpSettings(Section):
    NAME = "rtmp"
    FLAT_PREFIX = "rtmp_"
    HELP = "The RTMP listener for encoders (OBS, FFmpeg)."

    port: Port = _setting(0, "TCP port of the RTMP listener for encoders (1935 is the usual one); 0: off.")
    host: Text = _setting("", "Address the RTMP listener binds; empty: the same as `http.host`.")
    max_connections: Count = _setting(100, "RTMP connections held at once; more are closed on arrival.")
    # A tenth of `max_connections`: one address cannot take the listener; an encoder farm behind one NAT
    # (or a TCP proxy: RTMP does not say who is behind it) raises it.
    max_connections_per_ip: Count = _setting(
        10, "RTMP connections one client address (an IPv6 /64) may hold at once; more are closed on arrival."
    )
    max_chunk_size: Annotated[int, Meta(ge=128, le=16_777_215)] = _setting(
        65536, "Largest chunk size an RTMP publisher may set (larger closes the connection)."
    )
    max_message_bytes: Annotated[int, Meta(ge=65536, le=64 * 1024 * 1024)] = _setting(
        4 * 1024 * 1024, "Largest RTMP message (one encoded video frame) accepted."
    )
    # ffmpeg's and OBS's connect and publish are well under 1 kB, a token included.
    max_command_bytes: Annotated[int, Meta(ge=512, le=65536)] = _setting(
        4096, "Largest RTMP command (connect, publish, ...), and largest message of any kind before a publish is "
        "accepted; larger closes the connection before it is read."
    )
    max_bytes_before_publish: Annotated[int, Meta(ge=8192, le=16 * 1024 * 1024)] = _setting(
        65536, "Bytes an RTMP connection may send before its `publish` (handshake, connect and the rest); more "
        "close it."
    )
    max_write_buffer_bytes: Annotated[int, Meta(ge=16384, le=64 * 1024 * 1024)] = _setting(
        262144, "Bytes kept unsent to an RTMP peer that does not read: past a quarter of it the server stops "
        "reading from the peer, past all of it the connection is closed."
    )
    max_nal_units_per_frame: Annotated[int, Meta(ge=16, le=65536)] = _setting(
        1024, "NAL units one RTMP video frame may carry (encoders send a few, one slice per row at most); a frame "
        "with more ends the stream."
    )
    max_chunk_streams: Annotated[int, Meta(ge=2, le=65599)] = _setting(
        32, "Chunk streams one RTMP connection may use (an encoder uses a handful); more close the connection."
    )
    handshake_timeout: Seconds = _setting(
        10.0, "Seconds an RTMP connection has from accept to an accepted publish (handshake, connect, token check)."
    )
    idle_timeout: Seconds = _setting(
        30.0, "An RTMP connection that sends nothing, or reads nothing it is sent, this many seconds is closed."
    )


@dataclass(frozen=True)
class RtspSettings(Section):
    NAME = "rtsp"
    FLAT_PREFIX = "rtsp_"
    HELP = "Pulling RTSP cameras: on demand, by REST, or from `[[cameras]]`."

    transport: Literal["tcp", "udp"] = _setting(
        "tcp", "RTSP transport of pulls that name none: tcp (interleaved in the RTSP connection) or udp."
    )
    open_timeout: Seconds = _setting(
        5.0, "Seconds a pull has to connect, follow redirects, get the camera's description and its first video; "
        "then its connections close."
    )
    packet_timeout: Seconds = _setting(5.0, "A camera that sends no packet for this many seconds has failed.")
    on_demand: bool = _setting(
        True, "Pull a camera when a picture of an `rtsp://` stream name is asked (only hosts in `allowed_hosts`)."
    )
    idle_timeout: Seconds = _setting(
        60.0, "A pull started by a picture of an `rtsp://` name stops after this many seconds without pictures."
    )
    allowed_hosts: RtspHosts = _setting(
        [], "Hosts (names, addresses, CIDR networks) pictures and REST may pull from; empty: only `[[cameras]]`. "
        "Loopback, link-local and cloud metadata addresses need an entry inside their own range."
    )
    reconnect_max: Seconds = _setting(
        30.0, "Longest wait between reconnections of a configured camera (exponential back-off with jitter)."
    )
    max_redirects: Annotated[int, Meta(ge=0, le=10)] = _setting(
        3, "RTSP redirects a pull follows (each target checked against `rtsp.allowed_hosts`)."
    )
    max_sdp_bytes: Annotated[int, Meta(ge=1024, le=1024 * 1024)] = _setting(
        65536, "Largest body (the description) a camera's answer may have; a larger one ends the pull unread."
    )
    max_tracks: Annotated[int, Meta(ge=1, le=256)] = _setting(
        8, "Media sections (m= lines) a camera's description may have; more end the pull before any SETUP."
    )
    max_frame_nals: Annotated[int, Meta(ge=16, le=65536)] = _setting(
        1024, "NAL units one video frame of a camera may hold (its bytes: `gop.max_bytes`; its packets: "
        "`webrtc.rtp_max_packets_per_frame`); a frame over any ends the pull."
    )
    max_packets_per_second: Annotated[int, Meta(ge=100, le=1_000_000)] = _setting(
        10_000, "Packets a camera may send a second (~110 Mbit/s of 1400-byte packets); more wait (TCP) or are "
        "dropped (UDP)."
    )
    ca_file: Text = _setting(
        "", "PEM file of the certificate authorities rtsps:// cameras are verified against; empty: the system's."
    )


@dataclass(frozen=True)
class ThumbnailSettings(Section):
    NAME = "thumbnails"
    FLAT_PREFIX = "thumbnail_"
    HELP = "Periodic thumbnails of every live stream, written to files and served."

    interval: Annotated[float, Meta(ge=0, le=1 << 20)] = _setting(
        0.0, "Seconds between thumbnails of every live stream; 0: off."
    )
    dir: Text = _setting("thumbnails", "Directory thumbnails are written to (`<name>.jpg`).")
    width: Annotated[int, Meta(ge=0, le=16384)] = _setting(
        0, "Thumbnail width (height keeps the aspect); 0: the stream's own size."
    )
    quality: Annotated[int, Meta(ge=1, le=100)] = _setting(80, "JPEG quality of thumbnails.")
    history: Annotated[int, Meta(ge=0, le=1 << 20)] = _setting(
        0, "Older thumbnails kept per stream in `<dir>/<name>/`; 0: none."
    )
    webhook: HttpUrlOrEmpty = _setting("", "URL that gets a POST `{name, path, taken_at}` per thumbnail; empty: none.")
    remove_ended: bool = _setting(
        False, "Remove a stream's thumbnail files (and its history) at the first round after the stream ended."
    )


@dataclass(frozen=True)
class MjpegSettings(Section):
    NAME = "mjpeg"
    FLAT_PREFIX = "mjpeg_"
    HELP = "MJPEG (`/streams/{name}/stream.mjpeg`) for dashboards."

    max_fps: Annotated[float, Meta(ge=0.1, le=60)] = _setting(
        10.0, "Highest `fps` an MJPEG watcher may ask (`/streams/{name}/stream.mjpeg`); the default is 5 or this."
    )
    max_watchers_per_stream: Annotated[int, Meta(ge=1, le=100_000)] = _setting(
        20, "MJPEG watchers of one stream at once; more are answered 429."
    )
    max_watchers: Annotated[int, Meta(ge=1, le=100_000)] = _setting(
        200, "MJPEG watchers on the whole server at once; more are answered 503."
    )
    write_timeout: Seconds = _setting(
        30.0, "An MJPEG watcher that takes no part for this many seconds is dropped, its connection closed."
    )
    max_sizes_per_stream: Annotated[int, Meta(ge=1, le=1000)] = _setting(
        4, "Different picture specs (size, fit, quality) MJPEG makes of one stream at once, each a picture per "
        "frame; a watcher asking another is answered 429."
    )


SECTIONS: tuple[type[Section], ...] = (
    HttpSettings, TlsSettings, MetricsSettings, LogSettings, NodeSettings, SignalingSettings, AccessSettings,
    BackendSettings, WebRtcSettings, GopSettings, SnapshotSettings, PublishingSettings, ClusterSettings,
    RtmpSettings, RtspSettings, ThumbnailSettings, MjpegSettings,
)
"Every section, in the order the reference and the sample config show them."

CAMERAS_HELP = ("Cameras pulled from start and kept up: `[[cameras]]` tables of `name`, `uri`, `transport`, "
                "`tls_verify` (config file only).")


@dataclass(frozen=True)
class Settings:
    """Every setting of the server, section by section."""

    http: HttpSettings = field(default_factory=HttpSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    log: LogSettings = field(default_factory=LogSettings)
    node: NodeSettings = field(default_factory=NodeSettings)
    signaling: SignalingSettings = field(default_factory=SignalingSettings)
    access: AccessSettings = field(default_factory=AccessSettings)
    backend: BackendSettings = field(default_factory=BackendSettings)
    webrtc: WebRtcSettings = field(default_factory=WebRtcSettings)
    gop: GopSettings = field(default_factory=GopSettings)
    snapshots: SnapshotSettings = field(default_factory=SnapshotSettings)
    publishing: PublishingSettings = field(default_factory=PublishingSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    rtmp: RtmpSettings = field(default_factory=RtmpSettings)
    rtsp: RtspSettings = field(default_factory=RtspSettings)
    thumbnails: ThumbnailSettings = field(default_factory=ThumbnailSettings)
    mjpeg: MjpegSettings = field(default_factory=MjpegSettings)
    cameras: Cameras = field(default_factory=list, metadata={"help": CAMERAS_HELP})

    def __post_init__(self) -> None:
        object.__setattr__(self, "cameras", _check("cameras", Cameras, self.cameras, self.cameras))
        _check_together(self)

    def replace(self, **values: Any) -> Settings:
        """These settings with `values` changed, named flat (`port`) or dotted (`http.port`)."""
        given: Given = {}
        for name, value in values.items():
            _one(given, _path(name), name, value)
        return _build(self, given, text_layer=False)


@dataclass(frozen=True)
class Declaration:
    """One setting as declared: where it lives, its flat name, its type, default and help."""

    path: str
    "`section.field` (`http.port`), or `cameras`."
    flat: str
    "The name it had before sections (`port`), still accepted everywhere."
    kind: Any
    "Its type, constraints included."
    default: Any
    help: str

    @property
    def env(self) -> str:
        """Its environment variable (`STREAMSNAP_HTTP_PORT`)."""
        return ENV_PREFIX + self.path.replace(".", "_").upper()

    @property
    def flat_env(self) -> str:
        """Its environment variable by its flat name (`STREAMSNAP_PORT`), still accepted."""
        return ENV_PREFIX + self.flat.upper()

    @property
    def section(self) -> str | None:
        """The section it belongs to (None for `cameras`)."""
        return self.path.partition(".")[0] if "." in self.path else None

    @property
    def name(self) -> str:
        """Its name within its section."""
        return self.path.rpartition(".")[2]


_KINDS: dict[str, dict[str, Any]] = {}


def _kinds(section: type[Section]) -> dict[str, Any]:
    """Each field's declared type, constraints included."""
    kinds = _KINDS.get(section.NAME)
    if kinds is None:
        hints = typing.get_type_hints(section, include_extras=True)
        kinds = _KINDS[section.NAME] = {f.name: hints[f.name] for f in dataclasses.fields(section)}
    return kinds


def _default(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


@functools.cache
def declarations() -> dict[str, Declaration]:
    """Every setting by its path, in the order of `SECTIONS`, `cameras` last."""
    found: dict[str, Declaration] = {}
    for section in SECTIONS:
        kinds = _kinds(section)
        for f in dataclasses.fields(section):
            flat = f.metadata.get("flat", section.FLAT_PREFIX + f.name)
            found[f"{section.NAME}.{f.name}"] = Declaration(f"{section.NAME}.{f.name}", flat, kinds[f.name],
                                                            _default(f), f.metadata["help"])
    found["cameras"] = Declaration("cameras", "cameras", Cameras, [], CAMERAS_HELP)
    return found


@functools.cache
def _names() -> dict[str, str]:
    """Every name a setting may be given by (path, flat name, both environment names) -> its path."""
    names: dict[str, str] = {}
    for declaration in declarations().values():
        for name in (declaration.path, declaration.flat, declaration.env, declaration.flat_env):
            if names.setdefault(name, declaration.path) != declaration.path:
                raise TypeError(f"{name} names two settings: {names[name]} and {declaration.path}")
    return names


def _suggestion(name: str) -> str:
    """' (did you mean ...?)' for the nearest known name, or ''."""
    known = [n for n in _names() if not n.startswith(ENV_PREFIX)] + [s.NAME for s in SECTIONS]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _path(name: str) -> str:
    """The path of the setting `name` (flat, dotted, or with '-' for '_'); raises `SettingsError`."""
    path = _names().get(name.replace("-", "_"))
    if path is None or name.startswith(ENV_PREFIX):
        raise SettingsError(f"unknown setting {name!r}{_suggestion(name)}")
    return path


def _check_together(settings: Settings) -> None:
    """Settings that only make sense with others."""
    secret_bytes = len(settings.access.secret.encode())
    if 0 < secret_bytes < MIN_AUTH_SECRET_BYTES:
        raise SettingsError(f"access.secret is {secret_bytes} bytes; HS256 needs at least {MIN_AUTH_SECRET_BYTES} "
                            "(RFC 7518), e.g. from `openssl rand -base64 32`")
    for network in settings.http.trusted_proxies:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise SettingsError(f"http.trusted_proxies: {network!r} is not an address or network") from None
    cluster = settings.cluster
    if settings.node.workers > 1 and not cluster.redis_url:
        raise SettingsError(f"node.workers: {settings.node.workers} workers need `cluster.redis_url` "
                            "(they coordinate through Redis)")
    # With several workers and no secret, `serve` makes one for its workers (they share one machine).
    needs_secret = cluster.redis_url and (settings.node.workers == 1 or cluster.secret)
    if needs_secret and len(cluster.secret) < MIN_CLUSTER_SECRET:
        raise SettingsError(f"cluster.secret: at least {MIN_CLUSTER_SECRET} characters are needed with "
                            "`cluster.redis_url` (the nodes sign their requests to each other with it)")
    if needs_secret and len(set(cluster.secret)) < MIN_CLUSTER_SECRET_SYMBOLS:
        raise SettingsError(f"cluster.secret: at least {MIN_CLUSTER_SECRET_SYMBOLS} different characters are "
                            "needed (a repeated pattern is guessed first), e.g. from `openssl rand -hex 24`")


MIN_CLUSTER_SECRET = 16
MIN_CLUSTER_SECRET_SYMBOLS = 8
MIN_AUTH_SECRET_BYTES = 32
"HS256 keys shorter than the hash (RFC 7518, section 3.2) are refused."


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
        return "`[[cameras]]` tables (name, uri rtsp://... or rtsps://..., transport tcp or udp, tls_verify)"
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
    """Each setting's allowed values in words, by path, as the reference and the error messages show them."""
    return {path: _range_words(declaration.kind) for path, declaration in declarations().items()}


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


Given = dict[str, tuple[str, Any]]
"Values of one layer by path: (the name they were given by, the value as given)."


def _build(base: Settings, given: Mapping[str, tuple[str, Any]] | Mapping[str, Any], *, text_layer: bool) -> Settings:
    """`base` with the values `given` (each checked under the name it was given by)."""
    changes: dict[str, dict[str, Any]] = {}
    cameras = base.cameras
    for path, entry in given.items():
        label, value = entry if isinstance(entry, tuple) else (path, entry)
        declaration = declarations()[path]
        checked = _read(label, declaration.kind, value, text_layer=text_layer)
        if declaration.section is None:
            cameras = checked
        else:
            changes.setdefault(declaration.section, {})[declaration.name] = checked
    sections = {name: dataclasses.replace(getattr(base, name), **fields) for name, fields in changes.items()}
    return dataclasses.replace(base, cameras=cameras, **sections)


def _one(given: Given, path: str, label: str, value: Any) -> None:
    """Add one value to a layer; the same setting named twice in one layer is refused."""
    if path in given:
        raise SettingsError(f"{given[path][0]} and {label} are the same setting ({path}); give it once")
    given[path] = (label, value)


def _file_values(config_file: str | Path) -> Given:
    """The settings of a TOML file, by path."""
    try:
        text = Path(config_file).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {config_file}: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {config_file} is not TOML ({exc}); settings are written "
                            "`name = value` under `[section]` headers, see `streamsnap config --sample`") from None
    sections = {section.NAME: section for section in SECTIONS}
    given: Given = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name in sections and isinstance(value, dict):
            for inner, inner_value in value.items():
                dotted = f"{name}.{inner.replace('-', '_')}"
                if dotted not in declarations():
                    raise SettingsError(f"config file {config_file}: unknown setting {name}.{inner!r} in "
                                        f"[{name}]{_suggestion(dotted)}")
                _one(given, dotted, dotted, inner_value)
            continue
        path = _names().get(name)
        if path is None or key.startswith(ENV_PREFIX):
            raise SettingsError(f"config file {config_file}: unknown setting {key!r}{_suggestion(name)}")
        _one(given, path, name, value)
    return given


def _environment_values(env: Mapping[str, str]) -> Given:
    given: Given = {}
    for path, declaration in declarations().items():
        for variable in dict.fromkeys((declaration.env, declaration.flat_env)):
            if variable in env:
                _one(given, path, variable, env[variable])
    return given


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from the defaults, then `config_file` (TOML), then STREAMSNAP_* variables, then `overrides`.

    Names may be flat (`port`) or dotted (`http.port`); `None` in `overrides` means "not given".
    Any unknown name or refused value raises SettingsError.
    """
    settings = Settings()
    if config_file is not None:
        settings = _build(settings, _file_values(config_file), text_layer=False)
    settings = _build(settings, _environment_values(os.environ if environ is None else environ), text_layer=True)
    given: Given = {}
    for name, value in (overrides or {}).items():
        if value is not None:
            _one(given, _path(name), name, value)
    return _build(settings, given, text_layer=True)


def flat_values(settings: Settings) -> Iterator[tuple[Declaration, Any]]:
    """Every setting with its value in `settings`."""
    for declaration in declarations().values():
        section = declaration.section
        yield declaration, settings.cameras if section is None else getattr(getattr(settings, section),
                                                                            declaration.name)


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def settings_table() -> str:
    """The settings as markdown, one table per section (the configuration reference is this, checked by a test)."""
    ranges = setting_ranges()
    lines: list[str] = []
    for section in [*SECTIONS, None]:
        rows = [d for d in declarations().values() if d.section == (section.NAME if section else None)]
        if section is None:
            lines += ["## `[[cameras]]`", "", CAMERAS_HELP, ""]
        else:
            lines += [f"## `[{section.NAME}]`", "", section.HELP, ""]
        lines += ["| setting | default | allowed | meaning |", "|---|---|---|---|"]
        for d in rows:
            shown = _shown(d.default)
            default = f"`{shown}`" if shown else "*(empty)*"
            names = f"`{d.name}`<br>`{d.env}`" + (f"<br>was `{d.flat}`" if d.flat != d.path else "")
            lines.append(f"| {names} | {default} | {ranges[d.path]} | {d.help} |")
        lines.append("")
    return "\n".join(lines)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return msgspec.json.encode(value).decode()
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return repr(value)


def sample_config() -> str:
    """A commented TOML file of every setting at its default, section by section."""
    lines = [
        "# streamsnap settings: a TOML file for `streamsnap serve --config FILE`.",
        "# Every setting is shown at its default, commented out: uncomment and change what you need.",
        "# Each can also be set by its environment variable (shown) or a flag of `serve`.",
    ]
    for section in SECTIONS:
        lines += ["", f"# {section.HELP}", f"[{section.NAME}]"]
        for d in declarations().values():
            if d.section == section.NAME:
                lines += [f"# {d.help} Allowed: {_range_words(d.kind)}. ${d.env}", f"# {d.name} = {_toml(d.default)}"]
    lines += ["", f"# {CAMERAS_HELP}", "# [[cameras]]", '# name = "door"',
              '# uri = "rtsp://user:password@192.0.2.10:554/stream1"', '# transport = "tcp"']
    return "\n".join(lines) + "\n"
