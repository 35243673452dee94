"""The RTMP shell's back-pressure and stepping, against a transport whose peer never reads (issue 22, item 4).

The socket-level behaviour is in `tests/integration/test_rtmp_hostile.py`; here a fake transport keeps
everything written (as asyncio's does once the kernel's buffer is full), so that what the shell does
at each bound is seen exactly: reading stops past a quarter of `max_write_buffer_bytes`, parsing waits
with it, and a transport that never tells it to pause is closed past the whole of it.
"""

from __future__ import annotations

import asyncio
import logging
import types
from typing import Any

import pytest

from streamsnap.config import Settings
from streamsnap.protocol.rtmp import HANDSHAKE_SIZE
from streamsnap.server.rtmp import RtmpPublisher, RtmpServer
from tests.harness.rtmp_peer import command, connect, set_chunk_size

pytestmark = pytest.mark.unit

LIMIT = 16384


class NeverRead(asyncio.Transport):
    """What is written stays buffered; `pause_writing` is signalled past the high-water mark unless `silent`."""

    def __init__(self, protocol: RtmpPublisher, *, silent: bool = False) -> None:
        super().__init__()
        self.protocol = protocol
        self.silent = silent
        self.buffered = 0
        self.high = self.low = 0
        self.reading = True
        self.writing_paused = False
        self.closed = self.closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.9", 50000) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high, self.low = high or 0, low or 0

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.buffered += len(data)
        if not self.silent and not self.writing_paused and self.buffered > self.high:
            self.writing_paused = True
            self.protocol.pause_writing()

    def read_everything(self) -> None:
        """The peer reads at last."""
        self.buffered = 0
        if self.writing_paused:
            self.writing_paused = False
            self.protocol.resume_writing()

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def is_closing(self) -> bool:
        return self.closed or self.closing

    def close(self) -> None:
        """Closed once what is buffered is sent: never, to a peer that does not read."""
        self.closing = True
        self.closed = not self.buffered

    def abort(self) -> None:
        self.closed = True


def publisher(**settings: Any) -> tuple[RtmpPublisher, RtmpServer]:
    node = types.SimpleNamespace(settings=Settings().replace(**settings))
    server = RtmpServer(node)  # type: ignore[arg-type]  # nothing here reaches a publish
    return RtmpPublisher(server), server


def opening() -> bytes:
    return (b"\x03" + bytes(HANDSHAKE_SIZE) + bytes(HANDSHAKE_SIZE) + set_chunk_size(65536)
            + connect(chunk_size=65536))


def unknown_commands(count: int) -> bytes:
    """`count` unknown commands with a transaction id (each answered), a one-byte header after the first."""
    first = command("x" * 64, 9.0, None, chunk_size=65536)
    return first + (bytes([0xC3]) + first[12:]) * (count - 1)


async def turns(count: int = 50) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def test_a_peer_that_does_not_read_is_not_read_from_until_it_does() -> None:
    # 64 KiB: a quarter of it, plus one step's answers (128 of ~180 bytes), stays under it.
    limit = 65536
    protocol, server = publisher(rtmp_max_write_buffer_bytes=limit, rtmp_max_bytes_before_publish=1 << 24)
    transport = NeverRead(protocol)
    protocol.connection_made(transport)
    assert (transport.high, transport.low) == (limit // 4, limit // 16)
    protocol.data_received(opening() + unknown_commands(2000))
    await turns()
    # Paused past the high-water mark; parsing waits too: what is queued stays under the limit.
    assert transport.writing_paused and not transport.reading and not transport.closed
    assert transport.buffered <= limit
    queued, parsed = transport.buffered, protocol.connection.bytes_received
    await turns()
    assert transport.buffered == queued and protocol.connection.backlog
    assert protocol.connection.bytes_received == parsed
    # It reads: the rest is parsed, a step per turn of the loop, and answered.
    for _ in range(100):
        transport.read_everything()
        await turns(3)
        if transport.reading:
            break
    assert transport.reading and not protocol.connection.backlog and not transport.closed
    protocol.connection_lost(None)
    assert server.guard.open == {}


async def test_past_max_write_buffer_bytes_the_connection_is_closed(caplog: pytest.LogCaptureFixture) -> None:
    # A transport that never signals pause_writing, or a step whose answers overflow the smallest limit
    # allowed all at once (a quarter of 16 KiB, then 128 answers of ~180 bytes).
    protocol, _ = publisher(rtmp_max_write_buffer_bytes=LIMIT, rtmp_max_bytes_before_publish=1 << 24)
    transport = NeverRead(protocol, silent=True)
    protocol.connection_made(transport)
    with caplog.at_level(logging.INFO, logger="streamsnap.server.rtmp"):
        protocol.data_received(opening() + unknown_commands(2000))
        await turns()
    assert transport.closed
    assert "bytes unsent, over rtmp.max_write_buffer_bytes (16384): it does not read" in caplog.text
    protocol.connection_lost(None)


async def test_a_backlog_is_parsed_a_step_per_turn_of_the_loop_without_reading_more() -> None:
    protocol, _ = publisher(rtmp_max_bytes_before_publish=1 << 24)
    transport = NeverRead(protocol)
    protocol.connection_made(transport)
    protocol.data_received(opening() + unknown_commands(1000))
    assert not transport.reading and protocol.connection.backlog  # one step done, reading paused
    steps = 0
    while protocol.connection.backlog:
        transport.read_everything()
        await asyncio.sleep(0)
        steps += 1
    assert steps >= 1000 // 128 and transport.reading
    protocol.connection_lost(None)


async def test_the_idle_clock_does_not_run_while_the_server_does_not_read() -> None:
    protocol, _ = publisher(rtmp_max_bytes_before_publish=1 << 24)
    transport = NeverRead(protocol)
    protocol.connection_made(transport)
    protocol.data_received(opening())
    protocol._last_data -= 1000  # long silent, but while reading was paused for a publish being decided
    protocol._hold("publish")
    protocol._release("publish")
    protocol._check()
    assert not transport.closed
    protocol.connection_lost(None)


async def test_a_close_that_cannot_flush_to_a_peer_that_does_not_read_is_ended_by_the_idle_check(
        caplog: pytest.LogCaptureFixture) -> None:
    # A refused publish (or the node stopping) closes gracefully, after what is queued is sent: to a peer
    # that reads nothing that would never happen, and the connection would hold its place for ever.
    protocol, server = publisher(rtmp_max_write_buffer_bytes=65536, rtmp_max_bytes_before_publish=1 << 24,
                                 rtmp_idle_timeout=5.0)
    transport = NeverRead(protocol)
    protocol.connection_made(transport)
    protocol.data_received(opening() + unknown_commands(2000))
    await turns()
    assert transport.writing_paused
    protocol.close()
    assert transport.closing and not transport.closed
    protocol._write_paused_at = asyncio.get_running_loop().time() - 6.0
    with caplog.at_level(logging.INFO, logger="streamsnap.server.rtmp"):
        protocol._check()
    assert transport.closed
    assert "it read nothing it was sent for 5 s (rtmp.idle_timeout)" in caplog.text
    protocol.connection_lost(None)
    assert server.guard.open == {} and not server.connections
