"""The WCS words for the domain's reasons: the one table both WCS transports (WebSocket, REST) answer with."""

from __future__ import annotations

from streamsnap.protocol.constants import Info
from streamsnap.reasons import SnapshotFailure, StreamEnd

# Camera (RTSP) failures: WCS has no texts of its own for these, so each is a WCS text plus words.
CAMERA_BAD_URI = "bad camera url"
CAMERA_NOT_ALLOWED = "camera host not allowed"
CAMERA_UNREACHABLE = "camera unreachable"
CAMERA_UNAUTHORIZED = "camera refused the credentials"
CAMERA_UNTRUSTED = "camera certificate not trusted"
CAMERA_NOT_FOUND = "no stream at that camera path"
CAMERA_TIMEOUT = "camera timeout"
CAMERA_UNSUPPORTED = "unsupported camera stream or codec"
CAMERA_CLOSED = "camera closed the stream"
CAMERA_IDLE = "stopped: no pictures asked"

# Load shedding: pictures past what the server can make in time (no WCS text of its own either).
PICTURES_OVERLOADED = "server overloaded with pictures, try again later"

SNAPSHOT_INFO: dict[SnapshotFailure, str] = {
    SnapshotFailure.STREAM_NOT_FOUND: Info.STREAM_NOT_FOUND,
    SnapshotFailure.NOT_READY: Info.PUBLISH_NOT_READY,
    SnapshotFailure.NO_VIDEO: Info.NO_VIDEO,
    SnapshotFailure.NO_DECODABLE_FRAME: Info.NO_DECODABLE_FRAME,
    SnapshotFailure.TOO_LARGE: f"{Info.FAILED_BY_ERROR}: {Info.PICTURE_TOO_LARGE}",
    SnapshotFailure.RESTRICTED: Info.RESTRICTED_ACCESS,
    SnapshotFailure.SERVER_BUSY: f"{Info.FAILED_BY_ERROR}: {Info.TOO_MANY_SNAPSHOTS}",
    SnapshotFailure.CLIENT_BUSY: f"{Info.FAILED_BY_ERROR}: {Info.TOO_MANY_CLIENT_SNAPSHOTS}",
    SnapshotFailure.SUBJECT_BUSY: f"{Info.FAILED_BY_ERROR}: {Info.TOO_MANY_SUBJECT_SNAPSHOTS}",
    SnapshotFailure.SHUTTING_DOWN: Info.SHUTTING_DOWN,
    SnapshotFailure.UNREACHABLE: f"{Info.FAILED_BY_ERROR}: {Info.NODE_UNREACHABLE}",
    SnapshotFailure.INTERNAL: Info.FAILED_BY_ERROR,
    SnapshotFailure.OVERLOADED: f"{Info.FAILED_BY_ERROR}: {PICTURES_OVERLOADED}",
    SnapshotFailure.BAD_SOURCE_URI: f"{Info.FAILED_BY_ERROR}: {CAMERA_BAD_URI}",
    SnapshotFailure.SOURCE_NOT_ALLOWED: f"{Info.RESTRICTED_ACCESS}: {CAMERA_NOT_ALLOWED}",
    SnapshotFailure.SOURCE_UNREACHABLE: f"{Info.FAILED_BY_ERROR}: {CAMERA_UNREACHABLE}",
    SnapshotFailure.SOURCE_UNAUTHORIZED: f"{Info.FAILED_BY_ERROR}: {CAMERA_UNAUTHORIZED}",
    SnapshotFailure.SOURCE_UNTRUSTED: f"{Info.FAILED_BY_ERROR}: {CAMERA_UNTRUSTED}",
    SnapshotFailure.SOURCE_NOT_FOUND: f"{Info.STREAM_NOT_FOUND}: {CAMERA_NOT_FOUND}",
    SnapshotFailure.SOURCE_TIMEOUT: f"{Info.FAILED_BY_ERROR}: {CAMERA_TIMEOUT}",
    SnapshotFailure.UNSUPPORTED_SOURCE: f"{Info.FAILED_BY_ERROR}: {CAMERA_UNSUPPORTED}",
}
"What a client is told when no picture was made."

STREAM_END_INFO: dict[StreamEnd, str] = {
    StreamEnd.NAME_IN_USE: Info.NAME_IN_USE,
    StreamEnd.TOO_MANY_STREAMS: f"{Info.FAILED_BY_ERROR}: {Info.TOO_MANY_STREAMS}",
    StreamEnd.SUBJECT_BUSY: f"{Info.FAILED_BY_ERROR}: {Info.TOO_MANY_SUBJECT_STREAMS}",
    StreamEnd.CLIENT_BUSY: f"{Info.FAILED_BY_ERROR}: {Info.TOO_MANY_CLIENT_STREAMS}",
    StreamEnd.NAME_RESERVED: f"{Info.RESTRICTED_ACCESS}: {Info.NAME_RESERVED}",
    StreamEnd.RESTRICTED: Info.RESTRICTED_ACCESS,
    StreamEnd.SHUTTING_DOWN: Info.SHUTTING_DOWN,
    StreamEnd.INVALID_SDP: Info.INVALID_SDP,
    StreamEnd.NO_COMMON_CODECS: Info.NO_COMMON_CODECS,
    StreamEnd.ICE_FAILED: Info.ICE_ERROR,
    StreamEnd.ICE_TIMEOUT: Info.ICE_TIMEOUT,
    StreamEnd.DTLS_FAILED: Info.DTLS_ERROR,
    StreamEnd.TRANSPORT_CLOSED: Info.FAILED_BY_ERROR,
    StreamEnd.RTP_TIMEOUT: Info.RTP_ACTIVITY,
    StreamEnd.STOPPED_BY_PUBLISHER: Info.STOPPED_BY_PUBLISHER,
    StreamEnd.DISCONNECTED: Info.STOPPED_BY_DISCONNECT,
    StreamEnd.TERMINATED: Info.STOPPED_BY_REST,
    StreamEnd.ERROR: Info.FAILED_BY_ERROR,
    StreamEnd.BAD_SOURCE_URI: f"{Info.FAILED_BY_ERROR}: {CAMERA_BAD_URI}",
    StreamEnd.SOURCE_NOT_ALLOWED: f"{Info.RESTRICTED_ACCESS}: {CAMERA_NOT_ALLOWED}",
    StreamEnd.SOURCE_UNREACHABLE: f"{Info.FAILED_BY_ERROR}: {CAMERA_UNREACHABLE}",
    StreamEnd.SOURCE_UNAUTHORIZED: f"{Info.FAILED_BY_ERROR}: {CAMERA_UNAUTHORIZED}",
    StreamEnd.SOURCE_UNTRUSTED: f"{Info.FAILED_BY_ERROR}: {CAMERA_UNTRUSTED}",
    StreamEnd.SOURCE_NOT_FOUND: f"{Info.STREAM_NOT_FOUND}: {CAMERA_NOT_FOUND}",
    StreamEnd.SOURCE_TIMEOUT: f"{Info.FAILED_BY_ERROR}: {CAMERA_TIMEOUT}",
    StreamEnd.SOURCE_CLOSED: f"{Info.FAILED_BY_ERROR}: {CAMERA_CLOSED}",
    StreamEnd.UNSUPPORTED_CODEC: f"{Info.FAILED_BY_ERROR}: {CAMERA_UNSUPPORTED}",
    StreamEnd.IDLE: f"{Info.STOPPED_BY_PUBLISHER}: {CAMERA_IDLE}",
}
"What a publisher is told when its stream was refused, failed or ended."

UNPUBLISHED_ENDS = frozenset({StreamEnd.TERMINATED, StreamEnd.SHUTTING_DOWN})
"Ends from outside the publisher: its stream goes UNPUBLISHED rather than FAILED."
