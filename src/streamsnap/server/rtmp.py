"""The RTMP listener: encoders (ffmpeg, OBS) push `rtmp://host:rtmp_port/APP/NAME[?token=…]` here.

Each TCP connection runs the sans-I/O `protocol.rtmp.RtmpConnection` and, once the peer
asks to publish, one `PublishingService.publish` whose source is an `RtmpSource` fed by this
connection. The shell owns the limits that need a clock or a count: connections held at
once, the time from accept to `publish`, and silence. Anything the protocol refuses, and
every limit, ends in closing the connection; a refused publish is first told why
(`onStatus` with the level `error`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import urllib.parse
from typing import cast

from streamsnap.access import AccessDenied
from streamsnap.media.rtmp import RtmpSource
from streamsnap.protocol.rtmp import (
    HANDSHAKE_SIZE,
    AudioData,
    Connected,
    Event,
    PublishRequested,
    PublishStopped,
    RtmpConnection,
    RtmpError,
    VideoData,
)
from streamsnap.reasons import StreamEnd
from streamsnap.service.node import Node
from streamsnap.service.publishing import PublishHandle, PublishRequest
from streamsnap.streams import SourceKind
from streamsnap.web.wcs import STREAM_END_INFO

logger = logging.getLogger(__name__)

TOKEN_PARAMETERS = ("token", "access_token")
"Query parameters of the stream key (or of the app) that may carry the access token."
MAX_NAME_LENGTH = 256

REFUSAL_CODES: dict[StreamEnd, str] = {
    StreamEnd.NAME_IN_USE: "NetStream.Publish.BadName",
    StreamEnd.RESTRICTED: "NetStream.Publish.Denied",
}
"The `onStatus` code of a refused publish (others: NetStream.Publish.Failed); the description is the WCS info."


def stream_key(app: str, key: str) -> tuple[str, str | None]:
    """The stream name and access token of a publish: `NAME?token=…` in the key, or `?token=…` on the app."""
    name, _, query = key.partition("?")
    params = urllib.parse.parse_qs(query) | urllib.parse.parse_qs(app.partition("?")[2])
    token = next((params[p][0] for p in TOKEN_PARAMETERS if params.get(p)), None)
    return name, token


class RtmpServer:
    """The RTMP listener of one node: its socket and live connections."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.settings = node.settings.rtmp
        self.connections: set[RtmpPublisher] = set()
        self.refused_connections = 0
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port."""
        assert self._server is not None and self._server.sockets
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self, host: str, port: int, *, reuse_port: bool = False) -> None:
        """Listen on `host`:`port` (shared with other processes when `reuse_port`: the workers of `serve`)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: RtmpPublisher(self), host, port,
                                                reuse_port=reuse_port or None)
        logger.info("RTMP listening on %s:%d", host, self.port)

    def stop_listening(self) -> None:
        """Take no new connection (the node's drain ends the streams of those held)."""
        if self._server is not None:
            self._server.close()

    async def close(self) -> None:
        """Close every connection still held (their streams ended with the node)."""
        self.stop_listening()
        for connection in list(self.connections):
            connection.close()


class RtmpPublisher(asyncio.Protocol):
    """One encoder's connection."""

    def __init__(self, server: RtmpServer) -> None:
        self.server = server
        self.connection = RtmpConnection(server.settings, random=os.urandom(HANDSHAKE_SIZE - 8))
        self.transport: asyncio.Transport | None = None
        self.address = "unknown"
        self.source: RtmpSource | None = None
        self.publication: PublishHandle | None = None
        self._started = False
        self._app = ""
        self._stream_id = 0
        self._loop = asyncio.get_running_loop()
        self._accepted_at = self._last_data = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) else "unknown"
        if len(self.server.connections) >= self.server.settings.max_connections:
            self.server.refused_connections += 1
            logger.info("RTMP connection from %s refused: %d connections held", self.address,
                        len(self.server.connections))
            self.transport.abort()
            return
        self.server.connections.add(self)
        self._schedule_check()

    def data_received(self, data: bytes) -> None:
        self._last_data = self._loop.time()
        try:
            events = self.connection.receive_data(data)
        except RtmpError as exc:
            logger.info("RTMP connection from %s closed: %s", self.address, exc)
            self._close(abort=True)
            return
        for event in events:
            self._handle(event)
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        if self.source is not None:
            self.source.publisher_left(StreamEnd.DISCONNECTED)
        elif self.publication is not None:
            self.publication.stop_soon(StreamEnd.DISCONNECTED)

    # -- events --

    def _handle(self, event: Event) -> None:
        if isinstance(event, VideoData):
            if self.source is not None:
                self.source.feed_video(event.timestamp, event.data)
        elif isinstance(event, AudioData):
            pass  # accepted, never decoded
        elif isinstance(event, Connected):
            self._app = event.app
        elif isinstance(event, PublishRequested):
            self._stream_id = event.stream_id
            self.publication = self._publish(event.stream_key)
        elif isinstance(event, PublishStopped):
            if self.source is not None:
                self.source.publisher_left(StreamEnd.STOPPED_BY_PUBLISHER)
            elif self.publication is not None:
                self.publication.stop_soon()

    def _publish(self, key: str) -> PublishHandle | None:
        """Start publishing as the stream key says; None when the key or its token is refused (told why)."""
        name, token = stream_key(self._app, key)
        log = logging.LoggerAdapter(logger, {"stream": name})
        node = self.server.node
        if not name or len(name) > MAX_NAME_LENGTH:
            log.info("RTMP publish from %s refused: bad stream name %r", self.address, name[:80])
            self._refuse("NetStream.Publish.BadName", "bad stream name")
            return None
        try:
            grant = node.access.tokens.grant(token)
        except AccessDenied as exc:
            log.info("RTMP publish of %s from %s refused: %s", name, self.address, exc.detail)
            self._refuse(REFUSAL_CODES[StreamEnd.RESTRICTED], STREAM_END_INFO[StreamEnd.RESTRICTED])
            return None
        log.info("RTMP publish of %s from %s (app %s)", name, self.address, self._app.partition("?")[0])
        request = PublishRequest(
            name=name, media_session_id=secrets.token_hex(8), grant=grant, make_source=self._make_source,
            kind=SourceKind.RTMP, client_address=self.address,
            hook_fields={"sessionId": None, "clientAddress": self.address, "origin": None, "custom": {},
                         "source": "rtmp"},
        )
        return node.publishing.start(request, self)

    def _make_source(self, name: str) -> RtmpSource:
        self.source = RtmpSource(name, self.server.node.settings.gop, on_start=self._accept,
                                 disconnect=self._close)
        return self.source

    def _accept(self) -> None:
        self._started = True
        self.connection.accept_publish(self._stream_id, "Publishing")
        self._flush()

    # -- PublishListener --

    async def answered(self, sdp: str) -> None:
        """Not called: an RTMP source has nothing to answer."""

    async def publishing(self) -> None:
        """Media flows (the record says PUBLISHING)."""

    async def ended(self, reason: StreamEnd) -> None:
        """The stream was refused or ended: tell a refused publisher why, then close."""
        if not self._started:
            code = REFUSAL_CODES.get(reason, "NetStream.Publish.Failed")
            self._refuse(code, STREAM_END_INFO.get(reason, reason.value))
        else:
            self._close()

    # -- plumbing --

    def _refuse(self, code: str, description: str) -> None:
        self.connection.refuse_publish(self._stream_id, code, description)
        self._flush()
        self._close()

    def _flush(self) -> None:
        data = self.connection.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _close(self, abort: bool = False) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if abort:
            self.transport.abort()
        else:
            self.transport.close()

    def _schedule_check(self) -> None:
        settings = self.server.settings
        interval = min(settings.handshake_timeout, settings.idle_timeout) / 4
        self._timer = self._loop.call_later(interval, self._check)

    def _check(self) -> None:
        """The clock's limits: a publish within `handshake_timeout`, never silent for `idle_timeout`."""
        now, settings = self._loop.time(), self.server.settings
        if self.publication is None and now - self._accepted_at > settings.handshake_timeout:
            logger.info("RTMP connection from %s closed: no publish within %.0f s", self.address,
                        settings.handshake_timeout)
            self._close(abort=True)
        elif now - self._last_data > settings.idle_timeout:
            logger.info("RTMP connection from %s closed: silent for %.0f s", self.address, settings.idle_timeout)
            self._close(abort=True)
        else:
            self._schedule_check()

    def close(self) -> None:
        """The node stopped: close the connection."""
        self._close()
