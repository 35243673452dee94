"""The per-connection WCS session as a plain state machine.

`Session` owns no socket, task or clock: the shell feeds it decoded client messages
(`receive`), outcomes of the work it asked for (`publish_answered`, `snapshot_completed`,
…) and the time (`tick`), and gets back a list of `Action`s to carry out, in order.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from streamsnap.protocol import messages as msg
from streamsnap.protocol.codec import ProtocolError
from streamsnap.protocol.constants import Info, Message, StreamStatus


class SessionConfig(Protocol):
    """What a session needs to know (the server hands it its `[signaling]` settings as they are)."""

    @property
    def keepalive_interval(self) -> float:
        """Seconds between the server's `ping`s."""
    @property
    def keepalive_timeout(self) -> float:
        """A client heard nothing from for this many seconds is dropped."""
    @property
    def max_streams_per_session(self) -> int:
        """Publish streams one session may hold at once."""
    @property
    def max_pending_snapshots(self) -> int:
        """Snapshot requests one session may have in flight."""
    @property
    def message_rate(self) -> float:
        """Messages per second a client may send on average (a token bucket refilled at this rate)."""
    @property
    def message_burst(self) -> int:
        """Messages a client may send at once; a client that empties the bucket is closed."""
    @property
    def login_timeout(self) -> float:
        """Seconds from creation to `connection`; a session that has not logged in by then is closed."""


# Actions: what the shell must do.


@dataclass(frozen=True)
class Send:
    """Send this frame to the client."""

    message: msg.ServerMessage


@dataclass(frozen=True)
class StartPublish:
    """Claim `name` and answer the SDP offer; report back with `publish_answered`/`publish_failed`."""

    stream_id: str
    name: str
    sdp: str
    has_audio: bool
    has_video: bool


@dataclass(frozen=True)
class StopPublish:
    """Tear down the media of stream `stream_id` and release its name."""

    stream_id: str
    name: str
    info: str


@dataclass(frozen=True)
class TakeSnapshot:
    """Take a picture of stream `name`; report with `snapshot_completed`/`snapshot_failed`."""

    request_id: str
    name: str


@dataclass(frozen=True)
class CloseSession:
    """Close the connection; the session is over."""

    reason: str
    code: int = 1000
    "WebSocket close code (1000 normal, 1008 policy violation, 1001 going away)."


Action = Send | StartPublish | StopPublish | TakeSnapshot | CloseSession


class State(enum.Enum):
    """Where the session stands."""

    CONNECTED = "CONNECTED"
    "Socket open, waiting for `connection`."
    ESTABLISHED = "ESTABLISHED"
    "`getUserData` sent; publish and snapshot allowed."
    CLOSED = "CLOSED"
    "Over; every call answers nothing."


@dataclass
class _PublishStream:
    name: str
    status: StreamStatus
    has_audio: bool
    has_video: bool


@dataclass
class Session:
    """One client's WCS session."""

    session_id: str
    auth_token: str
    now: float
    "Time of creation, in the shell's clock (seconds)."
    config: SessionConfig
    server_version: str = "0.0.0"
    "Reported in `getUserData`."
    state: State = State.CONNECTED
    _streams: dict[str, _PublishStream] = field(default_factory=dict)
    _pending_snapshots: dict[str, int] = field(default_factory=dict)
    _last_heard: float = 0.0
    _last_ping: float = 0.0
    _allowance: float = 0.0
    _refilled: float = 0.0

    def __post_init__(self) -> None:
        self._last_heard = self.now
        self._last_ping = self.now
        self._allowance = float(self.config.message_burst)
        self._refilled = self.now

    # What the client says.

    def receive(self, message: msg.ClientMessage, now: float) -> list[Action]:
        """Handle one decoded client message."""
        if self.state is State.CLOSED:
            return []
        if not self._within_rate(now):
            return self._flooded(_method_of(message))
        if self.state is State.ESTABLISHED or isinstance(message, msg.Connect):
            self._last_heard = now  # nothing before `connection` keeps a session alive
        if isinstance(message, msg.Ping):
            return [Send(msg.pong())]
        if isinstance(message, msg.Pong):
            return []
        if isinstance(message, msg.Connect):
            return self._connect(message)
        if self.state is not State.ESTABLISHED:
            method = _method_of(message)
            return [Send(msg.fail(method, Info.SESSION_NOT_ESTABLISHED, id=_id_of(message)))]
        if isinstance(message, msg.Publish):
            return self._publish(message)
        if isinstance(message, msg.Unpublish):
            return self._unpublish(message)
        if isinstance(message, msg.SnapshotRequest):
            return self._snapshot(message)
        if isinstance(message, msg.StopStream):
            return []  # streamsnap plays no streams; the SDK sends this for ids we never saw
        return [Send(msg.fail(message.method, Info.UNSUPPORTED_METHOD, id=message.id))]

    def reject(self, error: ProtocolError, now: float) -> list[Action]:
        """Answer a frame the codec could not decode."""
        if self.state is State.CLOSED:
            return []
        if not self._within_rate(now):
            return self._flooded(error.method or "unknown")
        if self.state is State.ESTABLISHED:
            self._last_heard = now
        info = f"{error.info}: {error.detail}" if error.detail else error.info
        return [Send(msg.fail(error.method or "unknown", info, id=error.id))]

    # What the shell reports.

    def publish_answered(self, stream_id: str, sdp: str) -> list[Action]:
        """The offer of `stream_id` was answered."""
        stream = self._streams.get(stream_id)
        if self.state is State.CLOSED or stream is None or stream.status is not StreamStatus.PENDING:
            return []
        return [Send(msg.set_remote_sdp(stream_id, sdp))]

    def publish_started(self, stream_id: str) -> list[Action]:
        """Media of `stream_id` flows."""
        stream = self._streams.get(stream_id)
        if self.state is State.CLOSED or stream is None or stream.status is not StreamStatus.PENDING:
            return []
        stream.status = StreamStatus.PUBLISHING
        return [Send(self._status(stream_id, stream))]

    def publish_failed(self, stream_id: str, info: str) -> list[Action]:
        """`stream_id` failed (refused, or its media broke); the shell has released or will release it."""
        stream = self._streams.pop(stream_id, None)
        if self.state is State.CLOSED or stream is None:
            return []
        stream.status = StreamStatus.FAILED
        return [Send(self._status(stream_id, stream, info)), StopPublish(stream_id, stream.name, info)]

    def publish_terminated(self, stream_id: str, info: str) -> list[Action]:
        """`stream_id` was ended from outside (REST terminate, shutdown): UNPUBLISHED."""
        stream = self._streams.pop(stream_id, None)
        if self.state is State.CLOSED or stream is None:
            return []
        stream.status = StreamStatus.UNPUBLISHED
        return [Send(self._status(stream_id, stream, info)), StopPublish(stream_id, stream.name, info)]

    def snapshot_completed(
        self, request_id: str, name: str, png_base64: str, *, width: int, height: int, frame_age_ms: float
    ) -> list[Action]:
        """The picture for `request_id` is ready."""
        if not self._finish_snapshot(request_id):
            return []
        return [
            Send(msg.snapshot_completed(request_id, name, png_base64, width=width, height=height,
                                        frame_age_ms=frame_age_ms))
        ]

    def snapshot_failed(self, request_id: str, name: str, info: str) -> list[Action]:
        """No picture could be taken for `request_id`."""
        if not self._finish_snapshot(request_id):
            return []
        return [Send(msg.snapshot_failed(request_id, name, info))]

    def tick(self, now: float) -> list[Action]:
        """Keep-alive: ping the client, drop it when it has been silent too long."""
        if self.state is State.CLOSED:
            return []
        if self.state is State.CONNECTED and now - self.now >= self.config.login_timeout:
            return [Send(msg.fail(Message.CONNECTION, Info.LOGIN_TIMEOUT)), *self._close(Info.LOGIN_TIMEOUT, code=1008)]
        if now - self._last_heard > self.config.keepalive_timeout:
            return self._close(Info.KEEP_ALIVE)
        if now - self._last_ping >= self.config.keepalive_interval:
            self._last_ping = now
            return [Send(msg.ping())]
        return []

    def refuse_connection(self, info: str) -> list[Action]:
        """The shell refused this client (access control, limits): say why and close."""
        if self.state is State.CLOSED:
            return []
        actions: list[Action] = [Send(msg.fail(Message.CONNECTION, info))]
        return actions + self._close(info, code=1008)

    def shutting_down(self, info: str) -> list[Action]:
        """The server stops: end every publish stream (UNPUBLISHED with `info`), then close."""
        if self.state is State.CLOSED:
            return []
        actions: list[Action] = []
        for stream_id in list(self._streams):
            actions += self.publish_terminated(stream_id, info)
        return actions + self._close(info, code=1001)

    def disconnected(self) -> list[Action]:
        """The socket closed: stop everything the session published."""
        if self.state is State.CLOSED:
            return []
        actions = self._close(Info.STOPPED_BY_DISCONNECT)
        return [a for a in actions if not isinstance(a, CloseSession)]

    # Inspection, for the shell and tests.

    def stream_status(self, stream_id: str) -> StreamStatus | None:
        """Status of a publish stream of this session, or None when it holds none by that id."""
        stream = self._streams.get(stream_id)
        return stream.status if stream else None

    @property
    def pending_snapshots(self) -> int:
        """Snapshot requests not answered yet."""
        return sum(self._pending_snapshots.values())

    # Internals.

    def _connect(self, connect: msg.Connect) -> list[Action]:
        if self.state is State.ESTABLISHED:
            return [Send(msg.fail(Message.CONNECTION, Info.SESSION_ALREADY_ESTABLISHED))]
        self.state = State.ESTABLISHED
        return [
            Send(msg.get_user_data(connect, session_id=self.session_id, auth_token=self.auth_token,
                                   server_version=self.server_version))
        ]

    def _publish(self, publish: msg.Publish) -> list[Action]:
        stream_id = publish.media_session_id
        if stream_id in self._streams:
            return [Send(msg.fail("StreamStatusEvent", Info.MEDIA_SESSION_ID_IN_USE, id=stream_id,
                                  status=StreamStatus.FAILED))]
        if len(self._streams) >= self.config.max_streams_per_session:
            return [Send(msg.stream_status(stream_id, publish.name, StreamStatus.FAILED,
                                           f"{Info.FAILED_BY_ERROR}: too many streams in this session"))]
        self._streams[stream_id] = _PublishStream(
            publish.name, StreamStatus.PENDING, publish.has_audio, publish.has_video
        )
        return [StartPublish(stream_id, publish.name, publish.sdp, publish.has_audio, publish.has_video)]

    def _unpublish(self, unpublish: msg.Unpublish) -> list[Action]:
        stream_id = unpublish.media_session_id
        stream = self._streams.pop(stream_id, None)
        if stream is None:
            return [Send(msg.fail(Message.UNPUBLISH_STREAM, Info.STREAM_NOT_FOUND, id=stream_id))]
        stream.status = StreamStatus.UNPUBLISHED
        info = Info.STOPPED_BY_PUBLISHER
        return [StopPublish(stream_id, stream.name, info), Send(self._status(stream_id, stream, info))]

    def _snapshot(self, request: msg.SnapshotRequest) -> list[Action]:
        if self.pending_snapshots >= self.config.max_pending_snapshots:
            return [Send(msg.snapshot_failed(request.media_session_id, request.name,
                                             f"{Info.FAILED_BY_ERROR}: too many snapshots in flight"))]
        rid = request.media_session_id
        self._pending_snapshots[rid] = self._pending_snapshots.get(rid, 0) + 1
        return [TakeSnapshot(rid, request.name)]

    def _finish_snapshot(self, request_id: str) -> bool:
        count = self._pending_snapshots.get(request_id, 0)
        if self.state is State.CLOSED or count == 0:
            return False
        if count == 1:
            del self._pending_snapshots[request_id]
        else:
            self._pending_snapshots[request_id] = count - 1
        return True

    def _close(self, info: str, code: int = 1000) -> list[Action]:
        self.state = State.CLOSED
        actions: list[Action] = [StopPublish(sid, s.name, info) for sid, s in self._streams.items()]
        self._streams.clear()
        self._pending_snapshots.clear()
        actions.append(CloseSession(info, code))
        return actions

    def _within_rate(self, now: float) -> bool:
        """Token bucket: `message_rate` per second, at most `message_burst` saved up."""
        elapsed = max(0.0, now - self._refilled)
        self._refilled = now
        self._allowance = min(float(self.config.message_burst), self._allowance + elapsed * self.config.message_rate)
        if self._allowance < 1.0:
            return False
        self._allowance -= 1.0
        return True

    def _flooded(self, method: str) -> list[Action]:
        info = f"{Info.FAILED_BY_ERROR}: {Info.TOO_MANY_MESSAGES}"
        return [Send(msg.fail(method, info)), *self._close(info, code=1008)]

    def _status(self, stream_id: str, stream: _PublishStream, info: str = "") -> msg.ServerMessage:
        return msg.stream_status(stream_id, stream.name, stream.status, info,
                                 has_audio=stream.has_audio, has_video=stream.has_video)


def _method_of(message: msg.ClientMessage) -> str:
    names: dict[type, str] = {
        msg.Publish: Message.PUBLISH_STREAM,
        msg.Unpublish: Message.UNPUBLISH_STREAM,
        msg.SnapshotRequest: Message.SNAPSHOT,
        msg.StopStream: Message.STOP_STREAM,
    }
    if isinstance(message, msg.Unsupported):
        return message.method
    return names.get(type(message), "unknown")


def _id_of(message: msg.ClientMessage) -> str | None:
    if isinstance(message, msg.Unsupported):
        return message.id
    return getattr(message, "media_session_id", None)
