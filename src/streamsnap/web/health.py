"""Liveness and readiness probes for orchestrators."""

from __future__ import annotations

from aiohttp import web

from streamsnap.web.node import NODE


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: 200 while the process answers at all."""
    return web.json_response({"status": "ok"}, headers={"Cache-Control": "no-store"})


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz: 200 once started and until shutdown begins ("degraded" in a cluster without Redis); else 503."""
    node = request.app[NODE]
    if not node.state.ready:
        return web.json_response({"status": "not ready"}, status=503, headers={"Cache-Control": "no-store"})
    streams = await node.registry.count()
    body: dict[str, object] = {"status": "ready", "sessions": len(node.sessions), "streams": streams}
    cluster = node.cluster
    if cluster is not None:
        # Still ready without Redis: local streams and pictures go on (a load balancer should keep sending).
        age = None if cluster.last_refresh is None else round(node.clock() - cluster.last_refresh, 3)
        body["cluster"] = {"node": node.name, "redis": cluster.redis_up, "heartbeat_age_seconds": age}
        if not cluster.redis_up:
            body["status"] = "degraded"
    return web.json_response(body, headers={"Cache-Control": "no-store"})


def add_health_routes(app: web.Application) -> None:
    """Route `/healthz` and `/readyz`."""
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
