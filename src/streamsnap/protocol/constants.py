"""Wire values of the WCS protocol subset that streamsnap speaks."""

from enum import StrEnum


class StreamStatus(StrEnum):
    """Stream statuses as the WCS Web SDK names them on the wire."""

    NEW = "NEW"
    PENDING = "PENDING"
    PUBLISHING = "PUBLISHING"
    PLAYING = "PLAYING"
    PAUSED = "PAUSED"
    UNPUBLISHED = "UNPUBLISHED"
    STOPPED = "STOPPED"
    FAILED = "FAILED"
    PLAYBACK_PROBLEM = "PLAYBACK_PROBLEM"
    RESIZE = "RESIZE"
    SNAPSHOT_COMPLETE = "SNAPSHOT_COMPLETE"
    NOT_ENOUGH_BANDWIDTH = "NOT_ENOUGH_BANDWIDTH"


class StreamEventType(StrEnum):
    """`type` values of `notifyStreamEvent`."""

    SNAPSHOT_COMPLETED = "snapshotCompleted"
    SNAPSHOT_FAILED = "snapshotFailed"


class Info(StrEnum):
    """Info strings the WCS Web SDK knows, plus streamsnap's own for cases WCS has none."""

    STREAM_NOT_FOUND = "Stream not found"
    NAME_IN_USE = "Stream name is already in use"
    MEDIA_SESSION_ID_IN_USE = "MediaSessionId is already in use"
    RESTRICTED_ACCESS = "Restricted access"
    NO_COMMON_CODECS = "No common codecs"
    STOPPED_BY_PUBLISHER = "Stopped by publisher stop"
    STOPPED_BY_DISCONNECT = "Stopped by session disconnect"
    STOPPED_BY_REST = "Stopped by rest /terminate"
    ICE_ERROR = "Failed by ICE error"
    ICE_TIMEOUT = "Failed by ICE timeout"
    DTLS_ERROR = "Failed by DTLS error"
    RTP_ACTIVITY = "Failed by RTP activity"
    FAILED_BY_ERROR = "Failed by error"
    PUBLISH_NOT_READY = "Publish stream is not ready"
    KEEP_ALIVE = "Terminated by keep-alive"
    # streamsnap's own: no WCS text covers these.
    NO_VIDEO = "Stream has no video"
    NO_DECODABLE_FRAME = "No decodable frame within timeout"
    SESSION_NOT_ESTABLISHED = "Session is not established"
    SESSION_ALREADY_ESTABLISHED = "Session is already established"
    UNSUPPORTED_METHOD = "Method is not supported"
    MALFORMED_MESSAGE = "Malformed message"
    INVALID_SDP = "Invalid SDP"
    TOO_MANY_MESSAGES = "too many messages"
    TOO_MANY_SESSIONS = "Too many sessions"
    TOO_MANY_STREAMS = "too many streams on this server"
    TOO_MANY_SNAPSHOTS = "too many snapshots in flight on this server"
    TOO_MANY_CLIENT_SNAPSHOTS = "too many snapshots in flight from this address"
    PICTURE_TOO_LARGE = "picture larger than the server's size limit"
    NODE_UNREACHABLE = "the node holding the stream cannot be reached"
    SHUTTING_DOWN = "Stopped by server shutdown"
    LOGIN_TIMEOUT = "Terminated by login timeout"
    "No `connection` within `login_timeout`."
    TOO_MANY_SUBJECT_SNAPSHOTS = "too many snapshots in flight for this token's subject"
    TOO_MANY_SUBJECT_STREAMS = "too many streams for this token's subject"
    TOO_MANY_CLIENT_STREAMS = "too many streams from this address"
    NAME_RESERVED = "names of camera urls are the server's own pulls"


class Message(StrEnum):
    """Message names on the wire, both directions."""

    CONNECTION = "connection"
    PING = "ping"
    PONG = "pong"
    PUBLISH_STREAM = "publishStream"
    UNPUBLISH_STREAM = "unPublishStream"
    SNAPSHOT = "snapshot"
    STOP_STREAM = "stopStream"
    GET_USER_DATA = "getUserData"
    SET_REMOTE_SDP = "setRemoteSDP"
    STREAM_STATUS_EVENT = "notifyStreamStatusEvent"
    STREAM_EVENT = "notifyStreamEvent"
    FAIL = "fail"


# Messages of the WCS protocol that a snapshot server has no use for. They get a `fail`
# answer (the session goes on) rather than being dropped silently.
UNSUPPORTED_METHODS = frozenset(
    {
        "playStream",
        "sendStreamEvent",
        "availableStream",
        "sendData",
        "call",
        "answer",
        "hangup",
        "hold",
        "unhold",
        "transfer",
        "sendDTMF",
        "sendMessage",
        "muteVideo",
        "unmuteVideo",
        "muteAudio",
        "unmuteAudio",
        "changeVideoState",
        "changeAudioState",
        "updateStream",
        "getStreamStatus",
        "webRTCMetricsClientDescription",
        "webRTCMetricsBatch",
    }
)
