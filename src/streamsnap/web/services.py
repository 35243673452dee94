"""What every request handler shares: settings, the registry, the node's sources and the two services."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from streamsnap import __version__
from streamsnap.access import AccessControl, BackendHooks, HookSettings, TokenPolicy
from streamsnap.cluster.registry import ClusterStatus
from streamsnap.config import Settings
from streamsnap.media.rtsp import RtspSettings, RtspSource
from streamsnap.media.sdp_limits import SdpLimits
from streamsnap.media.snapshot import EngineSettings, SnapshotEngine
from streamsnap.media.source import LocalSources
from streamsnap.media.webrtc import IngestSettings
from streamsnap.protocol.session import SessionConfig
from streamsnap.service.cameras import CameraPulls, PullSettings, redact_credentials_in_logs
from streamsnap.service.mjpeg import MjpegFeeds
from streamsnap.service.node import NodeState
from streamsnap.service.publishing import PublishingService, PublishLimits
from streamsnap.service.snapshots import SnapshotLimits, SnapshotService
from streamsnap.streams import LocalStreamRegistry, StreamRegistry
from streamsnap.thumbnails import Thumbnailer
from streamsnap.web.catalog import node_name


@dataclass
class Services:
    """The server's shared parts, built once from the settings."""

    settings: Settings
    registry: StreamRegistry
    sources: LocalSources
    "The media of the streams this node holds."
    engine: SnapshotEngine
    snapshots: SnapshotService
    "Every picture goes through it."
    publishing: PublishingService
    "Every published stream runs in it."
    ingest: IngestSettings
    "How WebRTC sources are made."
    session_config: SessionConfig
    access: AccessControl
    node: NodeState
    clock: Callable[[], float] = time.monotonic
    sessions: set[object] = field(default_factory=set)
    "Live session runners (for shutdown)."
    ready: bool = False
    "True once the server has started, until it begins to shut down (`/readyz`)."
    thumbnails: Thumbnailer | None = None
    "The periodic thumbnailer, while thumbnails are on (`/streams/{name}/thumbnail.jpg` serves its pictures)."
    mjpeg: MjpegFeeds | None = None
    "The MJPEG feeds (set when the MJPEG url is routed)."
    cameras: CameraPulls | None = None
    "The node's RTSP camera pulls (on demand, REST, config)."
    cluster: ClusterStatus | None = None
    "The node's link to its cluster's Redis, when it is in one."

    @property
    def draining(self) -> bool:
        """Whether the server is stopping (new publishes and pictures are refused)."""
        return self.node.draining

    @classmethod
    def from_settings(cls, settings: Settings, registry: StreamRegistry | None = None) -> Services:
        """Build every part from `settings` (on `registry`, or a local one)."""
        registry = registry if registry is not None else LocalStreamRegistry()
        node = NodeState(node_name(settings.node_name))
        sources = LocalSources()
        engine = SnapshotEngine(
            EngineSettings(
                max_frame_age_ms=settings.max_frame_age_ms,
                keyframe_timeout=settings.keyframe_timeout,
                workers=settings.snapshot_workers,
                png_compress_level=settings.png_compress_level,
                deadline=settings.snapshot_deadline_ms / 1000,
                keyframe_request_cost_frames=settings.keyframe_request_cost_frames,
                max_loop_lag=settings.max_event_loop_lag_ms / 1000,
            )
        )
        ingest = IngestSettings(
            ice_addresses=tuple(settings.ice_addresses),
            ice_servers=tuple(settings.ice_servers),
            turn_username=settings.turn_username,
            turn_password=settings.turn_password,
            gop_max_frames=settings.gop_max_frames,
            gop_max_bytes=settings.gop_max_bytes,
            connect_timeout=settings.connect_timeout,
            max_publish_bitrate=settings.max_publish_bitrate,
            public_ip=settings.public_ip,
            sdp_limits=SdpLimits(max_bytes=settings.sdp_max_bytes, max_lines=settings.sdp_max_lines,
                                 max_media=settings.sdp_max_media, max_candidates=settings.sdp_max_candidates),
            rtp_max_packets_per_frame=settings.rtp_max_packets_per_frame,
            rtp_max_sources=settings.rtp_max_sources,
        )
        session_config = SessionConfig(
            keepalive_interval=settings.keepalive_interval,
            keepalive_timeout=settings.keepalive_timeout,
            server_version=__version__,
            max_streams=settings.max_streams_per_session,
            max_pending_snapshots=settings.max_pending_snapshots,
            message_rate=settings.message_rate,
            message_burst=settings.message_burst,
            login_timeout=settings.login_timeout,
        )
        access = AccessControl(
            TokenPolicy(settings.auth_secret, issuer=settings.auth_issuer, allow_no_exp=settings.auth_allow_no_exp),
            BackendHooks(HookSettings(settings.backend_url, settings.backend_secret, settings.backend_timeout,
                                      settings.backend_fail_open)),
            tuple(settings.allowed_origins),
        )
        snapshots = SnapshotService(
            SnapshotLimits(
                max_in_flight=settings.max_snapshots_in_flight,
                max_per_client=settings.max_snapshots_per_client,
                max_per_subject=settings.max_snapshots_per_subject,
                max_width=settings.image_max_width,
                max_height=settings.image_max_height,
                keyframe_requests_per_second=settings.max_keyframe_requests_per_second,
                picture_cache_bytes=settings.picture_cache_bytes,
            ),
            registry, sources, engine, access, node,
        )
        publishing = PublishingService(
            PublishLimits(max_streams=settings.max_streams, connect_timeout=settings.connect_timeout,
                          rtp_timeout=settings.rtp_timeout, max_per_subject=settings.max_streams_per_subject),
            registry, sources, access, node,
        )
        services = cls(settings, registry, sources, engine, snapshots, publishing, ingest, session_config, access, node)
        services.cameras = camera_pulls(settings, publishing)
        snapshots.on_demand = services.cameras.on_demand
        return services


def camera_pulls(settings: Settings, publishing: PublishingService) -> CameraPulls:
    """The RTSP camera pulls of the settings' `rtsp_*` block, running in `publishing`."""
    redact_credentials_in_logs()
    rtsp = RtspSettings(open_timeout=settings.rtsp_open_timeout, packet_timeout=settings.rtsp_packet_timeout,
                        gop_max_frames=settings.gop_max_frames, gop_max_bytes=settings.gop_max_bytes,
                        max_redirects=settings.rtsp_max_redirects)
    pulls = PullSettings(transport=settings.rtsp_transport, on_demand=settings.rtsp_on_demand,
                         idle_timeout=settings.rtsp_idle_timeout, allowed_hosts=tuple(settings.rtsp_allowed_hosts),
                         start_timeout=settings.rtsp_open_timeout + settings.connect_timeout + 1,
                         reconnect_max=settings.rtsp_reconnect_max)
    cameras = CameraPulls(pulls, publishing, lambda name, uri, transport: RtspSource(
        name, uri, rtsp, transport, host_allowed=cameras.hosts.permits))
    return cameras


SERVICES = web.AppKey("services", Services)
"Where an application keeps its `Services`."
