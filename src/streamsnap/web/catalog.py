"""What the HTTP side tells about live streams: one description, two shapes (streamsnap's and WCS's)."""

from __future__ import annotations

import socket
from datetime import UTC, datetime

import msgspec

from streamsnap.streams import PublishedStream


class StreamInfo(msgspec.Struct, frozen=True):
    """A live stream as `GET /streams` lists it."""

    name: str
    codec: str | None
    "Video codec (VP8 or H264); null before the first video frame or without video."
    width: int | None
    "Picture width when the bitstream tells it cheaply (VP8); else null."
    height: int | None
    fps: float | None
    "Average frames per second received so far; null before two frames."
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


def node_name(configured: str) -> str:
    """The configured node name, or the host name."""
    return configured or socket.gethostname()


def status_of(stream: PublishedStream) -> str:
    """PUBLISHING once media flows, else PENDING."""
    return "PUBLISHING" if stream.peer.media_started.done() and not stream.peer.ended.done() else "PENDING"


def describe(stream: PublishedStream, node: str) -> StreamInfo:
    """`stream` as `GET /streams` lists it."""
    video = stream.peer.video
    size = video.size if video is not None else None
    fps = video.fps if video is not None else None
    return StreamInfo(
        name=stream.name,
        codec=video.codec if video is not None else None,
        width=size[0] if size else None,
        height=size[1] if size else None,
        fps=round(fps, 2) if fps is not None else None,
        frames_received=video.frames_received if video is not None else 0,
        since=datetime.fromtimestamp(stream.since, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        node=node,
        status=status_of(stream),
    )


def describe_wcs(stream: PublishedStream, node: str) -> WcsStream:
    """`stream` as WCS's REST answers describe streams."""
    info = describe(stream, node)
    return WcsStream(
        app_key="defaultApp",
        session_id=stream.session_id,
        media_session_id=stream.stream_id,
        name=stream.name,
        published=True,
        has_video=stream.peer.has_video,
        has_audio=stream.has_audio,
        status=info.status,
        video_codec=info.codec,
        width=info.width or 0,
        height=info.height or 0,
        fps=info.fps or 0.0,
        record=False,
        create_date=int(stream.since * 1000),
        media_type="publish",
        media_provider="WebRTC",
        node_id=node,
    )
