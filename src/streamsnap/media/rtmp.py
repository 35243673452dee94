"""RTMP sources: H.264 from FLV video tags into the frame cache, nothing decoded.

An encoder sends the AVC sequence header (SPS and PPS, in an AVCDecoderConfigurationRecord)
once, then access units of length-prefixed NAL units (AVCC). The cache and the decoder
want Annex-B access units whose keyframes carry SPS and PPS, so each NAL unit gets a start
code and each IDR frame without its own SPS gets the sequence header's in front.

The TCP connection belongs to the RTMP shell (`server/rtmp.py`); the source is told of each
video tag (`feed_video`) and closes the connection through `disconnect` when it is ended
from here (REST terminate, RTP timeout, shutdown).

A tag's work is bounded before it is done: at most `max_nal_units` lengths are read (more end
the stream, `rtmp.max_nal_units_per_frame`), a unit or parameter set holding a start code is
refused (an Annex-B reader, the cache's keyframe test among them, would split it into as many
units as it has start codes), and the conversion is one copy. A tag's bytes are bounded by the
connection's `rtmp.max_message_bytes`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from streamsnap.config import GopSettings
from streamsnap.media.frames import GopCache
from streamsnap.media.h264 import (
    AvcConfig,
    H264Error,
    TooManyNalUnits,
    avcc_access_unit,
    has_start_code,
    parse_avc_config,
)
from streamsnap.media.source import SourceStats, video_stats
from streamsnap.reasons import StreamEnd
from streamsnap.streams import SourceKind

logger = logging.getLogger(__name__)

FLV_CODEC_AVC = 7
AVC_SEQUENCE_HEADER = 0
AVC_NALU = 1


@dataclass
class RtmpSource:
    """One RTMP publisher's stream: a `Source` of kind RTMP, fed by the connection's shell."""

    name: str
    gop: GopSettings
    on_start: Callable[[], None]
    "Called by `start` (the shell answers the publisher NetStream.Publish.Start)."
    disconnect: Callable[[], None]
    "Closes the publisher's TCP connection."
    clock: Callable[[], float] = time.monotonic
    max_nal_units: int = 1024
    "NAL units one tag may carry (`rtmp.max_nal_units_per_frame`)."
    kind: SourceKind = SourceKind.RTMP
    video: GopCache | None = None
    has_video: bool = False
    "True once the first H.264 video tag arrived."
    media_started: asyncio.Future[None] = field(init=False)
    ended: asyncio.Future[StreamEnd] = field(init=False)
    _config: AvcConfig | None = None
    _closed: bool = False

    def __post_init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.media_started = loop.create_future()
        self.ended = loop.create_future()

    async def start(self) -> None:
        """The name is ours: let the publisher send (RTMP has nothing to answer)."""
        self.on_start()

    async def request_keyframe(self) -> bool:
        """RTMP has no way back to the encoder: always False (the cached group is decoded instead)."""
        return False

    def stats(self) -> SourceStats:
        """Statistics of the received video."""
        return video_stats(self.video)

    def feed_video(self, timestamp: int, tag: bytes) -> None:
        """One FLV video tag body from the publisher (`timestamp` in milliseconds)."""
        if self._closed or len(tag) < 2:
            return
        codec_id = tag[0] & 0x0F
        if tag[0] & 0x80 or codec_id != FLV_CODEC_AVC:
            self._fail(StreamEnd.NO_COMMON_CODECS, f"FLV video codec {codec_id} (only H.264 is taken)")
            return
        packet_type = tag[1]
        try:
            if packet_type == AVC_SEQUENCE_HEADER:
                config = parse_avc_config(tag[5:])
                if any(has_start_code(unit) for unit in (*config.sps, *config.pps)):
                    raise H264Error("start code inside a parameter set")
                self._config = config
            elif packet_type == AVC_NALU and len(tag) > 5:
                self._frame(timestamp, int.from_bytes(tag[2:5], "big", signed=True), tag[5:])
        except TooManyNalUnits as exc:
            self._fail(StreamEnd.ERROR, f"bad H.264 from the encoder: {exc} (rtmp.max_nal_units_per_frame)")
        except H264Error as exc:
            self._fail(StreamEnd.ERROR, f"bad H.264 from the encoder: {exc}")

    def _frame(self, timestamp: int, composition: int, data: bytes) -> None:
        config = self._config
        if config is None:
            return  # no sequence header yet: nothing could decode it
        access_unit = avcc_access_unit(data, config.length_size, self.max_nal_units, config.annex_b())
        video = self.video
        if video is None:
            video = self.video = GopCache("H264", max_frames=self.gop.max_frames,
                                          max_bytes=self.gop.max_bytes, clock=self.clock)
            self.has_video = True
        video.add(access_unit, ((timestamp + composition) * 90) & 0xFFFFFFFF)
        if not self.media_started.done():
            self.media_started.set_result(None)

    def publisher_left(self, reason: StreamEnd) -> None:
        """The publisher stopped or its connection closed: the stream ends with `reason`."""
        if not self.ended.done():
            self.ended.set_result(reason)

    def _fail(self, reason: StreamEnd, detail: str) -> None:
        logger.info("stream %s: %s", self.name, detail, extra={"stream": self.name})
        self.publisher_left(reason)

    async def close(self, reason: StreamEnd = StreamEnd.STOPPED_BY_PUBLISHER) -> None:
        """End the stream with `reason` (unless it ended already), free the frames, close the connection."""
        if self._closed:
            return
        self._closed = True
        if not self.ended.done():
            self.ended.set_result(reason)
        if self.video is not None:
            self.video.close()
        self.disconnect()
