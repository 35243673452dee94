"""RTMP publishing, sans I/O: the handshake, chunk streams, commands and media messages.

`RtmpConnection.receive_data(bytes)` returns events (`PublishRequested`, `VideoData`, …) and
queues the server's answers for `data_to_send()`; the shell decides whether a publish goes
ahead (`accept_publish` / `refuse_publish`). No sockets, no clock. Only what encoders that
push (ffmpeg, OBS) send is understood; anything outside the limits or the grammar raises
`RtmpError`, and the shell closes the connection. Command bodies are AMF0 (`amf0.py`).

The plain handshake is enough for publishers: ffmpeg checks the server's digest only when
it plays, and OBS's librtmp only warns when the echo differs.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

from streamsnap.protocol.rtmp.amf0 import AmfError, AmfValue, Undefined, decode_amf0, encode_amf0

HANDSHAKE_SIZE = 1536
RTMP_VERSION = 3
DEFAULT_CHUNK_SIZE = 128
SERVER_CHUNK_SIZE = 4096
WINDOW_ACK_SIZE = 2_500_000
PUBLISH_STREAM_ID = 1
"The message stream id `createStream` hands out (one publish per connection)."


class RtmpError(Exception):
    """The peer broke the protocol or a limit: close the connection."""


class RtmpLimits(Protocol):
    """Bounds a peer cannot exceed (the server hands the connection its `[rtmp]` settings as they are)."""

    @property
    def max_chunk_size(self) -> int:
        """Largest chunk size the peer may set (the spec allows 2^31-1)."""
    @property
    def max_message_bytes(self) -> int:
        """Largest message (a keyframe of a 1080p stream is well under 1 MB)."""
    @property
    def max_chunk_streams(self) -> int:
        """Chunk stream ids one connection may use."""


# Message types (RTMP spec 5.4, 7.1).
SET_CHUNK_SIZE = 1
ABORT = 2
ACKNOWLEDGEMENT = 3
USER_CONTROL = 4
WINDOW_ACK_SIZE_TYPE = 5
SET_PEER_BANDWIDTH = 6
AUDIO = 8
VIDEO = 9
DATA_AMF3 = 15
COMMAND_AMF3 = 17
DATA_AMF0 = 18
COMMAND_AMF0 = 20
AGGREGATE = 22


# --- events ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Connected:
    """The peer sent `connect`; the server answered it."""

    app: str
    "The application part of the url (`live` in rtmp://host/live/NAME)."
    tc_url: str


@dataclass(frozen=True)
class PublishRequested:
    """The peer asks to publish; answer with `accept_publish` or `refuse_publish`."""

    stream_key: str
    "The key as sent (NAME, possibly with `?query`)."
    stream_id: int


@dataclass(frozen=True)
class PublishStopped:
    """The peer ended its publish (FCUnpublish, closeStream or deleteStream)."""

    stream_id: int


@dataclass(frozen=True)
class VideoData:
    """One video message: an FLV video tag body."""

    timestamp: int
    "Milliseconds (RTMP timestamps wrap at 2^32)."
    data: bytes


@dataclass(frozen=True)
class AudioData:
    """One audio message (counted, never decoded)."""

    size: int


Event = Connected | PublishRequested | PublishStopped | VideoData | AudioData


# --- the connection ----------------------------------------------------------------------

class State(enum.Enum):
    """Where the connection is."""

    WAIT_C0C1 = "wait_c0c1"
    WAIT_C2 = "wait_c2"
    WAIT_CONNECT = "wait_connect"
    CONNECTED = "connected"
    PUBLISH_ASKED = "publish_asked"
    PUBLISHING = "publishing"
    CLOSED = "closed"


@dataclass
class _ChunkStream:
    """What a chunk stream remembers from its previous header, and the message being assembled."""

    timestamp: int = 0
    delta: int = 0
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    extended: bool = False
    "Whether the last header carried an extended timestamp (a type-3 header repeats it)."
    payload: bytearray = field(default_factory=bytearray)
    started: bool = False
    "Whether a header has been seen (type 1-3 headers need one)."


@dataclass
class RtmpConnection:
    """The server side of one RTMP connection."""

    limits: RtmpLimits
    server_time: int = 0
    "The time field of S1 (any value will do)."
    random: bytes = b"\x00" * (HANDSHAKE_SIZE - 8)
    "S1's random part (the shell passes random bytes)."
    state: State = State.WAIT_C0C1
    app: str = ""
    bytes_received: int = 0
    _buffer: bytearray = field(default_factory=bytearray)
    _out: bytearray = field(default_factory=bytearray)
    _chunk_size: int = DEFAULT_CHUNK_SIZE
    _out_chunk_size: int = DEFAULT_CHUNK_SIZE
    _streams: dict[int, _ChunkStream] = field(default_factory=dict)
    _partial_bytes: int = 0
    _peer_window: int = 0
    _last_ack: int = 0
    _publish_stream_id: int = 0

    def data_to_send(self) -> bytes:
        """Bytes the server must send now (then forgotten)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> list[Event]:
        """Take bytes from the peer; return what happened. Raises `RtmpError` (then the connection is done)."""
        if self.state is State.CLOSED:
            return []
        self._buffer += data
        self.bytes_received += len(data)
        events: list[Event] = []
        try:
            self._advance(events)
        except RtmpError:
            self.state = State.CLOSED
            self._buffer.clear()
            raise
        if self._peer_window and self.bytes_received - self._last_ack >= self._peer_window:
            self._last_ack = self.bytes_received
            self._send_message(2, ACKNOWLEDGEMENT, 0, (self.bytes_received & 0xFFFFFFFF).to_bytes(4, "big"))
        return events

    def accept_publish(self, stream_id: int, description: str) -> None:
        """Tell the peer its publish started (it sends media after this)."""
        if self.state is not State.PUBLISH_ASKED:
            return
        self.state = State.PUBLISHING
        self._on_status(stream_id, "status", "NetStream.Publish.Start", description)

    def refuse_publish(self, stream_id: int, code: str, description: str) -> None:
        """Tell the peer its publish is refused (`code` e.g. NetStream.Publish.BadName); then close."""
        self._on_status(stream_id, "error", code, description)
        self.state = State.CLOSED

    # -- parsing --

    def _advance(self, events: list[Event]) -> None:
        while self.state is not State.CLOSED:
            if self.state is State.WAIT_C0C1:
                if not self._handshake_c0c1():
                    return
            elif self.state is State.WAIT_C2:
                if len(self._buffer) < HANDSHAKE_SIZE:
                    return
                del self._buffer[:HANDSHAKE_SIZE]  # C2 echoes S1; its content does not matter to a server
                self.state = State.WAIT_CONNECT
            elif not self._chunk(events):
                return

    def _handshake_c0c1(self) -> bool:
        if not self._buffer:
            return False
        if self._buffer[0] != RTMP_VERSION:
            raise RtmpError(f"not RTMP (first byte {self._buffer[0]:#x})")
        if len(self._buffer) < 1 + HANDSHAKE_SIZE:
            return False
        c1 = bytes(self._buffer[1:1 + HANDSHAKE_SIZE])
        del self._buffer[:1 + HANDSHAKE_SIZE]
        s1 = (self.server_time & 0xFFFFFFFF).to_bytes(4, "big") + b"\x00" * 4 + self.random[:HANDSHAKE_SIZE - 8]
        self._out += bytes([RTMP_VERSION]) + s1.ljust(HANDSHAKE_SIZE, b"\x00") + c1
        self.state = State.WAIT_C2
        return True

    def _chunk(self, events: list[Event]) -> bool:
        """Parse one whole chunk from the buffer (False: not all of it is here yet)."""
        buf = self._buffer
        if not buf:
            return False
        fmt, csid, pos = buf[0] >> 6, buf[0] & 0x3F, 1
        if csid == 0:
            if len(buf) < 2:
                return False
            csid, pos = 64 + buf[1], 2
        elif csid == 1:
            if len(buf) < 3:
                return False
            csid, pos = 64 + buf[1] + buf[2] * 256, 3
        header_size = (11, 7, 3, 0)[fmt]
        if len(buf) < pos + header_size:
            return False
        stream = self._streams.get(csid)
        if stream is None:
            if fmt != 0:
                raise RtmpError(f"chunk stream {csid} starts without a full header")
            if len(self._streams) >= self.limits.max_chunk_streams:
                raise RtmpError("too many chunk streams")
            stream = _ChunkStream()
        header = bytes(buf[pos:pos + header_size])
        pos += header_size
        if fmt != 0 and not stream.started:
            raise RtmpError("chunk stream continues a message it never began")
        if fmt != 3 and stream.payload:
            raise RtmpError("a new header in the middle of a message")
        new_message = not stream.payload
        ts_field = int.from_bytes(header[:3], "big") if fmt < 3 else 0
        extended = ts_field == 0xFFFFFF if fmt < 3 else stream.extended
        if extended:
            if len(buf) < pos + 4:
                return False
            ts_field = int.from_bytes(buf[pos:pos + 4], "big")
            pos += 4
        if fmt < 2:
            length = int.from_bytes(header[3:6], "big")
            if length > self.limits.max_message_bytes:
                raise RtmpError(f"message of {length} bytes is over the limit")
        else:
            length = stream.length
        piece = min(self._chunk_size, length - len(stream.payload))
        if len(buf) < pos + piece:
            return False
        # The chunk is whole: commit.
        if fmt == 0:
            stream.timestamp = ts_field
            stream.delta = 0
            stream.stream_id = int.from_bytes(header[7:11], "little")
        elif fmt in (1, 2):
            stream.delta = ts_field
            stream.timestamp = (stream.timestamp + ts_field) & 0xFFFFFFFF
        elif new_message:
            stream.timestamp = (stream.timestamp + stream.delta) & 0xFFFFFFFF
        if fmt < 2:
            stream.length = length
            stream.type_id = header[6]
        if fmt < 3:
            stream.extended = extended
        stream.started = True
        self._streams[csid] = stream
        stream.payload += buf[pos:pos + piece]
        self._partial_bytes += piece
        del buf[:pos + piece]
        if self._partial_bytes > self.limits.max_message_bytes + self.limits.max_chunk_size:
            raise RtmpError("too many bytes in unfinished messages")
        if len(stream.payload) >= stream.length:
            payload = bytes(stream.payload)
            self._partial_bytes -= len(stream.payload)
            stream.payload = bytearray()
            self._message(stream.type_id, stream.stream_id, stream.timestamp, payload, events)
        return True

    # -- messages --

    def _message(self, type_id: int, stream_id: int, timestamp: int, payload: bytes, events: list[Event]) -> None:
        if type_id == SET_CHUNK_SIZE:
            if len(payload) < 4:
                raise RtmpError("short Set Chunk Size")
            size = int.from_bytes(payload[:4], "big")
            if size < 1 or size > self.limits.max_chunk_size:
                raise RtmpError(f"chunk size {size} refused")
            self._chunk_size = size
        elif type_id == ABORT:
            if len(payload) >= 4:
                aborted = self._streams.get(int.from_bytes(payload[:4], "big"))
                if aborted is not None:
                    self._partial_bytes -= len(aborted.payload)
                    aborted.payload = bytearray()
        elif type_id == WINDOW_ACK_SIZE_TYPE:
            if len(payload) >= 4:
                self._peer_window = int.from_bytes(payload[:4], "big")
        elif type_id in (COMMAND_AMF0, COMMAND_AMF3):
            if self.state is State.WAIT_C0C1 or self.state is State.WAIT_C2:
                raise RtmpError("command before the handshake")
            body = payload[1:] if type_id == COMMAND_AMF3 and payload[:1] == b"\x00" else payload
            try:
                values = decode_amf0(body)
            except AmfError as exc:
                raise RtmpError(str(exc)) from exc
            self._command(values, stream_id, events)
        elif type_id == VIDEO:
            if self.state is State.PUBLISHING and payload:
                events.append(VideoData(timestamp, payload))
        elif type_id == AUDIO:
            if self.state is State.PUBLISHING:
                events.append(AudioData(len(payload)))
        # Acknowledgement, User Control, Set Peer Bandwidth, data (@setDataFrame), aggregate: nothing to do.

    def _command(self, values: list[AmfValue], stream_id: int, events: list[Event]) -> None:
        if not values or not isinstance(values[0], str):
            raise RtmpError("command without a name")
        name = values[0]
        txn = values[1] if len(values) > 1 and isinstance(values[1], float) else 0.0
        args = values[2:]
        if name == "connect":
            if self.state is not State.WAIT_CONNECT:
                raise RtmpError("connect twice")
            obj = args[0] if args and isinstance(args[0], dict) else {}
            app = obj.get("app")
            tc_url = obj.get("tcUrl")
            self.app = app if isinstance(app, str) else ""
            self.state = State.CONNECTED
            self._send_message(2, WINDOW_ACK_SIZE_TYPE, 0, WINDOW_ACK_SIZE.to_bytes(4, "big"))
            self._send_message(2, SET_PEER_BANDWIDTH, 0, WINDOW_ACK_SIZE.to_bytes(4, "big") + b"\x02")
            self._send_message(2, SET_CHUNK_SIZE, 0, SERVER_CHUNK_SIZE.to_bytes(4, "big"))
            self._out_chunk_size = SERVER_CHUNK_SIZE
            self._invoke(3, 0, "_result", txn, {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},
                         {"level": "status", "code": "NetConnection.Connect.Success",
                          "description": "Connection succeeded.", "objectEncoding": 0.0})
            events.append(Connected(self.app, tc_url if isinstance(tc_url, str) else ""))
            return
        if self.state is State.WAIT_CONNECT:
            raise RtmpError(f"{name} before connect")
        if name == "createStream":
            self._invoke(3, 0, "_result", txn, None, float(PUBLISH_STREAM_ID))
        elif name in ("releaseStream", "FCPublish"):
            self._invoke(3, 0, "_result", txn, None, Undefined.UNDEFINED)
        elif name == "publish":
            key = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
            if self.state is not State.CONNECTED:
                raise RtmpError("publish twice on one connection")
            self.state = State.PUBLISH_ASKED
            self._publish_stream_id = stream_id
            events.append(PublishRequested(key, stream_id))
        elif name in ("FCUnpublish", "deleteStream", "closeStream"):
            if self.state in (State.PUBLISH_ASKED, State.PUBLISHING):
                self.state = State.CONNECTED
                events.append(PublishStopped(self._publish_stream_id))
        elif txn:
            self._invoke(3, 0, "_error", txn, None,
                         {"level": "error", "code": "NetConnection.Call.Failed",
                          "description": f"{name} is not supported"})

    # -- sending --

    def _on_status(self, stream_id: int, level: str, code: str, description: str) -> None:
        self._invoke(5, stream_id, "onStatus", 0.0, None, {"level": level, "code": code, "description": description})

    def _invoke(self, csid: int, stream_id: int, *values: AmfValue) -> None:
        self._send_message(csid, COMMAND_AMF0, stream_id, b"".join(encode_amf0(v) for v in values))

    def _send_message(self, csid: int, type_id: int, stream_id: int, payload: bytes) -> None:
        size = self._out_chunk_size
        header = bytes([csid]) + b"\x00\x00\x00" + len(payload).to_bytes(3, "big") + bytes([type_id])
        header += stream_id.to_bytes(4, "little")
        self._out += header + payload[:size]
        for start in range(size, len(payload), size):
            self._out += bytes([0xC0 | csid]) + payload[start:start + size]
