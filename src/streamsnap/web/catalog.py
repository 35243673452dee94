"""What the HTTP side tells about live streams: one description, two shapes (streamsnap's and WCS's)."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from streamsnap.media.source import SourceStats
from streamsnap.streams import SourceKind, StreamRecord


class StreamInfo(msgspec.Struct, frozen=True):
    """A live stream as `GET /streams` lists it."""

    name: str
    kind: SourceKind
    "How it comes in: webrtc (a browser, a WCS client), rtsp (a camera the server pulls), rtmp (an encoder), whip."
    codec: str | None
    "Video codec (VP8 or H264); null before the first video frame or without video."
    width: int | None
    "Picture width the newest keyframe declares (H.264 SPS, VP8 header); null before the first keyframe."
    height: int | None
    fps: float | None
    """Frames per second received over the last 5 seconds; null while too few frames came to tell (fewer
    than two, or less than half a second apart), 0 when none came for 5 seconds."""
    frames_received: int
    since: str
    "When the stream was published (ISO 8601, UTC)."
    node: str
    "Name of the server holding the stream."
    status: str
    "PUBLISHING once media flows, PENDING before."


class WcsStream(msgspec.Struct, frozen=True, rename="camel"):
    """A live stream as WCS's `/rest-api/stream/find` answers it (the fields streamsnap knows)."""

    app_key: str
    session_id: str
    media_session_id: str
    name: str
    published: bool
    has_video: bool
    has_audio: bool
    status: str
    video_codec: str | None
    width: int
    "0 when unknown, as WCS does."
    height: int
    fps: float
    record: bool
    create_date: int
    "Milliseconds since the epoch."
    media_type: str
    media_provider: str
    node_id: str


MEDIA_PROVIDERS = {SourceKind.WEBRTC: "WebRTC", SourceKind.RTSP: "RTSP", SourceKind.RTMP: "RTMP",
                   SourceKind.WHIP: "WHIP"}
"WCS's `mediaProvider` of each kind of source."


def describe(record: StreamRecord, stats: SourceStats | None) -> StreamInfo:
    """A stream as `GET /streams` lists it: its record, with live statistics where this node holds its media.

    In a cluster the record carries its holder's figures as of its last heartbeat, and those are listed
    (on the holder too, and size and codec from the record), so that every node gives the same answer;
    `stats`, this node's own reading, is listed only where there are none (a node alone, or a stream
    claimed since the last heartbeat).
    """
    figures = record.figures
    if figures is not None:
        stats = None
    codec = stats.codec if stats is not None and stats.codec else record.codec
    width = stats.width if stats is not None and stats.width else record.width
    height = stats.height if stats is not None and stats.height else record.height
    fps = figures.fps if figures is not None else stats.fps if stats is not None else None
    frames = figures.frames_received if figures is not None else stats.frames_received if stats is not None else 0
    return StreamInfo(
        name=record.name,
        kind=record.kind,
        codec=codec,
        width=width,
        height=height,
        fps=round(fps, 2) if fps is not None else None,
        frames_received=frames,
        since=datetime.fromtimestamp(record.started_at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        node=record.node,
        status=record.state.value,
    )


def describe_wcs(record: StreamRecord, stats: SourceStats | None) -> WcsStream:
    """A stream as WCS's REST answers describe streams."""
    info = describe(record, stats)
    return WcsStream(
        app_key="defaultApp",
        session_id=record.owner_session or "",
        media_session_id=record.media_session_id,
        name=record.name,
        published=True,
        has_video=record.has_video or info.codec is not None,
        has_audio=record.has_audio,
        status=info.status,
        video_codec=info.codec,
        width=info.width or 0,
        height=info.height or 0,
        fps=info.fps or 0.0,
        record=False,
        create_date=int(record.started_at * 1000),
        media_type="publish",
        media_provider=MEDIA_PROVIDERS[record.kind],
        node_id=record.node,
    )
