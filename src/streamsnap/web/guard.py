"""Access control on the HTTP side: bearer tokens for REST and the image url, refusals as JSON.

With no `auth_secret` every caller holds every right, as on the WebSocket. With one, a
request shows its token as `Authorization: Bearer <token>` or, where a header cannot be set
(an `<img src>`), as the `access_token` query parameter (RFC 6750). No valid token: 401 with
`WWW-Authenticate: Bearer`; a token without the right, or a backend that refuses: 403. Both
bodies say "Restricted access", the WCS info string. Handlers just raise `AccessDenied` (from
`request_grant` or `authorize`); the `error_answers` middleware (web/errors.py) turns it into that answer.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from streamsnap.access import Grant, Right
from streamsnap.service.snapshots import Requester
from streamsnap.web.node import NODE

logger = logging.getLogger(__name__)

TOKEN_PARAMETER = "access_token"
"Query parameter that may carry the token instead of the Authorization header."


def request_grant(request: web.Request) -> Grant:
    """The rights the request's token gives; raises `NotAuthenticated`."""
    tokens = request.app[NODE].access.tokens
    header = request.headers.get("Authorization")
    if header is None and TOKEN_PARAMETER in request.query:
        header = f"Bearer {request.query[TOKEN_PARAMETER]}"
    return tokens.bearer(header)


def _hook_fields(request: web.Request) -> dict[str, Any]:
    return {"sessionId": None, "clientAddress": request.remote, "origin": request.headers.get("Origin"),
            "custom": {}, "source": "http"}


async def authorize(request: web.Request, grant: Grant, right: Right, stream: str) -> None:
    """Check `right` on `stream` for this request (token, then the backend); raises `AccessDenied`."""
    await request.app[NODE].access.allow(grant, right, stream, {**_hook_fields(request), "name": stream})


def http_requester(request: web.Request, grant: Grant) -> Requester:
    """Who asks, for the snapshot service: the token's grant and the client's address."""
    return Requester(grant, request.remote or "unknown", _hook_fields(request))
