"""Who a request comes from: the peer, or the client a trusted reverse proxy names."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from streamsnap.addresses import TrustedProxies


def client_address(request: web.BaseRequest, proxies: TrustedProxies) -> str:
    """The client's address for logs: the peer, or what a trusted proxy says."""
    return proxies.client(request.remote, request.headers) or "-"


def client_address_middleware(proxies: TrustedProxies) -> Any:
    """Middleware: a request from a trusted proxy carries the client's address as `request.remote`, and the
    scheme and host the client used (`request.url`) when the proxy says them."""

    @web.middleware
    async def forwarded_client(request: web.Request,
                               handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        peer = request.remote
        if peer is not None and proxies.trusts(peer):
            client = proxies.client(peer, request.headers) or peer
            scheme, host = proxies.origin(peer, request.headers)
            scheme, host = scheme or request.scheme, host or request.host
            if (client, scheme, host) != (peer, request.scheme, request.host):
                request = request.clone(remote=client, scheme=scheme, host=host)
        return await handler(request)

    return forwarded_client
