"""RTMP publishing, sans I/O: the handshake, chunk streams, commands and media messages.

`RtmpConnection.receive_data(bytes)` returns events (`PublishRequested`, `VideoData`, …) and
queues the server's answers for `data_to_send()`; the shell decides whether a publish goes
ahead (`accept_publish` / `refuse_publish`). No sockets, no clock. Only what encoders that
push (ffmpeg, OBS) send is understood; anything outside the limits or the grammar raises
`RtmpError`, and the shell closes the connection. Command bodies are AMF0 (`amf0.py`).

Work is bounded before it is done. A message's length is checked against the limits when its
first chunk header announces it, before any of it is kept: commands are small always, and so
is every message before a publish is accepted (nothing else is expected then); the bytes a
peer sends before `publish` are counted. Parsing stops at `publish` until the shell answers it,
so nothing more of an unauthorized peer is read. `receive_data(..., max_work=N)` parses a
bounded step and keeps the rest (`backlog`), for a shell that must not hold its event loop;
the answers a peer can make the server write are short (no string of the peer's is echoed
longer than `MAX_ECHO_CHARS`), and the shell bounds what is queued for a peer that does not read.

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
MIN_CHUNK_SIZE = 128
"""Smallest chunk size a peer may set. The spec allows 1, but every chunk costs a header's parsing:
encoders use 128 (the default) or more, and SRS refuses less, as here."""
MAX_ECHO_CHARS = 64
"Characters of a peer's string (an unknown command's name) an answer repeats at most."
WORK_BYTES = 512
"""A completed message counts one unit of work per this many bytes (see `receive_data`): decoding
a command or converting a video frame costs about as much per byte as parsing a chunk header."""
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
    @property
    def max_command_bytes(self) -> int:
        """Largest command message, and largest message of any kind before publishing."""
    @property
    def max_bytes_before_publish(self) -> int:
        """Bytes the peer may send before its first `publish` (the handshake included)."""


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
    _parsed: int = 0
    "Bytes parsed (handshake and chunks), counted until the first `publish`."
    _publish_asked_once: bool = False
    _backlog: bool = False

    @property
    def backlog(self) -> bool:
        """Whether the last `receive_data` stopped at its `max_work` with bytes left to parse
        (call `receive_data(b"")` to go on)."""
        return self._backlog

    def data_to_send(self) -> bytes:
        """Bytes the server must send now (then forgotten)."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes, *, max_work: int | None = None) -> list[Event]:
        """Take bytes from the peer; return what happened. Raises `RtmpError` (then the connection is done).

        With `max_work`, parsing stops once that much work is done (a chunk is one unit, a completed
        message one more per `WORK_BYTES` of it); the rest stays buffered and `backlog` says so.
        Parsing also stops at a `publish` until `accept_publish` (then call `receive_data(b"")`).
        """
        if self.state is State.CLOSED:
            return []
        self._buffer += data
        self.bytes_received += len(data)
        events: list[Event] = []
        try:
            self._advance(events, max_work)
        except RtmpError:
            self.state = State.CLOSED
            self._buffer.clear()
            raise
        if self._peer_window and self.bytes_received - self._last_ack >= self._peer_window:
            self._last_ack = self.bytes_received
            self._send_message(2, ACKNOWLEDGEMENT, 0, (self.bytes_received & 0xFFFFFFFF).to_bytes(4, "big"))
        return events

    def accept_publish(self, stream_id: int, description: str) -> None:
        """Tell the peer its publish started (it sends media after this; parse it with `receive_data`)."""
        if self.state is not State.PUBLISH_ASKED:
            return
        self.state = State.PUBLISHING
        self._on_status(stream_id, "status", "NetStream.Publish.Start", description)

    def refuse_publish(self, stream_id: int, code: str, description: str) -> None:
        """Tell the peer its publish is refused (`code` e.g. NetStream.Publish.BadName); then close."""
        self._on_status(stream_id, "error", code, description)
        self.state = State.CLOSED

    # -- parsing --

    def _advance(self, events: list[Event], max_work: int | None) -> None:
        self._backlog = False
        work = 0
        while self.state is not State.CLOSED and self.state is not State.PUBLISH_ASKED:
            if max_work is not None and work >= max_work:
                self._backlog = bool(self._buffer)
                return
            if self.state is State.WAIT_C0C1:
                if not self._handshake_c0c1():
                    return
                self._count_parsed(1 + HANDSHAKE_SIZE)
                work += 1
            elif self.state is State.WAIT_C2:
                if len(self._buffer) < HANDSHAKE_SIZE:
                    return
                del self._buffer[:HANDSHAKE_SIZE]  # C2 echoes S1; its content does not matter to a server
                self._count_parsed(HANDSHAKE_SIZE)
                self.state = State.WAIT_CONNECT
                work += 1
            else:
                done = self._chunk(events)
                if not done:
                    return
                work += done

    def _count_parsed(self, count: int) -> None:
        if self._publish_asked_once:
            return
        self._parsed += count
        if self._parsed > self.limits.max_bytes_before_publish:
            raise RtmpError(f"{self._parsed} bytes before publish, over rtmp.max_bytes_before_publish "
                            f"({self.limits.max_bytes_before_publish})")

    def _check_length(self, type_id: int, length: int) -> None:
        """Refuse a message by the length its header announces, before any of it is kept."""
        limits = self.limits
        if length > limits.max_message_bytes:
            raise RtmpError(f"message of {length} bytes over rtmp.max_message_bytes ({limits.max_message_bytes})")
        if length <= limits.max_command_bytes:
            return
        if type_id in (COMMAND_AMF0, COMMAND_AMF3):
            raise RtmpError(f"command of {length} bytes over rtmp.max_command_bytes ({limits.max_command_bytes})")
        if self.state is not State.PUBLISHING:
            raise RtmpError(f"message of {length} bytes before publishing, over rtmp.max_command_bytes "
                            f"({limits.max_command_bytes})")

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

    def _chunk(self, events: list[Event]) -> int:
        """Parse one whole chunk from the buffer; the work it took (at least 1; 0: not all of it is here yet)."""
        buf = self._buffer
        if not buf:
            return 0
        fmt, csid, pos = buf[0] >> 6, buf[0] & 0x3F, 1
        if csid == 0:
            if len(buf) < 2:
                return 0
            csid, pos = 64 + buf[1], 2
        elif csid == 1:
            if len(buf) < 3:
                return 0
            csid, pos = 64 + buf[1] + buf[2] * 256, 3
        header_size = (11, 7, 3, 0)[fmt]
        if len(buf) < pos + header_size:
            return 0
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
                return 0
            ts_field = int.from_bytes(buf[pos:pos + 4], "big")
            pos += 4
        length = int.from_bytes(header[3:6], "big") if fmt < 2 else stream.length
        if new_message:  # a type-3 header starts a message too: its inherited length is checked as well
            self._check_length(header[6] if fmt < 2 else stream.type_id, length)
        piece = min(self._chunk_size, length - len(stream.payload))
        if len(buf) < pos + piece:
            return 0
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
        self._count_parsed(pos + piece)
        if self._partial_bytes > self.limits.max_message_bytes + self.limits.max_chunk_size:
            raise RtmpError("too many bytes in unfinished messages")
        if len(stream.payload) < stream.length:
            return 1
        payload = bytes(stream.payload)
        self._partial_bytes -= len(stream.payload)
        stream.payload = bytearray()
        self._message(stream.type_id, stream.stream_id, stream.timestamp, payload, events)
        return 1 + len(payload) // WORK_BYTES

    # -- messages --

    def _message(self, type_id: int, stream_id: int, timestamp: int, payload: bytes, events: list[Event]) -> None:
        if type_id == SET_CHUNK_SIZE:
            if len(payload) < 4:
                raise RtmpError("short Set Chunk Size")
            size = int.from_bytes(payload[:4], "big")
            if size < MIN_CHUNK_SIZE or size > self.limits.max_chunk_size:
                raise RtmpError(f"chunk size {size} refused ({MIN_CHUNK_SIZE} to rtmp.max_chunk_size, "
                                f"{self.limits.max_chunk_size})")
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
            raise RtmpError(f"{name[:MAX_ECHO_CHARS]!r} before connect")
        if name == "createStream":
            self._invoke(3, 0, "_result", txn, None, float(PUBLISH_STREAM_ID))
        elif name in ("releaseStream", "FCPublish"):
            self._invoke(3, 0, "_result", txn, None, Undefined.UNDEFINED)
        elif name == "publish":
            key = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
            if self.state is not State.CONNECTED:
                raise RtmpError("publish twice on one connection")
            self.state = State.PUBLISH_ASKED
            self._publish_asked_once = True
            self._publish_stream_id = stream_id
            events.append(PublishRequested(key, stream_id))
        elif name in ("FCUnpublish", "deleteStream", "closeStream"):
            if self.state in (State.PUBLISH_ASKED, State.PUBLISHING):
                self.state = State.CONNECTED
                events.append(PublishStopped(self._publish_stream_id))
        elif txn:  # answered short: the name is the peer's, and only its start is repeated
            shown = name[:MAX_ECHO_CHARS] + ("…" if len(name) > MAX_ECHO_CHARS else "")
            self._invoke(3, 0, "_error", txn, None,
                         {"level": "error", "code": "NetConnection.Call.Failed",
                          "description": f"{shown} is not supported"})

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
