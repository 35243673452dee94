"""Hostile input for the sans-I/O core (as h11's fuzz/ does): the codec only ever raises
ProtocolError, and no sequence of messages and shell reports breaks a Session."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamsnap.config import SignalingSettings
from streamsnap.protocol import codec
from streamsnap.protocol import messages as msg
from streamsnap.protocol.codec import ProtocolError
from streamsnap.protocol.constants import UNSUPPORTED_METHODS
from streamsnap.protocol.session import (
    CloseSession,
    Send,
    Session,
    StartPublish,
    State,
    StopPublish,
    TakeSnapshot,
)

pytestmark = pytest.mark.unit

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

CLIENT_MESSAGES = (
    msg.Connect,
    msg.Ping,
    msg.Pong,
    msg.Publish,
    msg.Unpublish,
    msg.SnapshotRequest,
    msg.StopStream,
    msg.Unsupported,
)
ACTIONS = (Send, StartPublish, StopPublish, TakeSnapshot, CloseSession)

METHODS = sorted(
    {
        "connection",
        "ping",
        "pong",
        "publishStream",
        "unPublishStream",
        "snapshot",
        "stopStream",
        "getUserData",
        "fail",
        "",
    }
    | UNSUPPORTED_METHODS
)
IDS = ["m1", "m2", "s1", "s2", ""]
NAMES = ["cam", "other", "", "n" * 300]
PAYLOAD_KEYS = [
    "mediaSessionId",
    "id",
    "name",
    "sdp",
    "hasVideo",
    "hasAudio",
    "published",
    "custom",
    "appKey",
    "mediaProviders",
    "keepAlive",
    "authToken",
    "clientVersion",
    "localMediaInfo",
    "status",
]

# Text as a browser sends it (no lone surrogates), for payloads that should decode.
utf8_chars = st.characters(codec="utf-8")


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(utf8_chars, max_size=20)
    | st.sampled_from(IDS + NAMES)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(utf8_chars, max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
payloads = st.dictionaries(st.sampled_from(PAYLOAD_KEYS), json_values, max_size=8)
good_payloads = st.fixed_dictionaries(
    {
        "mediaSessionId": st.sampled_from(IDS[:-1]),
        "name": st.sampled_from(NAMES[:2]),
        "sdp": st.just("v=0"),
    },
    optional={"hasVideo": st.booleans(), "hasAudio": st.booleans(), "localMediaInfo": json_values},
)
frames = st.fixed_dictionaries(
    {"message": st.sampled_from(METHODS) | st.text(utf8_chars, max_size=12) | json_values},
    optional={
        "data": st.lists(good_payloads | payloads | json_values, max_size=3) | json_values,
        "extra": json_values,
    },
)
frame_texts = st.builds(json.dumps, frames, ensure_ascii=st.booleans())
# Mostly well-formed traffic as the SDK sends it, so that sessions reach every state and limit;
# publish and snapshot weigh more, as they are what a session's state is made of.
SDK_METHODS = ["connection", "ping", "pong", "unPublishStream", "stopStream", "playStream"]
SDK_METHODS += ["publishStream"] * 2 + ["snapshot"] * 3
sdk_frame_texts = st.builds(
    lambda method, payload: json.dumps({"message": method, "data": [payload]}),
    st.sampled_from(SDK_METHODS),
    good_payloads,
)


def decode_or_error(text: str | bytes) -> msg.ClientMessage | ProtocolError:
    try:
        decoded = codec.decode(text)
    except ProtocolError as error:
        assert error.info
        assert error.detail or error.method
        return error
    assert isinstance(decoded, CLIENT_MESSAGES)
    return decoded


@FUZZ
@given(st.text() | st.binary())
def test_decode_arbitrary_text_and_bytes(text: str | bytes) -> None:
    decode_or_error(text)


@FUZZ
@given(frame_texts)
def test_decode_arbitrary_frames(text: str) -> None:
    result = decode_or_error(text)
    frame = json.loads(text)
    if isinstance(result, ProtocolError) and result.method:
        assert result.method == frame["message"]
    if isinstance(result, (msg.Publish, msg.SnapshotRequest)):
        assert 1 <= len(result.name) <= msg.MAX_NAME_LENGTH
        assert 1 <= len(result.media_session_id) <= msg.MAX_ID_LENGTH


@FUZZ
@given(
    frame_texts,
    st.integers(min_value=0),
    st.characters(),  # lone surrogates included
    st.integers(min_value=0, max_value=255),  # invalid UTF-8 included
    st.booleans(),
)
def test_decode_corrupted_frames(
    text: str, position: int, char: str, byte: int, as_bytes: bool
) -> None:
    if as_bytes:
        data = bytearray(text.encode())
        data[position % len(data)] = byte
        decode_or_error(bytes(data))
    else:
        at = position % len(text)
        decode_or_error(text[:at] + char + text[at + 1 :])


# --- Session under arbitrary traffic ---------------------------------------------------------

report_ids = st.sampled_from(IDS[:-1])
shell_reports = st.one_of(
    st.tuples(st.just("publish_answered"), report_ids, st.just("answer")),
    st.tuples(st.just("publish_started"), report_ids),
    st.tuples(st.just("publish_failed"), report_ids, st.text(utf8_chars, max_size=10)),
    st.tuples(st.just("publish_terminated"), report_ids, st.text(utf8_chars, max_size=10)),
    st.tuples(st.just("snapshot_completed"), report_ids, st.sampled_from(NAMES)),
    st.tuples(st.just("snapshot_failed"), report_ids, st.sampled_from(NAMES)),
    st.tuples(st.just("tick"), st.floats(min_value=0, max_value=8)),
)
sdk_steps = st.tuples(st.just("frame"), sdk_frame_texts, st.floats(min_value=0, max_value=2))
hostile_steps = st.tuples(st.just("frame"), frame_texts, st.floats(min_value=0, max_value=2))
# Weighted (one_of would flatten the reports' branches and drown the client's frames).
STEP_KINDS: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "sdk": sdk_steps,
    "report": shell_reports,
    "hostile": hostile_steps,
    "disconnected": st.just(("disconnected",)),
}
steps = st.lists(
    st.sampled_from(["sdk"] * 12 + ["report"] * 6 + ["hostile"] * 3 + ["disconnected"]).flatmap(
        STEP_KINDS.__getitem__
    ),
    min_size=5,
    max_size=30,
)
connection = '{"message":"connection","data":[{}]}'


class Harness:
    """Feeds a Session and checks every answer and the invariants after each step."""

    def __init__(self, cooperative: bool) -> None:
        self.config = SignalingSettings(
            keepalive_interval=3.0, keepalive_timeout=12.0, max_streams_per_session=1, max_pending_snapshots=2
        )
        self.session = Session("sess", "tok", 0.0, self.config)
        self.cooperative = cooperative
        "Whether the shell answers every StartPublish at once, as a healthy server does."
        self.now = 0.0
        self.started: Counter[str] = Counter()
        self.stopped: Counter[str] = Counter()
        self.taken: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()

    def step(self, step: tuple[Any, ...]) -> None:
        session = self.session
        kind = step[0]
        closed_before = session.state is State.CLOSED
        if kind == "frame":
            self.now += step[2]
            decoded = decode_or_error(step[1])
            if isinstance(decoded, ProtocolError):
                actions = session.reject(decoded, self.now)
            else:
                actions = session.receive(decoded, self.now)
        elif kind == "tick":
            self.now += step[1]
            actions = session.tick(self.now)
        elif kind == "disconnected":
            actions = session.disconnected()
        elif kind in ("snapshot_completed", "snapshot_failed"):
            pending = session.pending_snapshots
            if kind == "snapshot_completed":
                actions = session.snapshot_completed(
                    step[1], step[2], "AA==", width=2, height=2, frame_age_ms=1.0
                )
            else:
                actions = session.snapshot_failed(step[1], step[2], "no picture")
            if actions:
                self.answered[step[1]] += 1
                assert session.pending_snapshots == pending - 1
        else:
            actions = getattr(session, kind)(*step[1:])
        self.check(actions, closed_before)
        if self.cooperative:
            for action in actions:
                if isinstance(action, StartPublish):
                    self.step(("publish_answered", action.stream_id, "answer"))
                    self.step(("publish_started", action.stream_id))

    def check(self, actions: list[Any], closed_before: bool) -> None:
        session = self.session
        assert isinstance(actions, list)
        assert all(isinstance(action, ACTIONS) for action in actions), actions
        if closed_before:
            assert actions == []
        for action in actions:
            if isinstance(action, Send):
                wire = json.loads(codec.encode(action.message))
                assert set(wire) == {"message", "data"}
                assert isinstance(wire["data"], list)
            elif isinstance(action, StartPublish):
                self.started[action.stream_id] += 1
            elif isinstance(action, StopPublish):
                self.stopped[action.stream_id] += 1
            elif isinstance(action, TakeSnapshot):
                self.taken[action.request_id] += 1
        if any(isinstance(a, CloseSession) for a in actions):
            assert isinstance(actions[-1], CloseSession)
            assert session.state is State.CLOSED

        # Invariants: limits hold; nothing is stopped or answered more often than it was started.
        assert session.pending_snapshots <= self.config.max_pending_snapshots
        live = [i for i in IDS if session.stream_status(i) is not None]
        assert len(live) <= self.config.max_streams_per_session
        for stream_id in set(self.started) | set(self.stopped):
            assert self.stopped[stream_id] <= self.started[stream_id]
            alive = self.started[stream_id] - self.stopped[stream_id]
            assert alive == (session.stream_status(stream_id) is not None)
        for request_id in self.answered:
            assert self.answered[request_id] <= self.taken[request_id]


@FUZZ
@given(steps, st.sampled_from([True, True, True, False]), st.booleans())
def test_session_survives_any_sequence(
    script: list[tuple[Any, ...]], connect_first: bool, cooperative: bool
) -> None:
    harness = Harness(cooperative)
    if connect_first:
        harness.step(("frame", connection, 0.0))
    for step in script:
        harness.step(step)
