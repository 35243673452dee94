"""Image encoders side by side on decoded frames of the benchmark clips: what a snapshot's encode costs.

    python bench/encoders.py            # prints a markdown table, writes bench/results/encoders-<time>.json

Each candidate encodes the same RGB picture (a frame from the middle of the 1.5 Mbit/s VP8
clip, as the snapshot engine would have decoded it) `--repeat` times in this process, pinned
to one CPU; the table gives the median time and the file size. Every PNG is decoded again
and compared with the picture, so a lossy shortcut cannot win.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av
import imagecodecs
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench.clips import load_clip  # noqa: E402
from bench.common import save_results  # noqa: E402
from streamsnap.media.imaging import PNG_FILTER_UP  # noqa: E402


def _pillow(image: np.ndarray, **options: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, **options)  # type: ignore[arg-type]
    return buffer.getvalue()


CANDIDATES: dict[str, tuple[bool, Callable[[np.ndarray], bytes]]] = {
    # name: (lossless, encode)
    "PNG, Pillow, level 1 (adaptive filter)": (True, lambda a: _pillow(a, format="PNG", compress_level=1)),
    "PNG, Pillow, level 6 (its default)": (True, lambda a: _pillow(a, format="PNG", compress_level=6)),
    "PNG, libpng, level 1 (adaptive filter)": (True, lambda a: bytes(imagecodecs.png_encode(a, level=1))),
    "PNG, libpng, level 1, Up filter (streamsnap)": (
        True, lambda a: bytes(imagecodecs.png_encode(a, level=1, filter=PNG_FILTER_UP))),
    "JPEG, Pillow, quality 85": (False, lambda a: _pillow(a, format="JPEG", quality=85)),
    "WebP, Pillow, quality 80, method 0": (False, lambda a: _pillow(a, format="WEBP", quality=80, method=0)),
}


def picture(codec: str, width: int, height: int) -> np.ndarray:
    """An RGB frame from the middle of the benchmark clip."""
    clip = load_clip(codec, width, height)
    context = av.CodecContext.create({"VP8": "vp8", "H264": "h264"}[codec], "r")
    frames = []
    for data in clip.frames[: len(clip.frames) // 2]:
        frames.extend(context.decode(av.Packet(data)))  # type: ignore[attr-defined]
    return np.asarray(frames[-1].to_ndarray(format="rgb24"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    rows = []
    for width, height in ((640, 480), (1280, 720)):
        image = picture("VP8", width, height)
        for name, (lossless, encode) in CANDIDATES.items():
            encode(image)  # warm up
            seconds = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                data = encode(image)
                seconds.append(time.perf_counter() - started)
            if lossless:
                assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), image), name
            rows.append({"size": f"{width}x{height}", "encoder": name, "median_ms": statistics.median(seconds) * 1000,
                         "kib": len(data) / 1024})
    print("| size | encoder | median ms | KiB |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['size']} | {row['encoder']} | {row['median_ms']:.1f} | {row['kib']:.0f} |")
    save_results(rows, "encoders-")


if __name__ == "__main__":
    main()
