"""A lean receive path for video: from the datagram to the complete frame, doing only what a snapshot server needs.

aiortc hands each received datagram through aioice's queue to a task of its DTLS transport,
which unprotects it, builds an `RtpPacket` with its header extensions, routes it, and calls
the receiver's `_handle_rtp_packet`; that one runs a receive-side bandwidth estimator, a
NACK generator and statistics object per packet, and a jitter buffer that releases a frame
only when the next one starts. A stream nobody looks at needs none of that.

`VideoReceivePath` takes one video receiver's packets instead. Once DTLS is connected it
sits in the ICE sockets' datagram callback itself: an SRTP datagram of a video payload type
(told by its first bytes, which SRTP leaves in the clear) is unprotected with the DTLS
transport's own SRTP session, its header read with `struct`, and its payload fed to the
frame assembler, all in the callback: no queue, no task, no per-packet object. The rest
(STUN, DTLS, SRTCP, audio) goes on to aioice and aiortc as before, and so do the packets that
arrive before the receiver knows its codecs; aiortc then calls the path's `handle` with them
(it replaces the receiver's `_handle_rtp_packet`), which does the same work on plain values.
Where the native module was built, the usual packet does not even reach Python: C code
(media/_fastrtp.c) does the same for it, and Python is called once per frame.

What it keeps per packet: counters and the highest sequence number per SSRC (aiortc's own
receiver-report loop reads them on its timer, from `ReceiveStatistics` objects that stand
where its statistics objects would), RTX unwrapping, loss detection that costs a comparison
until a sequence gap appears (then a NACK), and frame assembly that completes a frame on its
marker bit. Jitter is taken once per frame, from its first packet. Instead of estimating
bandwidth it tells the publisher, once a second (REMB), that it may send up to
`max_bitrate`; a PLI goes out when a snapshot needs a keyframe.

The private aiortc/aioice names this uses (the receiver's name-mangled state and RTCP
senders, the DTLS transport's SRTP session, the ICE sockets' protocols) are spelled only in
`aiortc_private`, whose contract test fails loudly, naming the name, when an upgrade changes one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import pylibsrtp

from streamsnap.media.aiortc_private import (
    RTCP_PSFB_APP,
    RtcpPsfbPacket,
    RtpPacket,
    intercept_datagrams,
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
    srtp_receive_session,
    srtp_unprotect_pointers,
)
from streamsnap.media.depayload import FrameDepayloader, as_is, frame_depayloader

try:
    from streamsnap.media import _fastrtp
except ImportError:  # not built (no C compiler where it was installed): the Python way only
    _fastrtp = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)


def _receive_path(asked: str | None) -> str:
    """The way packets are received: `native` (the usual packet in C, media/_fastrtp.c) when it was built, unless
    STREAMSNAP_RECEIVE_PATH says `python` (every packet in Python)."""
    built = "native" if _fastrtp is not None else "python"
    if asked in (None, "", built):
        return built
    if asked == "python":
        return "python"
    logger.warning("STREAMSNAP_RECEIVE_PATH=%s: %s; receiving the %s way", asked,
                   "not built" if asked == "native" else "not native or python", built)
    return built


RECEIVE_PATH = _receive_path(os.environ.get("STREAMSNAP_RECEIVE_PATH"))
"`native` or `python`, read once from the environment (tests set this constant)."

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
NACK_HISTORY = 128
"How far behind the highest sequence number a lost packet is still asked for (aiortc's RTP_HISTORY_SIZE)."

DatagramHandler = Callable[[bytes, Any], None]
"`datagram_received(data, addr)` of an asyncio DatagramProtocol."

_RTP_HEADER = struct.Struct("!BBHII")
"Version/padding/extension/CSRC count, marker/payload type, sequence number, timestamp, SSRC (RFC 3550 5.1)."


def _newer(a: int, b: int) -> bool:
    """Whether RTP timestamp `a` is later than `b` (modulo 2**32)."""
    return a != b and (a - b) & 0xFFFFFFFF < 0x80000000


def _sequence_after(a: int, b: int) -> bool:
    """Whether sequence number `a` comes after `b` (modulo 2**16, as aiortc's `uint16_gt`)."""
    return a != b and (a - b) & 0xFFFF < 0x8000


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

    The usual case, in sync and in order, takes a short way: while the only frame waiting gets
    its packets one after the other, each is appended without looking at the others; anything
    else (a packet out of order, twice, of another frame, over a bound) puts the frame with the
    others, and the rules above apply to it as they would have from its first packet.
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
        self._run: list[bytes] = []
        "Payloads of the frame taken the short way, in order (the only frame waiting, while it lasts)."
        self._run_timestamp = -1
        "Its RTP timestamp; -1: no frame is taken the short way."
        self._run_next = -1
        "The packet it takes next; -1: none."
        self._run_first = 0
        self._run_limit = min(max_packets, 0x8000)
        self.gaps = 0
        "Frames given up for lost (or for their size)."
        self.pending_bytes = 0
        "Payload bytes held by frames not complete yet."
        self.oversized = 0
        "Frames given up for their packets or bytes."

    def add(self, sequence: int, timestamp: int, marker: bool | int, payload: bytes) -> list[tuple[int, list[bytes]]]:
        """Add one packet; return the frames (timestamp, payloads in order) it made whole, oldest first."""
        if sequence == self._run_next and timestamp == self._run_timestamp:
            run = self._run
            pending = self.pending_bytes + len(payload)
            if pending <= self.max_pending_bytes and len(run) < self._run_limit:
                run.append(payload)
                if marker:  # whole, and it was the only frame waiting
                    self._run_next = self._run_timestamp = -1
                    self.pending_bytes = 0
                    self._next_first = (sequence + 1) & 0xFFFF
                    self._last_emitted = timestamp
                    return [(timestamp, run)]
                self.pending_bytes = pending
                self._run_next = (sequence + 1) & 0xFFFF
                return []
        if self._run_next >= 0:
            self._leave_run()
        elif (sequence == self._next_first and not self._pending and self._last_emitted is not None
              and _newer(timestamp, self._last_emitted) and timestamp not in self._refused
              and len(payload) <= self.max_pending_bytes and self._run_limit > 0):
            # In sync: the first packet of the next frame.
            if marker:
                self._next_first = (sequence + 1) & 0xFFFF
                self._last_emitted = timestamp
                return [(timestamp, [payload])]
            self._run = [payload]
            self._run_first = sequence
            self._run_timestamp = timestamp
            self._run_next = (sequence + 1) & 0xFFFF
            self.pending_bytes = len(payload)
            return []
        return self._add(sequence, timestamp, bool(marker), payload)

    def hand_over(self, expected: int) -> dict[str, Any] | None:
        """Move the short way's state out (to the native short way), if it is all there is and takes `expected` next.

        Until `take_back`, this assembler holds nothing and must not be fed. None (and nothing
        moved) when frames wait besides the one on the short way, or when it is out of sync.
        """
        if self._pending or self._next_first is None or self._last_emitted is None:
            return None
        if self._run_next >= 0:
            if self._run_next != expected:
                return None
            run: list[bytes] | None = self._run
        elif self._next_first == expected:
            run = None
        else:
            return None
        state = {"run": run, "run_timestamp": self._run_timestamp, "run_first": self._run_first,
                 "pending_bytes": self.pending_bytes, "max_pending_bytes": self.max_pending_bytes,
                 "run_limit": self._run_limit, "next_first": self._next_first, "last_emitted": self._last_emitted,
                 "refused": self._refused}
        self._run = []
        self._run_next = self._run_timestamp = -1
        self.pending_bytes = 0
        return state

    def take_back(self, state: dict[str, Any]) -> None:
        """The state `hand_over` moved out, as the native short way left it."""
        run = state["run"]
        if run is None:
            self._run, self._run_next, self._run_timestamp = [], -1, -1
        else:
            self._run, self._run_timestamp, self._run_first = run, state["run_timestamp"], state["run_first"]
            self._run_next = (self._run_first + len(run)) & 0xFFFF
        self.pending_bytes = state["pending_bytes"]
        self._next_first = state["next_first"]
        self._last_emitted = state["last_emitted"]

    def _leave_run(self) -> None:
        """The frame taken the short way becomes one like the others, as if its packets had come the long way."""
        first = self._run_first
        frame = _PendingFrame({(first + index) & 0xFFFF: payload for index, payload in enumerate(self._run)})
        for sequence, payload in frame.payloads.items():  # in order: the earliest that starts a frame
            if starts_frame(self.codec, payload):
                frame.flagged_first = sequence
                break
        self._pending[self._run_timestamp] = frame
        self._run_next = self._run_timestamp = -1

    def _add(self, sequence: int, timestamp: int, marker: bool, payload: bytes) -> list[tuple[int, list[bytes]]]:
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


class LossTracker:
    """The packets of one media SSRC that went missing, to NACK: aiortc's NackGenerator, as streamsnap used it.

    A packet that follows the highest one costs two comparisons (and, while losses are kept,
    a look at the oldest); the walk over a gap runs only when a gap appears. Lost packets are
    kept up to `NACK_HISTORY` behind the highest, oldest first, so that forgetting them is not
    a pass over all of them per packet. A jump of more than `MAX_NACK_JUMP` from the previous
    packet is a new start (a publisher that restarted its numbering), not tens of thousands of
    losses.
    """

    __slots__ = ("_order", "highest", "missing", "previous")

    def __init__(self) -> None:
        self.highest: int | None = None
        "Highest sequence number seen (modulo 2**16)."
        self.previous: int | None = None
        "Sequence number of the packet before."
        self.missing: set[int] = set()
        "Sequence numbers not received yet, within `NACK_HISTORY` of `highest`."
        self._order: deque[int] = deque()
        "The losses as they were found, oldest first (some may have arrived since: those are skipped)."

    def add(self, sequence: int) -> list[int] | None:
        """Note one packet; return every packet missing (to NACK) when this one revealed new losses."""
        previous, self.previous = self.previous, sequence
        highest = self.highest
        if previous == highest and highest is not None and sequence == (highest + 1) & 0xFFFF:
            self.highest = sequence
            if self.missing:
                self._forget_old(sequence)
            return None
        if previous is not None and MAX_NACK_JUMP < (sequence - previous) & 0xFFFF < 0x8000:
            highest = None
            self.missing.clear()
            self._order.clear()
        if highest is None:
            self.highest = sequence
            return None
        missed = False
        if _sequence_after(sequence, highest):
            lost = (highest + 1) & 0xFFFF
            while lost != sequence:
                self.missing.add(lost)
                self._order.append(lost)
                missed = True
                lost = (lost + 1) & 0xFFFF
            self.highest = highest = sequence
        else:
            self.missing.discard(sequence)
        if self.missing:
            self._forget_old(highest)
        return sorted(self.missing) if missed else None

    def expiry(self) -> int:
        """The packet whose arrival (as the highest) makes the oldest loss too old to ask for; -1 if none is kept."""
        for lost in self._order:
            if lost in self.missing:
                return (lost + NACK_HISTORY + 1) & 0xFFFF
        return -1

    def _forget_old(self, highest: int) -> None:
        """Forget the losses more than `NACK_HISTORY` behind `highest` (too old to ask for)."""
        oldest = (highest - NACK_HISTORY) & 0xFFFF
        order, missing = self._order, self.missing
        while order:
            lost = order[0]
            if lost in missing:
                if not 0 < (oldest - lost) & 0xFFFF < 0x8000:
                    return
                missing.remove(lost)
            order.popleft()


def _clamp_packets_lost(count: int) -> int:
    """The cumulative number of packets lost as a receiver report carries it (signed 24 bits)."""
    return max(-0x800000, min(count, 0x7FFFFF))


class ReceiveStatistics:
    """Reception statistics of one SSRC (RFC 3550 6.4.1, A.3, A.8), where aiortc keeps its StreamStatistics.

    aiortc's receiver-report loop and `getStats()` read `packets_received`, `packets_lost`,
    `fraction_lost`, `max_seq` and `jitter` from the objects in the receiver's statistics
    dict, on their own timers; per packet this keeps only the counts and the highest sequence
    number, and the jitter once per frame (at its first packet, as libwebrtc does; aiortc takes
    the last packet of the frame before as the reference, so the values differ slightly).
    """

    __slots__ = ("_base_seq", "_clockrate", "_cycles", "_expected_prior", "_jitter_q4", "_last_timestamp",
                 "_last_transit", "_max_seq", "_next", "_received", "_received_prior")

    def __init__(self, clockrate: int) -> None:
        self._base_seq: int | None = None
        self._max_seq: int | None = None
        "Highest sequence number received (modulo 2**16), as aiortc reports it."
        self._cycles = 0
        "Sequence number wraps, times 2**16."
        self._received = 0
        self._next = -1
        "The sequence number after `_max_seq`."
        self._clockrate = clockrate
        self._jitter_q4 = 0
        self._last_transit: int | None = None
        self._last_timestamp: int | None = None
        self._expected_prior = 0
        self._received_prior = 0

    def add(self, sequence: int, timestamp: int) -> None:
        """Count one packet."""
        self._received += 1
        if sequence == self._next:
            self._next = (sequence + 1) & 0xFFFF
            if not sequence:
                self._cycles += 0x10000
            self._max_seq = sequence
            if timestamp != self._last_timestamp:
                self._frame_started(timestamp)
            return
        if self._max_seq is None:
            self._base_seq = self._max_seq = sequence
            self._next = (sequence + 1) & 0xFFFF
            self._frame_started(timestamp)
        elif _sequence_after(sequence, self._max_seq):
            if sequence < self._max_seq:
                self._cycles += 0x10000
            self._max_seq = sequence
            self._next = (sequence + 1) & 0xFFFF
            if timestamp != self._last_timestamp:
                self._frame_started(timestamp)

    def _frame_started(self, timestamp: int) -> None:
        transit = int(time.monotonic() * self._clockrate) - timestamp
        if self._last_transit is not None:
            difference = abs(transit - self._last_transit)
            self._jitter_q4 += difference - ((self._jitter_q4 + 8) >> 4)
        self._last_transit = transit
        self._last_timestamp = timestamp

    def _refresh(self) -> None:
        """Bring the counts up to date before they are read (they may be kept elsewhere for a while)."""

    @property
    def packets_received(self) -> int:
        """Packets received, duplicates included."""
        self._refresh()
        return self._received

    @property
    def max_seq(self) -> int | None:
        """Highest sequence number received (modulo 2**16), as aiortc reports it; None before the first."""
        self._refresh()
        return self._max_seq

    @property
    def packets_expected(self) -> int:
        """Packets sent, as told by the sequence numbers (RFC 3550 A.3)."""
        self._refresh()
        if self._max_seq is None or self._base_seq is None:
            return 0
        return self._cycles + self._max_seq - self._base_seq + 1

    @property
    def packets_lost(self) -> int:
        """Packets lost since the start (negative when duplicates outnumber losses), clamped as RTCP carries it."""
        return _clamp_packets_lost(self.packets_expected - self._received)

    @property
    def fraction_lost(self) -> int:
        """Fraction lost since the previous call, in 1/256 (RFC 3550 A.3); each call starts a new interval."""
        expected = self.packets_expected
        expected_interval, self._expected_prior = expected - self._expected_prior, expected
        received_interval, self._received_prior = self._received - self._received_prior, self._received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            return 0
        return (lost_interval << 8) // expected_interval

    @property
    def jitter(self) -> int:
        """Interarrival jitter in timestamp units."""
        self._refresh()
        return self._jitter_q4 >> 4


class _Source(ReceiveStatistics):
    """One SSRC a receiver takes packets from: its statistics, and where its packets go."""

    __slots__ = ("assembler", "codec", "depayload", "fast", "losses", "media_ssrc", "payload_type", "rtx")

    def __init__(self, clockrate: int) -> None:
        super().__init__(clockrate)
        self.payload_type = -1
        "The payload type the routing below is for (a packet of another one is routed again)."
        self.rtx = False
        "An RTX stream: the payload starts with the original sequence number (RFC 4588)."
        self.media_ssrc = 0
        "The SSRC of the media (this one, or the one an RTX stream repairs)."
        self.codec = ""
        "Codec name of the media."
        self.losses: LossTracker | None = None
        "Loss tracker of the media SSRC; None: packets of this SSRC and payload type go nowhere."
        self.assembler = _NOWHERE
        "The frame assembler of the media's codec."
        self.depayload: FrameDepayloader = as_is
        self.fast: Any = None
        "The native short way, while it holds this source's state (its counts are read from there)."

    def _refresh(self) -> None:
        if self.fast is not None:
            self._take_statistics(self.fast.statistics())

    def _take_statistics(self, state: dict[str, Any]) -> None:
        """The counts as the native short way has them."""
        self._received, self._max_seq, self._cycles = state["received"], state["max_seq"], state["cycles"]
        self._next = (state["max_seq"] + 1) & 0xFFFF
        self._last_timestamp = state["last_timestamp"] if state["last_timestamp"] >= 0 else None
        self._last_transit, self._jitter_q4 = state["last_transit"], state["jitter_q4"]


_NOWHERE = FrameAssembler("")
"Stands for the assembler of a source routed nowhere (never fed)."

Lost = tuple[int, list[int]]
"A media SSRC and every packet of it missing, to NACK."


class VideoReceivePath:
    """Receives the RTP packets of one aiortc video receiver in its place, straight from the socket once DTLS is up.

    With the native module (`RECEIVE_PATH == "native"`), the usual packet of the one media
    SSRC in a plain state is handled in C (media/_fastrtp.c) without calling Python but once
    per frame; the path "arms" it with that SSRC's state when the state is plain (packets in
    order, no frame waiting but the one arriving in order) and "disarms" it, taking the state
    back, before it handles any other video packet itself (a gap, a late or repeated packet,
    RTX, another SSRC, the packet at which a loss kept for NACKs is forgotten). Without it, or with
    `STREAMSNAP_RECEIVE_PATH=python`, every packet is handled here.
    """

    def __init__(self, receiver: Any, on_frame: Callable[[str, bytes, int], None],
                 on_gap: Callable[[], None], max_bitrate: int, *, max_packets_per_frame: int = MAX_PACKETS_PER_FRAME,
                 max_pending_bytes: int = MAX_PENDING_BYTES, max_sources: int = MAX_SOURCES) -> None:
        self._receiver = receiver
        self._max_packets_per_frame = max_packets_per_frame
        self._max_pending_bytes = max_pending_bytes
        self._max_sources = max_sources
        self._sources: dict[int, _Source] = {}
        self._on_frame = on_frame
        self._on_gap = on_gap
        self._max_bitrate = max_bitrate
        # The same dict objects aiortc fills in `receive()` and reads in its RTCP loop.
        self._codecs = receiver_codecs(receiver)
        self._rtx_ssrc = receiver_rtx_ssrc(receiver)
        self._statistics: dict[int, Any] = receiver_remote_streams(receiver)
        self._losses: dict[int, LossTracker] = {}
        self._assemblers: dict[str, FrameAssembler] = {}
        self._media_ssrcs: set[int] = set()
        self._remb_task: asyncio.Task[None] | None = None
        self._nack_tasks: set[asyncio.Task[None]] = set()
        self._dtls_transport: Any = receiver.transport  # public: RTCRtpReceiver.transport
        self._unprotect: Callable[[bytes], bytes] | None = None
        self._restore_datagrams: Callable[[], None] | None = None
        self._fast: Any = None
        "The native short way (a `_fastrtp.Receiver`), once datagrams are taken and if it is used."
        self._armed: _Source | None = None
        "The source whose state the native short way holds."
        self._closed = False
        self._packets = 0
        self._from_socket = 0
        self._rejected = 0
        self.failures = 0
        "Datagrams or frames whose handling raised (a bug: the first is logged)."
        self.gaps = 0
        "Frames given up (lost for good, or undecodable), each also reported through `on_gap`."
        self.dropped = 0
        "Packets dropped for coming from a source over `max_sources`."
        replace_rtp_handler(receiver, self.handle)  # the DTLS transport calls this with what it still routes
        self._dtls_transport.on("statechange", self._on_dtls_state)
        self._on_dtls_state()

    @property
    def packets(self) -> int:
        """RTP packets handled."""
        return self._packets + (self._fast.packets if self._fast is not None else 0)

    @property
    def packets_from_socket(self) -> int:
        """Datagrams taken straight from the socket and unprotected (the others came through aiortc's DTLS)."""
        return self._from_socket + (self._fast.from_socket if self._fast is not None else 0)

    @property
    def rejected(self) -> int:
        """Datagrams taken from the socket that SRTP refused (replayed, forged) or that were no RTP packet."""
        return self._rejected + (self._fast.rejected if self._fast is not None else 0)

    @property
    def takes_datagrams(self) -> bool:
        """Whether SRTP datagrams are taken straight from the ICE sockets (DTLS is connected)."""
        return self._restore_datagrams is not None

    @property
    def native(self) -> bool:
        """Whether the native short way is in use."""
        return self._fast is not None

    def _on_dtls_state(self) -> None:
        state = self._dtls_transport.state
        if state == "connected" and self._restore_datagrams is None and not self._closed:
            session = srtp_receive_session(self._dtls_transport)
            if session is None:
                return
            self._unprotect = session.unprotect
            if RECEIVE_PATH == "native" and _fastrtp is not None:
                context, unprotect = srtp_unprotect_pointers(session)
                self._fast = _fastrtp.Receiver(session, context, unprotect, self._take_packet_from_native,
                                               self._take_frame_from_native)
                fast = self._fast
                self._restore_datagrams = intercept_datagrams(
                    self._dtls_transport, lambda original: fast.handler(self._datagram_handler(original)))
            else:
                self._restore_datagrams = intercept_datagrams(self._dtls_transport, self._datagram_handler)
        elif state in ("closed", "failed"):
            self._stop_taking_datagrams()

    def _stop_taking_datagrams(self) -> None:
        if self._restore_datagrams is not None:
            self._restore_datagrams()
            self._restore_datagrams = None

    def _failed(self, what: str) -> None:
        """Something raised where nothing may (a callback of the event loop or of the native short way): count it."""
        self.failures += 1
        if self.failures == 1:
            logger.exception("lean receive path: %s failed (dropped; later failures are only counted)", what)

    def _datagram_handler(self, original: DatagramHandler) -> DatagramHandler:
        """The datagram callback of one ICE socket: video SRTP is taken here, the rest goes to `original`."""
        take = self._take_datagram
        send_nack = self._send_nack_soon

        def datagram_received(data: bytes, addr: Any) -> None:
            try:
                taken = take(data)
            except Exception:
                # Not a reason to lose the socket (an event loop may close a transport whose protocol raises).
                self._rejected += 1
                self._failed("a datagram")
                return
            if taken is None:
                return
            if taken is False:
                original(data, addr)
            else:
                send_nack(taken)

        return datagram_received

    def _take_datagram(self, data: bytes) -> Lost | Literal[False] | None:
        """Handle `data` if it is SRTP of a video payload type: None, or the losses it revealed; False if not."""
        # RTP version 2 and not an RTCP packet type (RFC 7983: STUN 0-3, DTLS 20-63, RTP/RTCP 128-191).
        if len(data) < 12 or data[0] & 0xC0 != 0x80 or 191 < data[1] < 224 or data[1] & 0x7F not in self._codecs:
            return False
        if self._armed is not None:
            self._disarm()
        assert self._unprotect is not None
        try:
            packet = self._unprotect(data)
        except (pylibsrtp.Error, ValueError):  # ValueError: longer than pylibsrtp's buffer
            self._rejected += 1  # as aiortc does: replayed or forged packets are dropped
            return None
        self._from_socket += 1
        return self._take_packet(packet)

    def _take_packet(self, packet: bytes) -> Lost | None:
        """One unprotected RTP packet: its header read, then handled."""
        end = len(packet)
        if end < 12:
            self._rejected += 1
            return None
        first, second, sequence, timestamp, ssrc = _RTP_HEADER.unpack_from(packet)
        start = 12 + 4 * (first & 0x0F)
        if first & 0x10:  # header extension: skipped (no bandwidth estimation, nothing else reads it)
            if end < start + 4:
                self._rejected += 1
                return None
            start += 4 + 4 * (packet[start + 2] << 8 | packet[start + 3])
        if first & 0x20:
            padding = packet[-1]
            if not padding or padding > end - start:
                self._rejected += 1
                return None
            end -= padding
        if start > end:
            self._rejected += 1
            return None
        return self._receive(ssrc, second & 0x7F, sequence, timestamp, second & 0x80, packet[start:end])

    def _take_packet_from_native(self, packet: bytes) -> None:
        """A packet of the armed stream the native short way unprotected but does not take (it is unusual)."""
        try:
            self._disarm()
            lost = self._take_packet(packet)
            if lost is not None:
                self._send_nack_soon(lost)
        except Exception:
            self._failed("a packet")

    def _take_frame_from_native(self, timestamp: int, payloads: list[bytes]) -> None:
        """A frame the native short way made whole."""
        try:
            source = self._armed
            assert source is not None
            self._hand_on(source, timestamp, payloads)
        except Exception:
            self._failed("a frame")

    async def handle(self, packet: RtpPacket, arrival_time_ms: int) -> None:
        """One RTP packet from aiortc's DTLS transport (before the path takes datagrams from the socket)."""
        if self._armed is not None:
            self._disarm()
        lost = self._receive(packet.ssrc, packet.payload_type, packet.sequence_number, packet.timestamp,
                             packet.marker, packet.payload)
        if lost is not None:
            await send_rtcp_nack(self._receiver, *lost)

    def _receive(self, ssrc: int, payload_type: int, sequence: int, timestamp: int, marker: int,
                 payload: bytes) -> Lost | None:
        """One RTP packet, in plain values; returns the losses it revealed, to NACK."""
        self._packets += 1
        source = self._sources.get(ssrc)
        if source is None or source.payload_type != payload_type:
            source = self._route(ssrc, payload_type)
            if source is None:
                return None
        source.add(sequence, timestamp)
        losses = source.losses
        if losses is None:
            return None
        if source.rtx:
            if len(payload) < 2:
                return None
            sequence = payload[0] << 8 | payload[1]
            payload = payload[2:]
        lost = losses.add(sequence)
        if payload:  # else padding
            assembler = source.assembler
            gaps = assembler.gaps
            frames = assembler.add(sequence, timestamp, marker, payload)
            if assembler.gaps != gaps:
                self.gaps += assembler.gaps - gaps
                self._on_gap()
            for frame_timestamp, payloads in frames:
                self._hand_on(source, frame_timestamp, payloads)
        if self._fast is not None and self._armed is None and not source.rtx:
            self._arm(source)
        return None if lost is None else (source.media_ssrc, lost)

    def _hand_on(self, source: _Source, timestamp: int, payloads: list[bytes]) -> None:
        """A whole frame's payloads: its bitstream goes on to `on_frame` (or it is a gap, if it cannot be read)."""
        try:
            data = source.depayload(payloads)
        except ValueError as exc:
            logger.debug("undecodable %s payload: %s", source.codec, exc)
            self.gaps += 1
            self._on_gap()
            return
        self._on_frame(source.codec, data, timestamp)

    def _arm(self, source: _Source) -> None:
        """Hand `source`'s state to the native short way if it is plain: in order, no frame waiting out of order."""
        losses = source.losses
        highest = source._max_seq
        if losses is None or highest is None or losses.highest != highest or losses.previous != highest or source.rtx:
            return
        state = source.assembler.hand_over((highest + 1) & 0xFFFF)
        if state is None:
            return
        self._fast.arm(ssrc=source.media_ssrc, payload_type=source.payload_type, clockrate=float(source._clockrate),
                       received=source._received, max_seq=highest, cycles=source._cycles,
                       last_timestamp=-1 if source._last_timestamp is None else source._last_timestamp,
                       last_transit=source._last_transit, jitter_q4=source._jitter_q4, expire_at=losses.expiry(),
                       **state)
        source.fast = self._fast
        self._armed = source

    def _disarm(self) -> None:
        """Take the armed source's state back from the native short way."""
        source = self._armed
        assert source is not None and source.losses is not None
        state = self._fast.disarm()
        self._armed = source.fast = None
        source._take_statistics(state)
        source.losses.highest = source.losses.previous = state["max_seq"]
        source.assembler.take_back(state)

    def _route(self, ssrc: int, payload_type: int) -> _Source | None:
        """The source of a packet from a new SSRC or of a new payload type, routed; None: drop the packet."""
        codec = self._codecs.get(payload_type)
        if codec is None:
            return None
        source = self._sources.get(ssrc)
        if source is None:
            if len(self._sources) >= self._max_sources:
                self.dropped += 1  # each source costs statistics, NACK and REMB state: a few are plenty
                return None
            source = self._sources[ssrc] = _Source(codec.clockRate)
            self._statistics[ssrc] = source  # aiortc's receiver reports read it
        source.payload_type = payload_type
        source.losses = None
        if is_rtx(codec):
            media_ssrc = self._rtx_ssrc.get(ssrc)
            apt = codec.parameters.get("apt")
            if media_ssrc is None or apt not in self._codecs:
                return source  # counted, then dropped
            source.rtx, source.media_ssrc, codec = True, media_ssrc, self._codecs[apt]
        else:
            source.rtx, source.media_ssrc = False, ssrc
        media_ssrc = source.media_ssrc
        if media_ssrc not in self._media_ssrcs:
            self._media_ssrcs.add(media_ssrc)
            if self._remb_task is None:
                self._remb_task = asyncio.ensure_future(self._send_remb())
        losses = self._losses.get(media_ssrc)
        if losses is None:
            losses = self._losses[media_ssrc] = LossTracker()
        assembler = self._assemblers.get(codec.name)
        if assembler is None:
            assembler = self._assemblers[codec.name] = FrameAssembler(
                codec.name, max_packets=self._max_packets_per_frame, max_pending_bytes=self._max_pending_bytes)
        source.codec, source.losses, source.assembler = codec.name, losses, assembler
        source.depayload = frame_depayloader(codec.name)
        return source

    def _send_nack_soon(self, lost: Lost) -> None:
        """NACK from the datagram callback, which cannot wait: on the loop, right after it."""
        task = asyncio.ensure_future(send_rtcp_nack(self._receiver, *lost))
        self._nack_tasks.add(task)
        task.add_done_callback(self._nack_tasks.discard)

    @property
    def pending_bytes(self) -> int:
        """Payload bytes held by frames being assembled."""
        held = sum(assembler.pending_bytes for assembler in self._assemblers.values())
        return held + (self._fast.pending_bytes if self._armed is not None else 0)

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
        """Give the sockets back to aioice and stop the REMB task; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._dtls_transport.remove_listener("statechange", self._on_dtls_state)
        self._stop_taking_datagrams()
        if self._armed is not None:
            self._disarm()
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
