"""The aiohttp applications of a node: routes and middlewares, around a node built elsewhere."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import WSCloseCode, web

from streamsnap import __version__
from streamsnap.access import origin_allowed
from streamsnap.addresses import TrustedProxies
from streamsnap.protocol import codec
from streamsnap.protocol import messages as msg
from streamsnap.protocol.constants import Info, Message
from streamsnap.service.node import Node
from streamsnap.web.connections import client_address_middleware
from streamsnap.web.cors import cors_middleware
from streamsnap.web.errors import error_answers, json_error
from streamsnap.web.health import add_health_routes
from streamsnap.web.images import add_image_routes
from streamsnap.web.metrics import add_metrics_route
from streamsnap.web.mjpeg import add_mjpeg_routes
from streamsnap.web.node import NODE
from streamsnap.web.openapi import add_openapi_route
from streamsnap.web.rest import add_rest_routes
from streamsnap.web.rtsp_rest import add_rtsp_routes
from streamsnap.web.websocket import SessionRunner
from streamsnap.web.whip import add_whip_routes

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
"The files served to browsers under `/client/` (the JS client, the landing page, the example page)."


async def version(request: web.Request) -> web.Response:
    """GET /version: name and version of the server."""
    return web.json_response({"name": "streamsnap", "version": __version__})


async def landing(request: web.Request) -> web.StreamResponse:
    """GET /: the landing page of the browser client; a WebSocket upgrade of / is signaling like any path."""
    if web.WebSocketResponse().can_prepare(request).ok:
        return await signaling(request)
    index = STATIC_DIR / "index.html"
    if not index.is_file():
        return json_error(404, "no landing page installed")
    return web.FileResponse(index)


async def client_file(request: web.Request) -> web.StreamResponse:
    """GET /client/{path}: a file for browsers (the JS client, the pages); anything else is a JSON 404.

    aiohttp's static route answers a folder with a plain-text 403 and a missing file with an empty 404;
    here both are "no such resource", like every other path that is not there.
    """
    root = STATIC_DIR.resolve()
    try:
        path = (root / request.match_info["path"]).resolve()
        path.relative_to(root)  # nothing outside the folder, whatever `..` or links the path holds
        is_file = path.is_file()
    except (ValueError, OSError):
        is_file = False
    if not is_file:
        return json_error(404, NOT_FOUND)
    return web.FileResponse(path)


async def signaling(request: web.Request) -> web.StreamResponse:
    """The WCS WebSocket, on any path (the official example appends a random one)."""
    node = request.app[NODE]
    ws = web.WebSocketResponse(max_msg_size=node.settings.signaling.max_message_bytes)
    if not ws.can_prepare(request).ok:
        return json_error(404, NOT_FOUND)  # the path is not echoed: it is the caller's input
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, node.access.allowed_origins):
        logger.info("connection from %s refused: origin %s not allowed", request.remote, origin)
        return json_error(403, f"{Info.RESTRICTED_ACCESS}: origin not allowed")
    remote = request.remote or "unknown"
    await ws.prepare(request)
    refusal = _connection_refusal(node, remote)
    if refusal is not None:
        # Refused after the upgrade, so that a WCS client sees why (a `fail`) before the close.
        logger.info("connection from %s refused: %s", remote, refusal)
        await ws.send_str(codec.encode(msg.fail(Message.CONNECTION, refusal)))
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=refusal.encode())
        return ws
    runner = SessionRunner(ws, node, remote, origin)
    node.sessions.add(runner)
    try:
        await runner.run()
    finally:
        node.sessions.discard(runner)
    return ws


def _connection_refusal(node: Node, remote: str) -> str | None:
    """Why a new WebSocket from `remote` is turned away (server draining or over a limit), or None."""
    limits = node.settings.signaling
    if node.state.draining:
        return Info.SHUTTING_DOWN
    if len(node.sessions) >= limits.max_sessions:
        return f"{Info.TOO_MANY_SESSIONS} on this server"
    if node.sessions.from_address(remote) >= limits.max_connections_per_ip:
        return f"{Info.TOO_MANY_SESSIONS} from {remote}"
    return None


NOT_FOUND = "no such resource"


@web.middleware
async def json_http_errors(request: web.Request,
                           handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """aiohttp's own refusals (the static files' 403 and 404, 405, 413) as the JSON bodies of every other error.

    A folder under `/client/` (no listing) and a missing file are both "no such resource" (404): what is
    there to fetch is the files, and a 403 would only tell that a folder exists.
    """
    try:
        return await handler(request)
    except web.HTTPClientError as exc:
        headers = {name: value for name, value in exc.headers.items() if name not in ("Content-Type", "Content-Length")}
        if exc.status in (403, 404):
            return json_error(404, NOT_FOUND, headers=headers)
        return json_error(exc.status, exc.reason.lower(), headers=headers)


def _application(node: Node) -> web.Application:
    """An application serving `node`, with the middlewares every one of its apps has."""
    http = node.settings.http
    app = web.Application(middlewares=[client_address_middleware(TrustedProxies(http.trusted_proxies)),
                                       cors_middleware(http.cors_origins), error_answers, json_http_errors])
    app[NODE] = node
    return app


def create_app(node: Node) -> web.Application:
    """Every route of the public port, serving `node`."""
    app = _application(node)
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
    if STATIC_DIR.is_dir():
        app.router.add_get("/client/{path:.*}", client_file)
    app.router.add_get("/{tail:.*}", signaling)
    return app


def create_rest_app(node: Node) -> web.Application:
    """Only the WCS REST methods, for the second port WCS clients expect (`http.rest_port`)."""
    app = _application(node)
    add_rest_routes(app)
    add_rtsp_routes(app)
    add_openapi_route(app)
    return app
