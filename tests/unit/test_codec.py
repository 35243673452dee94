"""codec.decode / codec.encode: every client message, every server builder, every bad frame."""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec
import pytest

from streamsnap.protocol import codec
from streamsnap.protocol import messages as msg
from streamsnap.protocol.codec import ProtocolError
from streamsnap.protocol.constants import UNSUPPORTED_METHODS, Info, StreamStatus
from streamsnap.protocol.messages import MAX_ID_LENGTH, MAX_NAME_LENGTH

pytestmark = pytest.mark.unit

SDP_OFFER = "v=0\r\no=- 1 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"


def frame(message: Any, *data: Any, **extra: Any) -> str:
    """A client frame as the SDK writes it: `{"message": ..., "data": [...]}`."""
    return json.dumps({"message": message, "data": list(data), **extra})


def raw_frame(**fields: Any) -> str:
    """A frame with exactly these top-level fields (for frames that break the shape)."""
    return json.dumps(fields)


def wire(message: msg.ServerMessage) -> Any:
    """What a client parses out of an encoded server frame."""
    return json.loads(codec.encode(message))


def decode_error(text: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        codec.decode(text)
    return info.value


# What the official SDK sends (flashphoner-core.js), extra fields included.
SDK_CONNECTION = {
    "appKey": "defaultApp",
    "mediaProviders": ["WebRTC", "MSE", "WSPlayer"],
    "keepAlive": False,
    "authToken": None,
    "clientVersion": "2.0",
    "clientOSVersion": "5.0 (X11; Linux x86_64)",
    "clientBrowserVersion": "Mozilla/5.0 Chrome/156",
    "msePacketizationVersion": 2,
    "custom": {"login": "alice"},
}

SDK_PUBLISH = {
    "mediaSessionId": "7f3c6a10-5b1e-11ef-8000-0242ac120002",
    "name": "cam-1",
    "published": True,
    "hasVideo": True,
    "hasAudio": False,
    "status": "PENDING",
    "record": False,
    "mediaProvider": "WebRTC",
    "sdp": SDP_OFFER,
    "custom": {"room": 4},
    "bitrate": 0,
    "minBitrate": 0,
    "maxBitrate": 0,
    "constraints": {"audio": False, "video": {"width": 320, "height": 240}},
    "transport": "UDP",
    "cvoExtension": False,
    "localMediaInfo": {
        "audio": {"tracks": []},
        "video": {"tracks": [{"id": "t1", "kind": "video"}]},
    },
}


# --- decoding every client message ---------------------------------------------------------


def test_connection_with_every_sdk_field() -> None:
    decoded = codec.decode(frame("connection", SDK_CONNECTION))
    assert decoded == msg.Connect(
        app_key="defaultApp",
        media_providers=["WebRTC", "MSE", "WSPlayer"],
        keep_alive=False,
        auth_token=None,
        client_version="2.0",
        custom={"login": "alice"},
    )


def test_connection_keeps_auth_token_and_keep_alive() -> None:
    decoded = codec.decode(frame("connection", {"authToken": "tok-123", "keepAlive": True}))
    assert isinstance(decoded, msg.Connect)
    assert decoded.auth_token == "tok-123"
    assert decoded.keep_alive is True
    assert decoded.app_key == "defaultApp"


@pytest.mark.parametrize(
    "text",
    [
        raw_frame(message="connection"),
        raw_frame(message="connection", data=None),
        raw_frame(message="connection", data=[]),
        raw_frame(message="connection", data=[None]),
        raw_frame(message="connection", data=[{}]),
    ],
    ids=["no-data", "data-null", "data-empty", "data-[null]", "data-[{}]"],
)
def test_connection_without_fields_gets_defaults(text: str) -> None:
    assert codec.decode(text) == msg.Connect(
        app_key="defaultApp",
        media_providers=[],
        keep_alive=False,
        auth_token=None,
        client_version=None,
        custom=None,
    )


@pytest.mark.parametrize("name, expected", [("ping", msg.Ping()), ("pong", msg.Pong())])
@pytest.mark.parametrize(
    "data",
    [None, [None], [], [{"anything": 1}], "not-a-list"],
    ids=["null", "[null]", "[]", "[{...}]", "string"],
)
def test_ping_and_pong_ignore_their_data(name: str, expected: Any, data: Any) -> None:
    assert codec.decode(raw_frame(message=name, data=data)) == expected


def test_ping_without_data_field() -> None:
    assert codec.decode('{"message":"ping"}') == msg.Ping()
    assert codec.decode(b'{"message":"pong"}') == msg.Pong()


def test_publish_stream_ignores_unknown_sdk_fields() -> None:
    decoded = codec.decode(frame("publishStream", SDK_PUBLISH))
    assert decoded == msg.Publish(
        media_session_id="7f3c6a10-5b1e-11ef-8000-0242ac120002",
        name="cam-1",
        sdp=SDP_OFFER,
        has_video=True,
        has_audio=False,
        published=True,
        custom={"room": 4},
    )


def test_publish_stream_defaults() -> None:
    decoded = codec.decode(
        frame("publishStream", {"mediaSessionId": "m1", "name": "n", "sdp": "v=0"})
    )
    assert decoded == msg.Publish(
        media_session_id="m1",
        name="n",
        sdp="v=0",
        has_video=True,
        has_audio=True,
        published=True,
        custom=None,
    )


def test_unpublish_stream() -> None:
    payload = {"mediaSessionId": "m1", "name": "cam-1", "published": True, "status": "PUBLISHING"}
    assert codec.decode(frame("unPublishStream", payload)) == msg.Unpublish("m1", "cam-1")
    assert codec.decode(frame("unPublishStream", {"mediaSessionId": "m1"})) == msg.Unpublish(
        "m1", ""
    )


def test_snapshot_request() -> None:
    payload = {"name": "cam-1", "mediaSessionId": "snap-42", "status": "NEW", "published": False}
    assert codec.decode(frame("snapshot", payload)) == msg.SnapshotRequest("snap-42", "cam-1")


def test_stop_stream_with_and_without_fields() -> None:
    payload = {"mediaSessionId": "p1", "name": "cam-1", "published": False}
    assert codec.decode(frame("stopStream", payload)) == msg.StopStream("p1", "cam-1")
    assert codec.decode(frame("stopStream", {})) == msg.StopStream("", "")


@pytest.mark.parametrize("method", sorted(UNSUPPORTED_METHODS))
def test_every_unsupported_wcs_method_decodes_to_unsupported(method: str) -> None:
    decoded = codec.decode(frame(method, {"mediaSessionId": "x-1", "name": "cam"}))
    assert decoded == msg.Unsupported(method, "x-1")


def test_play_stream_is_unsupported_with_id_from_any_source() -> None:
    assert codec.decode(frame("playStream", {"mediaSessionId": "p1"})) == msg.Unsupported(
        "playStream", "p1"
    )
    assert codec.decode(frame("playStream", {"id": "p2"})) == msg.Unsupported("playStream", "p2")
    # mediaSessionId wins over id; non-string ids are not ids
    both = {"mediaSessionId": "p3", "id": "other"}
    assert codec.decode(frame("playStream", both)) == msg.Unsupported("playStream", "p3")
    assert codec.decode(frame("playStream", {"mediaSessionId": 7})) == msg.Unsupported(
        "playStream", None
    )
    assert codec.decode(raw_frame(message="playStream")) == msg.Unsupported("playStream", None)
    assert codec.decode(frame("sendData", "text")) == msg.Unsupported("sendData", None)


def test_bytes_and_str_decode_alike() -> None:
    text = frame("snapshot", {"name": "cam-é", "mediaSessionId": "s1"})
    assert codec.decode(text.encode()) == codec.decode(text) == msg.SnapshotRequest("s1", "cam-é")


@pytest.mark.parametrize(
    "message, name",
    [
        (
            msg.Connect(
                app_key="app",
                media_providers=["WebRTC"],
                keep_alive=True,
                auth_token="t",
                client_version="2.0",
                custom={"k": [1, 2]},
            ),
            "connection",
        ),
        (
            msg.Publish(
                media_session_id="m1",
                name="cam",
                sdp=SDP_OFFER,
                has_video=False,
                has_audio=True,
                custom={"x": None},
            ),
            "publishStream",
        ),
        (msg.Unpublish("m1", "cam"), "unPublishStream"),
        (msg.SnapshotRequest("s1", "cam"), "snapshot"),
        (msg.StopStream("p1", "cam"), "stopStream"),
    ],
)
def test_client_messages_round_trip(message: Any, name: str) -> None:
    payload = json.loads(msgspec.json.encode(message))
    assert "mediaSessionId" in payload or "appKey" in payload  # camelCase on the wire
    assert codec.decode(frame(name, payload)) == message


# --- bad frames ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["{", "", "hello", "{'message': 'ping'}", b"{", '{"message":"ping"} x']
)
def test_not_json(text: str | bytes) -> None:
    error = decode_error(text)
    assert error.info == Info.MALFORMED_MESSAGE
    assert error.method == ""
    assert error.id is None
    assert error.detail.startswith("not valid JSON (")
    assert str(error) == f"{Info.MALFORMED_MESSAGE}: {error.detail}"


@pytest.mark.parametrize(
    "text, got",
    [
        ("[]", "array"),
        ('"ping"', "str"),
        ("42", "int"),
        ("null", "null"),
        ('[{"message":"ping"}]', "array"),
    ],
)
def test_json_that_is_not_an_object(text: str, got: str) -> None:
    error = decode_error(text)
    assert error.info == Info.MALFORMED_MESSAGE
    assert error.detail == "a frame must be a JSON object"
    assert error.method == ""


def test_message_missing() -> None:
    error = decode_error('{"data": [{"mediaSessionId": "m1"}]}')
    assert error.info == Info.MALFORMED_MESSAGE
    assert error.detail == "missing field `message`"
    assert error.method == ""


@pytest.mark.parametrize(
    "value, kind",
    [(5, "int"), (None, "null"), (["ping"], "array"), ({"a": 1}, "object"), (True, "bool")],
)
def test_message_not_a_string(value: Any, kind: str) -> None:
    error = decode_error(raw_frame(message=value, data=[]))
    assert error.info == Info.MALFORMED_MESSAGE
    assert error.detail == "`message` must be a string"


@pytest.mark.parametrize(
    "method",
    ["connection", "publishStream", "unPublishStream", "snapshot", "stopStream", "playStream"],
)
@pytest.mark.parametrize(
    "data",
    [{"mediaSessionId": "m1", "name": "n"}, "m1", 5, True],
    ids=["object", "string", "int", "bool"],
)
def test_data_not_a_list(method: str, data: Any) -> None:
    error = decode_error(raw_frame(message=method, data=data))
    assert error.info == Info.MALFORMED_MESSAGE
    assert error.method == method
    assert error.detail == "`data` must be a list"


@pytest.mark.parametrize(
    "method, payload, detail, id",
    [
        (
            "snapshot",
            {"name": "cam", "mediaSessionId": 17},
            f"`mediaSessionId` must be a string of 1 to {MAX_ID_LENGTH} characters",
            None,
        ),
        (
            "snapshot",
            {"name": ["cam"], "mediaSessionId": "s1"},
            f"`name` must be a string of 1 to {MAX_NAME_LENGTH} characters",
            "s1",
        ),
        (
            "publishStream",
            {"mediaSessionId": "m1", "name": "n", "sdp": "v=0", "hasVideo": "yes"},
            "`hasVideo` must be true or false",
            "m1",
        ),
        (
            "publishStream",
            {"mediaSessionId": "m1", "name": "n", "sdp": 0},
            "`sdp` must be a non-empty string",
            "m1",
        ),
        (
            "publishStream",
            {"mediaSessionId": "m1", "name": "n", "sdp": "v=0", "custom": []},
            "`custom` must be an object or null",
            "m1",
        ),
        (
            "connection",
            {"mediaProviders": "WebRTC"},
            "`mediaProviders` must be a list of strings",
            None,
        ),
        (
            "connection",
            {"keepAlive": "true"},
            "`keepAlive` must be true or false",
            None,
        ),
        (
            "unPublishStream",
            {"mediaSessionId": None},
            f"`mediaSessionId` must be a string of 1 to {MAX_ID_LENGTH} characters",
            None,
        ),
        ("snapshot", "cam", "the payload must be a JSON object", None),
        ("snapshot", ["cam", "s1"], "the payload must be a JSON object", None),
        ("connection", 5, "the payload must be a JSON object", None),
    ],
)
def test_payload_of_wrong_types(method: str, payload: Any, detail: str, id: str | None) -> None:
    error = decode_error(frame(method, payload))
    assert error.info == Info.MALFORMED_MESSAGE
    assert error.method == method
    assert error.id == id
    assert error.detail == detail


@pytest.mark.parametrize(
    "method, payload, field, id",
    [
        ("snapshot", {"mediaSessionId": "s1"}, "name", "s1"),
        ("snapshot", {"name": "cam"}, "mediaSessionId", None),
        ("publishStream", {"mediaSessionId": "m1", "name": "cam"}, "sdp", "m1"),
        ("publishStream", {"mediaSessionId": "m1", "sdp": "v=0"}, "name", "m1"),
        ("publishStream", {"name": "cam", "sdp": "v=0"}, "mediaSessionId", None),
        ("unPublishStream", {"name": "cam"}, "mediaSessionId", None),
    ],
)
def test_missing_required_field(
    method: str, payload: dict[str, Any], field: str, id: str | None
) -> None:
    error = decode_error(frame(method, payload))
    assert error.info == Info.MALFORMED_MESSAGE
    assert error.method == method
    assert error.id == id
    assert error.detail == f"missing field `{field}`"


@pytest.mark.parametrize("method", ["publishStream", "unPublishStream", "snapshot"])
@pytest.mark.parametrize("data", [None, [], [None]], ids=["no-data", "empty", "[null]"])
def test_payload_missing_where_one_is_required(method: str, data: Any) -> None:
    text = raw_frame(message=method) if data is None else raw_frame(message=method, data=data)
    error = decode_error(text)
    assert error.method == method
    assert error.detail == "the payload must be a JSON object"


@pytest.mark.parametrize("method", ["publishStream", "snapshot"])
def test_empty_name(method: str) -> None:
    error = decode_error(frame(method, {"mediaSessionId": "m1", "name": "", "sdp": "v=0"}))
    assert error.method == method
    assert error.id == "m1"
    assert error.detail == f"`name` must be a string of 1 to {MAX_NAME_LENGTH} characters"


@pytest.mark.parametrize("method", ["publishStream", "snapshot"])
def test_name_length_limit(method: str) -> None:
    longest = "n" * MAX_NAME_LENGTH
    decoded = codec.decode(frame(method, {"mediaSessionId": "m1", "name": longest, "sdp": "v=0"}))
    assert decoded.name == longest  # type: ignore[union-attr]

    error = decode_error(
        frame(method, {"mediaSessionId": "m1", "name": longest + "n", "sdp": "v=0"})
    )
    assert error.info == Info.MALFORMED_MESSAGE
    assert error.id == "m1"
    assert error.detail == f"`name` must be a string of 1 to {MAX_NAME_LENGTH} characters"


def test_media_session_id_limits() -> None:
    ok = "i" * MAX_ID_LENGTH
    assert codec.decode(
        frame("snapshot", {"mediaSessionId": ok, "name": "c"})
    ) == msg.SnapshotRequest(ok, "c")
    error = decode_error(frame("snapshot", {"mediaSessionId": ok + "i", "name": "c"}))
    assert error.detail == f"`mediaSessionId` must be a string of 1 to {MAX_ID_LENGTH} characters"
    error = decode_error(frame("unPublishStream", {"mediaSessionId": ""}))
    assert error.detail == f"`mediaSessionId` must be a string of 1 to {MAX_ID_LENGTH} characters"


def test_empty_sdp() -> None:
    error = decode_error(frame("publishStream", {"mediaSessionId": "m1", "name": "cam", "sdp": ""}))
    assert error.detail == "`sdp` must be a non-empty string"


@pytest.mark.parametrize("method", ["fooBar", "", "PING", "publishstream", "getUserData", "fail"])
def test_unknown_message_name(method: str) -> None:
    error = decode_error(frame(method, {"mediaSessionId": "m9"}))
    assert error.info == Info.UNSUPPORTED_METHOD
    assert error.method == method
    assert error.id == "m9"
    assert error.detail == f"unknown message {method!r}"
    assert str(error) == f"Method is not supported: unknown message {method!r}"


DEPTH = 5000  # ~10 kB of brackets; msgspec gives up near Python's recursion limit (1000)


@pytest.mark.parametrize(
    "text",
    [
        '{"message":"ping","data":' + "[" * DEPTH + "]" * DEPTH + "}",
        '{"message":"ping","ignored":' + "[" * DEPTH + "]" * DEPTH + "}",
        '{"message":"connection","data":[{"custom":' + '{"a":' * DEPTH + "1" + "}" * DEPTH + "}]}",
        '{"message":"ping","data":' + "[" * DEPTH,
    ],
    ids=["in-data", "in-ignored-field", "in-custom", "unclosed"],
)
def test_deeply_nested_json_is_a_protocol_error(text: str) -> None:
    error = decode_error(text)
    assert error.info == Info.MALFORMED_MESSAGE
    assert error.method == ""
    assert error.detail == "JSON nested too deeply"
    # and the interpreter is fine afterwards (a botched recursion count breaks compile())
    assert compile("[[[[1]]]]", "<check>", "eval") is not None
    assert codec.decode('{"message":"ping"}') == msg.Ping()


def test_nesting_a_client_really_sends_decodes() -> None:
    custom = {"a": {"b": {"c": {"d": [[["x"]]]}}}}
    decoded = codec.decode(frame("connection", {"custom": custom}))
    assert isinstance(decoded, msg.Connect)
    assert decoded.custom == custom


# --- encoding every server message -----------------------------------------------------------


def test_encode_returns_compact_json_text() -> None:
    assert codec.encode(msg.ping()) == '{"message":"ping","data":[null]}'
    assert codec.encode(msg.pong()) == '{"message":"pong","data":[null]}'


def test_get_user_data_echoes_connection_and_adds_session() -> None:
    connect = msg.Connect(
        app_key="defaultApp",
        media_providers=["WebRTC"],
        keep_alive=True,
        auth_token="old",
        client_version="2.0",
        custom={"login": "alice"},
    )
    sent = msg.get_user_data(
        connect, session_id="sess-1", auth_token="tok-1", server_version="1.2.3"
    )
    assert wire(sent) == {
        "message": "getUserData",
        "data": [
            {
                "appKey": "defaultApp",
                "mediaProviders": ["WebRTC"],
                "keepAlive": True,
                "clientVersion": "2.0",
                "custom": {"login": "alice"},
                "sessionId": "sess-1",
                "authToken": "tok-1",
                "serverVersion": "1.2.3",
            }
        ],
    }


def test_set_remote_sdp_is_two_list_items() -> None:
    answer = "v=0\r\na=setup:passive\r\n"
    assert wire(msg.set_remote_sdp("m1", answer)) == {
        "message": "setRemoteSDP",
        "data": ["m1", answer],
    }


def test_stream_status() -> None:
    sent = msg.stream_status(
        "m1",
        "cam",
        StreamStatus.UNPUBLISHED,
        Info.STOPPED_BY_PUBLISHER,
        has_audio=True,
        has_video=True,
    )
    assert wire(sent) == {
        "message": "notifyStreamStatusEvent",
        "data": [
            {
                "mediaSessionId": "m1",
                "name": "cam",
                "published": True,
                "hasAudio": True,
                "hasVideo": True,
                "status": "UNPUBLISHED",
                "info": "Stopped by publisher stop",
                "audioState": {"muted": False},
                "videoState": {"muted": False},
            }
        ],
    }
    defaults = wire(msg.stream_status("m2", "cam", StreamStatus.PUBLISHING))["data"][0]
    assert (defaults["status"], defaults["info"], defaults["hasAudio"], defaults["hasVideo"]) == (
        "PUBLISHING",
        "",
        False,
        False,
    )


def test_snapshot_completed() -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256))
    encoded = base64.b64encode(png).decode()
    sent = wire(
        msg.snapshot_completed("snap-1", "cam", encoded, width=640, height=480, frame_age_ms=12.345)
    )
    assert sent == {
        "message": "notifyStreamEvent",
        "data": [
            {
                "mediaSessionId": "snap-1",
                "name": "cam",
                "type": "snapshotCompleted",
                "payload": {"snapshot": encoded, "width": 640, "height": 480, "frameAgeMs": 12.3},
            }
        ],
    }
    snapshot = sent["data"][0]["payload"]["snapshot"]
    assert not snapshot.startswith("data:")
    assert base64.b64decode(snapshot) == png


def test_snapshot_failed() -> None:
    assert wire(msg.snapshot_failed("snap-2", "cam", Info.STREAM_NOT_FOUND)) == {
        "message": "notifyStreamEvent",
        "data": [
            {
                "mediaSessionId": "snap-2",
                "name": "cam",
                "type": "snapshotFailed",
                "payload": {"info": "Stream not found"},
            }
        ],
    }


def test_fail_with_and_without_id_and_status() -> None:
    full = msg.fail(
        "StreamStatusEvent", Info.MEDIA_SESSION_ID_IN_USE, id="m1", status=StreamStatus.FAILED
    )
    assert wire(full) == {
        "message": "fail",
        "data": [
            {
                "apiMethod": "StreamStatusEvent",
                "info": "MediaSessionId is already in use",
                "id": "m1",
                "status": "FAILED",
            }
        ],
    }
    bare = msg.fail("playStream", "free text")
    assert wire(bare) == {
        "message": "fail",
        "data": [{"apiMethod": "playStream", "info": "free text"}],
    }


@pytest.mark.parametrize(
    "message",
    [
        msg.ping(),
        msg.pong(),
        msg.set_remote_sdp("m1", SDP_OFFER),
        msg.stream_status("m1", "kamera-ü", StreamStatus.FAILED, "Failed by ICE error"),
        msg.snapshot_failed("s1", "cam", "x"),
        msg.fail("snapshot", Info.MALFORMED_MESSAGE, id="s1"),
    ],
)
def test_server_messages_round_trip(message: msg.ServerMessage) -> None:
    text = codec.encode(message)
    assert isinstance(text, str)
    assert msgspec.json.decode(text, type=msg.ServerMessage) == message


@pytest.mark.parametrize(
    "text",
    [b'{"message":"\x80nswer"}', b'{"message":"ping","data":["\xff"]}', '{"message":"\ud800"}', b"\xff\xfe\x00"],
    ids=["bytes-in-message", "bytes-in-data", "lone-surrogate", "not-text"],
)
def test_invalid_unicode_is_a_protocol_error(text: str | bytes) -> None:
    error = decode_error(text)
    assert error.info == Info.MALFORMED_MESSAGE
    assert error.detail == "invalid text: not valid UTF-8"
