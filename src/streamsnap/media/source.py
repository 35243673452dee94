"""Sources: the node-local media of live streams, behind one interface whatever their kind.

A `Source` is what a stream's record points at on its node: WebRTC publishers now
(`media/webrtc.py`), cameras and encoders later. The snapshot engine and the services see
only this interface: the frames since the last keyframe, a keyframe request where the
kind allows one, the end with its reason, and plain statistics.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol

from streamsnap.media.frames import GopCache
from streamsnap.reasons import StreamEnd
from streamsnap.streams import SourceKind, StreamFigures, StreamRecord


@dataclass(frozen=True)
class SourceStats:
    """What a source can tell about its media at one moment (plain data)."""

    codec: str | None
    "Video codec, once the first video frame arrived."
    width: int | None
    "Picture size the newest keyframe declares (H.264 SPS, VP8 keyframe header); None before the first one."
    height: int | None
    fps: float | None
    "Frames per second over the last few seconds (`frames.FPS_WINDOW`); None while too few frames came to tell."
    frames_received: int
    last_arrival: float | None
    "Monotonic time of the newest video frame."
    cached_bytes: int
    "Bytes of encoded video held for pictures."


class Source(Protocol):
    """The media of one live stream on this node."""

    kind: SourceKind
    name: str
    has_video: bool
    "Whether the stream carries video (known once negotiated)."
    video: GopCache | None
    "Encoded video since the last keyframe, once the first frame arrived."
    media_started: asyncio.Future[None]
    "Resolved when media flows."
    ended: asyncio.Future[StreamEnd]
    "Resolved with the reason when the source ends, whatever ended it."

    async def start(self) -> str | None:
        """Begin receiving; return what the publisher must be answered (a WebRTC SDP answer), if anything.

        Raises `PublishError` when the source cannot start (a bad offer, a camera that refuses).
        """
        ...

    async def request_keyframe(self) -> bool:
        """Ask the sender for a keyframe; False when the kind cannot or nobody is there yet."""
        ...

    def stats(self) -> SourceStats:
        """The source's statistics now."""
        ...

    async def close(self, reason: StreamEnd) -> None:
        """End the source with `reason` (if it has not ended) and free its media; idempotent."""
        ...


def video_stats(video: GopCache | None) -> SourceStats:
    """The statistics of a source whose video is `video` (sources share this)."""
    if video is None:
        return SourceStats(None, None, None, None, 0, None, 0)
    size = video.size
    return SourceStats(
        codec=video.codec,
        width=size[0] if size else None,
        height=size[1] if size else None,
        fps=video.fps,
        frames_received=video.frames_received,
        last_arrival=video.last_arrival,
        cached_bytes=video.cached_bytes,
    )


class LocalSources:
    """The sources held by this node, by stream name and lease."""

    def __init__(self) -> None:
        self._sources: dict[str, tuple[str, Source]] = {}
        self.added = 0
        "Sources held since start."
        self.removed = 0
        "Sources forgotten since start."

    def add(self, lease: str, source: Source) -> None:
        """Hold `source` for the stream claimed with `lease`."""
        self._sources[source.name] = (lease, source)
        self.added += 1

    def remove(self, name: str, lease: str) -> None:
        """Forget the source of `name` if it is the one of `lease`."""
        held = self._sources.get(name)
        if held is not None and held[0] == lease:
            del self._sources[name]
            self.removed += 1

    def get(self, name: str, lease: str | None = None) -> Source | None:
        """The source of `name` (of that lease, when given), or None."""
        held = self._sources.get(name)
        if held is None or (lease is not None and held[0] != lease):
            return None
        return held[1]

    def holds_lease(self, lease: str) -> bool:
        """Whether a source of that lease is held."""
        return any(held_lease == lease for held_lease, _ in self._sources.values())

    def stats(self, name: str, lease: str | None = None) -> SourceStats | None:
        """Statistics of the source of `name`, or None when this node holds none."""
        source = self.get(name, lease)
        return source.stats() if source is not None else None

    def figures(self, record: StreamRecord) -> StreamFigures | None:
        """What this node tells every other node of the stream of `record` (its heartbeat carries it);
        None when it holds no source of that claim."""
        stats = self.stats(record.name, record.lease)
        if stats is None:
            return None
        return StreamFigures(fps=stats.fps, frames_received=stats.frames_received, measured_at=time.time())

    def __len__(self) -> int:
        return len(self._sources)
