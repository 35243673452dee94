"""Image encoders side by side on decoded frames of the benchmark clips: what a snapshot's encode costs.

    python bench/encoders.py            # prints markdown tables, writes bench/results/encoders-<time>.json
    python bench/encoders.py --repeat 40

The pictures are three frames of the 1.5 Mbit/s VP8 clip (camera-like noise; a quarter, half
and three quarters in), decoded as the snapshot engine decodes them, at 640x480 and 1280x720.
Every candidate encodes the same pictures in the same run, one call each in turn (so a load
that comes and goes on the machine falls on all of them alike), pinned to one CPU; the table
gives the median CPU milliseconds of one picture, the mean file size, and both as a ratio to
streamsnap's encoder before this comparison (libpng; swscale RGB + Pillow for JPEG). Every PNG
is decoded again and compared with the picture, so a lossy shortcut cannot win.

The PNG candidates share the Up row filter (numpy) and the container (`streamsnap.media.png`),
and differ in the deflate only. zlib-ng and libdeflate are the builds imagecodecs ships (the
same libraries as the zlib-ng and deflate packages, which give byte-identical streams).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import imagecodecs
import numpy as np
from isal import isal_zlib
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.clips import load_clip  # noqa: E402
from bench.common import save_results  # noqa: E402
from streamsnap.media.frames import EncodedFrame  # noqa: E402
from streamsnap.media.imaging import ImageFormat, ImageSpec, Picture, encode  # noqa: E402
from streamsnap.media.png import png_file, up_filtered  # noqa: E402

LIBPNG_FILTER_UP = 32
"libpng's PNG_FILTER_UP, which streamsnap used with libpng before its own PNG writer."


@dataclass(frozen=True)
class Sample:
    """One decoded picture and its RGB (what the PNG candidates encode)."""

    picture: Picture
    rgb: np.ndarray


def _pillow(image: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, **options)  # type: ignore[arg-type]
    return buffer.getvalue()


def _up_png(deflate: Callable[[np.ndarray], bytes]) -> Callable[[Sample], bytes]:
    """A PNG candidate: the Up filter, then `deflate` of the filtered rows, in streamsnap's container."""
    def run(sample: Sample) -> bytes:
        height, width = sample.rgb.shape[:2]
        return png_file(width, height, deflate(up_filtered(sample.rgb)))
    return run


def _rgb_then_pillow_jpeg(sample: Sample) -> bytes:
    """streamsnap's JPEG before the YUV path: swscale to RGB (a new context each time), then Pillow."""
    rgb = sample.picture.frame.reformat(format="rgb24").to_ndarray()
    return _pillow(rgb, format="JPEG", quality=85)


# name: (kind, encode); kind "png" is checked lossless, "before" rows are what ratios are taken to
CANDIDATES: dict[str, tuple[str, Callable[[Sample], bytes]]] = {
    "PNG, libpng level 1, Up filter (before)": (
        "png", lambda s: bytes(imagecodecs.png_encode(s.rgb, level=1, filter=LIBPNG_FILTER_UP))),
    "PNG, Up + zlib level 1": ("png", _up_png(lambda d: zlib.compress(d.data, 1))),
    "PNG, Up + ISA-L level 1": ("png", _up_png(lambda d: isal_zlib.compress(d.data, 1))),
    "PNG, Up + ISA-L level 2": ("png", _up_png(lambda d: isal_zlib.compress(d.data, 2))),
    "PNG, Up + ISA-L level 3": ("png", _up_png(lambda d: isal_zlib.compress(d.data, 3))),
    "PNG, Up + zlib-ng level 1": ("png", _up_png(lambda d: bytes(imagecodecs.zlibng_encode(d.data, level=1)))),
    "PNG, Up + zlib-ng level 2": ("png", _up_png(lambda d: bytes(imagecodecs.zlibng_encode(d.data, level=2)))),
    "PNG, Up + libdeflate level 1": ("png", _up_png(lambda d: bytes(imagecodecs.deflate_encode(d.data, level=1)))),
    "PNG, Up + libdeflate level 2": ("png", _up_png(lambda d: bytes(imagecodecs.deflate_encode(d.data, level=2)))),
    "PNG, Up + libdeflate level 6": ("png", _up_png(lambda d: bytes(imagecodecs.deflate_encode(d.data, level=6)))),
    "PNG, Up + zlib level 6": ("png", _up_png(lambda d: zlib.compress(d.data, 6))),
    "PNG, streamsnap encode, png_compress_level 1 (after; incl. its swscale RGB)": (
        "png", lambda s: encode(s.picture, ImageSpec(), 1)),
    "PNG, libpng level 6, Up filter (before, level 6)": (
        "png", lambda s: bytes(imagecodecs.png_encode(s.rgb, level=6, filter=LIBPNG_FILTER_UP))),
    "PNG, streamsnap encode, png_compress_level 6 (after, level 6; incl. swscale)": (
        "png", lambda s: encode(s.picture, ImageSpec(), 6)),
    "JPEG q85, swscale RGB + Pillow (before)": ("jpeg", _rgb_then_pillow_jpeg),
    "JPEG q85, streamsnap encode: YUV planes (after)": (
        "jpeg", lambda s: encode(s.picture, ImageSpec(ImageFormat.JPEG), 1)),
    "WebP q80 method 0, streamsnap encode (swscale RGB + Pillow)": (
        "webp", lambda s: encode(s.picture, ImageSpec(ImageFormat.WEBP), 1)),
}


def samples(codec: str, width: int, height: int) -> list[Sample]:
    """Three pictures of the benchmark clip, decoded by the engine's decoder (FFmpeg's)."""
    clip = load_clip(codec, width, height)
    context = av.CodecContext.create({"VP8": "vp8", "H264": "h264"}[codec], "r")
    wanted = {len(clip.frames) * k // 4 for k in (1, 2, 3)}
    out = []
    for index, data in enumerate(clip.frames[: max(wanted) + 1]):
        for frame in context.decode(av.Packet(data)):  # type: ignore[attr-defined]
            if index in wanted:
                picture = Picture(frame, EncodedFrame(data, 0, False, 0.0), 1)
                out.append(Sample(picture, np.asarray(frame.to_ndarray(format="rgb24"))))
    return out


def measure(pictures: list[Sample], repeat: int) -> dict[str, tuple[float, float]]:
    """Median CPU ms per picture and mean bytes of every candidate, each called in turn `repeat` rounds."""
    seconds: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    sizes: dict[str, list[int]] = {name: [] for name in CANDIDATES}
    for name, (kind, run) in CANDIDATES.items():
        for sample in pictures:  # warm up, check, and size once per picture
            data = run(sample)
            if kind == "png":
                decoded = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
                assert np.array_equal(decoded, sample.rgb), name
            sizes[name].append(len(data))
    for _ in range(repeat):
        for sample in pictures:
            for name, (_, run) in CANDIDATES.items():
                started = time.thread_time()
                run(sample)
                seconds[name].append(time.thread_time() - started)
    return {name: (statistics.median(seconds[name]) * 1000, statistics.mean(sizes[name])) for name in CANDIDATES}


def _before(name: str) -> str:
    """The row a candidate is compared with: the same format (and PNG level) before."""
    if name.startswith("JPEG") or name.startswith("WebP"):
        return "JPEG q85, swscale RGB + Pillow (before)" if name.startswith("JPEG") else name
    if "level 6" in name:
        return "PNG, libpng level 6, Up filter (before, level 6)"
    return "PNG, libpng level 1, Up filter (before)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="rounds over every candidate and picture")
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    rows = []
    for width, height in ((640, 480), (1280, 720)):
        results = measure(samples("VP8", width, height), args.repeat)
        for name, (ms, size) in results.items():
            base_ms, base_size = results[_before(name)]
            rows.append({"size": f"{width}x{height}", "encoder": name, "median_cpu_ms": ms, "bytes": size,
                         "time_ratio": ms / base_ms, "size_ratio": size / base_size})
    print("\n| size | encoder | median CPU ms | bytes | time vs before | size vs before |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['size']} | {row['encoder']} | {row['median_cpu_ms']:.2f} | {row['bytes']:.0f} "
              f"| {row['time_ratio']:.2f}x | {row['size_ratio']:.3f}x |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    save_results(rows, "encoders-")


if __name__ == "__main__":
    main()
