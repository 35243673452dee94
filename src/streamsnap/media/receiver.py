"""A lean receive path for video: what a snapshot server needs of each RTP packet, and no more.

aiortc's `RTCRtpReceiver._handle_rtp_packet` runs, per packet, a receive-side bandwidth
estimator, a wall-clock timestamp for its source list, and a jitter buffer that scans its
packets and releases a frame only when the next frame's first packet arrives. A stream
nobody looks at needs none of that. `VideoReceivePath` takes the handler's place on one
video receiver and keeps only: RTCP statistics (aiortc's own receiver-report loop reads
them), RTX unwrapping and NACKs (so losses are repaired), and frame assembly that completes
a frame on its marker bit. Instead of estimating bandwidth per packet it tells the
publisher, once a second (REMB), that it may send up to `max_bitrate`.

The private aiortc names this takes over or reads (the receiver's name-mangled state, its
RTCP senders, and aiortc's RTP helpers) are spelled only in `aiortc_private`, whose contract
test fails loudly, naming the name, when an aiortc upgrade changes one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from streamsnap.media.aiortc_private import (
    RTCP_PSFB_APP,
    NackGenerator,
    RtcpPsfbPacket,
    RtpPacket,
    StreamStatistics,
    depayload,
    is_rtx,
    pack_remb_fci,
    receiver_codecs,
    receiver_remote_streams,
    receiver_rtcp_ssrc,
    receiver_rtx_ssrc,
    replace_rtp_handler,
    send_rtcp,
    send_rtcp_nack,
    send_rtcp_pli,
    unwrap_rtx,
)

logger = logging.getLogger(__name__)

REMB_INTERVAL = 1.0
MAX_WAIT_FRAMES = 4
MAX_PACKETS_PER_FRAME = 4096
"Packets one frame being assembled may hold (a 4 MiB keyframe in 1200-byte packets is about 3500)."
MAX_PENDING_BYTES = 4 * 1024 * 1024
"Payload bytes the frames being assembled may hold together."
MAX_SOURCES = 8
"RTP sources (SSRCs, RTX included) one receiver takes packets from."
MAX_NACK_JUMP = 512
"A sequence number further ahead than this is a new start, not a loss to NACK packet by packet."


def _newer(a: int, b: int) -> bool:
    """Whether RTP timestamp `a` is later than `b` (modulo 2**32)."""
    return a != b and (a - b) & 0xFFFFFFFF < 0x80000000


def starts_frame(codec: str, payload: bytes) -> bool:
    """Whether this RTP payload is the first packet of a frame (read from its payload header only)."""
    if not payload:
        return False
    if codec == "VP8":
        # RFC 7741: S bit set and partition index 0.
        return payload[0] & 0x10 != 0 and payload[0] & 0x07 == 0
    if codec == "H264":
        nal_type = payload[0] & 0x1F
        if nal_type == 28:  # FU-A: its start bit
            return len(payload) > 1 and payload[1] & 0x80 != 0
        return 1 <= nal_type <= 24  # a single NAL unit, or STAP-A
    return False


@dataclass
class _PendingFrame:
    payloads: dict[int, bytes] = field(default_factory=dict)
    flagged_first: int | None = None
    "Earliest packet whose payload header says it starts a frame."
    last: int | None = None
    "The packet with the marker bit."

    @property
    def size(self) -> int:
        """Payload bytes held."""
        return sum(len(payload) for payload in self.payloads.values())

    def complete(self, expected_first: int | None) -> list[bytes] | None:
        first = self.flagged_first if expected_first is None else expected_first
        if first is None or self.last is None or first not in self.payloads:
            return None
        count = ((self.last - first) & 0xFFFF) + 1
        if len(self.payloads) < count:
            return None
        try:
            return [self.payloads[(first + i) & 0xFFFF] for i in range(count)]
        except KeyError:
            return None


class FrameAssembler:
    """Puts RTP payloads back together into frames, released in order as soon as each is whole.

    In sync, a frame starts at the packet after the previous frame's last one and ends at
    its marker bit; packets may come in any order and twice. To get in sync (at the start,
    and after giving up on a frame) the first packet is told by the codec's payload header.
    A frame still incomplete while `MAX_WAIT_FRAMES` newer ones are waiting is given up
    (NACKed retransmissions had their chance) and counted in `gaps`: the frames after it
    cannot be decoded from the group it belonged to.

    What waits is bounded, whatever a publisher sends: a frame over `max_packets` packets is
    given up (and further packets of it dropped), and when the waiting frames hold more than
    `max_pending_bytes` the largest is given up, until they fit. Frames that never get their
    marker bit cost no more than that.
    """

    def __init__(self, codec: str, *, max_packets: int = MAX_PACKETS_PER_FRAME,
                 max_pending_bytes: int = MAX_PENDING_BYTES) -> None:
        self.codec = codec
        self.max_packets = max_packets
        self.max_pending_bytes = max_pending_bytes
        self._pending: dict[int, _PendingFrame] = {}
        self._last_emitted: int | None = None
        self._next_first: int | None = None
        self._refused: dict[int, None] = {}
        "Timestamps of frames given up for their size (newest last), whose late packets are dropped."
        self.gaps = 0
        "Frames given up for lost (or for their size)."
        self.pending_bytes = 0
        "Payload bytes held by frames not complete yet."
        self.oversized = 0
        "Frames given up for their packets or bytes."

    def add(self, sequence: int, timestamp: int, marker: bool, payload: bytes) -> list[tuple[int, list[bytes]]]:
        """Add one packet; return the frames (timestamp, payloads in order) it made whole, oldest first."""
        if self._last_emitted is not None and not _newer(timestamp, self._last_emitted):
            return []  # a late or repeated packet of a frame already handed on
        if timestamp in self._refused:
            return []
        frame = self._pending.get(timestamp)
        if frame is None:
            frame = self._pending[timestamp] = _PendingFrame()
        replaced = frame.payloads.get(sequence)
        frame.payloads[sequence] = payload
        self.pending_bytes += len(payload) - (len(replaced) if replaced is not None else 0)
        if len(frame.payloads) > self.max_packets:
            self._give_up(timestamp)
        while self.pending_bytes > self.max_pending_bytes and self._pending:
            self._give_up(max(self._pending, key=lambda ts: self._pending[ts].size))
        if timestamp not in self._pending:
            return self._release(timestamp)
        # H.264 marks every NAL unit's first packet alike: the frame starts at the earliest.
        if starts_frame(self.codec, payload) and (
            frame.flagged_first is None or (frame.flagged_first - sequence) & 0xFFFF < 0x8000
        ):
            frame.flagged_first = sequence
        if marker:
            frame.last = sequence
        return self._release(timestamp)

    def _release(self, reference: int) -> list[tuple[int, list[bytes]]]:
        released: list[tuple[int, list[bytes]]] = []
        origin = self._last_emitted if self._last_emitted is not None else (reference - 0x40000000) & 0xFFFFFFFF
        while self._pending:
            oldest = min(self._pending, key=lambda ts: (ts - origin) & 0xFFFFFFFF)
            frame = self._pending[oldest]
            payloads = frame.complete(self._next_first)
            if payloads is None:
                if len(self._pending) <= MAX_WAIT_FRAMES:
                    break
                self.gaps += 1
                if self._next_first is not None:
                    self._next_first = None  # packets before it are lost: sync on its payload headers
                else:
                    self._drop(oldest)  # it is itself incomplete: give it up
                continue
            self._drop(oldest)
            assert frame.last is not None
            self._next_first = (frame.last + 1) & 0xFFFF
            self._last_emitted = origin = oldest
            released.append((oldest, payloads))
        return released

    def _drop(self, timestamp: int) -> None:
        frame = self._pending.pop(timestamp)
        self.pending_bytes -= frame.size

    def _give_up(self, timestamp: int) -> None:
        """Give up a frame too large to be one: it is lost, and so is the sync on the frame before it."""
        self._drop(timestamp)
        self.gaps += 1
        self.oversized += 1
        self._next_first = None
        self._refused[timestamp] = None
        if len(self._refused) > 2 * MAX_WAIT_FRAMES:
            del self._refused[next(iter(self._refused))]


class VideoReceivePath:
    """Handles the RTP packets of one aiortc video receiver in its place."""

    def __init__(self, receiver: Any, on_frame: Callable[[str, bytes, int], None],
                 on_gap: Callable[[], None], max_bitrate: int, *, max_packets_per_frame: int = MAX_PACKETS_PER_FRAME,
                 max_pending_bytes: int = MAX_PENDING_BYTES, max_sources: int = MAX_SOURCES) -> None:
        self._receiver = receiver
        self._max_packets_per_frame = max_packets_per_frame
        self._max_pending_bytes = max_pending_bytes
        self._max_sources = max_sources
        self._sources: set[int] = set()
        self._nack_seq: int | None = None
        self._on_frame = on_frame
        self._on_gap = on_gap
        self._max_bitrate = max_bitrate
        # The same dict objects aiortc fills in `receive()` and reads in its RTCP loop.
        self._codecs = receiver_codecs(receiver)
        self._rtx_ssrc = receiver_rtx_ssrc(receiver)
        self._statistics = receiver_remote_streams(receiver)
        self._nack = NackGenerator()
        self._assemblers: dict[str, FrameAssembler] = {}
        self._media_ssrcs: set[int] = set()
        self._remb_task: asyncio.Task[None] | None = None
        self.packets = 0
        "RTP packets handled."
        self.gaps = 0
        "Frames given up (lost for good, or undecodable), each also reported through `on_gap`."
        self.dropped = 0
        "Packets dropped for coming from a source over `max_sources`."
        replace_rtp_handler(receiver, self.handle)  # the DTLS transport calls this per packet

    async def handle(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """One RTP packet from the DTLS transport."""
        self.packets += 1
        codec = self._codecs.get(packet.payload_type)
        if codec is None:
            return
        if packet.ssrc not in self._sources:
            if len(self._sources) >= self._max_sources:
                self.dropped += 1  # each source costs statistics, NACK and REMB state: a few are plenty
                return
            self._sources.add(packet.ssrc)
        statistics = self._statistics.get(packet.ssrc)
        if statistics is None:
            statistics = self._statistics[packet.ssrc] = StreamStatistics(codec.clockRate)
        statistics.add(packet)
        if is_rtx(codec):
            original = self._rtx_ssrc.get(packet.ssrc)
            apt = codec.parameters.get("apt")
            if original is None or len(packet.payload) < 2 or apt not in self._codecs:
                return
            packet = unwrap_rtx(packet, payload_type=apt, ssrc=original)
            codec = self._codecs[apt]
        if packet.ssrc not in self._media_ssrcs:
            self._media_ssrcs.add(packet.ssrc)
            if self._remb_task is None:
                self._remb_task = asyncio.ensure_future(self._send_remb())
        previous, self._nack_seq = self._nack_seq, packet.sequence_number
        if previous is not None and MAX_NACK_JUMP < (packet.sequence_number - previous) & 0xFFFF < 0x8000:
            # aiortc's generator walks every sequence number skipped: a jump is a restart, not 30 000 losses.
            self._nack = NackGenerator()
        if self._nack.add(packet):
            await send_rtcp_nack(self._receiver, packet.ssrc, sorted(self._nack.missing))
        if not packet.payload:
            return  # padding
        assembler = self._assemblers.get(codec.name)
        if assembler is None:
            assembler = self._assemblers[codec.name] = FrameAssembler(
                codec.name, max_packets=self._max_packets_per_frame, max_pending_bytes=self._max_pending_bytes)
        gaps = assembler.gaps
        frames = assembler.add(packet.sequence_number, packet.timestamp, bool(packet.marker), packet.payload)
        if assembler.gaps != gaps:
            self.gaps += assembler.gaps - gaps
            self._on_gap()
        for timestamp, payloads in frames:
            try:
                data = b"".join(depayload(codec, payload) for payload in payloads)
            except ValueError as exc:
                logger.debug("undecodable %s payload: %s", codec.name, exc)
                self.gaps += 1
                self._on_gap()
                continue
            self._on_frame(codec.name, data, timestamp)

    @property
    def pending_bytes(self) -> int:
        """Payload bytes held by frames being assembled."""
        return sum(assembler.pending_bytes for assembler in self._assemblers.values())

    @property
    def oversized(self) -> int:
        """Frames given up for their packets or bytes."""
        return sum(assembler.oversized for assembler in self._assemblers.values())

    async def request_keyframe(self) -> bool:
        """Send a PLI for every media source seen; False when none has been seen yet."""
        for ssrc in self._media_ssrcs:
            await send_rtcp_pli(self._receiver, ssrc)
        return bool(self._media_ssrcs)

    def close(self) -> None:
        """Stop the REMB task."""
        if self._remb_task is not None:
            self._remb_task.cancel()

    async def _send_remb(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            while True:
                rtcp_ssrc = receiver_rtcp_ssrc(self._receiver)
                if rtcp_ssrc is not None:
                    remb = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0,
                                          fci=pack_remb_fci(self._max_bitrate, sorted(self._media_ssrcs)))
                    await send_rtcp(self._receiver, remb)
                await asyncio.sleep(REMB_INTERVAL)
