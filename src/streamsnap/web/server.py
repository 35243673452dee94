"""The listening shell: the app on `port`, https + wss on `tls_port`, WCS REST alone on `rest_port`,
`/metrics` alone on `metrics_port`; every public listener behind a `ConnectionGuard`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import time
from dataclasses import dataclass, field

from aiohttp import web

from streamsnap.addresses import TrustedProxies
from streamsnap.cluster.registry import NodeInfo, RedisStreamRegistry
from streamsnap.cluster.routing import HttpRouter
from streamsnap.config import Settings
from streamsnap.media.webrtc import local_ipv4_addresses
from streamsnap.reasons import StreamEnd
from streamsnap.streams import StreamRecord
from streamsnap.web.app import create_app, create_rest_app
from streamsnap.web.catalog import node_name
from streamsnap.web.cluster import create_cluster_app
from streamsnap.web.connections import ConnectionGuard, http_error_logger, safe_access_logger, serve_guarded
from streamsnap.web.metrics import create_metrics_app
from streamsnap.web.services import SERVICES, Services
from streamsnap.web.tls import Certificate, local_certificate, server_context, server_context_from_files

logger = logging.getLogger(__name__)


class ServerError(Exception):
    """The server cannot start as configured (the message says why)."""


@dataclass(frozen=True)
class Listener:
    """One listening socket."""

    role: str
    "http, https or rest."
    scheme: str
    port: int


def _listen(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                    reuse_port=reuse_port)
    except OSError as exc:
        raise ServerError(f"cannot listen on {host}:{port}: {exc}") from None


@dataclass
class Server:
    """A running streamsnap server with every listener its settings ask for."""

    settings: Settings
    reuse_port: bool = False
    "Share the public ports with other processes (the workers of `serve --workers`)."
    listeners: list[Listener] = field(default_factory=list)
    certificate: Certificate | None = None
    "The self-signed certificate, when `tls_self_signed` made one."
    _runners: list[web.AppRunner] = field(default_factory=list)
    _servers: list[asyncio.Server] = field(default_factory=list)
    guard: ConnectionGuard | None = None
    "Open connections per address and the header deadline of the public listeners (after `start`)."
    _services: Services | None = None
    _cluster: tuple[RedisStreamRegistry, HttpRouter, asyncio.Task[None]] | None = None

    @property
    def services(self) -> Services:
        """The server's shared parts (after `start`)."""
        assert self._services is not None, "server not started"
        return self._services

    def port(self, role: str) -> int:
        """The bound port of listener `role` (useful with port 0)."""
        return next(listener.port for listener in self.listeners if listener.role == role)

    def _tls_context(self) -> ssl.SSLContext | None:
        settings = self.settings
        if settings.tls_cert or settings.tls_key:
            if not (settings.tls_cert and settings.tls_key):
                raise ServerError("tls_cert and tls_key go together")
            try:
                return server_context_from_files(settings.tls_cert, settings.tls_key)
            except (OSError, ssl.SSLError) as exc:
                raise ServerError(f"cannot use {settings.tls_cert} / {settings.tls_key}: {exc}") from None
        if settings.tls_self_signed:
            self.certificate = local_certificate()
            return server_context(self.certificate)
        return None

    async def start(self) -> None:
        """Bind every listener and start serving (joining the cluster first when `redis_url` is set)."""
        settings = self.settings
        context = self._tls_context()
        registry: RedisStreamRegistry | None = None
        cluster_sock: socket.socket | None = None
        if settings.redis_url:
            cluster_sock = _listen(settings.cluster_host or settings.host, settings.cluster_port)
            node = NodeInfo(id=node_name(settings.node_name), url=self._advertised(cluster_sock.getsockname()[1]),
                            started_at=time.time())
            registry = await RedisStreamRegistry.connect(settings.redis_url, node, ttl=settings.cluster_ttl,
                                                         prefix=settings.cluster_prefix)
        app = create_app(settings, registry)
        self._services = app[SERVICES]
        if registry is not None and cluster_sock is not None:
            await self._join(registry, cluster_sock)
        sites: list[tuple[web.AppRunner, socket.socket, ssl.SSLContext | None, str, str]] = []
        proxies = TrustedProxies(settings.trusted_proxies)
        access_log = safe_access_logger(proxies)
        self.guard = ConnectionGuard(settings.http_header_timeout, settings.max_http_connections_per_ip, proxies)
        # Room for the drain (in-flight snapshots get `shutdown_grace`) before aiohttp cuts connections.
        # handler_cancellation: a caller that hangs up cancels its handler, so a picture nobody waits for
        # any more is dropped before it is decoded (the engine and the worker pool are cancel-safe).
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=settings.shutdown_grace + 2.0,
                               access_log_class=access_log, logger=http_error_logger(),
                               keepalive_timeout=settings.http_header_timeout, handler_cancellation=True)
        shared = self.reuse_port
        sites.append((runner, _listen(settings.host, settings.port, shared), None, "http", "http"))
        if context is not None:
            sites.append((runner, _listen(settings.host, settings.tls_port, shared), context, "https", "https"))
        rest_runner = None
        if settings.rest_port:
            rest_runner = web.AppRunner(create_rest_app(self._services), handle_signals=False,
                                        access_log_class=access_log, logger=http_error_logger(),
                                        keepalive_timeout=settings.http_header_timeout, handler_cancellation=True)
            sites.append((rest_runner, _listen(settings.host, settings.rest_port, shared), None, "rest", "http"))
        if rest_runner is not None:
            await rest_runner.setup()
            self._runners.append(rest_runner)
        if settings.metrics_port:
            metrics_runner = web.AppRunner(create_metrics_app(self._services), handle_signals=False,
                                           access_log_class=access_log, logger=http_error_logger(),
                                        keepalive_timeout=settings.http_header_timeout)
            await metrics_runner.setup()
            self._runners.append(metrics_runner)
            sites.append((metrics_runner, _listen(settings.metrics_host or settings.host, settings.metrics_port),
                          None, "metrics", "http"))
        await runner.setup()
        self._runners.append(runner)
        for site_runner, sock, site_context, role, scheme in sites:
            self._servers.append(await serve_guarded(site_runner, sock, self.guard, site_context))
            self.listeners.append(Listener(role, scheme, sock.getsockname()[1]))

    async def stop(self) -> None:
        """Stop listening, close every session, free the workers (REST listener first: it shares the core)."""
        for server in self._servers:
            server.close()
        self._servers.clear()
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        if self._cluster is not None:
            registry, router, refresher = self._cluster
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            await router.close()
            await registry.close()
            self._cluster = None

    def _advertised(self, port: int) -> str:
        """The URL other nodes reach the cluster listener at."""
        if self.settings.advertise_url:
            return self.settings.advertise_url
        host = self.settings.cluster_host or self.settings.host
        if host in ("0.0.0.0", "::", ""):
            outward = [ip for ip in local_ipv4_addresses() if not ip.startswith("127.")]
            host = outward[0] if outward else "127.0.0.1"
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    async def _join(self, registry: RedisStreamRegistry, sock: socket.socket) -> None:
        """Route pictures and ends of other nodes' streams, serve theirs, keep this node's records alive."""
        services = self.services
        router = HttpRouter(registry, self.settings.cluster_secret)
        services.snapshots.router = router
        services.publishing.router = router
        services.cluster = registry.status

        async def lost(record: StreamRecord) -> None:
            await services.publishing.terminate(record, StreamEnd.NAME_IN_USE)

        registry.on_lost = lost
        runner = web.AppRunner(create_cluster_app(services), handle_signals=False)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        self._runners.append(runner)
        self.listeners.append(Listener("cluster", "http", sock.getsockname()[1]))
        self._cluster = (registry, router, asyncio.ensure_future(registry.run()))
        logger.info("node %s in the cluster at %s (records live %.1f s without a heartbeat)",
                    registry.node.id, registry.node.url, registry.ttl)
