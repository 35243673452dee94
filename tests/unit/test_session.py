"""The WCS session state machine, driven without I/O (as h11's tests drive its Connection)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streamsnap.config import SignalingSettings
from streamsnap.protocol import codec
from streamsnap.protocol import messages as msg
from streamsnap.protocol.codec import ProtocolError
from streamsnap.protocol.constants import Info
from streamsnap.protocol.session import (
    Action,
    CloseSession,
    Send,
    Session,
    StartPublish,
    State,
    StopPublish,
    TakeSnapshot,
)

pytestmark = pytest.mark.unit

T0 = 1000.0
SDP = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
CONNECT = msg.Connect(
    app_key="defaultApp",
    media_providers=["WebRTC"],
    client_version="2.0",
    custom={"login": "alice"},
)


def new_session(server_version: str = "0.0.0", **config: Any) -> Session:
    return Session("sess-1", "tok-1", T0, SignalingSettings(**config), server_version=server_version)


def established(**config: Any) -> Session:
    session = new_session(**config)
    actions = session.receive(CONNECT, T0)
    assert [wire(a)["message"] for a in actions] == ["getUserData"]
    return session


def wire(action: Action) -> Any:
    """The frame a Send action puts on the socket, as the client parses it."""
    assert isinstance(action, Send), action
    return json.loads(codec.encode(action.message))


def only_frame(actions: list[Action]) -> Any:
    """The single frame of a one-Send answer."""
    assert len(actions) == 1, actions
    return wire(actions[0])


def publish(
    stream_id: str = "m1", name: str = "cam", *, has_audio: bool = True, has_video: bool = True
) -> msg.Publish:
    return msg.Publish(
        media_session_id=stream_id, name=name, sdp=SDP, has_audio=has_audio, has_video=has_video
    )


def publishing(session: Session, stream_id: str = "m1", name: str = "cam") -> None:
    """Take `stream_id` through PENDING to PUBLISHING."""
    assert session.receive(publish(stream_id, name), T0) == [
        StartPublish(stream_id, name, SDP, True, True)
    ]
    session.publish_answered(stream_id, "answer")
    session.publish_started(stream_id)
    assert session.stream_status(stream_id) == "PUBLISHING"


def fail_body(actions: list[Action]) -> Any:
    frame = only_frame(actions)
    assert frame["message"] == "fail"
    assert len(frame["data"]) == 1
    return frame["data"][0]


# --- before `connection` ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "message, method, id",
    [
        (publish("m1"), "publishStream", "m1"),
        (msg.Unpublish("m1", "cam"), "unPublishStream", "m1"),
        (msg.SnapshotRequest("s1", "cam"), "snapshot", "s1"),
        (msg.StopStream("p1", "cam"), "stopStream", "p1"),
        (msg.Unsupported("playStream", "p2"), "playStream", "p2"),
        (msg.Unsupported("sendData", None), "sendData", None),
    ],
)
def test_messages_before_connection_fail(
    message: msg.ClientMessage, method: str, id: str | None
) -> None:
    session = new_session()
    actions = session.receive(message, T0 + 1)
    expected = {"apiMethod": method, "info": "Session is not established"}
    if id is not None:
        expected["id"] = id
    assert fail_body(actions) == expected
    assert session.state is State.CONNECTED
    assert session.stream_status("m1") is None
    assert session.pending_snapshots == 0


def test_ping_before_connection_is_answered() -> None:
    session = new_session()
    assert only_frame(session.receive(msg.Ping(), T0)) == {"message": "pong", "data": [None]}
    assert session.receive(msg.Pong(), T0) == []
    assert session.state is State.CONNECTED


def test_connection_establishes_the_session() -> None:
    session = new_session(server_version="9.8.7")
    frame = only_frame(session.receive(CONNECT, T0))
    assert frame == {
        "message": "getUserData",
        "data": [
            {
                "appKey": "defaultApp",
                "mediaProviders": ["WebRTC"],
                "keepAlive": False,
                "clientVersion": "2.0",
                "custom": {"login": "alice"},
                "sessionId": "sess-1",
                "authToken": "tok-1",
                "serverVersion": "9.8.7",
            }
        ],
    }
    assert session.state is State.ESTABLISHED


def test_auth_token_of_the_session_replaces_the_clients() -> None:
    session = new_session()
    frame = only_frame(session.receive(msg.Connect(auth_token="client-token"), T0))
    assert frame["data"][0]["authToken"] == "tok-1"


def test_second_connection_fails() -> None:
    session = established()
    actions = session.receive(msg.Connect(app_key="other"), T0 + 1)
    assert fail_body(actions) == {
        "apiMethod": "connection",
        "info": "Session is already established",
    }
    assert session.state is State.ESTABLISHED


def test_ping_pong() -> None:
    session = established()
    assert session.receive(msg.Ping(), T0) == [Send(msg.pong())]
    assert session.receive(msg.Pong(), T0) == []


# --- publishing ------------------------------------------------------------------------------


def test_publish_starts_then_answers_then_publishes() -> None:
    session = established()
    actions = session.receive(publish("m1", "cam", has_audio=False, has_video=True), T0)
    assert actions == [StartPublish("m1", "cam", SDP, False, True)]
    assert session.stream_status("m1") == "PENDING"

    assert only_frame(session.publish_answered("m1", "v=0 answer")) == {
        "message": "setRemoteSDP",
        "data": ["m1", "v=0 answer"],
    }
    assert session.stream_status("m1") == "PENDING"

    status = only_frame(session.publish_started("m1"))
    assert status["message"] == "notifyStreamStatusEvent"
    assert status["data"][0] == {
        "mediaSessionId": "m1",
        "name": "cam",
        "published": True,
        "hasAudio": False,
        "hasVideo": True,
        "status": "PUBLISHING",
        "info": "",
        "audioState": {"muted": False},
        "videoState": {"muted": False},
    }
    assert session.stream_status("m1") == "PUBLISHING"


def test_publish_reports_are_ignored_out_of_order_or_for_unknown_ids() -> None:
    session = established()
    publishing(session, "m1")
    assert session.publish_answered("m1", "late answer") == []
    assert session.publish_started("m1") == []
    assert session.publish_answered("nope", "x") == []
    assert session.publish_started("nope") == []
    assert session.publish_failed("nope", Info.ICE_ERROR) == []
    assert session.publish_terminated("nope", Info.STOPPED_BY_REST) == []


@pytest.mark.parametrize("started", [False, True], ids=["pending", "publishing"])
def test_duplicate_media_session_id_fails(started: bool) -> None:
    session = established()
    session.receive(publish("m1", "cam"), T0)
    if started:
        session.publish_started("m1")
    actions = session.receive(publish("m1", "other"), T0)
    assert fail_body(actions) == {
        "apiMethod": "StreamStatusEvent",
        "info": "MediaSessionId is already in use",
        "id": "m1",
        "status": "FAILED",
    }
    assert not any(isinstance(a, StartPublish) for a in actions)
    assert session.stream_status("m1") == ("PUBLISHING" if started else "PENDING")


def test_media_session_id_can_be_reused_after_unpublish() -> None:
    session = established()
    publishing(session, "m1")
    session.receive(msg.Unpublish("m1", "cam"), T0)
    assert session.receive(publish("m1", "cam"), T0) == [StartPublish("m1", "cam", SDP, True, True)]


def test_max_streams() -> None:
    session = established(max_streams_per_session=2)
    publishing(session, "m1", "a")
    assert session.receive(publish("m2", "b"), T0) == [StartPublish("m2", "b", SDP, True, True)]

    frame = only_frame(session.receive(publish("m3", "c"), T0))
    assert frame["message"] == "notifyStreamStatusEvent"
    body = frame["data"][0]
    assert (body["mediaSessionId"], body["name"], body["status"]) == ("m3", "c", "FAILED")
    assert body["info"] == "Failed by error: too many streams in this session"
    assert session.stream_status("m3") is None

    session.receive(msg.Unpublish("m1", "a"), T0)
    assert session.receive(publish("m3", "c"), T0) == [StartPublish("m3", "c", SDP, True, True)]


def test_unpublish_stops_and_reports_unpublished() -> None:
    session = established()
    publishing(session, "m1", "cam")
    actions = session.receive(msg.Unpublish("m1", "cam"), T0)
    assert len(actions) == 2
    assert actions[0] == StopPublish("m1", "cam", "Stopped by publisher stop")
    body = wire(actions[1])["data"][0]
    assert (body["mediaSessionId"], body["name"], body["status"], body["info"]) == (
        "m1",
        "cam",
        "UNPUBLISHED",
        "Stopped by publisher stop",
    )
    assert session.stream_status("m1") is None
    assert session.publish_started("m1") == []
    assert session.publish_failed("m1", Info.ICE_ERROR) == []


def test_unpublish_of_a_pending_stream() -> None:
    session = established()
    session.receive(publish("m1", "cam"), T0)
    actions = session.receive(msg.Unpublish("m1"), T0)
    assert actions[0] == StopPublish("m1", "cam", "Stopped by publisher stop")
    assert session.publish_answered("m1", "answer") == []


def test_unpublish_of_unknown_id_fails() -> None:
    session = established()
    publishing(session, "m1")
    assert fail_body(session.receive(msg.Unpublish("m2", "cam"), T0)) == {
        "apiMethod": "unPublishStream",
        "info": "Stream not found",
        "id": "m2",
    }
    assert session.stream_status("m1") == "PUBLISHING"


@pytest.mark.parametrize("started", [False, True], ids=["pending", "publishing"])
def test_publish_failed(started: bool) -> None:
    session = established()
    session.receive(publish("m1", "cam"), T0)
    if started:
        session.publish_started("m1")
    actions = session.publish_failed("m1", Info.NO_COMMON_CODECS)
    assert len(actions) == 2
    body = wire(actions[0])["data"][0]
    assert (body["mediaSessionId"], body["status"], body["info"]) == (
        "m1",
        "FAILED",
        "No common codecs",
    )
    assert actions[1] == StopPublish("m1", "cam", "No common codecs")
    assert session.stream_status("m1") is None
    # Every later report about the id is a no-op.
    assert session.publish_failed("m1", Info.ICE_TIMEOUT) == []
    assert session.publish_answered("m1", "answer") == []
    assert session.publish_started("m1") == []
    assert session.publish_terminated("m1", Info.STOPPED_BY_REST) == []
    assert fail_body(session.receive(msg.Unpublish("m1"), T0))["info"] == "Stream not found"


def test_publish_terminated_from_outside() -> None:
    session = established()
    publishing(session, "m1", "cam")
    actions = session.publish_terminated("m1", Info.STOPPED_BY_REST)
    body = wire(actions[0])["data"][0]
    assert (body["status"], body["info"]) == ("UNPUBLISHED", "Stopped by rest /terminate")
    assert actions[1:] == [StopPublish("m1", "cam", "Stopped by rest /terminate")]
    assert session.publish_terminated("m1", Info.STOPPED_BY_REST) == []


# --- snapshots -------------------------------------------------------------------------------


def test_snapshot_is_taken_and_answered_once() -> None:
    session = established()
    assert session.receive(msg.SnapshotRequest("s1", "cam"), T0) == [TakeSnapshot("s1", "cam")]
    assert session.pending_snapshots == 1

    frame = only_frame(
        session.snapshot_completed(
            "s1", "cam", "iVBORw0KGgo=", width=320, height=240, frame_age_ms=33.33
        )
    )
    assert frame == {
        "message": "notifyStreamEvent",
        "data": [
            {
                "mediaSessionId": "s1",
                "name": "cam",
                "type": "snapshotCompleted",
                "payload": {
                    "snapshot": "iVBORw0KGgo=",
                    "width": 320,
                    "height": 240,
                    "frameAgeMs": 33.3,
                },
            }
        ],
    }
    assert session.pending_snapshots == 0
    assert session.snapshot_completed("s1", "cam", "x", width=1, height=1, frame_age_ms=0) == []
    assert session.snapshot_failed("s1", "cam", "late failure") == []


def test_snapshot_failed_is_keyed_to_the_request() -> None:
    session = established()
    session.receive(msg.SnapshotRequest("s1", "cam"), T0)
    session.receive(msg.SnapshotRequest("s2", "cam"), T0)
    frame = only_frame(session.snapshot_failed("s2", "cam", Info.STREAM_NOT_FOUND))
    assert frame["data"] == [
        {
            "mediaSessionId": "s2",
            "name": "cam",
            "type": "snapshotFailed",
            "payload": {"info": "Stream not found"},
        }
    ]
    assert session.pending_snapshots == 1
    assert session.snapshot_failed("s2", "cam", Info.STREAM_NOT_FOUND) == []
    assert (
        only_frame(session.snapshot_failed("s1", "cam", Info.NO_VIDEO))["data"][0]["mediaSessionId"]
        == "s1"
    )


def test_snapshot_results_for_unknown_requests_are_dropped() -> None:
    session = established()
    assert session.snapshot_completed("never", "cam", "x", width=1, height=1, frame_age_ms=0) == []
    assert session.snapshot_failed("never", "cam", "x") == []


def test_duplicate_snapshot_request_ids_are_counted() -> None:
    session = established()
    assert session.receive(msg.SnapshotRequest("s1", "cam"), T0) == [TakeSnapshot("s1", "cam")]
    assert session.receive(msg.SnapshotRequest("s1", "cam"), T0) == [TakeSnapshot("s1", "cam")]
    assert session.pending_snapshots == 2
    assert len(session.snapshot_completed("s1", "cam", "x", width=1, height=1, frame_age_ms=0)) == 1
    assert session.pending_snapshots == 1
    assert len(session.snapshot_failed("s1", "cam", "late")) == 1
    assert session.pending_snapshots == 0
    assert session.snapshot_completed("s1", "cam", "x", width=1, height=1, frame_age_ms=0) == []


def test_max_pending_snapshots() -> None:
    session = established(max_pending_snapshots=2)
    session.receive(msg.SnapshotRequest("s1", "cam"), T0)
    session.receive(msg.SnapshotRequest("s2", "cam"), T0)
    actions = session.receive(msg.SnapshotRequest("s3", "cam"), T0)
    assert only_frame(actions)["data"] == [
        {
            "mediaSessionId": "s3",
            "name": "cam",
            "type": "snapshotFailed",
            "payload": {"info": "Failed by error: too many snapshots in flight"},
        }
    ]
    assert session.pending_snapshots == 2
    assert session.snapshot_completed("s3", "cam", "x", width=1, height=1, frame_age_ms=0) == []

    session.snapshot_failed("s1", "cam", "x")
    assert session.receive(msg.SnapshotRequest("s3", "cam"), T0) == [TakeSnapshot("s3", "cam")]


def test_snapshot_needs_no_stream_of_this_session() -> None:
    # The SDK's snapshot example uses a fresh id in a session that never published.
    session = established()
    assert session.receive(msg.SnapshotRequest("fresh", "someone-elses-cam"), T0) == [
        TakeSnapshot("fresh", "someone-elses-cam")
    ]


# --- other messages --------------------------------------------------------------------------


def test_stop_stream_is_ignored() -> None:
    session = established()
    publishing(session, "m1")
    assert session.receive(msg.StopStream("never-seen", "cam"), T0) == []
    assert session.receive(msg.StopStream("m1", "cam"), T0) == []
    assert session.stream_status("m1") == "PUBLISHING"


def test_unsupported_method_fails_and_session_goes_on() -> None:
    session = established()
    assert fail_body(session.receive(msg.Unsupported("playStream", "p1"), T0)) == {
        "apiMethod": "playStream",
        "info": "Method is not supported",
        "id": "p1",
    }
    assert session.state is State.ESTABLISHED
    assert session.receive(msg.Ping(), T0) == [Send(msg.pong())]


@pytest.mark.parametrize("state", ["connected", "established"])
def test_reject_answers_fail_with_detail(state: str) -> None:
    session = new_session() if state == "connected" else established()
    error = ProtocolError(Info.MALFORMED_MESSAGE, method="snapshot", id="s1", detail="no name")
    assert fail_body(session.reject(error, T0)) == {
        "apiMethod": "snapshot",
        "info": "Malformed message: no name",
        "id": "s1",
    }
    assert fail_body(session.reject(ProtocolError(Info.MALFORMED_MESSAGE), T0)) == {
        "apiMethod": "unknown",
        "info": "Malformed message",
    }


def test_reject_of_a_decoded_error() -> None:
    session = established()
    with pytest.raises(ProtocolError) as info:
        codec.decode('{"message":"snapshot","data":[{"mediaSessionId":"s1"}]}')
    assert fail_body(session.reject(info.value, T0)) == {
        "apiMethod": "snapshot",
        "id": "s1",
        "info": "Malformed message: missing field `name`",
    }
    assert session.pending_snapshots == 0


# --- keep-alive ------------------------------------------------------------------------------


def test_tick_pings_every_interval() -> None:
    session = established(keepalive_interval=5.0, keepalive_timeout=30.0)
    assert session.tick(T0 + 4.9) == []
    assert session.tick(T0 + 5.0) == [Send(msg.ping())]
    assert only_frame(session.tick(T0 + 10.0)) == {"message": "ping", "data": [None]}
    assert session.tick(T0 + 12.0) == []
    assert session.tick(T0 + 14.9) == []
    assert session.tick(T0 + 15.0) == [Send(msg.ping())]


def test_silence_closes_with_keep_alive() -> None:
    session = established(keepalive_interval=5.0, keepalive_timeout=30.0)
    for t in range(5, 31, 5):
        assert session.tick(T0 + t) == [Send(msg.ping())]  # our pings are not the client's voice
    assert session.tick(T0 + 30.0) == []
    assert session.state is State.ESTABLISHED
    assert session.tick(T0 + 30.5) == [CloseSession("Terminated by keep-alive")]
    assert session.state is State.CLOSED  # type: ignore[comparison-overlap]  # mypy narrowed it above
    assert session.tick(T0 + 60) == []
    assert session.receive(msg.Ping(), T0 + 61) == []


def test_keep_alive_closes_a_session_that_never_connected() -> None:
    session = new_session(keepalive_timeout=10.0, login_timeout=60.0)
    assert session.tick(T0 + 10.1) == [CloseSession("Terminated by keep-alive")]


def test_a_session_that_does_not_log_in_is_closed_at_the_login_timeout() -> None:
    session = new_session(login_timeout=3.0, keepalive_timeout=30.0)
    for second in (0.5, 1.0, 2.0, 2.9):  # pings, pongs and junk before `connection` keep nothing alive
        session.receive(msg.Ping(), T0 + second)
        session.receive(msg.Pong(), T0 + second)
        assert session.tick(T0 + second) in ([], [Send(msg.ping())])
    actions = session.tick(T0 + 3.0)
    assert [wire(a) for a in actions if isinstance(a, Send)] == [
        {"message": "fail", "data": [{"apiMethod": "connection", "info": "Terminated by login timeout"}]}]
    assert actions[-1] == CloseSession("Terminated by login timeout", 1008)
    assert session.state is State.CLOSED


def test_a_session_that_logged_in_in_time_is_not_closed_by_the_login_timeout() -> None:
    session = new_session(login_timeout=3.0, keepalive_timeout=30.0)
    session.receive(CONNECT, T0 + 2.9)
    assert not any(isinstance(a, CloseSession) for a in session.tick(T0 + 20))


def test_keep_alive_stops_live_streams() -> None:
    session = established(keepalive_interval=5.0, keepalive_timeout=30.0)
    publishing(session, "m1", "a")
    session.receive(publish("m2", "b"), T0)
    session.receive(msg.SnapshotRequest("s1", "a"), T0)
    assert session.tick(T0 + 31) == [
        StopPublish("m1", "a", "Terminated by keep-alive"),
        StopPublish("m2", "b", "Terminated by keep-alive"),
        CloseSession("Terminated by keep-alive"),
    ]
    assert session.stream_status("m1") is None
    assert session.pending_snapshots == 0
    assert session.snapshot_completed("s1", "a", "x", width=1, height=1, frame_age_ms=0) == []
    assert session.publish_failed("m1", "x") == []
    assert session.disconnected() == []


@pytest.mark.parametrize(
    "hear",
    [
        lambda s, t: s.receive(msg.Pong(), t),
        lambda s, t: s.receive(msg.Ping(), t),
        lambda s, t: s.receive(msg.Connect(), t),
        lambda s, t: s.receive(msg.StopStream(), t),
        lambda s, t: s.receive(msg.Unsupported("playStream"), t),
        lambda s, t: s.receive(msg.SnapshotRequest("s1", "cam"), t),
        lambda s, t: s.reject(ProtocolError(Info.MALFORMED_MESSAGE), t),
    ],
    ids=["pong", "ping", "connection", "stopStream", "unsupported", "snapshot", "bad-frame"],
)
def test_any_message_refreshes_liveness(hear: Any) -> None:
    session = established(keepalive_interval=5.0, keepalive_timeout=30.0)
    hear(session, T0 + 25)
    assert CloseSession("Terminated by keep-alive") not in session.tick(T0 + 55)
    assert session.state is State.ESTABLISHED
    assert session.tick(T0 + 55.1) == [CloseSession("Terminated by keep-alive")]


def test_shell_reports_do_not_refresh_liveness() -> None:
    session = established(keepalive_timeout=30.0)
    session.receive(publish("m1"), T0)
    session.publish_answered("m1", "answer")
    session.publish_started("m1")
    actions = session.tick(T0 + 30.1)
    assert actions[-1] == CloseSession("Terminated by keep-alive")


# --- disconnect ------------------------------------------------------------------------------


def test_disconnect_stops_every_stream_and_then_nothing() -> None:
    session = established()
    publishing(session, "m1", "a")
    session.receive(publish("m2", "b"), T0)
    session.receive(msg.SnapshotRequest("s1", "a"), T0)

    assert session.disconnected() == [
        StopPublish("m1", "a", "Stopped by session disconnect"),
        StopPublish("m2", "b", "Stopped by session disconnect"),
    ]
    assert session.state is State.CLOSED
    assert session.stream_status("m1") is None
    assert session.pending_snapshots == 0

    assert session.disconnected() == []
    assert session.receive(msg.Ping(), T0) == []
    assert session.receive(CONNECT, T0) == []
    assert session.receive(publish("m3"), T0) == []
    assert session.receive(msg.SnapshotRequest("s2", "a"), T0) == []
    assert session.reject(ProtocolError(Info.MALFORMED_MESSAGE), T0) == []
    assert session.tick(T0 + 1000) == []
    assert session.publish_answered("m2", "answer") == []
    assert session.publish_started("m2") == []
    assert session.publish_failed("m2", "x") == []
    assert session.publish_terminated("m1", "x") == []
    assert session.snapshot_completed("s1", "a", "x", width=1, height=1, frame_age_ms=0) == []
    assert session.snapshot_failed("s1", "a", "x") == []


def test_disconnect_without_streams() -> None:
    session = established()
    assert session.disconnected() == []
    assert session.state is State.CLOSED


def test_disconnect_before_connection() -> None:
    session = new_session()
    assert session.disconnected() == []
    assert session.state is State.CLOSED


# --- a whole SDK conversation ----------------------------------------------------------------


def test_sdk_publish_and_snapshot_conversation() -> None:
    publisher = new_session()
    viewer = Session("sess-2", "tok-2", T0, SignalingSettings())
    sent: list[str] = []

    def run(session: Session, text: str) -> list[Action]:
        actions = session.receive(codec.decode(text), T0)
        sent.extend(wire(a)["message"] for a in actions if isinstance(a, Send))
        return actions

    run(
        publisher,
        '{"message":"connection","data":[{"appKey":"defaultApp","mediaProviders":["WebRTC"]}]}',
    )
    start = run(
        publisher,
        json.dumps(
            {
                "message": "publishStream",
                "data": [{"mediaSessionId": "m1", "name": "cam", "sdp": SDP, "localMediaInfo": {}}],
            }
        ),
    )
    assert start == [StartPublish("m1", "cam", SDP, True, True)]
    sent.extend(wire(a)["message"] for a in publisher.publish_answered("m1", "answer"))
    sent.extend(wire(a)["message"] for a in publisher.publish_started("m1"))

    run(viewer, '{"message":"connection","data":[{}]}')
    take = run(viewer, '{"message":"snapshot","data":[{"mediaSessionId":"s1","name":"cam"}]}')
    assert take == [TakeSnapshot("s1", "cam")]
    sent.extend(
        wire(a)["message"]
        for a in viewer.snapshot_completed("s1", "cam", "AA==", width=2, height=2, frame_age_ms=1)
    )
    stop = run(
        publisher, '{"message":"unPublishStream","data":[{"mediaSessionId":"m1","name":"cam"}]}'
    )
    assert stop[0] == StopPublish("m1", "cam", "Stopped by publisher stop")
    assert sent == [
        "getUserData",
        "setRemoteSDP",
        "notifyStreamStatusEvent",
        "getUserData",
        "notifyStreamEvent",
        "notifyStreamStatusEvent",
    ]
