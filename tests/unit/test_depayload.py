"""streamsnap's depayloaders give what aiortc's `depayload()` gives, payload by payload, and refuse what it refuses."""

from __future__ import annotations

import pytest
from aiortc.codecs import depayload
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from hypothesis import given
from hypothesis import strategies as st

from streamsnap.media.depayload import as_is, frame_depayloader, h264_frame, vp8_frame

pytestmark = pytest.mark.unit

CODECS = {name: RTCRtpCodecParameters(mimeType=f"video/{name}", clockRate=90000, payloadType=96)
          for name in ("VP8", "H264")}


def aiortc_frame(codec: str, payloads: list[bytes]) -> bytes | None:
    """aiortc's depayload of each payload, joined; None where it raises ValueError."""
    try:
        return b"".join(depayload(CODECS[codec], payload) for payload in payloads)
    except ValueError:
        return None


def ours(codec: str, payloads: list[bytes]) -> bytes | None:
    try:
        return frame_depayloader(codec)(payloads)
    except ValueError:
        return None


VP8_DESCRIPTORS = [
    b"\x10", b"\x00", b"\x90\x80\x80\x01", b"\x80\x80\x05", b"\x90\x00", b"\x90\xc0\x80\x01\x07",
    b"\x90\xf0\x81\x02\x03\x44", b"\x90\x20\x40", b"\x90\x10\x1f", b"\x90\x40\x09", b"\x90\x80",
    b"\x90\x80\x80", b"\x90\xc0\x05", b"\x90\x30", b"\x80",
]
H264_PAYLOADS = [
    b"\x65idr", b"\x41p", b"\x7c\x85idr", b"\x7c\x05more", b"\x7c\x45end", b"\x78\x00\x02sp\x00\x01p",
    b"\x78\x00\x05sp", b"\x78\x00", b"\x78\x00\x01", b"\x18\x00\x02ab", b"\x00x", b"\x1dx", b"\x65", b"\x7c",
    b"", b"\x59x", b"\x78\x00\x00",
]


@pytest.mark.parametrize("descriptor", VP8_DESCRIPTORS)
def test_vp8_descriptors_as_aiortc_reads_them(descriptor: bytes) -> None:
    for payloads in ([descriptor + b"frame"], [descriptor], [b"\x90\x80\x80\x01a", descriptor + b"b"]):
        assert ours("VP8", payloads) == aiortc_frame("VP8", payloads), payloads


@pytest.mark.parametrize("payload", H264_PAYLOADS)
def test_h264_payloads_as_aiortc_reads_them(payload: bytes) -> None:
    for payloads in ([payload], [b"\x7c\x85idr", payload]):
        assert ours("H264", payloads) == aiortc_frame("H264", payloads), payloads


@given(st.lists(st.binary(max_size=12), min_size=1, max_size=4))
def test_hostile_vp8_payloads(payloads: list[bytes]) -> None:
    assert ours("VP8", payloads) == aiortc_frame("VP8", payloads)


@given(st.lists(st.one_of(st.binary(max_size=12), st.sampled_from(H264_PAYLOADS),
                          st.builds(lambda size, body: b"\x78" + size.to_bytes(2, "big") + body,
                                    st.integers(0, 12), st.binary(max_size=12))),
                min_size=1, max_size=4))
def test_hostile_h264_payloads(payloads: list[bytes]) -> None:
    assert ours("H264", payloads) == aiortc_frame("H264", payloads)


def test_the_usual_frames() -> None:
    assert vp8_frame([b"\x90\x80\x80\x01key", b"\x80\x80\x80\x01frame"]) == b"keyframe"
    assert h264_frame([b"\x78\x00\x02sp\x00\x02pp", b"\x7c\x85i", b"\x7c\x45dr"]) == (
        b"\x00\x00\x00\x01sp\x00\x00\x00\x01pp\x00\x00\x00\x01\x65idr")
    assert frame_depayloader("AV1") is as_is and as_is([b"a", b"b"]) == b"ab"
