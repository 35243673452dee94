"""Liveness and readiness probes for orchestrators."""

from __future__ import annotations

from aiohttp import web

from streamsnap.web.services import SERVICES


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: 200 while the process answers at all."""
    return web.json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz: 200 once started and until shutdown begins; 503 otherwise."""
    services = request.app[SERVICES]
    if not services.ready:
        return web.json_response({"status": "not ready"}, status=503, headers={"Cache-Control": "no-store"})
    streams = await services.registry.count()
    return web.json_response({"status": "ready", "sessions": len(services.sessions), "streams": streams},
                             headers={"Cache-Control": "no-store"})


def add_health_routes(app: web.Application) -> None:
    """Route `/healthz` and `/readyz`."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
