"""A hostile RTMP peer for tests and benchmarks: a raw socket that sends the chunks it is given.

No RTMP library on this side: the handshake, the chunk headers and the AMF0 bodies are written
here byte by byte, so that a test can send what no encoder would (1 MiB command names, a 4 MiB
tag of 1-byte NAL units, an AMF0 array of millions of nulls) and choose whether it reads what the
server answers. Sending waits for the socket (`loop.sock_sendall`): the peer itself buffers
nothing, so its memory stays flat however much the server refuses to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct

from streamsnap.protocol.rtmp import (
    COMMAND_AMF0,
    HANDSHAKE_SIZE,
    RTMP_VERSION,
    SET_CHUNK_SIZE,
    VIDEO,
    AmfValue,
    encode_amf0,
)

# An SPS and a PPS of a 320x240 Baseline stream (what the sequence header carries).
SPS = b"\x67\x42\xc0\x1e\xda\x02\x80\xbf\xe5\x84\x00\x00\x03\x00\x04"
PPS = b"\x68\xce\x3c\x80"


def chunks(csid: int, type_id: int, stream_id: int, payload: bytes, chunk_size: int = 128,
           timestamp: int = 0) -> bytes:
    """One message as a client writes it: a type-0 chunk, then type-3 continuations."""
    head = bytes([csid]) + min(timestamp, 0xFFFFFF).to_bytes(3, "big") + len(payload).to_bytes(3, "big")
    head += bytes([type_id]) + stream_id.to_bytes(4, "little")
    parts = [head, payload[:chunk_size]]
    for start in range(chunk_size, len(payload), chunk_size):
        parts += [bytes([0xC0 | csid]), payload[start:start + chunk_size]]
    return b"".join(parts)


def command(*values: AmfValue, stream_id: int = 0, chunk_size: int = 128) -> bytes:
    """An AMF0 command message (name, transaction id, arguments)."""
    return chunks(3, COMMAND_AMF0, stream_id, b"".join(encode_amf0(v) for v in values), chunk_size)


def raw_command(body: bytes, chunk_size: int = 128) -> bytes:
    """A command message whose AMF0 body is written by the caller."""
    return chunks(3, COMMAND_AMF0, 0, body, chunk_size)


def set_chunk_size(size: int) -> bytes:
    return chunks(2, SET_CHUNK_SIZE, 0, size.to_bytes(4, "big"))


def connect(app: str = "live", chunk_size: int = 128) -> bytes:
    return command("connect", 1.0, {"app": app, "tcUrl": f"rtmp://127.0.0.1/{app}", "type": "nonprivate"},
                   chunk_size=chunk_size)


def publish(key: str, chunk_size: int = 128) -> bytes:
    """`createStream` then `publish` of `key` (as ffmpeg sends them, with its stream id 1)."""
    return (command("createStream", 2.0, None, chunk_size=chunk_size)
            + command("publish", 3.0, None, key, "live", stream_id=1, chunk_size=chunk_size))


def unknown_command(name_bytes: int, txn: float = 9.0, chunk_size: int = 128) -> bytes:
    """A command nobody knows, with a name of `name_bytes` (a long string past 64 KiB) and a transaction
    id: a server that answers unknown commands with their name would echo it."""
    return command("x" * name_bytes, txn, None, chunk_size=chunk_size)


def null_array_command(count: int, chunk_size: int = 128) -> bytes:
    """`connect` whose argument is an AMF0 strict array of `count` nulls (one byte each)."""
    body = encode_amf0("connect") + encode_amf0(1.0) + b"\x0a" + count.to_bytes(4, "big") + b"\x05" * count
    return raw_command(body, chunk_size)


def sequence_header(chunk_size: int = 128) -> bytes:
    """The FLV AVC sequence header (avcC with 4-byte NAL lengths) on the publish stream."""
    record = (b"\x01\x42\xc0\x1e\xff\xe1" + len(SPS).to_bytes(2, "big") + SPS + b"\x01"
              + len(PPS).to_bytes(2, "big") + PPS)
    return chunks(6, VIDEO, 1, b"\x17\x00\x00\x00\x00" + record, chunk_size)


def video_tag(units: list[bytes] | bytes, keyframe: bool = True, timestamp: int = 0,
              chunk_size: int = 128) -> bytes:
    """An FLV AVC NALU tag: `units` each after its 4-byte length (or `units` as the AVCC body already)."""
    body = units if isinstance(units, bytes) else b"".join(struct.pack(">I", len(u)) + u for u in units)
    head = (b"\x17" if keyframe else b"\x27") + b"\x01\x00\x00\x00"
    return chunks(6, VIDEO, 1, head + body, chunk_size, timestamp)


def one_byte_nal_units(total_bytes: int) -> bytes:
    """An AVCC body of `total_bytes` (rounded down) made of 1-byte NAL units (a non-IDR slice header byte)."""
    return b"\x00\x00\x00\x01\x41" * (total_bytes // 5)


class HostilePeer:
    """One raw TCP connection to an RTMP port."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.loop = asyncio.get_running_loop()
        self.sent = 0

    @classmethod
    async def open(cls, port: int, *, host: str = "127.0.0.1", source: str | None = None,
                   receive_buffer: int | None = None) -> HostilePeer:
        """Connect to `host`:`port`, from the loopback address `source` when given (each attacker its own)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if receive_buffer is not None:  # a small window: a peer that does not read is seen as such sooner
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        if source is not None:
            sock.bind((source, 0))
        try:
            await asyncio.get_running_loop().sock_connect(sock, (host, port))
        except BaseException:
            sock.close()
            raise
        return cls(sock)

    async def send(self, data: bytes, timeout: float = 10.0) -> None:
        """Send all of `data`; raises `ConnectionError` when the server closed, `TimeoutError` when it stops
        reading."""
        await asyncio.wait_for(self.loop.sock_sendall(self.sock, data), timeout)
        self.sent += len(data)

    async def handshake(self, *, read: bool = True) -> None:
        """C0 C1, then C2; with `read`, S0 S1 S2 are read first (as a client does), else never."""
        await self.send(bytes([RTMP_VERSION]) + bytes(HANDSHAKE_SIZE))
        if read:
            await self.read_exactly(1 + 2 * HANDSHAKE_SIZE)
        await self.send(bytes(HANDSHAKE_SIZE))

    async def read_exactly(self, count: int, timeout: float = 5.0) -> bytes:
        data = b""
        async with asyncio.timeout(timeout):
            while len(data) < count:
                chunk = await self.loop.sock_recv(self.sock, count - len(data))
                if not chunk:
                    raise ConnectionError("closed by the server")
                data += chunk
        return data

    async def read_all(self, timeout: float) -> tuple[bytes, bool]:
        """What the server sends within `timeout` s, and whether it closed the connection meanwhile."""
        data = bytearray()
        try:
            async with asyncio.timeout(timeout):
                while chunk := await self.loop.sock_recv(self.sock, 65536):
                    data += chunk
            return bytes(data), True
        except TimeoutError:
            return bytes(data), False
        except ConnectionError:
            return bytes(data), True

    async def closed_by_server(self, timeout: float) -> bool:
        """Whether the server closes the connection within `timeout` s (whatever it sends is discarded)."""
        return (await self.read_all(timeout))[1]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
