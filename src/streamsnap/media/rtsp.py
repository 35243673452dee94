"""RTSP sources: a camera pulled with PyAV, its packets demuxed (never decoded) into the frame cache.

One thread per camera opens the url and reads packets; each packet is handed to the event
loop (`call_soon_threadsafe`) and added to a bounded `GopCache`, so a camera nobody asks a
picture of costs a demux and a list append per frame. PyAV's read timeout does not fire
when a camera accepts and then sends nothing (PyAV #584), so a no-packet watchdog on the
loop ends the source itself; FFmpeg's socket timeout (`timeout` option) then frees the thread.

The url may carry credentials: they go to FFmpeg and nowhere else. Every word logged or
raised here names the url without them (`public_uri`), and FFmpeg's own messages, which
quote the url, are never passed on.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
import av.error

from streamsnap.config import GopSettings, RtspSettings
from streamsnap.media.frames import GopCache
from streamsnap.media.h264 import annexb_parameter_sets, with_parameter_sets
from streamsnap.media.source import SourceStats, video_stats
from streamsnap.reasons import PublishError, StreamEnd
from streamsnap.streams import SourceKind

logger = logging.getLogger(__name__)

CODECS = {"h264": "H264"}
"FFmpeg codec names the snapshot engine decodes, and the engine's names for them."


def public_uri(uri: str) -> str:
    """`uri` without its user information (credentials): what logs, listings and names may show."""
    try:
        parts = urllib.parse.urlsplit(uri)
    except ValueError:
        return "<invalid url>"
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _open_failure(exc: BaseException) -> StreamEnd:
    """The reason an `av.open` of a camera failed."""
    if isinstance(exc, av.error.HTTPUnauthorizedError | av.error.HTTPForbiddenError):
        return StreamEnd.SOURCE_UNAUTHORIZED
    if isinstance(exc, av.error.HTTPNotFoundError):
        return StreamEnd.SOURCE_NOT_FOUND
    if isinstance(exc, av.error.InvalidDataError):
        return StreamEnd.INVALID_SDP
    if isinstance(exc, av.error.ExitError | TimeoutError):  # PyAV's interrupt (its timeout), ETIMEDOUT
        return StreamEnd.SOURCE_TIMEOUT
    if isinstance(exc, av.error.HTTPClientError | av.error.HTTPServerError | av.error.HTTPOtherClientError):
        return StreamEnd.SOURCE_UNREACHABLE
    if isinstance(exc, ConnectionError | OSError):
        return StreamEnd.SOURCE_UNREACHABLE
    return StreamEnd.ERROR


REDIRECTS = frozenset({301, 302, 303, 305, 307})
MAX_REPLY_BYTES = 64 * 1024
DEFAULT_PORT = 554


def _describe(uri: str, timeout: float) -> tuple[socket.socket, tuple[int, dict[str, str]] | None]:
    """A connection to the camera and the status and headers of its answer to a DESCRIBE without
    credentials (None when the answer is not RTSP)."""
    parts = urllib.parse.urlsplit(uri)
    sock = socket.create_connection((parts.hostname or "", parts.port or DEFAULT_PORT), timeout=timeout)
    try:
        sock.settimeout(timeout)
        sock.sendall(f"DESCRIBE {public_uri(uri)} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n"
                     f"User-Agent: streamsnap\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply and len(reply) < MAX_REPLY_BYTES:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    except BaseException:
        sock.close()
        raise
    lines = reply.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    words = lines[0].split(" ", 2)
    if len(words) < 2 or not words[0].startswith("RTSP/") or not words[1].isdigit():
        return sock, None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return sock, (int(words[1]), headers)


def follow_redirects(uri: str, *, max_redirects: int, timeout: float,
                     host_allowed: Callable[[str], bool]) -> tuple[str, socket.socket]:
    """The url FFmpeg should open, `uri` or where its camera redirects, and the connection that asked
    it (blocking; raises `PublishError`).

    FFmpeg follows RTSP redirects itself, to any host and without a count; so redirects are
    followed here first, each target checked against `host_allowed`, at most `max_redirects`.
    Credentials go along only to the same host. Failures FFmpeg words better (401, 404, junk) are
    left to it. The caller closes the connection once FFmpeg has opened the camera: a server that
    prepares a shared stream on DESCRIBE (GStreamer's) tears it down when its only client leaves,
    and answers 503 to the next DESCRIBE while it does.
    """
    for _ in range(max_redirects + 1):
        try:
            sock, head = _describe(uri, timeout)
        except TimeoutError:
            raise PublishError(StreamEnd.SOURCE_TIMEOUT, f"{public_uri(uri)} did not answer") from None
        except OSError as exc:
            raise PublishError(StreamEnd.SOURCE_UNREACHABLE, f"{public_uri(uri)}: {_words(exc)}") from None
        if head is None or head[0] not in REDIRECTS or "location" not in head[1]:
            return uri, sock
        sock.close()
        here = urllib.parse.urlsplit(uri)
        target = urllib.parse.urlsplit(urllib.parse.urljoin(public_uri(uri), head[1]["location"]))
        if target.scheme.lower() != "rtsp" or not target.hostname:
            raise PublishError(StreamEnd.BAD_SOURCE_URI, f"{public_uri(uri)} redirects to a url that is not rtsp://")
        if not host_allowed(target.hostname):
            raise PublishError(StreamEnd.SOURCE_NOT_ALLOWED, f"{public_uri(uri)} redirects to {target.hostname}")
        netloc = target.netloc.rsplit("@", 1)[-1]
        if target.hostname == here.hostname and "@" in here.netloc:
            netloc = here.netloc.rsplit("@", 1)[0] + "@" + netloc
        uri = urllib.parse.urlunsplit((target.scheme, netloc, target.path, target.query, target.fragment))
        logger.info("camera redirects to %s", public_uri(uri))
    raise PublishError(StreamEnd.SOURCE_UNREACHABLE, f"more than {max_redirects} redirects")


def _words(exc: BaseException) -> str:
    """What may be said of an FFmpeg error: its kind and text, never its file name (the url)."""
    text = getattr(exc, "strerror", None) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


@dataclass
class RtspSource:
    """One camera pulled over RTSP: a `Source` of kind RTSP."""

    name: str
    uri: str
    "The camera's url, credentials included (never shown)."
    settings: RtspSettings
    gop: GopSettings
    transport: str = "tcp"
    "RTSP lower transport: tcp (interleaved) or udp."
    host_allowed: Callable[[str], bool] = lambda host: True
    "Whether a host a camera redirects to may be pulled (blocking: called in the reader thread)."
    clock: Callable[[], float] = time.monotonic
    video: GopCache | None = None
    has_video: bool = False
    media_started: asyncio.Future[None] = field(init=False)
    ended: asyncio.Future[StreamEnd] = field(init=False)
    kind: SourceKind = SourceKind.RTSP
    codec: str | None = None
    "The engine's name of the camera's video codec, once opened."
    _parameter_sets: bytes = b""
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _watchdog: asyncio.Task[None] | None = None
    _started_at: float = 0.0

    def __post_init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.media_started = self._loop.create_future()
        self.ended = self._loop.create_future()

    @property
    def shown_uri(self) -> str:
        """The url as logs and listings show it (no credentials)."""
        return public_uri(self.uri)

    async def start(self) -> None:
        """Connect to the camera and begin reading; raises `PublishError` with the reason it cannot."""
        opened: asyncio.Future[tuple[str, bytes]] = self._loop.create_future()
        self._started_at = self.clock()
        self._thread = threading.Thread(target=self._run, args=(opened,), name=f"rtsp {self.shown_uri}",
                                        daemon=True)
        self._thread.start()
        try:
            # The interrupt callback bounds the open; the margin covers DNS, which it does not.
            await asyncio.wait_for(asyncio.shield(opened), self.settings.open_timeout + 5)
        except TimeoutError:
            self._stop.set()
            opened.add_done_callback(lambda late: late.cancelled() or late.exception())  # nobody awaits it now
            raise PublishError(StreamEnd.SOURCE_TIMEOUT, f"{self.shown_uri} did not answer") from None
        except asyncio.CancelledError:
            self._stop.set()
            raise
        self._watchdog = asyncio.ensure_future(self._watch())
        return None

    async def request_keyframe(self) -> bool:
        """RTSP has no way to ask a camera for a keyframe."""
        return False

    def stats(self) -> SourceStats:
        """Statistics of the camera's video."""
        return video_stats(self.video)

    async def close(self, reason: StreamEnd = StreamEnd.STOPPED_BY_PUBLISHER) -> None:
        """Stop pulling (the reader thread leaves at its next packet or socket timeout); idempotent."""
        self._stop.set()
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        if self.video is not None:
            self.video.close()
        if not self.ended.done():
            self.ended.set_result(reason)

    # The loop's side.

    def _end(self, reason: StreamEnd, words: str) -> None:
        if not self.ended.done():
            logger.info("camera %s ended: %s (%s)", self.shown_uri, reason, words, extra={"stream": self.name})
            self._stop.set()
            if self.video is not None:
                self.video.close()
            if self._watchdog is not None and self._watchdog is not asyncio.current_task():
                self._watchdog.cancel()
            self.ended.set_result(reason)

    def _on_packet(self, data: bytes, timestamp: int) -> None:
        if self.ended.done() or self.codec is None:
            return
        video = self.video
        if video is None:
            video = self.video = GopCache(self.codec, max_frames=self.gop.max_frames,
                                          max_bytes=self.gop.max_bytes, clock=self.clock)
        video.add(data, timestamp)
        if not self.media_started.done():
            self.media_started.set_result(None)

    async def _watch(self) -> None:
        """End the source when the camera has sent nothing for `packet_timeout` seconds."""
        limit = self.settings.packet_timeout
        while not self.ended.done():
            await asyncio.sleep(min(1.0, limit / 4))
            last = self.video.last_arrival if self.video is not None else None
            if self.clock() - (last if last is not None else self._started_at) > limit:
                self._end(StreamEnd.SOURCE_TIMEOUT, f"no packet for {limit:.1f} s")

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop closed under us: nobody is left to tell
            self._stop.set()

    # The reader thread's side.

    def _run(self, opened: asyncio.Future[tuple[str, bytes]]) -> None:
        def answer_open(result: tuple[str, bytes] | None, failure: PublishError | None) -> None:
            if opened.done():
                return
            if failure is not None:
                opened.set_exception(failure)
            else:
                assert result is not None
                # Set here, before the packets posted after this call: `start` resumes later.
                self.codec, self._parameter_sets = result
                self.has_video = True
                opened.set_result(result)

        timeouts = (self.settings.open_timeout, self.settings.packet_timeout)
        options = {"rtsp_transport": self.transport,
                   # FFmpeg's own socket timeout (microseconds) frees this thread from a silent camera.
                   "timeout": str(int(self.settings.packet_timeout * 1_000_000)),
                   # The SDP names the codec (and usually carries SPS/PPS); probing a second of packets
                   # only delays the first picture: the reader hands on what arrives, keyframe or not.
                   "analyzeduration": "100000", "probesize": "32768"}
        try:
            uri, asked = follow_redirects(self.uri, max_redirects=self.settings.max_redirects,
                                          timeout=self.settings.open_timeout, host_allowed=self.host_allowed)
        except PublishError as failure:
            self._post(answer_open, None, failure)
            return
        began = time.monotonic()
        try:
            container = av.open(uri, options=options, timeout=timeouts)
        except Exception as exc:  # FFmpeg says more kinds of "no" than PyAV names
            asked.close()
            reason = _open_failure(exc)
            if reason is StreamEnd.INVALID_SDP and time.monotonic() - began >= min(timeouts) * 0.9:
                # FFmpeg reports a camera that never answers as invalid data once its socket timeout fires.
                reason = StreamEnd.SOURCE_TIMEOUT
            self._post(answer_open, None, PublishError(reason, f"{self.shown_uri}: {_words(exc)}"))
            return
        asked.close()
        try:
            self._read(container, answer_open)
        finally:
            container.close()

    def _read(self, container: Any, answer_open: Callable[..., None]) -> None:
        streams = list(container.streams.video)
        if not streams:
            self._post(answer_open, None, PublishError(StreamEnd.UNSUPPORTED_CODEC,
                                                       f"{self.shown_uri} sends no video"))
            return
        stream = streams[0]
        codec = CODECS.get(stream.codec_context.name)
        if codec is None:
            self._post(answer_open, None, PublishError(
                StreamEnd.UNSUPPORTED_CODEC, f"{self.shown_uri} sends {stream.codec_context.name}"))
            return
        parameter_sets = annexb_parameter_sets(stream.codec_context.extradata)
        self._post(answer_open, (codec, parameter_sets), None)
        reason, words = StreamEnd.SOURCE_CLOSED, "end of stream"
        try:
            for packet in container.demux(stream):
                if self._stop.is_set():
                    return
                if packet.size == 0:
                    continue
                data = bytes(packet)
                if packet.is_keyframe:  # cameras often send the SPS once, in the SDP
                    data = with_parameter_sets(data, parameter_sets)
                self._post(self._on_packet, data, packet.pts or 0)
        except Exception as exc:  # a read error ends the stream whatever FFmpeg calls it
            reason = _open_failure(exc)
            reason = StreamEnd.SOURCE_CLOSED if reason is StreamEnd.SOURCE_UNREACHABLE else reason
            words = _words(exc)
        if not self._stop.is_set():
            self._post(self._end, reason, words)
