"""Cross-origin reads for dashboards: CORS headers on the picture, stream and REST endpoints.

Off by default (`cors_origins` empty). With origins listed (or "*"), answers to requests
under `CORS_PREFIXES` from those origins carry `Access-Control-Allow-Origin`, and preflight
`OPTIONS` requests are answered here, so that `fetch()` and canvas images in other sites'
pages (Grafana-like panels) can use them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

CORS_PREFIXES = ("/streams", "/rest-api/", "/whip")
"Paths that answer cross-origin requests when `cors_origins` allows the origin."
ALLOWED_METHODS = "GET, HEAD, POST, DELETE, PATCH, OPTIONS"
ALLOWED_HEADERS = "Authorization, Content-Type, If-Match"
EXPOSED_HEADERS = ("Location, ETag, Link, Last-Modified, Retry-After, X-Frame-Age-Ms, X-Frame-Timestamp, "
                   "X-Image-Width, X-Image-Height")
PREFLIGHT_MAX_AGE = "600"


def allowed_origin(origin: str | None, allowed: Sequence[str]) -> str | None:
    """The value of `Access-Control-Allow-Origin` for `origin`, or None when it may not read."""
    if origin is None or not allowed:
        return None
    if "*" in allowed:
        return "*"
    return origin if origin.rstrip("/").lower() in {a.rstrip("/").lower() for a in allowed} else None


def cors_middleware(allowed: Sequence[str]) -> Callable[..., Awaitable[web.StreamResponse]]:
    """A middleware adding CORS headers for `allowed` origins (does nothing when the list is empty)."""
    origins = tuple(allowed)

    @web.middleware
    async def cors(request: web.Request,
                   handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if not origins or not request.path.startswith(CORS_PREFIXES):
            return await handler(request)
        value = allowed_origin(request.headers.get("Origin"), origins)
        if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            if value is None:
                return web.Response(status=403)
            return web.Response(status=204, headers={
                "Access-Control-Allow-Origin": value, "Access-Control-Allow-Methods": ALLOWED_METHODS,
                "Access-Control-Allow-Headers": ALLOWED_HEADERS, "Access-Control-Max-Age": PREFLIGHT_MAX_AGE,
                "Vary": "Origin"})
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = exc
            if value is not None:
                response.headers["Access-Control-Allow-Origin"] = value
                response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            raise
        if value is not None and not response.prepared:
            response.headers["Access-Control-Allow-Origin"] = value
            response.headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
            response.headers.add("Vary", "Origin")
        return response

    return cors
