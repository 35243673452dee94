"""RTSP sources: a camera pulled with PyAV, its packets demuxed (never decoded) into the frame cache.

FFmpeg never reaches a camera by itself: each attempt resolves the camera's host once (through
`destinations`, which checks every address), and a relay (`media/rtsp_relay.py`) connects to a
checked address and lets through only what `media/rtsp_guard.py` allows. FFmpeg is given the
relay's `rtsp://127.0.0.1:<port>/...` url; a redirect ends the attempt and the next one starts at
its target, checked again, at most `max_redirects` times.

One thread per camera opens the relay's url and reads packets; each packet is handed to the event
loop (`call_soon_threadsafe`) and added to a bounded `GopCache`, so a camera nobody asks a
picture of costs a demux and a list append per frame. The thread ends when the relay closes: at
the probe deadline (`open_timeout`, for the whole open), when the source is closed, and when a
no-packet watchdog on the loop ends the source (PyAV's read timeout does not fire when a camera
accepts and then sends nothing, PyAV #584).

An `rtsps://` camera is reached the same way, the relay speaking TLS to it (`tls`: verified or not, as
the pull was told) while FFmpeg speaks plain RTSP to the relay on 127.0.0.1; its redirects must stay
on rtsps://.

The url may carry credentials: they go to FFmpeg and nowhere else. Every word logged or
raised here names the url without them (`credentials.public_url`), and FFmpeg's own messages, which
quote the url, are never passed on.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import av
import av.error

from streamsnap.config import GopSettings, RtspSettings
from streamsnap.credentials import public_url
from streamsnap.media import h265
from streamsnap.media.frames import GopCache
from streamsnap.media.h264 import annexb_parameter_sets, with_parameter_sets
from streamsnap.media.rtsp_guard import GuardLimits
from streamsnap.media.rtsp_relay import CameraRelay
from streamsnap.media.source import SourceStats, video_stats
from streamsnap.reasons import PublishError, StreamEnd
from streamsnap.streams import SourceKind

logger = logging.getLogger(__name__)

CODECS = {"h264": "H264", "hevc": "H265"}
"FFmpeg codec names the snapshot engine decodes, and the engine's names for them."


def parameter_sets(codec: str, extradata: bytes | None) -> bytes:
    """The parameter sets of a camera's extradata as Annex-B (FFmpeg's RTSP demuxer writes the SDP's
    `sprop-*` there): H.264's in Annex-B or avcC; H.265's in Annex-B only (an hvcC record is not read)."""
    if codec == "H265":
        return extradata if extradata and extradata[0] == 0 else b""
    return annexb_parameter_sets(extradata)


def keyframe_with_parameter_sets(codec: str, keyframe: bytes, sets: bytes) -> bytes:
    """A keyframe with the camera's parameter sets in front unless it carries an SPS of its own."""
    if codec == "H265":
        return h265.with_parameter_sets(keyframe, sets)
    return with_parameter_sets(keyframe, sets)


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


DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322}
"RTSP's ports (RFC 2326, RFC 7826) when a url names none."
CLOSE_GRACE = 2.0
"Seconds FFmpeg has, after its relay closed at the probe deadline, to return from its open."

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Destinations = Callable[[str, int], Awaitable[list[IPAddress]]]
"""Resolves a camera host once and returns the addresses a pull may connect to (`hop` 0: the url the
pull was started with; then each redirect's target); raises `PublishError` (SOURCE_NOT_ALLOWED,
SOURCE_UNREACHABLE) with words that name the host as written, never what it resolved to."""


def relay_uri(uri: str, port: int) -> str:
    """`uri` pointed at the relay on 127.0.0.1:`port`: its credentials, path and query kept."""
    parts = urllib.parse.urlsplit(uri)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    return urllib.parse.urlunsplit(("rtsp", netloc, parts.path or "/", parts.query, ""))


def redirect_target(uri: str, location: str) -> str:
    """Where a redirect of the camera at `uri` leads (credentials kept only for the same host as written);
    raises `PublishError(BAD_SOURCE_URI)` when it is not a url of `uri`'s scheme (rtsp:// or rtsps://) with a
    host: an rtsps:// camera never leads to plain RTSP."""
    here = urllib.parse.urlsplit(uri)
    scheme = here.scheme.lower()
    try:
        target = urllib.parse.urlsplit(urllib.parse.urljoin(public_url(uri), location))
        target.port  # noqa: B018  # a bad port raises here
    except ValueError:
        raise PublishError(StreamEnd.BAD_SOURCE_URI, f"{public_url(uri)} redirects to a url that is not one") from None
    if target.scheme.lower() != scheme or not target.hostname:
        raise PublishError(StreamEnd.BAD_SOURCE_URI, f"{public_url(uri)} redirects to a url that is not {scheme}://")
    netloc = target.netloc.rsplit("@", 1)[-1]
    if target.hostname == here.hostname and "@" in here.netloc:
        netloc = here.netloc.rsplit("@", 1)[0] + "@" + netloc
    return urllib.parse.urlunsplit((scheme, netloc, target.path, target.query, ""))


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
    transport: str
    "RTSP lower transport: tcp (interleaved) or udp."
    destinations: Destinations
    "Where the camera (and each redirect target) may be connected: resolved once and checked."
    frame_packets: int
    "RTP packets one video frame may hold (`webrtc.rtp_max_packets_per_frame`)."
    tls: ssl.SSLContext | None = None
    "How an rtsps:// camera's certificate is checked (None: rtsps:// is refused)."
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
    _relay: CameraRelay | None = None
    _watchdog: asyncio.Task[None] | None = None
    _started_at: float = 0.0

    def __post_init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.media_started = self._loop.create_future()
        self.ended = self._loop.create_future()

    @property
    def shown_uri(self) -> str:
        """The url as logs and listings show it (no credentials)."""
        return public_url(self.uri)

    @property
    def limits(self) -> GuardLimits:
        """What the relay lets through to FFmpeg."""
        return GuardLimits(sdp_bytes=self.settings.max_sdp_bytes, tracks=self.settings.max_tracks,
                           frame_bytes=self.gop.max_bytes, frame_packets=self.frame_packets,
                           frame_nals=self.settings.max_frame_nals,
                           packets_per_second=self.settings.max_packets_per_second)

    async def start(self) -> None:
        """Connect to the camera and begin reading; raises `PublishError` with the reason it cannot.

        The whole probe (resolving, connecting, redirects, the camera's description, FFmpeg's first
        packets) has `open_timeout` seconds: then the relay closes, which ends FFmpeg's open and its thread.
        """
        self._started_at = self.clock()
        deadline = self._loop.time() + self.settings.open_timeout
        try:
            async with asyncio.timeout_at(deadline + CLOSE_GRACE):
                await self._open(deadline)
        except TimeoutError:
            self._abort()
            raise PublishError(StreamEnd.SOURCE_TIMEOUT, f"{self.shown_uri} did not answer") from None
        except BaseException:
            self._abort()
            raise
        self._watchdog = asyncio.ensure_future(self._watch())

    async def request_keyframe(self) -> bool:
        """RTSP has no way to ask a camera for a keyframe."""
        return False

    def stats(self) -> SourceStats:
        """Statistics of the camera's video."""
        return video_stats(self.video)

    async def close(self, reason: StreamEnd = StreamEnd.STOPPED_BY_PUBLISHER) -> None:
        """Stop pulling: the relay closes, so the reader thread's read ends at once; idempotent."""
        self._abort()
        if self._watchdog is not None and self._watchdog is not asyncio.current_task():
            self._watchdog.cancel()
        if self.video is not None:
            self.video.close()
        if not self.ended.done():
            self.ended.set_result(reason)

    # The loop's side.

    async def _open(self, deadline: float) -> None:
        """Open the camera through a relay, following its redirects (each target checked, at most `max_redirects`)."""
        uri = self.uri
        for hop in range(self.settings.max_redirects + 1):
            parts = urllib.parse.urlsplit(uri)
            host = parts.hostname or ""
            scheme = parts.scheme.lower()
            if scheme == "rtsps" and self.tls is None:
                raise PublishError(StreamEnd.BAD_SOURCE_URI, f"{self.shown_uri}: no TLS context for rtsps://")
            try:
                addresses = await self.destinations(host, hop)
            except PublishError as refused:
                if hop == 0:
                    raise
                raise PublishError(refused.reason, f"{self.shown_uri} redirects to {host}: {refused.detail}") from None
            relay = self._relay = await CameraRelay.open(
                addresses, parts.port or DEFAULT_PORTS[scheme], transport=self.transport, limits=self.limits,
                deadline=deadline, shown=public_url(uri), tls=self.tls if scheme == "rtsps" else None, host=host)
            opened: asyncio.Future[tuple[str, bytes]] = self._loop.create_future()
            threading.Thread(target=self._run, args=(relay_uri(uri, relay.port), opened),
                             name=f"rtsp {self.shown_uri}", daemon=True).start()
            try:
                await asyncio.shield(opened)
            except PublishError:
                relay.close()
                if relay.redirect is not None:
                    uri = redirect_target(uri, relay.redirect)
                    logger.info("camera %s redirects to %s", public_url(parts.geturl()), public_url(uri),
                                extra={"stream": self.name})
                    continue
                if relay.failure is not None:
                    raise relay.failure from None
                raise
            relay.opened()
            return
        raise PublishError(StreamEnd.SOURCE_UNREACHABLE,
                           f"{self.shown_uri} redirects more than {self.settings.max_redirects} times "
                           f"(rtsp.max_redirects)")

    def _abort(self) -> None:
        """End the reader thread: the stop flag, and the relay closed under FFmpeg."""
        self._stop.set()
        if self._relay is not None:
            self._relay.close()

    def _end(self, reason: StreamEnd, words: str) -> None:
        if not self.ended.done():
            failure = self._relay.failure if self._relay is not None else None
            if failure is not None:  # the relay cut the camera off: its words, not FFmpeg's read error
                reason, words = failure.reason, failure.detail
            logger.info("camera %s ended: %s (%s)", self.shown_uri, reason, words, extra={"stream": self.name})
            self._abort()
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

    # The reader thread's side: FFmpeg, given the relay's url only.

    def _run(self, uri: str, opened: asyncio.Future[tuple[str, bytes]]) -> None:
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
                   # FFmpeg's own socket timeout (microseconds): a second line behind the relay's deadline.
                   "timeout": str(int(self.settings.packet_timeout * 1_000_000)),
                   # The SDP names the codec (and usually carries SPS/PPS); probing a second of packets
                   # only delays the first picture: the reader hands on what arrives, keyframe or not.
                   "analyzeduration": "100000", "probesize": "32768",
                   "allowed_media_types": "video"}
        if self.transport == "udp":
            # FFmpeg binds its RTP ports on every interface: it takes datagrams from the relay's only.
            options["rtsp_flags"] = "filter_src"
        began = time.monotonic()
        try:
            container = av.open(uri, options=options, timeout=timeouts)
        except Exception as exc:  # FFmpeg says more kinds of "no" than PyAV names
            reason = _open_failure(exc)
            if reason is StreamEnd.INVALID_SDP and time.monotonic() - began >= min(timeouts) * 0.9:
                # FFmpeg reports a camera that never answers as invalid data once its socket timeout fires.
                reason = StreamEnd.SOURCE_TIMEOUT
            self._post(answer_open, None, PublishError(reason, f"{self.shown_uri}: {_words(exc)}"))
            return
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
        sets = parameter_sets(codec, stream.codec_context.extradata)
        self._post(answer_open, (codec, sets), None)
        reason, words = StreamEnd.SOURCE_CLOSED, "end of stream"
        try:
            for packet in container.demux(stream):
                if self._stop.is_set():
                    return
                if packet.size == 0:
                    continue
                data = bytes(packet)
                if packet.is_keyframe:  # cameras often send the SPS once, in the SDP
                    data = keyframe_with_parameter_sets(codec, data, sets)
                self._post(self._on_packet, data, packet.pts or 0)
        except Exception as exc:  # a read error ends the stream whatever FFmpeg calls it
            reason = _open_failure(exc)
            reason = StreamEnd.SOURCE_CLOSED if reason is StreamEnd.SOURCE_UNREACHABLE else reason
            words = _words(exc)
        if not self._stop.is_set():
            self._post(self._end, reason, words)
