"""The RTMP listener: encoders (ffmpeg, OBS) push `rtmp://host:rtmp_port/APP/NAME[?token=…]` here.

Each TCP connection runs the sans-I/O `protocol.rtmp.RtmpConnection` and, once the peer
asks to publish, one `PublishingService.publish` whose source is an `RtmpSource` fed by this
connection. The shell owns the limits that need a clock, a count or a socket: connections
held at once and per address (the public port's `ConnectionGuard`), the time from accept to
an accepted publish, silence, and what is queued for a peer that does not read (past a quarter
of `max_write_buffer_bytes` the peer is not read from until it reads; past all of it, it is
closed). Parsing runs in bounded steps (`STEP_WORK`), each its own turn of the event loop, and
reading waits while a step's backlog, a publish being decided, or an unread answer is pending:
bytes are taken from the socket only as fast as they are dealt with. Anything the protocol
refuses, and every limit, ends in closing the connection with the limit named in the log; a
refused publish is first told why (`onStatus` with the level `error`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import urllib.parse
from typing import cast

from streamsnap.access import AccessDenied
from streamsnap.logs import safe_line
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
from streamsnap.server.connections import ConnectionGuard
from streamsnap.service.node import Node
from streamsnap.service.publishing import PublishHandle, PublishRequest
from streamsnap.streams import SourceKind
from streamsnap.web.wcs import STREAM_END_INFO

logger = logging.getLogger(__name__)

TOKEN_PARAMETERS = ("token", "access_token")
"Query parameters of the stream key (or of the app) that may carry the access token."
MAX_NAME_LENGTH = 256
STEP_WORK = 128
"""Work one parsing step does before the event loop runs others (`RtmpConnection.receive_data`'s
`max_work`): about a millisecond at worst, 16-512 KiB of an encoder's video at its chunk sizes."""

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
        # The public port's per-address count (IPv6 by /64). No address is exempt: behind a TCP proxy
        # RTMP does not tell who the clients are, so an operator with one raises the cap instead.
        self.guard = ConnectionGuard(self.settings.handshake_timeout, self.settings.max_connections_per_ip)
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
        self._last_data = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self._key: str | None = None
        self._admitted = False
        self._holds: set[str] = set()
        "Why reading is paused: `parsing` (a backlog), `publish` (being decided), `writing` (the peer does not read)."
        self._step_scheduled = False
        self._write_paused_at: float | None = None

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio's classes
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) else "unknown"
        settings = self.server.settings
        if len(self.server.connections) >= settings.max_connections:
            self.server.refused_connections += 1
            logger.info("RTMP connection from %s refused: %d connections held (rtmp.max_connections)", self.address,
                        len(self.server.connections))
            self.transport.abort()
            return
        try:
            self._key = self.server.guard.admit(peer[0] if isinstance(peer, tuple) else None)
        except LookupError:
            logger.info("RTMP connection from %s refused: %d connections from this address "
                        "(rtmp.max_connections_per_ip)", self.address, settings.max_connections_per_ip)
            self.transport.abort()
            return
        self._admitted = True
        self.server.connections.add(self)
        self.transport.set_write_buffer_limits(high=settings.max_write_buffer_bytes // 4,
                                               low=settings.max_write_buffer_bytes // 16)
        self._deadline = self._loop.call_later(settings.handshake_timeout, self._publish_late)
        self._schedule_check()

    def data_received(self, data: bytes) -> None:
        self._last_data = self._loop.time()
        self._step(data)

    def pause_writing(self) -> None:
        """The peer does not read what it is sent: read nothing more of it until it does."""
        self._write_paused_at = self._loop.time()
        self._hold("writing")

    def resume_writing(self) -> None:
        self._write_paused_at = None
        self._release("writing")
        self._step_soon()

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        if self._admitted:
            self._admitted = False
            self.server.guard.release(self._key)
        for timer in (self._timer, self._deadline):
            if timer is not None:
                timer.cancel()
        if self.source is not None:
            self.source.publisher_left(StreamEnd.DISCONNECTED)
        elif self.publication is not None:
            self.publication.stop_soon(StreamEnd.DISCONNECTED)

    # -- parsing, in steps --

    def _step(self, data: bytes = b"") -> None:
        """Parse `data` and what is left of earlier bytes, up to `STEP_WORK`; the rest in a later turn of the loop."""
        self._step_scheduled = False
        if self.transport is None or self.transport.is_closing():
            return
        try:
            events = self.connection.receive_data(data, max_work=STEP_WORK)
        except RtmpError as exc:
            # The message, not the exception: a kept record (a test's capture) would keep its frames and buffers.
            logger.info("RTMP connection from %s closed: %s", self.address, str(exc))
            self._close(abort=True)
            return
        for event in events:
            self._handle(event)
        self._flush()
        if self.connection.backlog:
            self._hold("parsing")
            self._step_soon()
        else:
            self._release("parsing")

    def _step_soon(self) -> None:
        """Parse on in the next turn of the loop, unless the peer does not read (its answers would pile up)."""
        if self._step_scheduled or "writing" in self._holds or self.transport is None or self.transport.is_closing():
            return
        self._step_scheduled = True
        self._loop.call_soon(self._step)

    def _hold(self, reason: str) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if not self._holds:
            self.transport.pause_reading()
        self._holds.add(reason)

    def _release(self, reason: str) -> None:
        if reason not in self._holds:
            return
        self._holds.discard(reason)
        if not self._holds and self.transport is not None and not self.transport.is_closing():
            self._last_data = self._loop.time()  # a silence while not read from is not the peer's
            self.transport.resume_reading()

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
            self._hold("publish")  # nothing more of the peer is read until its publish is decided
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
        log.info("RTMP publish of %s from %s (app %s)", name, self.address,
                 safe_line(self._app.partition("?")[0][:MAX_NAME_LENGTH]))
        request = PublishRequest(
            name=name, media_session_id=secrets.token_hex(8), grant=grant, make_source=self._make_source,
            kind=SourceKind.RTMP, client_address=self.address,
            hook_fields={"sessionId": None, "clientAddress": self.address, "origin": None, "custom": {},
                         "source": "rtmp"},
        )
        return node.publishing.start(request, self)

    def _make_source(self, name: str) -> RtmpSource:
        self.source = RtmpSource(name, self.server.node.settings.gop, on_start=self._accept,
                                 disconnect=self._close, max_nal_units=self.server.settings.max_nal_units_per_frame)
        return self.source

    def _accept(self) -> None:
        self._started = True
        if self._deadline is not None:
            self._deadline.cancel()
        self.connection.accept_publish(self._stream_id, "Publishing")
        self._flush()
        self._release("publish")
        self._step_soon()  # what the peer sent after `publish` waits in the connection's buffer

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
        if not data or self.transport is None or self.transport.is_closing():
            return
        self.transport.write(data)
        unsent, limit = self.transport.get_write_buffer_size(), self.server.settings.max_write_buffer_bytes
        if unsent > limit:
            logger.info("RTMP connection from %s closed: %d bytes unsent, over rtmp.max_write_buffer_bytes (%d): "
                        "it does not read", self.address, unsent, limit)
            self._close(abort=True)

    def _close(self, abort: bool = False) -> None:
        if self.transport is None:
            return
        if abort:  # also ends a close still waiting to flush to a peer that does not read (the idle check's)
            self.transport.abort()
        elif not self.transport.is_closing():
            self.transport.close()

    def _schedule_check(self) -> None:
        self._timer = self._loop.call_later(self.server.settings.idle_timeout / 4, self._check)

    def _check(self) -> None:
        """The idle limit: never silent, and never reading nothing of what it is sent, for `idle_timeout`."""
        now, idle = self._loop.time(), self.server.settings.idle_timeout
        if self._write_paused_at is not None and now - self._write_paused_at > idle:
            logger.info("RTMP connection from %s closed: it read nothing it was sent for %.0f s (rtmp.idle_timeout)",
                        self.address, idle)
            self._close(abort=True)
        elif not self._holds and now - self._last_data > idle:
            logger.info("RTMP connection from %s closed: silent for %.0f s (rtmp.idle_timeout)", self.address, idle)
            self._close(abort=True)
        else:
            self._schedule_check()

    def _publish_late(self) -> None:
        """The deadline of `handshake_timeout`: handshake, connect, publish and its token check all within it."""
        self._deadline = None
        if not self._started:
            logger.info("RTMP connection from %s closed: no accepted publish within %.0f s (rtmp.handshake_timeout)",
                        self.address, self.server.settings.handshake_timeout)
            self._close(abort=True)

    def close(self) -> None:
        """The node stopped: close the connection."""
        self._close()
