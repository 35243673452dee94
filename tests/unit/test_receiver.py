"""Packet-to-frame assembly, loss tracking and statistics of the lean receive path, without a network."""

from __future__ import annotations

import random

import pytest
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from streamsnap.media.receiver import (
    MAX_NACK_JUMP,
    FrameAssembler,
    LossTracker,
    ReceiveStatistics,
    starts_frame,
)

pytestmark = pytest.mark.unit

VP8_START, VP8_MIDDLE = b"\x90\x80\x01frame-start", b"\x80\x80\x01more"
FU_A_START, FU_A_MIDDLE, FU_A_END = b"\x7c\x85idr", b"\x7c\x05idr", b"\x7c\x45idr"
STAP_A, SINGLE_SLICE = b"\x78\x00\x02sp", b"\x41slice"


def feed(assembler: FrameAssembler, packets: list[tuple[int, int, bool, bytes]]) -> list[list[bytes]]:
    frames = []
    for sequence, timestamp, marker, payload in packets:
        frames.extend(payloads for _, payloads in assembler.add(sequence, timestamp, marker, payload))
    return frames


def test_frame_start_is_read_from_the_payload_header() -> None:
    assert starts_frame("VP8", VP8_START) and not starts_frame("VP8", VP8_MIDDLE)
    assert not starts_frame("VP8", b"\x91")  # S bit, but a later partition
    assert starts_frame("H264", FU_A_START) and not starts_frame("H264", FU_A_MIDDLE)
    assert starts_frame("H264", STAP_A) and starts_frame("H264", SINGLE_SLICE)
    assert not starts_frame("VP8", b"") and not starts_frame("AV1", VP8_START)


def test_in_order_frames_complete_on_their_marker() -> None:
    assembler = FrameAssembler("VP8")
    frames = feed(assembler, [(1, 100, False, VP8_START), (2, 100, True, VP8_MIDDLE), (3, 200, True, VP8_START)])
    assert frames == [[VP8_START, VP8_MIDDLE], [VP8_START]]
    assert assembler.gaps == 0


def test_out_of_order_and_duplicate_packets() -> None:
    assembler = FrameAssembler("VP8")
    packets = [(12, 100, True, b"\x80c"), (10, 100, False, VP8_START), (10, 100, False, VP8_START),
               (11, 100, False, b"\x80b")]
    assert feed(assembler, packets) == [[VP8_START, b"\x80b", b"\x80c"]]
    assert feed(assembler, [(12, 100, True, b"\x80c")]) == []  # a late repeat is not a new frame


def test_a_missing_middle_packet_holds_later_frames_until_given_up() -> None:
    assembler = FrameAssembler("VP8")
    assert feed(assembler, [(1, 100, False, VP8_START), (3, 100, True, b"\x80c")]) == []
    # later frames wait, in order, for the retransmission...
    assert feed(assembler, [(4, 200, True, VP8_START), (5, 300, True, VP8_START)]) == []
    # ...which completes all of them at once
    assert feed(assembler, [(2, 100, False, b"\x80b")]) == [[VP8_START, b"\x80b", b"\x80c"], [VP8_START], [VP8_START]]
    assert assembler.gaps == 0


def test_a_frame_that_never_completes_is_given_up_as_a_gap() -> None:
    assembler = FrameAssembler("VP8")
    feed(assembler, [(0, 50, True, VP8_START), (1, 100, False, VP8_START), (3, 100, True, b"\x80c")])
    frames = feed(assembler, [(4 + k, 200 + 100 * k, True, VP8_START) for k in range(5)])
    assert assembler.gaps == 2  # the lost packet, then the frame it belonged to
    assert frames == [[VP8_START]] * 5  # in sync again from the next frame's payload header


def test_a_wholly_lost_frame_is_given_up_as_a_gap() -> None:
    assembler = FrameAssembler("VP8")
    feed(assembler, [(1, 100, True, VP8_START)])
    frames = feed(assembler, [(3 + k, 300 + 100 * k, True, VP8_START) for k in range(5)])  # sequence 2 lost
    assert assembler.gaps == 1
    assert len(frames) == 5


def test_h264_frame_keeps_every_nal_unit() -> None:
    assembler = FrameAssembler("H264")
    packets = [(7, 100, False, STAP_A), (8, 100, False, FU_A_START), (9, 100, False, FU_A_MIDDLE),
               (10, 100, False, FU_A_END), (11, 100, True, SINGLE_SLICE)]
    feed(assembler, [(6, 50, True, SINGLE_SLICE)])  # the frame before: now in sync
    assert feed(assembler, list(reversed(packets))) == [[p[3] for p in packets]]


def test_sequence_and_timestamp_wraparound() -> None:
    assembler = FrameAssembler("VP8")
    packets = [(65534, 0xFFFFFF00, False, VP8_START), (65535, 0xFFFFFF00, False, b"\x80b"),
               (0, 0xFFFFFF00, True, b"\x80c"), (1, 0x00000A00, True, VP8_START)]
    assert feed(assembler, packets) == [[VP8_START, b"\x80b", b"\x80c"], [VP8_START]]
    assert assembler.gaps == 0


# The short way of FrameAssembler, LossTracker and ReceiveStatistics against what they stand for.

class LongWayOnly(FrameAssembler):
    """The assembler without its short way: every packet as it went before the short way existed."""

    def add(self, sequence: int, timestamp: int, marker: bool | int, payload: bytes) -> list[tuple[int, list[bytes]]]:
        return self._add(sequence, timestamp, bool(marker), payload)


@st.composite
def packet_streams(draw: st.DrawFn) -> list[tuple[int, int, bool, bytes]]:
    """Frames of a few packets, mostly in order, with some lost, repeated, swapped, from far away, or oversized."""
    sequence = draw(st.integers(0, 0xFFFF))
    timestamp = draw(st.integers(0, 0xFFFFFFFF))
    packets = []
    for _ in range(draw(st.integers(1, 12))):
        count = draw(st.integers(1, 5))
        for index in range(count):
            size = draw(st.sampled_from([3, 40, 300]))
            payload = (VP8_START[:1] if index == 0 else b"\x80") + bytes(size)
            packets.append((sequence, timestamp, index == count - 1, payload))
            sequence = (sequence + 1) & 0xFFFF
        timestamp = (timestamp + draw(st.sampled_from([3000, 3000, 0x7FFFFFFF, 0x80000001]))) & 0xFFFFFFFF
    for _ in range(draw(st.integers(0, 6))):
        action, index = draw(st.sampled_from(["drop", "repeat", "swap", "far"])), draw(st.integers(0, len(packets) - 1))
        if action == "drop" and len(packets) > 1:
            del packets[index]
        elif action == "repeat":
            packets.insert(draw(st.integers(index, len(packets))), packets[index])
        elif action == "swap" and index + 1 < len(packets):
            packets[index], packets[index + 1] = packets[index + 1], packets[index]
        elif action == "far":
            seq, ts, marker, payload = packets[index]
            packets[index] = ((seq + 0x9000) & 0xFFFF, ts, marker, payload)
    return packets


@given(packet_streams(), st.sampled_from([(16, 10_000), (3, 10_000), (16, 500), (1, 301)]))
@settings(max_examples=300)
def test_the_short_way_makes_what_the_long_way_makes(packets: list[tuple[int, int, bool, bytes]],
                                                     caps: tuple[int, int]) -> None:
    max_packets, max_bytes = caps
    short, long = (kind("VP8", max_packets=max_packets, max_pending_bytes=max_bytes)
                   for kind in (FrameAssembler, LongWayOnly))
    for packet in packets:
        assert short.add(*packet) == long.add(*packet), packet
        assert (short.gaps, short.oversized, short.pending_bytes) == (long.gaps, long.oversized, long.pending_bytes)


def test_the_short_way_is_taken() -> None:
    assembler = FrameAssembler("VP8")
    feed(assembler, [(1, 100, True, VP8_START)])  # in sync from here
    assert assembler.add(2, 200, False, VP8_START) == [] and not assembler._pending  # the frame is on the short way
    assert assembler.add(3, 200, False, VP8_MIDDLE) == [] and assembler.pending_bytes == len(VP8_START + VP8_MIDDLE)
    assert assembler.add(4, 200, True, VP8_MIDDLE) == [(200, [VP8_START, VP8_MIDDLE, VP8_MIDDLE])]
    assert assembler.pending_bytes == 0 and not assembler._pending


def old_nacks(sequences: list[int]) -> list[list[int] | None]:
    """What streamsnap asked for before LossTracker: aiortc's NackGenerator, restarted on a jump of over 512."""
    nack, previous, asked = NackGenerator(), None, []
    for sequence in sequences:
        if previous is not None and MAX_NACK_JUMP < (sequence - previous) & 0xFFFF < 0x8000:
            nack = NackGenerator()
        previous = sequence
        asked.append(sorted(nack.missing) if nack.add(RtpPacket(sequence_number=sequence)) else None)
    return asked


@given(st.integers(0, 0xFFFF), st.lists(st.sampled_from([1, 1, 1, 1, 2, 3, -1, -2, 0, 200, 600, 40000]), max_size=80))
def test_loss_tracker_asks_what_aiortcs_nack_generator_asked(start: int, steps: list[int]) -> None:
    sequences = [start]
    for step in steps:
        sequences.append((sequences[-1] + step) & 0xFFFF)
    tracker = LossTracker()
    assert [tracker.add(sequence) for sequence in sequences] == old_nacks(sequences)


def test_loss_tracker_costs_nothing_while_nothing_is_missing() -> None:
    tracker = LossTracker()
    assert [tracker.add(sequence) for sequence in (65534, 65535, 0, 1)] == [None] * 4
    assert tracker.add(4) == [2, 3] and tracker.add(2) is None and tracker.missing == {3}


@given(st.integers(0, 0xFFFF), st.lists(st.sampled_from([1, 1, 1, 1, 2, 5, -1, -3, 0, 30000]), max_size=80))
def test_receive_statistics_count_as_aiortcs_stream_statistics(start: int, steps: list[int]) -> None:
    ours, theirs = ReceiveStatistics(90000), StreamStatistics(90000)
    sequence = start
    for index, step in enumerate([0, *steps]):
        sequence = (sequence + step) & 0xFFFF
        ours.add(sequence, index // 3 * 3000)
        theirs.add(RtpPacket(sequence_number=sequence, timestamp=index // 3 * 3000))
        assert (ours.packets_received, ours.packets_lost, ours.max_seq, ours.packets_expected) == (
            theirs.packets_received, theirs.packets_lost, theirs.max_seq, theirs.packets_expected)
        if index % 7 == 0:
            assert ours.fraction_lost == theirs.fraction_lost


def test_loss_tracker_over_a_long_lossy_stream() -> None:
    """5% lost, some of them late by up to 200 packets (past the NACK history), across two wraps."""
    rng = random.Random(23)
    sequences, late = [], []
    for sequence in range(60000, 60000 + 80000):
        if rng.random() < 0.05:
            late.append((sequence + rng.randrange(1, 200), sequence & 0xFFFF))
            continue
        sequences.append(sequence & 0xFFFF)
        while late and late[0][0] <= sequence:
            sequences.append(late.pop(0)[1])
    tracker = LossTracker()
    assert [tracker.add(sequence) for sequence in sequences] == old_nacks(sequences)
    assert len(tracker._order) <= 2 * 128
