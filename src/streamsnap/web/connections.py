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
    """Middleware: a request from a trusted proxy carries the client's address as `request.remote`."""

    @web.middleware
    async def forwarded_client(request: web.Request,
                               handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if proxies.trusts(request.remote):
            client = proxies.client(request.remote, request.headers)
            if client is not None and client != request.remote:
                request = request.clone(remote=client)
        return await handler(request)

    return forwarded_client
