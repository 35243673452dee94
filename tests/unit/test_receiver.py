"""Packet-to-frame assembly of the lean receive path, without a network."""

from __future__ import annotations

import pytest

from streamsnap.media.receiver import FrameAssembler, starts_frame

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
