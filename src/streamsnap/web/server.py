"""The listening shell: the app on `port`, https + wss on `tls_port`, WCS REST alone on `rest_port`."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field

from aiohttp import web

from streamsnap.config import Settings
from streamsnap.web.app import create_app, create_rest_app
from streamsnap.web.services import SERVICES, Services
from streamsnap.web.tls import Certificate, local_certificate, server_context, server_context_from_files


class ServerError(Exception):
    """The server cannot start as configured (the message says why)."""


@dataclass(frozen=True)
class Listener:
    """One listening socket."""

    role: str
    "http, https or rest."
    scheme: str
    port: int


def _listen(host: str, port: int) -> socket.socket:
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as exc:
        raise ServerError(f"cannot listen on {host}:{port}: {exc}") from None


@dataclass
class Server:
    """A running streamsnap server with every listener its settings ask for."""

    settings: Settings
    listeners: list[Listener] = field(default_factory=list)
    certificate: Certificate | None = None
    "The self-signed certificate, when `tls_self_signed` made one."
    _runners: list[web.AppRunner] = field(default_factory=list)
    _services: Services | None = None

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
        """Bind every listener and start serving."""
        settings = self.settings
        context = self._tls_context()
        app = create_app(settings)
        self._services = app[SERVICES]
        sites: list[tuple[web.AppRunner, socket.socket, ssl.SSLContext | None, str, str]] = []
        # Room for the drain (in-flight snapshots get `shutdown_grace`) before aiohttp cuts connections.
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=settings.shutdown_grace + 2.0)
        sites.append((runner, _listen(settings.host, settings.port), None, "http", "http"))
        if context is not None:
            sites.append((runner, _listen(settings.host, settings.tls_port), context, "https", "https"))
        rest_runner = None
        if settings.rest_port:
            rest_runner = web.AppRunner(create_rest_app(self._services), handle_signals=False)
            sites.append((rest_runner, _listen(settings.host, settings.rest_port), None, "rest", "http"))
        if rest_runner is not None:
            await rest_runner.setup()
            self._runners.append(rest_runner)
        await runner.setup()
        self._runners.append(runner)
        for site_runner, sock, site_context, role, scheme in sites:
            await web.SockSite(site_runner, sock, ssl_context=site_context).start()
            self.listeners.append(Listener(role, scheme, sock.getsockname()[1]))

    async def stop(self) -> None:
        """Stop listening, close every session, free the workers (REST listener first: it shares the core)."""
        for runner in self._runners:
            await runner.cleanup()
        self._runners.clear()
