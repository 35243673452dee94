"""What every request handler shares: settings, the stream registry, the snapshot engine."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from streamsnap import __version__
from streamsnap.access import AccessControl, BackendHooks, HookSettings, TokenPolicy
from streamsnap.config import Settings
from streamsnap.media.ingest import IngestSettings
from streamsnap.media.snapshot import EngineSettings, SnapshotEngine
from streamsnap.protocol.session import SessionConfig
from streamsnap.streams import LocalStreamRegistry, StreamRegistry
from streamsnap.web.catalog import node_name


@dataclass
class Services:
    """The server's shared parts, built once from the settings."""

    settings: Settings
    registry: StreamRegistry
    engine: SnapshotEngine
    ingest: IngestSettings
    session_config: SessionConfig
    access: AccessControl = field(default_factory=lambda: AccessControl(TokenPolicy(""), BackendHooks(HookSettings())))
    "Tokens, Origin allow-list and backend hooks (all off by default)."
    clock: Callable[[], float] = time.monotonic
    sessions: set[object] = field(default_factory=set)
    "Live session runners (for shutdown)."
    node: str = ""
    "Name of this server in stream listings."
    ready: bool = False
    "True once the server has started, until it begins to shut down (`/readyz`)."
    draining: bool = False
    "Set when the server stops: new publishes and snapshots are refused."
    snapshots_in_flight: int = 0
    "Snapshot requests being served, over every session."

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        """Build every part from `settings`."""
        engine = SnapshotEngine(
            EngineSettings(
                max_frame_age_ms=settings.max_frame_age_ms,
                keyframe_timeout=settings.keyframe_timeout,
                workers=settings.snapshot_workers,
                png_compress_level=settings.png_compress_level,
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
        )
        session_config = SessionConfig(
            keepalive_interval=settings.keepalive_interval,
            keepalive_timeout=settings.keepalive_timeout,
            server_version=__version__,
            max_streams=settings.max_streams_per_session,
            max_pending_snapshots=settings.max_pending_snapshots,
            message_rate=settings.message_rate,
            message_burst=settings.message_burst,
        )
        access = AccessControl(
            TokenPolicy(settings.auth_secret, issuer=settings.auth_issuer),
            BackendHooks(HookSettings(settings.backend_url, settings.backend_secret, settings.backend_timeout,
                                      settings.backend_fail_open)),
            tuple(settings.allowed_origins),
        )
        return cls(settings, LocalStreamRegistry(), engine, ingest, session_config, access,
                   node=node_name(settings.node_name))


SERVICES = web.AppKey("services", Services)
"Where an application keeps its `Services`."
