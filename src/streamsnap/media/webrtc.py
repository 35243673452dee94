"""WebRTC sources: one aiortc peer connection per published stream, with decoding switched off.

aiortc decodes every received frame in a thread and queues the pictures without bound,
whether anyone reads them or not. streamsnap puts a `ReceiverTap` where aiortc's decoder
input queue would be: complete encoded frames go to a bounded `GopCache` instead, and the
snapshot engine decodes from it only when a picture is asked for.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import ifaddr
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

from streamsnap.config import GopSettings, WebRtcSettings
from streamsnap.media.aiortc_private import OperationError, replace_decoder_queue, replace_host_addresses
from streamsnap.media.candidates import announce_public_address
from streamsnap.media.frames import GopCache
from streamsnap.media.receiver import VideoReceivePath
from streamsnap.media.sdp_limits import check_offer
from streamsnap.media.source import SourceStats, video_stats
from streamsnap.reasons import PublishError, StreamEnd
from streamsnap.streams import SourceKind

logger = logging.getLogger(__name__)


def local_ipv4_addresses() -> list[str]:
    """Every IPv4 address of this host, loopback included."""
    return [ip.ip for adapter in ifaddr.get_adapters() for ip in adapter.ips if isinstance(ip.ip, str)]


def announce_addresses(addresses: Sequence[str]) -> None:
    """Make aioice gather host candidates on exactly `addresses` (empty: all IPv4, loopback too).

    aioice offers no per-connection setting for this and leaves 127.0.0.1 out, which local
    use and tests need; its module-level address lookup is the one place to set it.
    """
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return chosen or local_ipv4_addresses()

    replace_host_addresses(host_addresses)


def ice_server(url: str, settings: WebRtcSettings) -> RTCIceServer:
    """The aiortc description of one STUN/TURN url; TURN ones carry the configured credentials."""
    if url.startswith(("turn:", "turns:")):
        return RTCIceServer(urls=url, username=settings.turn_username or None,
                            credential=settings.turn_password or None)
    return RTCIceServer(urls=url)


class ReceiverTap:
    """Stands where aiortc's decoder input queue is, so that nothing is decoded.

    aiortc calls `put((codec, frame))` on the event loop for each complete frame and
    `put(None)` when it stops; its decoder thread blocks in `get()` until then.
    """

    def __init__(self, on_frame: Callable[[str, bytes, int], None] | None) -> None:
        self._on_frame = on_frame
        self._stopped = threading.Event()

    def put(self, item: Any) -> None:
        if item is None:
            self._stopped.set()
            return
        codec, frame = item
        if self._on_frame is not None:
            self._on_frame(codec.name, frame.data, frame.timestamp)

    def get(self) -> None:
        self._stopped.wait()


@dataclass
class WebRtcSource:
    """The server side of one publisher's peer connection: a `Source` of kind WEBRTC."""

    name: str
    settings: WebRtcSettings
    gop: GopSettings
    offer: str = ""
    "The publisher's SDP offer, answered by `start`."
    clock: Callable[[], float] = time.monotonic
    video: GopCache | None = None
    "Encoded video of the stream, once the first frame arrived."
    has_video: bool = False
    "Whether the negotiated session carries video."
    media_started: asyncio.Future[None] = field(init=False)
    "Resolved when media flows (first video frame; connected, for audio-only)."
    ended: asyncio.Future[StreamEnd] = field(init=False)
    "Resolved with the reason when the connection fails or closes."
    kind: SourceKind = SourceKind.WEBRTC
    _pc: RTCPeerConnection | None = None
    _video_path: VideoReceivePath | None = None
    _closed: bool = False

    def __post_init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.media_started = loop.create_future()
        self.ended = loop.create_future()

    async def start(self) -> str:
        """Answer the offer; return the SDP answer to send back (with the announced address)."""
        return announce_public_address(await self.answer(self.offer), self.settings.public_ip)

    async def answer(self, offer_sdp: str) -> str:
        """Negotiate the offer; return the SDP answer with the server's candidates."""
        check_offer(offer_sdp, self.settings)
        servers = [ice_server(url, self.settings) for url in self.settings.ice_servers]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self._pc = pc
        pc.on("connectionstatechange", self._on_connection_state)
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except OperationError as exc:
            raise PublishError(StreamEnd.NO_COMMON_CODECS, str(exc)) from None
        except (ValueError, KeyError, IndexError, TypeError, AssertionError) as exc:  # aiortc asserts on junk
            raise PublishError(StreamEnd.INVALID_SDP, str(exc) or type(exc).__name__) from None
        for transceiver in pc.getTransceivers():
            receiver = transceiver.receiver
            if transceiver.kind == "video":
                self.has_video = True
                # Nothing reaches aiortc's decoder queue any more (the lean path hands frames
                # on itself); the tap still stands there so its thread idles instead of decoding.
                replace_decoder_queue(receiver, ReceiverTap(None))
                # Frames being assembled hold at most `gop.max_bytes`, as the frames kept do.
                self._video_path = VideoReceivePath(
                    receiver, self._on_video_frame, self._on_video_gap, self.settings.max_publish_bitrate,
                    max_packets_per_frame=self.settings.rtp_max_packets_per_frame,
                    max_pending_bytes=self.gop.max_bytes, max_sources=self.settings.rtp_max_sources,
                )
            else:
                replace_decoder_queue(receiver, ReceiverTap(None))
        if not pc.getTransceivers():
            raise PublishError(StreamEnd.NO_COMMON_CODECS, "the offer has no audio or video")
        answer = await pc.createAnswer()
        await pc.setLocalDescription(answer)
        return str(pc.localDescription.sdp)

    async def request_keyframe(self) -> bool:
        """Send a PLI to the publisher; False when there is nobody to send it to yet."""
        if self._video_path is None or self._closed:
            return False
        return await self._video_path.request_keyframe()

    def stats(self) -> SourceStats:
        """Statistics of the received video."""
        return video_stats(self.video)

    @property
    def pending_bytes(self) -> int:
        """Bytes of video frames being assembled (bounded by `gop_max_bytes`)."""
        return self._video_path.pending_bytes if self._video_path is not None else 0

    @property
    def oversized_frames(self) -> int:
        """Video frames given up for holding more packets or bytes than allowed."""
        return self._video_path.oversized if self._video_path is not None else 0

    @property
    def dropped_packets(self) -> int:
        """RTP packets dropped for coming from more sources than `rtp_max_sources`."""
        return self._video_path.dropped if self._video_path is not None else 0

    async def close(self, reason: StreamEnd = StreamEnd.STOPPED_BY_PUBLISHER) -> None:
        """End the stream with `reason` (unless it ended already) and tear down the peer connection; idempotent."""
        if self._closed:
            return
        if self._video_path is not None:
            self._video_path.close()
        self._closed = True
        if self.video is not None:
            self.video.close()
        if not self.ended.done():
            self.ended.set_result(reason)
        if self._pc is not None:
            await self._pc.close()

    def _on_video_gap(self) -> None:
        # A frame was lost for good: the frames after it cannot be decoded from the cached group.
        if self.video is not None:
            self.video.clear()

    def _on_video_frame(self, codec: str, data: bytes, timestamp: int) -> None:
        video = self.video
        if video is None or video.codec != codec:
            video = self.video = GopCache(
                codec,
                max_frames=self.gop.max_frames,
                max_bytes=self.gop.max_bytes,
                clock=self.clock,
            )
        video.add(data, timestamp)
        if not self.media_started.done():
            self.media_started.set_result(None)

    async def _on_connection_state(self) -> None:
        pc = self._pc
        if pc is None:
            return
        state = pc.connectionState
        logger.debug("stream %s: connection %s", self.name, state)
        if state == "connected" and not self.has_video and not self.media_started.done():
            self.media_started.set_result(None)
        elif state == "failed" and not self.ended.done():
            ice_failed = pc.iceConnectionState == "failed"
            self.ended.set_result(StreamEnd.ICE_FAILED if ice_failed else StreamEnd.DTLS_FAILED)
        elif state == "closed" and not self.ended.done():
            self.ended.set_result(StreamEnd.TRANSPORT_CLOSED)
