"""The aiohttp application: routes, shared state and its lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

from aiohttp import WSCloseCode, web

from streamsnap import __version__
from streamsnap.access import origin_allowed
from streamsnap.addresses import TrustedProxies, client_key
from streamsnap.config import Settings
from streamsnap.media.webrtc import announce_addresses
from streamsnap.protocol import codec
from streamsnap.protocol import messages as msg
from streamsnap.protocol.constants import Info, Message
from streamsnap.streams import StreamRegistry
from streamsnap.thumbnails import Thumbnailer, ThumbnailSettings
from streamsnap.web.connections import client_address_middleware
from streamsnap.web.cors import cors_middleware
from streamsnap.web.errors import json_error
from streamsnap.web.guard import access_refusals
from streamsnap.web.health import add_health_routes
from streamsnap.web.heap import HeapKeeper
from streamsnap.web.images import add_image_routes
from streamsnap.web.metrics import add_metrics_route
from streamsnap.web.mjpeg import add_mjpeg_routes
from streamsnap.web.openapi import add_openapi_route
from streamsnap.web.rest import add_rest_routes
from streamsnap.web.rtmp import add_rtmp_listener
from streamsnap.web.rtsp_rest import add_rtsp_routes, run_cameras
from streamsnap.web.services import SERVICES, Services
from streamsnap.web.websocket import SessionRunner
from streamsnap.web.whip import add_whip_routes

logger = logging.getLogger(__name__)

CLIENT_DIR = Path(__file__).resolve().parent.parent / "client"
__all__ = ["SERVICES", "create_app", "create_rest_app", "json_error"]


async def version(request: web.Request) -> web.Response:
    """GET /version: name and version of the server."""
    return web.json_response({"name": "streamsnap", "version": __version__})


async def landing(request: web.Request) -> web.StreamResponse:
    """GET /: the landing page of the browser client; a WebSocket upgrade of / is signaling like any path."""
    if web.WebSocketResponse().can_prepare(request).ok:
        return await signaling(request)
    index = CLIENT_DIR / "index.html"
    if not index.is_file():
        return json_error(404, "no landing page installed")
    return web.FileResponse(index)


async def signaling(request: web.Request) -> web.StreamResponse:
    """The WCS WebSocket, on any path (the official example appends a random one)."""
    services = request.app[SERVICES]
    ws = web.WebSocketResponse(max_msg_size=services.settings.max_message_bytes)
    if not ws.can_prepare(request).ok:
        return json_error(404, "no such resource")  # the path is not echoed: it is the caller's input
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, services.access.allowed_origins):
        logger.info("connection from %s refused: origin %s not allowed", request.remote, origin)
        return json_error(403, f"{Info.RESTRICTED_ACCESS}: origin not allowed")
    remote = request.remote or "unknown"
    await ws.prepare(request)
    refusal = _connection_refusal(services, remote)
    if refusal is not None:
        # Refused after the upgrade, so that a WCS client sees why (a `fail`) before the close.
        logger.info("connection from %s refused: %s", remote, refusal)
        await ws.send_str(codec.encode(msg.fail(Message.CONNECTION, refusal)))
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=refusal.encode())
        return ws
    runner = SessionRunner(ws, services, remote, origin)
    services.sessions.add(runner)
    try:
        await runner.run()
    finally:
        services.sessions.discard(runner)
    return ws


def _connection_refusal(services: Services, remote: str) -> str | None:
    """Why a new WebSocket from `remote` is turned away (server draining or over a limit), or None."""
    runners = [r for r in services.sessions if isinstance(r, SessionRunner)]
    if services.draining:
        return Info.SHUTTING_DOWN
    if len(runners) >= services.settings.max_sessions:
        return f"{Info.TOO_MANY_SESSIONS} on this server"
    key = client_key(remote)  # an IPv6 client counts by its /64
    if sum(1 for r in runners if client_key(r.remote) == key) >= services.settings.max_connections_per_ip:
        return f"{Info.TOO_MANY_SESSIONS} from {remote}"
    return None


async def _drain(app: web.Application) -> None:
    """On shutdown (listening already stopped): refuse new work, let snapshots finish, end every stream."""
    services = app[SERVICES]
    services.node.draining = True
    runners = [r for r in services.sessions if isinstance(r, SessionRunner)]
    in_flight = [t for r in runners for t in r.snapshot_tasks]
    if in_flight:
        logger.info("shutdown: waiting up to %.1f s for %d snapshots", services.settings.shutdown_grace,
                    len(in_flight))
        await asyncio.wait(in_flight, timeout=services.settings.shutdown_grace)
    if runners:
        logger.info("shutdown: closing %d sessions", len(runners))
    await asyncio.gather(*(r.shutdown(Info.SHUTTING_DOWN) for r in runners), return_exceptions=True)


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    announce_addresses(services.settings.ice_addresses)
    thumbnails = _start_thumbnails(services)
    services.ready = True
    yield
    if thumbnails is not None:
        thumbnails.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await thumbnails
    await services.access.hooks.close()
    runners = list(services.sessions)
    for runner in runners:
        assert isinstance(runner, SessionRunner)
        await runner.ws.close()
    await asyncio.gather(*(r.shutdown_tasks() for r in runners if isinstance(r, SessionRunner)),
                         return_exceptions=True)
    services.engine.close()


def _start_thumbnails(services: Services) -> asyncio.Task[None] | None:
    settings = services.settings
    if settings.thumbnail_interval <= 0:
        return None
    thumbnailer = Thumbnailer(
        ThumbnailSettings(
            interval=settings.thumbnail_interval,
            directory=Path(settings.thumbnail_dir),
            width=settings.thumbnail_width or None,
            quality=settings.thumbnail_quality,
            history=settings.thumbnail_history,
            webhook=settings.thumbnail_webhook,
            remove_ended=settings.thumbnail_remove_ended,
            webhook_secret=settings.backend_secret,
        ),
        services.snapshots,
    )
    services.thumbnails = thumbnailer
    logger.info("thumbnails every %.1f s in %s", settings.thumbnail_interval, settings.thumbnail_dir)
    return asyncio.ensure_future(thumbnailer.run())


async def _not_ready(app: web.Application) -> None:
    app[SERVICES].ready = False


def _while_up(
    run: Callable[[web.Application], Coroutine[Any, Any, None] | None],
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A cleanup context that runs `run(app)` as a task while the server is up (when it gives a coroutine)."""

    async def context(app: web.Application) -> AsyncIterator[None]:
        coroutine = run(app)
        task = None if coroutine is None else asyncio.ensure_future(coroutine)
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return context


def _watch_loop_lag(app: web.Application) -> Coroutine[Any, Any, None]:
    """Measure how late the event loop runs (pictures are refused when it lags)."""
    return app[SERVICES].engine.loop_lag.run()


def _keep_the_heap(app: web.Application) -> Coroutine[Any, Any, None] | None:
    """Keep full garbage collections short (`gc_freeze`)."""
    services = app[SERVICES]
    return HeapKeeper(services.sources).run() if services.settings.gc_freeze else None


def create_app(settings: Settings, registry: StreamRegistry | None = None) -> web.Application:
    """The whole server as an aiohttp application (on `registry`, or a registry of its own)."""
    app = web.Application(middlewares=[client_address_middleware(TrustedProxies(settings.trusted_proxies)),
                                       cors_middleware(settings.cors_origins), access_refusals])
    app[SERVICES] = Services.from_settings(settings, registry)
    app.cleanup_ctx.append(_lifecycle)
    app.cleanup_ctx.append(run_cameras)
    app.cleanup_ctx.append(_while_up(_watch_loop_lag))
    app.cleanup_ctx.append(_while_up(_keep_the_heap))
    add_rtmp_listener(app)
    app.on_shutdown.append(_not_ready)
    app.on_shutdown.append(_drain)
    app.router.add_get("/version", version)
    add_health_routes(app)
    add_metrics_route(app)
    add_rest_routes(app)
    add_rtsp_routes(app)
    add_openapi_route(app)
    add_image_routes(app)
    add_mjpeg_routes(app)
    add_whip_routes(app)
    app.router.add_get("/", landing)
    if CLIENT_DIR.is_dir():
        app.router.add_static("/client/", CLIENT_DIR, show_index=False)
    app.router.add_get("/{tail:.*}", signaling)
    return app


def create_rest_app(services: Services) -> web.Application:
    """Only the WCS REST methods, for the second port WCS clients expect (`rest_port`), sharing `services`."""
    app = web.Application(middlewares=[client_address_middleware(TrustedProxies(services.settings.trusted_proxies)),
                                       cors_middleware(services.settings.cors_origins), access_refusals])
    app[SERVICES] = services
    add_rest_routes(app)
    add_rtsp_routes(app)
    add_openapi_route(app)
    return app
