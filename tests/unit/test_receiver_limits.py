"""What frames being assembled may hold, whatever a publisher sends (issue 12, item 4)."""

from __future__ import annotations

import pytest

from streamsnap.media.receiver import MAX_WAIT_FRAMES, FrameAssembler

pytestmark = pytest.mark.unit

VP8_START, VP8_MIDDLE = b"\x90\x80\x01frame-start", b"\x80\x80\x01more"


def test_a_frame_over_the_packet_cap_is_given_up_and_its_late_packets_dropped() -> None:
    assembler = FrameAssembler("VP8", max_packets=16, max_pending_bytes=1 << 20)
    for sequence in range(1, 40):  # a frame that never gets its marker bit
        assert assembler.add(sequence, 100, False, VP8_MIDDLE) == []
    assert assembler.pending_bytes == 0 and assembler.oversized == 1
    # the frames after it are assembled again
    frames = [f for s, ts in ((40, 200), (41, 300)) for f in assembler.add(s, ts, True, VP8_START)]
    assert [ts for ts, _ in frames] == [200, 300]


def test_waiting_frames_hold_at_most_the_byte_cap() -> None:
    cap = 10_000
    assembler = FrameAssembler("VP8", max_packets=4096, max_pending_bytes=cap)
    payload = b"\x80" + b"z" * 999
    for sequence in range(2000):  # MAX_WAIT_FRAMES frames that never complete: they all wait
        assembler.add(sequence, 1000 + sequence % MAX_WAIT_FRAMES, False, payload)
        assert assembler.pending_bytes <= cap
    assert assembler.oversized > 0
    assert assembler.pending_bytes == sum(frame.size for frame in assembler._pending.values())


def test_a_duplicate_packet_is_counted_once() -> None:
    assembler = FrameAssembler("VP8", max_packets=16, max_pending_bytes=1000)
    for _ in range(50):
        assembler.add(1, 100, False, VP8_START)
    assert assembler.pending_bytes == len(VP8_START) and assembler.oversized == 0
    assert assembler.add(2, 100, True, VP8_MIDDLE) == [(100, [VP8_START, VP8_MIDDLE])]
    assert assembler.pending_bytes == 0


def test_normal_frames_are_untouched_by_the_caps() -> None:
    assembler = FrameAssembler("VP8", max_packets=8, max_pending_bytes=4096)
    released = []
    for index in range(100):
        base = index * 3
        released += assembler.add(base, index * 3000, False, VP8_START)
        released += assembler.add(base + 1, index * 3000, False, VP8_MIDDLE)
        released += assembler.add(base + 2, index * 3000, True, VP8_MIDDLE)
    assert len(released) == 100 and assembler.gaps == 0 and assembler.pending_bytes == 0
