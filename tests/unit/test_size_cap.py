"""The size cap, checked before any decode: the rule (`oversize`) and the engine refusing a stream whose
keyframe declares a picture over it, without a decode, a worker or a wait."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import pytest

from streamsnap.config import SnapshotSettings
from streamsnap.media.frames import GopCache, PictureSize
from streamsnap.media.snapshot import SnapshotEngine, oversize
from streamsnap.media.source import SourceStats, video_stats
from streamsnap.reasons import SnapshotError, SnapshotFailure, StreamEnd
from streamsnap.streams import SourceKind
from tests.unit.test_sps import BitWriter, escape, rbsp_bytes

pytestmark = pytest.mark.unit

START = b"\x00\x00\x00\x01"


def keyframe(width: int, height: int) -> bytes:
    """An H.264 keyframe whose SPS declares `width` x `height` (Baseline, cropped to the size); its slice is
    junk: nothing may decode it."""
    width_mbs, height_mbs = -(-width // 16), -(-height // 16)
    writer = BitWriter().u(8, 66).u(8, 0xC0).u(8, 51).ue(0).ue(0).ue(2).ue(1).u(1, 0)
    writer.ue(width_mbs - 1).ue(height_mbs - 1).u(1, 1).u(1, 1)
    crop_right, crop_bottom = (width_mbs * 16 - width) // 2, (height_mbs * 16 - height) // 2
    writer.u(1, 1).ue(0).ue(crop_right).ue(0).ue(crop_bottom).u(1, 0)
    sps = b"\x67" + escape(rbsp_bytes(writer.text() + "1"))
    return START + sps + START + b"\x68\xce\x38\x80" + START + b"\x65\x88\x84\x00" + b"\x5a" * 64


@pytest.mark.parametrize("size, refused", [
    (PictureSize(3840, 2160, 3840, 2160), None),
    (PictureSize(2160, 3840, 2160, 3840), None),  # portrait: the cap holds in either orientation
    (PictureSize(1920, 1080, 1920, 1088), None),
    (PictureSize(3840, 2160, 3840, 2176), None),  # interlaced 4K: coded in 32-line macroblock pairs
    (PictureSize(3856, 2160, 3856, 2160), "the stream's pictures are 3856x2160, larger than the limit 3840x2160"),
    (PictureSize(3000, 3000, 3008, 3008), "3000x3000, larger than the limit 3840x2160"),
    (PictureSize(8192, 8192, 8192, 8192), "8192x8192, larger than the limit 3840x2160"),
    # A small crop of a large picture: the decoder allocates the large one.
    (PictureSize(16, 16, 8192, 8192), "coded at 8192x8192 (16x16 shown), more pixels than the limit 3840x2160"),
])
def test_the_cap_holds_for_the_picture_shown_and_the_picture_decoded(size: PictureSize, refused: str | None) -> None:
    reason = oversize(size, 3840, 2160)
    if refused is None:
        assert reason is None
    else:
        assert reason is not None and refused in reason


def test_a_smaller_cap_refuses_less_large_pictures() -> None:
    assert oversize(PictureSize(640, 480, 640, 480), 640, 480) is None
    assert oversize(PictureSize(480, 640, 480, 640), 640, 480) is None
    assert oversize(PictureSize(1280, 720, 1280, 720), 640, 480) is not None


@dataclass
class FakeSource:
    """A source whose frames the test hands the cache, and that answers a keyframe request with `on_request`."""

    cache: GopCache
    name: str = "bomb"
    kind: SourceKind = SourceKind.RTMP
    has_video: bool = True
    media_started: asyncio.Future[None] = field(default_factory=asyncio.Future)
    ended: asyncio.Future[StreamEnd] = field(default_factory=asyncio.Future)
    on_request: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.video: GopCache | None = self.cache
        self.media_started.set_result(None)

    async def start(self) -> str | None:
        return None

    async def request_keyframe(self) -> bool:
        if not self.on_request:
            return False
        frame = self.on_request.pop(0)
        asyncio.get_running_loop().call_soon(self.cache.add, frame, 1)
        return True

    def stats(self) -> SourceStats:
        return video_stats(self.cache)

    async def close(self, reason: StreamEnd) -> None:
        self.cache.close()


def h264_cache() -> GopCache:
    return GopCache("H264", max_frames=100, max_bytes=10_000_000, clock=time.monotonic)


async def test_a_stream_declaring_a_picture_over_the_cap_is_refused_before_any_decode() -> None:
    engine = SnapshotEngine(SnapshotSettings(workers=1))
    try:
        source = FakeSource(h264_cache())
        source.cache.add(keyframe(8192, 8192), 0)
        assert source.stats().width == 8192 and source.stats().height == 8192
        started = time.perf_counter()
        with pytest.raises(SnapshotError) as refused:
            await engine.request(source)
        assert time.perf_counter() - started < 0.05
        assert refused.value.reason is SnapshotFailure.TOO_LARGE
        assert refused.value.detail == "the stream's pictures are 8192x8192, larger than the limit 3840x2160"
        assert (engine.stats.decodes, engine.pool.stats.jobs, engine.stats.too_large) == (0, 0, 1)
        assert engine.stats.outcomes == {"too_large": 1}
    finally:
        engine.close()


async def test_a_keyframe_over_the_cap_that_arrives_while_a_picture_waits_is_not_decoded() -> None:
    # The stream was small when the picture was asked; the keyframe it waited for declares 8192x8192.
    engine = SnapshotEngine(SnapshotSettings(workers=1))
    try:
        source = FakeSource(h264_cache(), on_request=[keyframe(8192, 8192)])
        source.cache.add(keyframe(320, 240), 0)
        source.cache.clear()  # nothing cached: the engine asks for a keyframe
        with pytest.raises(SnapshotError) as refused:
            await asyncio.wait_for(engine.request(source), 5)
        assert refused.value.reason is SnapshotFailure.TOO_LARGE
        assert engine.stats.keyframe_requests == 1
        assert (engine.stats.decodes, engine.pool.stats.jobs) == (0, 0)
    finally:
        engine.close()


async def test_the_cap_is_the_engines_setting() -> None:
    engine = SnapshotEngine(SnapshotSettings(workers=1, max_width=640, max_height=480))
    try:
        source = FakeSource(h264_cache())
        source.cache.add(keyframe(1280, 720), 0)
        with pytest.raises(SnapshotError, match="too_large") as refused:
            await engine.request(source)
        assert refused.value.detail == "the stream's pictures are 1280x720, larger than the limit 640x480"
    finally:
        engine.close()
