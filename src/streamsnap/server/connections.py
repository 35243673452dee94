"""The HTTP edge under aiohttp: connections per address, a deadline for request headers, safe access logs.

aiohttp keeps a connection that drips its first request's headers a byte at a time open for
as long as it drips, and has no bound on the connections one address holds open. Each
listener's protocol factory is wrapped here (`serve_guarded`): a connection whose first
request headers are not complete within `header_timeout` is closed (the next requests on a
kept-alive connection are aiohttp's `keepalive_timeout`, which `server/listeners.py` sets to the same
value: its timer is not reset by a partial request), and an address already
holding `max_per_address` connections has its next one closed on arrival (a trusted proxy
is exempt: it carries many clients). The access log (`SafeAccessLogger`) writes the client
address the proxies tell, the path, and the query without any credential in it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from streamsnap.addresses import TrustedProxies, client_key
from streamsnap.logs import safe_line
from streamsnap.web.connections import client_address

logger = logging.getLogger(__name__)

END_OF_HEADERS = b"\r\n\r\n"


def safe_access_logger(proxies: TrustedProxies) -> type[AbstractAccessLogger]:
    """An access logger class (for `AppRunner(access_log_class=…)`) that writes no credentials."""

    class SafeAccessLogger(AbstractAccessLogger):
        """`client "METHOD target HTTP/x.y" status bytes "referer" "user-agent" seconds`."""

        def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
            version = f"HTTP/{request.version.major}.{request.version.minor}"
            self.logger.info('%s "%s %s %s" %d %d "%s" "%s" %.3f', safe_line(client_address(request, proxies)),
                             safe_line(request.method), safe_line(request.raw_path), version,
                             response.status, response.body_length, safe_line(request.headers.get("Referer", "-")),
                             safe_line(request.headers.get("User-Agent", "-")), time)

    return SafeAccessLogger


class ClientErrorsInOneLine(logging.Filter):
    """aiohttp logs a traceback at ERROR for every malformed request (an over-long line or header, bad
    syntax); that is the client's doing, worth one INFO line (already answered 4xx), not an alarm."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg = safe_line(f"{record.getMessage()}: {type(exc).__name__} {exc.code}: {exc.message}"[:300])
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def http_error_logger() -> logging.Logger:
    """The logger aiohttp's connection handlers report errors to (`AppRunner(logger=…)`)."""
    http_logger = logging.getLogger("streamsnap.http")
    if not any(isinstance(f, ClientErrorsInOneLine) for f in http_logger.filters):
        http_logger.addFilter(ClientErrorsInOneLine())
    return http_logger


@dataclass
class ConnectionGuard:
    """Counts open connections per client address and closes the ones over the limits."""

    header_timeout: float
    "Seconds a connection has to complete its first request's headers."
    max_per_address: int
    "Open connections one address may hold."
    proxies: TrustedProxies = field(default_factory=TrustedProxies)
    "Their connections are not counted per address."
    open: dict[str, int] = field(default_factory=dict)
    "Open connections by address key."
    refused: int = 0
    "Connections closed on arrival (over `max_per_address`)."
    timed_out: int = 0
    "Connections closed for not completing their headers in time."

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory whose connections are guarded."""
        return lambda: _GuardedProtocol(factory(), self)

    def admit(self, peer: str | None) -> str | None:
        """Count a new connection from `peer`; its key, None when it is not counted; raises `LookupError` over."""
        if peer is None or self.proxies.trusts(peer):
            return None
        key = client_key(peer) or peer
        held = self.open.get(key, 0)
        if held >= self.max_per_address:
            self.refused += 1
            raise LookupError(key)
        self.open[key] = held + 1
        return key

    def release(self, key: str | None) -> None:
        """A counted connection closed."""
        if key is None:
            return
        left = self.open.get(key, 0) - 1
        if left > 0:
            self.open[key] = left
        else:
            self.open.pop(key, None)


class _GuardedProtocol(asyncio.Protocol):
    """Stands before aiohttp's protocol: counts the connection and holds its header deadline."""

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard
        self._key: str | None = None
        self._refused = False
        self._headers_done = False
        self._tail = b""
        self._timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        address = peer[0] if isinstance(peer, tuple) and peer else None
        try:
            self._key = self._guard.admit(address)
        except LookupError:
            self._refused = True
            logger.debug("connection from %s closed: over max_http_connections_per_ip", address)
            if isinstance(transport, asyncio.Transport):
                transport.abort()
            else:
                transport.close()
            return
        self._transport = transport
        self._timer = asyncio.get_running_loop().call_later(self._guard.header_timeout, self._headers_late)
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if not self._headers_done:
            if END_OF_HEADERS in self._tail + data:
                self._headers_done = True
                self._cancel_timer()
            else:
                self._tail = (self._tail + data)[-3:]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._refused:
            return None
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            return
        self._cancel_timer()
        self._guard.release(self._key)
        self._key = None
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_late(self) -> None:
        self._timer = None
        if self._headers_done or self._transport is None:
            return
        self._guard.timed_out += 1
        logger.debug("connection closed: no complete request headers within %.1f s", self._guard.header_timeout)
        transport = self._transport
        if isinstance(transport, asyncio.Transport):
            transport.abort()
        else:
            transport.close()


async def serve_guarded(runner: web.BaseRunner, sock: socket.socket, guard: ConnectionGuard,
                        ssl_context: ssl.SSLContext | None = None) -> asyncio.Server:
    """Serve `runner`'s app on `sock` through `guard` (in place of a `web.SockSite`).

    The caller closes the returned server to stop listening, before `runner.cleanup()`
    (which closes the connections still open).
    """
    server = runner.server
    assert server is not None, "runner not set up"
    # With TLS the guard sees a connection once its handshake is done: the handshake gets the same deadline.
    return await asyncio.get_running_loop().create_server(
        guard.wrap(server), sock=sock, ssl=ssl_context,
        ssl_handshake_timeout=guard.header_timeout if ssl_context is not None else None)
