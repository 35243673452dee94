"""Text frames to typed messages and back. Pure functions, no I/O."""

from __future__ import annotations

from typing import Any

import msgspec

from streamsnap.protocol.constants import UNSUPPORTED_METHODS, Info, Message
from streamsnap.protocol.messages import (
    ClientMessage,
    Connect,
    Ping,
    Pong,
    Publish,
    ServerMessage,
    SnapshotRequest,
    StopStream,
    Unpublish,
    Unsupported,
)


class ProtocolError(Exception):
    """A frame that cannot be understood; the session answers `fail` and goes on."""

    def __init__(self, info: str, *, method: str = "", id: str | None = None, detail: str = "") -> None:
        super().__init__(f"{info}: {detail}" if detail else info)
        self.info = info
        "Text for the `fail` answer."
        self.method = method
        "Message name, when it could be read."
        self.id = id
        "`mediaSessionId` of the payload, when it could be read."
        self.detail = detail
        "What exactly was wrong (for logs and the `fail` answer)."


class _Frame(msgspec.Struct, frozen=True):
    message: str
    data: Any = None


_PAYLOADS: dict[str, type[Connect | Publish | Unpublish | SnapshotRequest | StopStream]] = {
    Message.CONNECTION: Connect,
    Message.PUBLISH_STREAM: Publish,
    Message.UNPUBLISH_STREAM: Unpublish,
    Message.SNAPSHOT: SnapshotRequest,
    Message.STOP_STREAM: StopStream,
}

_frame_decoder = msgspec.json.Decoder(_Frame)
_encoder = msgspec.json.Encoder()


def _payload_id(payload: Any) -> str | None:
    if isinstance(payload, dict):
        for key in ("mediaSessionId", "id"):
            value = payload.get(key)
            if isinstance(value, str):
                return value
    return None


def decode(text: str | bytes) -> ClientMessage:
    """Parse one client frame; raise `ProtocolError` when it is not a valid message."""
    try:
        frame = _frame_decoder.decode(text)
    except msgspec.DecodeError as exc:
        raise ProtocolError(Info.MALFORMED_MESSAGE, detail=str(exc)) from None
    except RecursionError:  # msgspec recurses per nesting level; a 2 kB frame can exhaust it
        raise ProtocolError(Info.MALFORMED_MESSAGE, detail="JSON nested too deeply") from None
    except UnicodeError as exc:
        raise ProtocolError(Info.MALFORMED_MESSAGE, detail=f"invalid text: {exc}") from None
    method = frame.message
    if method in (Message.PING, Message.PONG):
        return Ping() if method == Message.PING else Pong()
    if frame.data is not None and not isinstance(frame.data, list):
        raise ProtocolError(Info.MALFORMED_MESSAGE, method=method, detail="`data` must be a list")
    payload = frame.data[0] if frame.data else None
    payload_type = _PAYLOADS.get(method)
    if payload_type is None:
        if method in UNSUPPORTED_METHODS:
            return Unsupported(method, _payload_id(payload))
        raise ProtocolError(Info.UNSUPPORTED_METHOD, method=method, id=_payload_id(payload),
                            detail=f"unknown message {method!r}")
    if payload is None and payload_type is Connect:
        payload = {}
    try:
        return msgspec.convert(payload, payload_type)
    except msgspec.ValidationError as exc:
        raise ProtocolError(Info.MALFORMED_MESSAGE, method=method, id=_payload_id(payload),
                            detail=str(exc)) from None


def encode(message: ServerMessage) -> str:
    """Serialise one server frame to JSON text."""
    return _encoder.encode(message).decode()
