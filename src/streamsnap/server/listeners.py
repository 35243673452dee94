"""Every listener of a node, bound in one place: the app on `http.port`, https + wss on `tls.port`, WCS REST
alone on `http.rest_port`, `/metrics` alone on `metrics.port`, the cluster listener and the RTMP listener.

Every public HTTP listener is behind a `ConnectionGuard`. `Server.start` binds the cluster socket
first (its port is announced in Redis), builds the node (`server/node.py`), then serves it;
`Server.stop` stops listening, drains the node, closes the connections and closes the node.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from streamsnap.addresses import TrustedProxies
from streamsnap.config import Settings
from streamsnap.media.webrtc import local_ipv4_addresses
from streamsnap.server.connections import ConnectionGuard, http_error_logger, safe_access_logger, serve_guarded
from streamsnap.server.node import Built, ServerError, build, close, drain, start
from streamsnap.server.rtmp import RtmpServer
from streamsnap.server.tls import (
    Certificate,
    TlsFilesError,
    forget_certificate,
    local_certificate,
    self_signed_path,
    server_context,
    server_context_from_files,
    write_certificate,
)
from streamsnap.service.node import Node
from streamsnap.web.app import create_app, create_rest_app
from streamsnap.web.cluster import create_cluster_app
from streamsnap.web.metrics import create_metrics_app

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Listener:
    """One listening socket."""

    role: str
    "http, https, rest, metrics, cluster or rtmp."
    scheme: str
    port: int
    path: str = "/"
    "Where a client of it starts (the start-up banner's url): `/metrics` on the metrics listener."
    host: str = ""
    "The address it listens on."

    @property
    def url(self) -> str:
        """Where it answers, as the start-up banner shows it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.path}"


def _listen(host: str, port: int, reuse_port: bool = False) -> socket.socket:
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET,
                                    reuse_port=reuse_port)
    except OSError as exc:
        raise ServerError(f"cannot listen on {host}:{port}: {exc}") from None


@dataclass
class Server:
    """A running streamsnap node with every listener its settings ask for."""

    settings: Settings
    reuse_port: bool = False
    "Share the public ports with other processes (the workers of `serve --workers`)."
    listeners: list[Listener] = field(default_factory=list)
    certificate: Certificate | None = None
    "The self-signed certificate, when `tls.self_signed` made one."
    certificate_file: Path | None = None
    "Where the self-signed certificate was written for clients (`--cacert`); None when it could not be."
    guard: ConnectionGuard | None = None
    "Open connections per address and the header deadline of the public listeners (after `start`)."
    rtmp: RtmpServer | None = None
    "The RTMP listener, when `rtmp.port` is set (after `start`)."
    _built: Built | None = None
    _runners: list[web.AppRunner] = field(default_factory=list)
    _servers: list[asyncio.Server] = field(default_factory=list)
    cluster_guard: ConnectionGuard | None = None
    "The cluster listener's guard (after `start`, in a cluster)."

    @property
    def node(self) -> Node:
        """The node's parts (after `start`)."""
        assert self._built is not None, "server not started"
        return self._built.node

    def port(self, role: str) -> int:
        """The bound port of listener `role` (useful with port 0)."""
        return next(listener.port for listener in self.listeners if listener.role == role)

    def _tls_context(self) -> ssl.SSLContext | None:
        tls = self.settings.tls
        if tls.cert or tls.key:
            if not (tls.cert and tls.key):
                raise ServerError("tls.cert and tls.key go together")
            try:
                return server_context_from_files(tls.cert, tls.key)
            except TlsFilesError as exc:
                raise ServerError(str(exc)) from None
        if tls.self_signed:
            self.certificate = local_certificate()
            return server_context(self.certificate)
        return None

    def _runner(self, app: web.Application, access_log: type[Any], *, cancel_on_hang_up: bool = True,
                shutdown_timeout: float = 60.0) -> web.AppRunner:
        # handler_cancellation: a caller that hangs up cancels its handler, so a picture nobody waits for
        # any more is dropped before it is decoded (the engine and the worker pool are cancel-safe).
        return web.AppRunner(app, handle_signals=False, access_log_class=access_log, logger=http_error_logger(),
                             keepalive_timeout=self.settings.http.header_timeout,
                             handler_cancellation=cancel_on_hang_up, shutdown_timeout=shutdown_timeout)

    async def start(self) -> None:
        """Build the node and bind every listener (joining the cluster first when `cluster.redis_url` is set)."""
        settings = self.settings
        http = settings.http
        context = self._tls_context()
        cluster_sock: socket.socket | None = None
        cluster_url = ""
        if settings.cluster.redis_url:
            cluster_host = cluster_bind_host(settings)
            cluster_sock = _listen(cluster_host, settings.cluster.port)
            cluster_url = self._advertised(cluster_host, cluster_sock.getsockname()[1])
        self._built = await build(settings, cluster_url=cluster_url)
        node = self._built.node
        start(self._built)
        proxies = TrustedProxies(http.trusted_proxies)
        access_log = safe_access_logger(proxies)
        self.guard = ConnectionGuard(http.header_timeout, http.max_connections_per_ip, proxies)
        # Room for the drain (in-flight snapshots get `shutdown_grace`) before aiohttp cuts connections.
        runner = self._runner(create_app(node), access_log, shutdown_timeout=settings.node.shutdown_grace + 2.0)
        shared = self.reuse_port
        sites: list[tuple[web.AppRunner, socket.socket, ssl.SSLContext | None, Listener]] = [
            (runner, _listen(http.host, http.port, shared), None, Listener("http", "http", 0, "/", http.host))]
        if context is not None:
            sites.append((runner, _listen(http.host, settings.tls.port, shared), context,
                          Listener("https", "https", 0, "/", http.host)))
        if http.rest_port:
            rest_runner = self._runner(create_rest_app(node), access_log)
            sites.append((rest_runner, _listen(http.host, http.rest_port, shared), None,
                          Listener("rest", "http", 0, "/rest-api/openapi.json", http.host)))
        if settings.metrics.port:
            metrics_host = settings.metrics.host or http.host
            metrics_runner = self._runner(create_metrics_app(node), access_log, cancel_on_hang_up=False)
            sites.append((metrics_runner, _listen(metrics_host, settings.metrics.port), None,
                          Listener("metrics", "http", 0, "/metrics", metrics_host)))
        if cluster_sock is not None:
            # The public port's guard, with a cap per address that leaves room for every other node's pool.
            self.cluster_guard = ConnectionGuard(http.header_timeout, settings.cluster.max_connections_per_ip)
            cluster_runner = self._runner(create_cluster_app(node), access_log, cancel_on_hang_up=False)
            await cluster_runner.setup()
            self._runners.append(cluster_runner)
            self._servers.append(await serve_guarded(cluster_runner, cluster_sock, self.cluster_guard))
            self.listeners.append(Listener("cluster", "http", cluster_sock.getsockname()[1], "/cluster/", cluster_host))
        for site_runner in dict.fromkeys(site[0] for site in sites):
            await site_runner.setup()
            self._runners.append(site_runner)
        for site_runner, sock, site_context, listener in sites:
            self._servers.append(await serve_guarded(site_runner, sock, self.guard, site_context))
            self.listeners.append(dataclasses.replace(listener, port=sock.getsockname()[1]))
        if self.certificate is not None:
            self._write_certificate(self.certificate)
        if settings.rtmp.port:
            self.rtmp = RtmpServer(node)
            try:
                await self.rtmp.start(settings.rtmp.host or http.host, settings.rtmp.port, reuse_port=shared)
            except OSError as exc:
                raise ServerError(f"cannot listen on {settings.rtmp.host or http.host}:{settings.rtmp.port}: "
                                  f"{exc}") from None
            self.listeners.append(Listener("rtmp", "rtmp", self.rtmp.port, "/", settings.rtmp.host or http.host))

    def _write_certificate(self, certificate: Certificate) -> None:
        """Write the self-signed certificate where clients can trust it (named by the bound https port)."""
        path = self_signed_path(self.settings.tls.self_signed_file, self.port("https"))
        try:
            write_certificate(certificate, path)
        except OSError as exc:  # https works without it; only `--cacert` lacks its file
            logger.warning("self-signed certificate not written to %s: %s", path, exc.strerror or exc)
            return
        self.certificate_file = path

    async def stop(self) -> None:
        """Stop listening, drain the node, close every connection, then close the node."""
        for server in self._servers:
            server.close()
        self._servers.clear()
        if self.rtmp is not None:
            self.rtmp.stop_listening()
        if self._built is not None:
            await drain(self._built)
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
        if self._built is not None:
            await close(self._built)
            self._built = None
        if self.rtmp is not None:
            await self.rtmp.close()
            self.rtmp = None
        if self.certificate is not None and self.certificate_file is not None:
            # The next start makes another certificate: this one's file would only mislead `--cacert`.
            forget_certificate(self.certificate, self.certificate_file)
            self.certificate_file = None

    def _advertised(self, bound_host: str, port: int) -> str:
        """The URL other nodes reach the cluster listener at."""
        if self.settings.cluster.advertise_url:
            return self.settings.cluster.advertise_url
        host = bound_host if bound_host not in ANY_ADDRESS else _private_address()
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


ANY_ADDRESS = ("0.0.0.0", "::", "")


def _private_address() -> str:
    """This machine's first non-loopback IPv4 address, else loopback."""
    outward = [ip for ip in local_ipv4_addresses() if not ip.startswith("127.")]
    return outward[0] if outward else "127.0.0.1"


def cluster_bind_host(settings: Settings) -> str:
    """The address the cluster listener binds: `cluster.host`, else `http.host` when that is one address,
    else the private address (never every interface unless the operator says so)."""
    if settings.cluster.host:
        return settings.cluster.host
    if settings.http.host not in ANY_ADDRESS:
        return settings.http.host
    return _private_address()
