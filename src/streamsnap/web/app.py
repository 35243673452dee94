"""The aiohttp application: routes, shared state and its lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from streamsnap import __version__
from streamsnap.config import Settings
from streamsnap.media.ingest import announce_addresses
from streamsnap.web.services import Services
from streamsnap.web.websocket import SessionRunner

logger = logging.getLogger(__name__)

CLIENT_DIR = Path(__file__).resolve().parent.parent / "client"
SERVICES = web.AppKey("services", Services)


def json_error(status: int, message: str) -> web.Response:
    """An HTTP error with a JSON body."""
    return web.json_response({"error": message, "status": status}, status=status)


async def version(request: web.Request) -> web.Response:
    """GET /version: name and version of the server."""
    return web.json_response({"name": "streamsnap", "version": __version__})


async def landing(request: web.Request) -> web.StreamResponse:
    """GET /: the landing page of the browser client."""
    index = CLIENT_DIR / "index.html"
    if not index.is_file():
        return json_error(404, "no landing page installed")
    return web.FileResponse(index)


async def signaling(request: web.Request) -> web.StreamResponse:
    """The WCS WebSocket, on any path (the official example appends a random one)."""
    services = request.app[SERVICES]
    ws = web.WebSocketResponse(max_msg_size=services.settings.max_message_bytes)
    if not ws.can_prepare(request).ok:
        return json_error(404, f"no such resource: {request.path}")
    await ws.prepare(request)
    runner = SessionRunner(ws, services, request.remote or "unknown")
    services.sessions.add(runner)
    try:
        await runner.run()
    finally:
        services.sessions.discard(runner)
    return ws


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    announce_addresses(services.settings.ice_addresses)
    yield
    runners = list(services.sessions)
    for runner in runners:
        assert isinstance(runner, SessionRunner)
        await runner.ws.close()
    await asyncio.gather(*(r.shutdown_tasks() for r in runners if isinstance(r, SessionRunner)),
                         return_exceptions=True)
    services.engine.close()


def create_app(settings: Settings) -> web.Application:
    """The whole server as an aiohttp application."""
    app = web.Application()
    app[SERVICES] = Services.from_settings(settings)
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_get("/version", version)
    app.router.add_get("/", landing)
    if CLIENT_DIR.is_dir():
        app.router.add_static("/client/", CLIENT_DIR, show_index=False)
    app.router.add_get("/{tail:.*}", signaling)
    return app
