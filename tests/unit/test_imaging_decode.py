"""decode_latest reconstructs only what the last picture needs, and that picture is the same to the pixel."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from streamsnap.media.frames import EncodedFrame
from streamsnap.media.imaging import decode_latest
from streamsnap.media.pattern import pattern_frame

pytestmark = pytest.mark.unit

FRAMES = 24

# Three temporal layers, as browsers send VP8 with simulcast: layer ids 0, 2, 1, 2 repeating,
# every layer-2 frame (one in two) a frame nothing refers to.
TEMPORAL_LAYERS = ("ts_number_layers=3:ts_target_bitrate=250,500,1000:ts_rate_decimator=4,2,1:"
                   "ts_periodicity=4:ts_layer_id=0,2,1,2:ts_layering_mode=3")


def _group(encoder: str, options: dict[str, str]) -> list[EncodedFrame]:
    """A keyframe and the frames after it, of the moving test pattern."""
    context = av.CodecContext.create(encoder, "w")
    context.width, context.height, context.pix_fmt = 320, 240, "yuv420p"
    context.time_base, context.framerate, context.bit_rate = Fraction(1, 30), Fraction(30), 800_000
    context.gop_size = 1000
    context.options = options
    packets = []
    for index in range(FRAMES):
        frame = av.VideoFrame.from_ndarray(pattern_frame(index, 320, 240), format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        packets += [bytes(p) for p in context.encode(frame)]
    packets += [bytes(p) for p in context.encode(None)]
    return [EncodedFrame(data, 0, index == 0, float(index)) for index, data in enumerate(packets)]


def _every_frame_decoded(decoder: str, group: list[EncodedFrame]) -> np.ndarray:
    """The last picture of `group` by a decoder told nothing: every frame reconstructed."""
    context = av.CodecContext.create(decoder, "r")
    pictures = []
    for frame in group:
        pictures += context.decode(av.Packet(frame.data))  # type: ignore[attr-defined]
    pictures += context.decode(None)  # type: ignore[attr-defined]
    assert len(pictures) == len(group)
    return np.asarray(pictures[-1].to_ndarray(format="rgb24"))


def test_non_reference_frames_are_skipped_and_the_picture_is_the_same() -> None:
    group = _group("libvpx", {"ts-parameters": TEMPORAL_LAYERS, "deadline": "realtime", "lag-in-frames": "0"})
    picture = decode_latest("VP8", group)
    assert picture.source is group[-1] and picture.frames_decoded == len(group)
    # half the frames after the keyframe are layer 2: only the others and the last are reconstructed
    assert picture.pictures_made <= len(group) // 2 + 2
    assert np.array_equal(picture.frame.to_ndarray(format="rgb24"), _every_frame_decoded("vp8", group))


@pytest.mark.parametrize(("codec", "encoder", "decoder", "options"), [
    ("VP8", "libvpx", "vp8", {"deadline": "realtime", "lag-in-frames": "0"}),
    ("H264", "libx264", "h264", {"tune": "zerolatency", "preset": "veryfast"}),
])
def test_a_stream_whose_frames_are_all_referenced_is_decoded_whole(
        codec: str, encoder: str, decoder: str, options: dict[str, str]) -> None:
    group = _group(encoder, options)
    picture = decode_latest(codec, group)
    assert picture.source is group[-1]
    assert picture.pictures_made == picture.frames_decoded == len(group)
    assert np.array_equal(picture.frame.to_ndarray(format="rgb24"), _every_frame_decoded(decoder, group))


def test_a_keyframe_alone_is_one_picture() -> None:
    group = _group("libvpx", {"deadline": "realtime", "lag-in-frames": "0"})[:1]
    picture = decode_latest("VP8", group)
    assert (picture.frames_decoded, picture.pictures_made) == (1, 1)
