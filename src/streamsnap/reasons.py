"""Why things fail or end, in the domain's words.

These enums are what the registry, the sources, the snapshot engine and the services say.
Wire texts are chosen at the edges, each in one table: WCS info strings in
`web/wcs.py`, HTTP statuses in `web/errors.py`.
"""

from __future__ import annotations

import enum


class SnapshotFailure(enum.StrEnum):
    """Why no picture was made."""

    STREAM_NOT_FOUND = "stream_not_found"
    "No live stream by that name (or it ended while the picture was being made)."
    NOT_READY = "not_ready"
    "The stream exists but no media arrived within the keyframe timeout."
    NO_VIDEO = "no_video"
    "The stream carries audio only."
    NO_DECODABLE_FRAME = "no_decodable_frame"
    "No frame could be decoded within the keyframe timeout."
    TOO_LARGE = "too_large"
    "The picture asked for is larger than the configured size cap."
    RESTRICTED = "restricted"
    "The caller may not take pictures of this stream."
    SERVER_BUSY = "server_busy"
    "Too many pictures in flight on this server."
    CLIENT_BUSY = "client_busy"
    "Too many pictures in flight for this client address."
    SUBJECT_BUSY = "subject_busy"
    "Too many pictures in flight for the tokens of this subject (`sub`)."
    SHUTTING_DOWN = "shutting_down"
    "The server is stopping."
    UNREACHABLE = "unreachable"
    "The stream is held by another node that could not be asked."
    INTERNAL = "internal"
    "A bug: logged with its traceback, answered without one."
    OVERLOADED = "overloaded"
    "The server cannot make the picture in time (decode capacity or media loop): refused at once, retry later."
    # Pulled sources (RTSP cameras) that could not be started for the picture.
    BAD_SOURCE_URI = "bad_source_uri"
    "The name is a camera url that cannot be pulled as written."
    SOURCE_NOT_ALLOWED = "source_not_allowed"
    "The camera's host is outside the hosts the server may pull."
    SOURCE_UNREACHABLE = "source_unreachable"
    "The camera could not be reached (refused, no route, unknown host) or closed the connection."
    SOURCE_UNAUTHORIZED = "source_unauthorized"
    "The camera refused the credentials (or their absence)."
    SOURCE_UNTRUSTED = "source_untrusted"
    "An rtsps:// camera's certificate could not be verified (unknown authority, expired, another name)."
    SOURCE_NOT_FOUND = "source_not_found"
    "The camera has no stream at that path."
    SOURCE_TIMEOUT = "source_timeout"
    "The camera did not answer or send video in time."
    UNSUPPORTED_SOURCE = "unsupported_source"
    "The camera sends no video the server decodes (codec), or a description it cannot read."


class _ReasonedError(Exception):
    """A failure with its reason (an enum member) and, optionally, words for logs."""

    def __init__(self, reason: enum.StrEnum, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else str(reason))
        self.detail = detail


class SnapshotError(_ReasonedError):
    """No picture could be made; `reason` says why, `detail` adds words for logs and HTTP bodies."""

    def __init__(self, reason: SnapshotFailure, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason


class StreamEnd(enum.StrEnum):
    """Why a stream was refused, failed or ended."""

    NAME_IN_USE = "name_in_use"
    "Another live stream has the name."
    TOO_MANY_STREAMS = "too_many_streams"
    "The server holds `max_streams` already."
    SUBJECT_BUSY = "subject_busy"
    "The tokens of this subject (`sub`) hold `max_streams_per_subject` streams already."
    CLIENT_BUSY = "client_busy"
    "The client's address holds `publishing.max_per_address` streams already (pending ones included)."
    NAME_RESERVED = "name_reserved"
    "The name is a camera url (`rtsp://`, `rtsps://`): only the server's camera pulls publish such names."
    RESTRICTED = "restricted"
    "The publisher may not publish this name."
    SHUTTING_DOWN = "shutting_down"
    "The server is stopping."
    INVALID_SDP = "invalid_sdp"
    "The offer could not be parsed."
    NO_COMMON_CODECS = "no_common_codecs"
    "The offer has no codec the server takes."
    ICE_FAILED = "ice_failed"
    "ICE connectivity failed."
    ICE_TIMEOUT = "ice_timeout"
    "Media did not start within `connect_timeout`."
    DTLS_FAILED = "dtls_failed"
    "The DTLS handshake failed."
    TRANSPORT_CLOSED = "transport_closed"
    "The media connection closed on its own."
    RTP_TIMEOUT = "rtp_timeout"
    "No video for `rtp_timeout` seconds."
    STOPPED_BY_PUBLISHER = "stopped_by_publisher"
    "The publisher stopped it."
    DISCONNECTED = "disconnected"
    "The publisher's session ended."
    TERMINATED = "terminated"
    "Ended by an operator (REST terminate)."
    # Pulled sources (RTSP cameras).
    BAD_SOURCE_URI = "bad_source_uri"
    "The camera url cannot be pulled as written."
    SOURCE_NOT_ALLOWED = "source_not_allowed"
    "The camera's host is outside the hosts the server may pull."
    SOURCE_UNREACHABLE = "source_unreachable"
    "The camera could not be reached (refused, no route, unknown host)."
    SOURCE_UNAUTHORIZED = "source_unauthorized"
    "The camera refused the credentials (or their absence)."
    SOURCE_UNTRUSTED = "source_untrusted"
    "An rtsps:// camera's certificate could not be verified (unknown authority, expired, another name)."
    SOURCE_NOT_FOUND = "source_not_found"
    "The camera has no stream at that path."
    SOURCE_TIMEOUT = "source_timeout"
    "The camera did not answer, or sent no packet for the no-packet timeout."
    SOURCE_CLOSED = "source_closed"
    "The camera ended the stream or closed the connection."
    UNSUPPORTED_CODEC = "unsupported_codec"
    "The camera sends no video in a codec the server decodes."
    IDLE = "idle"
    "A pull started for pictures ended because none were asked for the idle timeout."
    ERROR = "error"
    "A bug, or a failure with no better name."


class PublishError(_ReasonedError):
    """A publish cannot go ahead; `reason` says why, `detail` adds words for the log."""

    def __init__(self, reason: StreamEnd, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
