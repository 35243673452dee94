"""Text frames to typed messages and back. Pure functions, no I/O."""

from __future__ import annotations

from functools import cache
from typing import Any, get_type_hints

import msgspec
import msgspec.inspect as mi

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


_INVALID_TEXT = "invalid text: not valid UTF-8"


def _json(decode: Any, text: str) -> Any:
    """`decode(text)`, with what makes the text not JSON as a `ProtocolError`."""
    try:
        return decode(text)
    except msgspec.ValidationError:
        raise
    except msgspec.DecodeError as exc:
        raise ProtocolError(Info.MALFORMED_MESSAGE, detail=f"not valid JSON ({exc})") from None
    except RecursionError:  # msgspec recurses per nesting level; a 2 kB frame can exhaust it
        raise ProtocolError(Info.MALFORMED_MESSAGE, detail="JSON nested too deeply") from None
    except UnicodeError:  # a str with lone surrogates
        raise ProtocolError(Info.MALFORMED_MESSAGE, detail=_INVALID_TEXT) from None


def decode(text: str | bytes) -> ClientMessage:
    """Parse one client frame; raise `ProtocolError` when it is not a valid message."""
    if isinstance(text, bytes):
        # Checked here so that the answer is ours whatever the JSON library's version says.
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(Info.MALFORMED_MESSAGE, detail=_INVALID_TEXT) from None
    try:
        frame = _json(_frame_decoder.decode, text)
    except msgspec.ValidationError:
        raise ProtocolError(Info.MALFORMED_MESSAGE, detail=_explain_frame(text)) from None
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
    except msgspec.ValidationError:
        raise ProtocolError(Info.MALFORMED_MESSAGE, method=method, id=_payload_id(payload),
                            detail=_explain(payload, payload_type, "the payload")) from None


class _FrameProbe(msgspec.Struct):
    message: str | msgspec.UnsetType = msgspec.UNSET


_probe = msgspec.json.Decoder(_FrameProbe)


def _explain_frame(text: str) -> str:
    """Why a frame that is JSON is not a frame. Nothing is decoded deeper than the first decode went:
    after a deep recursion CPython 3.11.7 can be left unable to compile (see tests/unit/test_codec.py)."""
    if not text.lstrip().startswith("{"):
        return "a frame must be a JSON object"
    try:
        _probe.decode(text)
    except msgspec.ValidationError:
        return "`message` must be a string"
    return "missing field `message`"


# What went wrong, in our words: msgspec validates, and on failure each field is checked alone
# (by msgspec again) to name the first that is missing or wrong, described from its declared type.


def _explain(value: Any, struct: type[msgspec.Struct], what: str) -> str:
    if not isinstance(value, dict):
        return f"{what} must be a JSON object"
    for field in _fields(struct):
        if field.encode_name not in value:
            if field.required:
                return f"missing field `{field.encode_name}`"
            continue
        try:
            msgspec.convert(value[field.encode_name], _hints(struct)[field.name])
        except msgspec.ValidationError:
            return f"`{field.encode_name}` must be {_describe(field.type)}"
    return f"{what} is not valid"


@cache
def _fields(struct: type[msgspec.Struct]) -> tuple[mi.Field, ...]:
    info = mi.type_info(struct)
    assert isinstance(info, mi.StructType)
    return info.fields


@cache
def _hints(struct: type[msgspec.Struct]) -> dict[str, Any]:
    return get_type_hints(struct, include_extras=True)


def _describe(kind: mi.Type) -> str:
    if isinstance(kind, mi.StrType):
        low, high = kind.min_length or 0, kind.max_length
        if high is not None:
            return f"a string of {low} to {high} characters"
        return "a non-empty string" if low == 1 else f"a string of at least {low} characters" if low else "a string"
    if isinstance(kind, mi.BoolType):
        return "true or false"
    if isinstance(kind, (mi.IntType, mi.FloatType)):
        return "a number"
    if isinstance(kind, mi.ListType):
        return f"a list of {_describe(kind.item_type).removeprefix('a ').removeprefix('an ')}s"
    if isinstance(kind, mi.DictType):
        return "an object"
    if isinstance(kind, mi.UnionType):
        return " or ".join("null" if isinstance(t, mi.NoneType) else _describe(t) for t in kind.types)
    return "a value of another type"


def encode(message: ServerMessage) -> str:
    """Serialise one server frame to JSON text."""
    return _encoder.encode(message).decode()
