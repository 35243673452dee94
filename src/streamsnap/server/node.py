"""The one place a node is built: settings in, every part out, in dependency order; torn down in reverse.

`build` makes the parts (the registry first, Redis when the node is in a cluster, then access,
media, the services and their background work) and hands each the section of the settings
it uses, as it is. `start` sets the node's background work going, `drain` refuses new work and
lets the node's sessions know it stops, and `close` stops every part in the reverse order
of `build`. Nothing is attached to a part after it was made. The listeners that serve the node
are bound by `server/listeners.py`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from streamsnap.access import OPEN_GRANT, AccessControl, BackendHooks, TokenPolicy
from streamsnap.cluster.registry import NodeInfo, RedisStreamRegistry
from streamsnap.cluster.routing import HttpRouter
from streamsnap.cluster.wire import SignatureCheck
from streamsnap.config import Settings
from streamsnap.media.rtsp import RtspSource
from streamsnap.media.snapshot import SnapshotEngine
from streamsnap.media.source import LocalSources
from streamsnap.media.webrtc import announce_addresses
from streamsnap.reasons import StreamEnd
from streamsnap.server.heap import HeapKeeper
from streamsnap.server.tls import camera_context
from streamsnap.service.cameras import CameraPulls, redact_credentials_in_logs
from streamsnap.service.mjpeg import MjpegFeeds
from streamsnap.service.node import Node, NodeState
from streamsnap.service.publishing import PublishingService
from streamsnap.service.snapshots import SnapshotService
from streamsnap.service.thumbnails import Thumbnailer
from streamsnap.streams import LocalStreamRegistry, StreamRecord, StreamRegistry
from streamsnap.tasks import cancel_and_wait

logger = logging.getLogger(__name__)


class ServerError(Exception):
    """The server cannot start as configured (the message says why)."""


def node_name(configured: str) -> str:
    """The configured node name, or the host name."""
    return configured or socket.gethostname()


@dataclass
class Built:
    """A node and what only its builder needs to take it down again."""

    node: Node
    redis: RedisStreamRegistry | None = None
    router: HttpRouter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    "The node's background work, started by `start`."


async def build(settings: Settings, *, cluster_url: str = "", registry: StreamRegistry | None = None,
                clock: Callable[[], float] = time.monotonic) -> Built:
    """Every part of a node, from `settings`.

    In a cluster (`cluster.redis_url`) the node joins through Redis and announces `cluster_url` as
    where other nodes reach it; else its streams are in a registry of its own (or `registry`, for
    nodes of one process sharing one).
    """
    redact_credentials_in_logs()  # camera urls reach log lines from many places: a name, a request path
    try:
        camera_tls = {verify: camera_context(settings.rtsp.ca_file, verify) for verify in (True, False)}
    except (OSError, ssl.SSLError) as exc:
        raise ServerError(f"rtsp.ca_file: cannot use {settings.rtsp.ca_file}: {exc}") from None
    state = NodeState(node_name(settings.node.name))
    redis = router = None
    if settings.cluster.redis_url:
        redis = await RedisStreamRegistry.connect(
            settings.cluster.redis_url, NodeInfo(id=state.name, url=cluster_url, started_at=time.time()),
            ttl=settings.cluster.ttl, prefix=settings.cluster.prefix)
        router = HttpRouter(redis, settings.cluster.secret)
        registry = redis
    registry = registry if registry is not None else LocalStreamRegistry()
    access = AccessControl(
        TokenPolicy(settings.access.secret, issuer=settings.access.issuer, allow_no_exp=settings.access.allow_no_exp),
        BackendHooks(settings.backend), tuple(settings.access.allowed_origins))
    sources = LocalSources()
    engine = SnapshotEngine(settings.snapshots)
    publishing = PublishingService(settings.publishing, registry, sources, access, state, router=router, clock=clock)
    cameras = CameraPulls(settings.rtsp, publishing, lambda name, uri, transport, destinations, verify: RtspSource(
        name, uri, settings.rtsp, settings.gop, transport, destinations, settings.webrtc.rtp_max_packets_per_frame,
        tls=camera_tls[verify]), clock=clock)
    snapshots = SnapshotService(settings.snapshots, registry, sources, engine, access, state,
                                on_demand=cameras.on_demand, router=router, clock=clock)
    mjpeg = MjpegFeeds(settings.mjpeg, snapshots)
    thumbnails = Thumbnailer(settings.thumbnails, settings.backend.secret, snapshots) \
        if settings.thumbnails.interval > 0 else None
    node = Node(settings, state, registry, access, sources, engine, publishing, cameras, snapshots, mjpeg,
                thumbnails, redis.status if redis is not None else None,
                hop_signatures=SignatureCheck(settings.cluster.secret) if redis is not None else None, clock=clock)
    return Built(node, redis, router)


def start(built: Built) -> None:
    """Set the node's background work going; from now on it is ready."""
    node = built.node
    settings = node.settings
    announce_addresses(settings.webrtc.ice_addresses)
    work: list[Coroutine[Any, Any, None]] = [node.engine.loop_lag.run(), node.cameras.watch_idle()]
    if settings.node.gc_freeze:
        work.append(HeapKeeper(node.sources).run())
    if node.thumbnails is not None:
        logger.info("thumbnails every %.1f s in %s", settings.thumbnails.interval, settings.thumbnails.dir)
        work.append(node.thumbnails.run())
    if built.redis is not None:
        async def lost(record: StreamRecord) -> None:
            await node.publishing.terminate(record, StreamEnd.NAME_IN_USE)

        work.append(built.redis.run(lost, node.sources.figures))
        logger.info("node %s in the cluster at %s (records live %.1f s without a heartbeat)",
                    built.redis.node.id, built.redis.node.url, built.redis.ttl)
    built.tasks = [asyncio.ensure_future(coroutine) for coroutine in work]
    for camera in settings.cameras:
        node.cameras.start_camera(camera, OPEN_GRANT)
    node.state.ready = True


async def drain(built: Built) -> None:
    """Stop taking work (the listeners stopped already): let pictures in flight finish, tell every session."""
    node = built.node
    node.state.ready = False
    node.state.draining = True
    sessions = list(node.sessions)
    grace = node.settings.node.shutdown_grace
    pictures = sum(session.pictures_in_flight for session in sessions)
    finishing = [asyncio.ensure_future(session.finish()) for session in sessions if session.pictures_in_flight]
    if finishing:
        logger.info("shutdown: waiting up to %.1f s for %d snapshots", grace, pictures)
        await asyncio.wait(finishing, timeout=grace)
        await cancel_and_wait(*finishing)
    if sessions:
        logger.info("shutdown: closing %d sessions", len(sessions))
    await asyncio.gather(*(session.shutdown(StreamEnd.SHUTTING_DOWN) for session in sessions),
                         return_exceptions=True)


async def close(built: Built) -> None:
    """Stop every part, in the reverse order of `build` (after `drain`, once the listeners are closed)."""
    node = built.node
    await node.mjpeg.close()
    await node.cameras.close()
    await node.publishing.drain()
    await cancel_and_wait(*built.tasks)
    await node.access.hooks.close()
    node.engine.close()
    if built.router is not None:
        await built.router.close()
    if built.redis is not None:
        await built.redis.close()
