"""Typed messages of the WCS protocol: what clients send, and what the server answers.

Incoming payloads are validated by msgspec at the edge (see `codec`); unknown fields are
ignored because the official SDK sends more than a snapshot server needs.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from streamsnap.protocol.constants import Info, Message, StreamEventType, StreamStatus

MAX_NAME_LENGTH = 256
MAX_ID_LENGTH = 128

StreamName = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH)]
MediaSessionId = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]


class Connect(msgspec.Struct, frozen=True, rename="camel"):
    """`connection`: the first message of a session."""

    app_key: str = "defaultApp"
    "Application key; WCS routes on it, streamsnap only echoes it."
    media_providers: list[str] = msgspec.field(default_factory=list)
    "Media providers the client supports (the SDK sends e.g. WebRTC, MSE, WSPlayer)."
    keep_alive: bool = False
    "WCS keeps such sessions after the socket closes; streamsnap does not (echoed only)."
    auth_token: str | None = None
    "Token of an earlier session, or an access token."
    client_version: str | None = None
    "SDK version, echoed back."
    custom: dict[str, Any] | None = None
    "Application fields, passed to authorization hooks later."


class Ping(msgspec.Struct, frozen=True):
    """`ping` from the client; answered with `pong`."""


class Pong(msgspec.Struct, frozen=True):
    """`pong` from the client: proof of liveness."""


class Publish(msgspec.Struct, frozen=True, rename="camel"):
    """`publishStream`: a WebRTC offer to publish a named stream."""

    media_session_id: MediaSessionId
    "Client-chosen id of this stream; every later message about it carries it."
    name: StreamName
    "Stream name, unique among live streams."
    sdp: Annotated[str, msgspec.Meta(min_length=1)]
    "SDP offer."
    has_video: bool = True
    "Whether the client means to send video."
    has_audio: bool = True
    "Whether the client means to send audio."
    published: bool = True
    "Always true for publishing."
    custom: dict[str, Any] | None = None
    "Application fields."


class Unpublish(msgspec.Struct, frozen=True, rename="camel"):
    """`unPublishStream`: the publisher stops its stream."""

    media_session_id: MediaSessionId
    "Id given in `publishStream`."
    name: str = ""
    "Stream name (informational)."


class SnapshotRequest(msgspec.Struct, frozen=True, rename="camel"):
    """`snapshot`: take a picture of the live stream `name`."""

    media_session_id: MediaSessionId
    "A fresh id, made for this request only; the answer is keyed to it."
    name: StreamName
    "Name of the stream to depict."


class StopStream(msgspec.Struct, frozen=True, rename="camel"):
    """`stopStream`: stop a played stream; streamsnap plays none, so it is a no-op."""

    media_session_id: str = ""
    "Id of the played stream."
    name: str = ""
    "Stream name."


class Unsupported(msgspec.Struct, frozen=True):
    """A message of the WCS protocol that streamsnap does not implement."""

    method: str
    "Message name as sent."
    id: str | None = None
    "`mediaSessionId` or `id` of the payload, when there was one."


ClientMessage = Connect | Ping | Pong | Publish | Unpublish | SnapshotRequest | StopStream | Unsupported


class ServerMessage(msgspec.Struct, frozen=True):
    """One frame from the server: `{"message": name, "data": [...]}`."""

    message: str
    data: list[Any]


def get_user_data(connect: Connect, *, session_id: str, auth_token: str, server_version: str) -> ServerMessage:
    """Answer to `connection`: the session is established."""
    return ServerMessage(
        Message.GET_USER_DATA,
        [
            {
                "appKey": connect.app_key,
                "mediaProviders": connect.media_providers,
                "keepAlive": connect.keep_alive,
                "clientVersion": connect.client_version,
                "custom": connect.custom,
                "sessionId": session_id,
                "authToken": auth_token,
                "serverVersion": server_version,
            }
        ],
    )


def ping() -> ServerMessage:
    """Keep-alive probe; the SDK answers `pong`."""
    return ServerMessage(Message.PING, [None])


def pong() -> ServerMessage:
    """Answer to a client's `ping`."""
    return ServerMessage(Message.PONG, [None])


def set_remote_sdp(media_session_id: str, sdp: str) -> ServerMessage:
    """The SDP answer to a publish offer: two list items, not an object."""
    return ServerMessage(Message.SET_REMOTE_SDP, [media_session_id, sdp])


def stream_status(
    media_session_id: str,
    name: str,
    status: StreamStatus,
    info: str = "",
    *,
    has_audio: bool = False,
    has_video: bool = False,
) -> ServerMessage:
    """A publish stream changed status."""
    return ServerMessage(
        Message.STREAM_STATUS_EVENT,
        [
            {
                "mediaSessionId": media_session_id,
                "name": name,
                "published": True,
                "hasAudio": has_audio,
                "hasVideo": has_video,
                "status": status,
                "info": info,
                "audioState": {"muted": False},
                "videoState": {"muted": False},
            }
        ],
    )


def snapshot_completed(
    media_session_id: str,
    name: str,
    png_base64: str,
    *,
    width: int,
    height: int,
    frame_age_ms: float,
) -> ServerMessage:
    """A snapshot was taken. Fields beside `snapshot` are streamsnap's and harmless to WCS clients."""
    return ServerMessage(
        Message.STREAM_EVENT,
        [
            {
                "mediaSessionId": media_session_id,
                "name": name,
                "type": StreamEventType.SNAPSHOT_COMPLETED,
                "payload": {
                    "snapshot": png_base64,
                    "width": width,
                    "height": height,
                    "frameAgeMs": round(frame_age_ms, 1),
                },
            }
        ],
    )


def snapshot_failed(media_session_id: str, name: str, info: str) -> ServerMessage:
    """A snapshot could not be taken."""
    return ServerMessage(
        Message.STREAM_EVENT,
        [
            {
                "mediaSessionId": media_session_id,
                "name": name,
                "type": StreamEventType.SNAPSHOT_FAILED,
                "payload": {"info": info},
            }
        ],
    )


def fail(
    api_method: str, info: str | Info, *, id: str | None = None, status: StreamStatus | None = None
) -> ServerMessage:
    """A request was refused. With `api_method="StreamStatusEvent"` the SDK also updates stream `id`."""
    body: dict[str, Any] = {"apiMethod": api_method, "info": str(info)}
    if id is not None:
        body["id"] = id
    if status is not None:
        body["status"] = status
    return ServerMessage(Message.FAIL, [body])
