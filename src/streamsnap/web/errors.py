"""HTTP errors as JSON bodies: what a client can cause gets a 4xx it can read, never a traceback."""

from __future__ import annotations

from aiohttp import web


def json_error(status: int, message: str, *, field: str | None = None,
               headers: dict[str, str] | None = None) -> web.Response:
    """An HTTP error with a JSON body `{"error", "status"}` (and `field` for a bad parameter)."""
    body: dict[str, object] = {"error": message, "status": status}
    if field is not None:
        body["field"] = field
    return web.json_response(body, status=status, headers=headers)
