"""Pictures of decoded video frames, checked pixel by pixel: PNG exact, JPEG from the YUV planes
looking like the RGB path's JPEG, every fit in every format, many workers at once."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction

import av
import imagecodecs
import numpy as np
import pytest
from av.video.reformatter import Colorspace
from PIL import Image

from streamsnap.framing import Fit, framing
from streamsnap.media.frames import EncodedFrame
from streamsnap.media.imaging import DEFAULT_QUALITY, ImageFormat, ImageSpec, Picture, decode_latest, encode
from streamsnap.media.pattern import pattern_frame

pytestmark = pytest.mark.unit


def _keyframe_picture(width: int, height: int, index: int = 5, noise: int = 0) -> Picture:
    """A VP8 keyframe of the test pattern (with camera-like noise if asked), decoded as the engine does."""
    rgb = pattern_frame(index, width, height)
    if noise:
        grain = np.random.default_rng(index).integers(-noise, noise, rgb.shape)
        rgb = np.clip(rgb.astype(np.int16) + grain, 0, 255).astype(np.uint8)
    context = av.CodecContext.create("libvpx", "w")
    context.width, context.height, context.pix_fmt = width, height, "yuv420p"
    context.time_base, context.bit_rate = Fraction(1, 30), 4_000_000
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    frame.pts = 0
    data = b"".join(bytes(packet) for packet in [*context.encode(frame), *context.encode(None)])
    return decode_latest("VP8", [EncodedFrame(data, 0, True, 0.0)])


def _frame_picture(frame: av.VideoFrame) -> Picture:
    """A picture of a frame made here (a pixel format or colour matrix the VP8 decoder does not give)."""
    return Picture(frame, EncodedFrame(b"", 0, True, 0.0), 1)


def _pixels(data: bytes, fmt: ImageFormat) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    assert image.format == fmt.name
    return np.asarray(image.convert("RGB")).astype(np.int16)


def _rgb(picture: Picture, width: int | None = None, height: int | None = None) -> np.ndarray:
    """The picture in RGB by PyAV's own conversion, scaled with the same swscale defaults the encoder uses."""
    return np.asarray(picture.frame.to_ndarray(width=width, height=height, format="rgb24"))


def _rgb_path_jpeg(rgb: np.ndarray, quality: int = DEFAULT_QUALITY[ImageFormat.JPEG]) -> bytes:
    """A JPEG as streamsnap made every JPEG before the YUV path: RGB to Pillow (libjpeg-turbo, 4:2:0)."""
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _mean_abs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=(0, 1))


@pytest.mark.parametrize("size", [(640, 480), (320, 240), (321, 241), (99, 17), (2, 2)])
def test_png_is_exactly_the_decoded_frame(size: tuple[int, int]) -> None:
    picture = _keyframe_picture(*size)
    data = encode(picture, ImageSpec(), 1)
    assert np.array_equal(_pixels(data, ImageFormat.PNG), _rgb(picture))


def test_every_png_compress_level_gives_the_same_pixels() -> None:
    picture = _keyframe_picture(321, 241, noise=12)
    expected = _rgb(picture)
    for level in range(10):
        data = encode(picture, ImageSpec(), level)
        Image.open(io.BytesIO(data)).verify()
        assert np.array_equal(_pixels(data, ImageFormat.PNG), expected), level


def test_png_is_no_larger_than_libpngs_by_a_tenth() -> None:
    """On a camera-like (noisy) picture, the fast deflate keeps the size of libpng's level 1, Up filter."""
    picture = _keyframe_picture(640, 480, noise=24)
    libpng = imagecodecs.png_encode(_rgb(picture), level=1, filter=32)  # 32: PNG_FILTER_UP
    ours = encode(picture, ImageSpec(), 1)
    assert len(ours) <= 1.1 * len(libpng)


@pytest.mark.parametrize("size", [(640, 480), (321, 241), (1280, 720)])
def test_jpeg_from_the_planes_looks_like_the_rgb_path(size: tuple[int, int]) -> None:
    picture = _keyframe_picture(*size)
    assert picture.frame.format.name == "yuv420p"  # the decoder's limited range: the range must be stretched
    rgb = _rgb(picture)
    ours = _pixels(encode(picture, ImageSpec(ImageFormat.JPEG), 1), ImageFormat.JPEG)
    before = _pixels(_rgb_path_jpeg(rgb), ImageFormat.JPEG)
    assert ours.shape == rgb.shape
    assert (_mean_abs(ours, before) < 2).all(), _mean_abs(ours, before)
    # No colour cast: the signed mean differs by less than 1.5 levels per channel (swscale's fast
    # RGB conversion is itself about 1.4 levels greener than the exact BT.601 one; without the
    # range stretch the difference is about 12)
    assert (np.abs((ours - before).mean(axis=(0, 1))) < 1.5).all()


def test_jpeg_quality_means_what_it_meant() -> None:
    """The same quality scale as Pillow's: about the same size at each quality, smaller at lower quality."""
    picture = _keyframe_picture(640, 480, noise=8)
    rgb = _rgb(picture)
    sizes = {}
    for quality in (30, 85, 95):
        ours = encode(picture, ImageSpec(ImageFormat.JPEG, quality=quality), 1)
        before = _rgb_path_jpeg(rgb, quality)
        assert 0.85 < len(ours) / len(before) < 1.15, quality
        sizes[quality] = len(ours)
    assert sizes[30] < sizes[85] < sizes[95]
    default = encode(picture, ImageSpec(ImageFormat.JPEG), 1)
    assert default == encode(picture, ImageSpec(ImageFormat.JPEG, quality=DEFAULT_QUALITY[ImageFormat.JPEG]), 1)


@pytest.mark.parametrize("convert", [
    pytest.param({"format": "yuvj420p"}, id="full-range-yuvj420p"),
    pytest.param({"format": "yuv420p", "dst_colorspace": Colorspace.ITU709}, id="bt709"),
    pytest.param({"format": "yuv444p"}, id="yuv444p"),
    pytest.param({"format": "nv12"}, id="nv12"),
])
def test_jpeg_of_other_pixel_formats_and_matrices_looks_right(convert: dict[str, object]) -> None:
    """Full-range planes go to the JPEG as they are; a BT.709 matrix or another layout goes through RGB."""
    rgb = pattern_frame(3, 320, 240)
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(**convert)
    picture = _frame_picture(frame)
    ours = _pixels(encode(picture, ImageSpec(ImageFormat.JPEG), 1), ImageFormat.JPEG)
    before = _pixels(_rgb_path_jpeg(_rgb(picture)), ImageFormat.JPEG)
    assert (_mean_abs(ours, before) < 2).all(), _mean_abs(ours, before)
    assert (_mean_abs(ours, rgb) < 4).all(), _mean_abs(ours, rgb)


def _expected_framed(picture: Picture, box: tuple[int, int], fit: Fit) -> np.ndarray:
    """The framed picture computed here from PyAV's scaled RGB, black where the bars go."""
    placed = framing(picture.size, *box, fit)
    scaled = _rgb(picture, *placed.scaled)
    (left, top), (kept_width, kept_height), (x, y) = placed.crop, placed.kept, placed.offset
    out = np.zeros((box[1], box[0], 3), dtype=np.uint8)
    out[y:y + kept_height, x:x + kept_width] = scaled[top:top + kept_height, left:left + kept_width]
    return out


@pytest.mark.parametrize("fmt", list(ImageFormat))
@pytest.mark.parametrize("fit", list(Fit))
@pytest.mark.parametrize("box", [(200, 200), (320, 100), (640, 480)])
def test_every_fit_in_every_format(fmt: ImageFormat, fit: Fit, box: tuple[int, int]) -> None:
    picture = _keyframe_picture(320, 240)
    data = encode(picture, ImageSpec(fmt, *box, fit=fit), 1)
    got = _pixels(data, fmt)
    expected = _expected_framed(picture, box, fit)
    assert got.shape == expected.shape
    if fmt is ImageFormat.PNG:
        assert np.array_equal(got, expected)
        return
    assert (_mean_abs(got, expected) < 4).all(), _mean_abs(got, expected)
    placed = framing(picture.size, *box, fit)
    x, y = placed.offset
    # contain's bars stay black, away from the edge by a 4:2:0 JPEG block (16 pixels) where coding rings
    if y > 16:
        assert got[: y - 16].max() <= 8 and got[-(y - 16):].max() <= 8
    if x > 16:
        assert got[:, : x - 16].max() <= 8 and got[:, -(x - 16):].max() <= 8


def test_one_side_keeps_the_aspect_in_every_format() -> None:
    picture = _keyframe_picture(320, 240)
    for fmt in ImageFormat:
        got = _pixels(encode(picture, ImageSpec(fmt, width=160), 1), fmt)
        assert got.shape == (120, 160, 3)
        assert (_mean_abs(got, _rgb(picture, 160, 120)) < 4).all()


def test_webp_is_still_a_webp_of_the_picture() -> None:
    picture = _keyframe_picture(640, 480)
    data = encode(picture, ImageSpec(ImageFormat.WEBP), 1)
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    assert (_mean_abs(_pixels(data, ImageFormat.WEBP), _rgb(picture)) < 4).all()


def test_workers_encoding_the_same_pictures_at_once_agree() -> None:
    """PNG, JPEG and WebP of the same moments at several sizes from four threads at once (the engine
    encodes one picture in two formats on two workers): each file is the one a lone thread makes."""
    pictures = [_keyframe_picture(320, 240, index) for index in range(3)]
    specs = [ImageSpec(), ImageSpec(ImageFormat.JPEG), ImageSpec(ImageFormat.WEBP),
             ImageSpec(ImageFormat.JPEG, 160, 160, fit=Fit.CONTAIN), ImageSpec(width=200),
             ImageSpec(ImageFormat.PNG, 100, 100, fit=Fit.COVER)]
    jobs = [(picture, spec) for picture in pictures for spec in specs] * 6
    alone = {(id(p), s): encode(p, s, 1) for p, s in jobs}
    start = threading.Barrier(4)

    def run(job: tuple[Picture, ImageSpec]) -> bool:
        if start.n_waiting < 4 and not start.broken:
            try:
                start.wait(timeout=5)
            except threading.BrokenBarrierError:
                pass
        picture, spec = job
        return encode(picture, spec, 1) == alone[(id(picture), spec)]

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(run, jobs, timeout=60))


def test_a_process_forked_after_encoding_can_encode() -> None:
    """The thread's kept swscale contexts run no threads of their own, which a forked child would not have."""
    picture = _keyframe_picture(1280, 720)
    specs = [ImageSpec(), ImageSpec(ImageFormat.JPEG), ImageSpec(ImageFormat.WEBP, width=320)]
    expected = [encode(picture, spec, 1) for spec in specs]
    child = os.fork()
    if child == 0:  # the child: encode again with the contexts it inherited, say by exit status whether it could
        try:
            os._exit(0 if [encode(picture, spec, 1) for spec in specs] == expected else 1)
        finally:
            os._exit(2)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pid, status = os.waitpid(child, os.WNOHANG)
        if pid:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    pytest.fail("the forked child hung encoding")
