"""`publish --file`'s track: a file played again and again with a clock that never goes back."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
from aiortc.mediastreams import MediaStreamError

from streamsnap.media import pattern
from streamsnap.media.pattern import FPS, FileTrack, VideoFileError, read_counter
from tests.clips import write_pattern_clip

pytestmark = pytest.mark.unit

FRAME_TICKS = 90000 // FPS


@pytest.fixture
def no_pacing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames as fast as they decode: the track's real-time waits are skipped."""

    async def no_wait(seconds: float) -> None:
        return None

    monkeypatch.setattr(pattern.asyncio, "sleep", no_wait)


@pytest.mark.parametrize("suffix", [".webm", ".mp4"])
async def test_a_file_loops_without_a_gap(tmp_path: Path, suffix: str, no_pacing: None) -> None:
    track = FileTrack(write_pattern_clip(tmp_path / f"clip{suffix}", frames=10))
    frames = [await track.recv() for _ in range(25)]
    counters = [read_counter(frame.to_image()) for frame in frames]
    assert counters == [*range(10), *range(10), *range(5)]
    steps = {round((b.pts - a.pts) / FRAME_TICKS, 1) for a, b in itertools.pairwise(frames)}
    assert steps == {1.0}, steps  # one frame apart everywhere, the loop boundaries included
    assert all(frame.time_base == pattern.VIDEO_CLOCK for frame in frames)
    assert track.passes == 2 and track.readyState == "live"
    track.stop()


async def test_once_ends_the_track_after_one_pass(tmp_path: Path, no_pacing: None) -> None:
    track = FileTrack(write_pattern_clip(tmp_path / "clip.webm", frames=5), loop=False)
    ended = asyncio.Event()
    track.on("ended", ended.set)
    assert [read_counter((await track.recv()).to_image()) for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(MediaStreamError):
        await track.recv()
    assert ended.is_set() and track.readyState == "ended"


async def test_frames_come_at_the_files_pace(tmp_path: Path) -> None:
    track = FileTrack(write_pattern_clip(tmp_path / "clip.webm", frames=10))
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(16):  # past the end of the file: 15 frame durations after the first
        await track.recv()
    assert 15 / FPS - 0.05 <= loop.time() - start <= 15 / FPS + 0.3
    track.stop()


@pytest.mark.parametrize("content, reason", [
    (b"not a video\n", "not a video file that FFmpeg can read"),
    (None, "no such file"),
])
def test_unreadable_files_are_refused_at_once(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "clip.webm"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(VideoFileError, match=reason) as refused:
        FileTrack(path)
    assert str(refused.value).startswith(str(path))
