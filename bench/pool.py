"""Pictures per second of the decode+encode work on this machine: per core and format, then threads vs processes.

    python bench/pool.py                    # a few minutes: the per-format table, then threads/processes
    python bench/pool.py --formats-only --per-format 15

The work is what the engine does per picture on the keyframe path: decode one keyframe (FFmpeg's
VP8 decoder) and encode it (`streamsnap.media.imaging.encode`). The first table runs it in one
worker thread for PNG, JPEG and WebP at 640x480 and 1280x720, beside the encode streamsnap had
before (libpng for PNG, swscale RGB then Pillow for JPEG, a new swscale context per picture),
and beside both the encodes alone (the picture decoded beforehand: what a second format of a
shared picture costs). The four take turns picture by picture, so that the load of others on
this shared machine falls on all alike. Pictures per core is pictures per CPU second of the
worker thread (one thread: one core at most), which that load disturbs less than wall time.
Minor page faults per picture show what fresh buffers cost.

The second table: both decoding and encoding release the GIL in their C parts, so threads can
use a second core; a process pool pays for pickling the file back. Then how decoding alone and
encoding alone scale from one process to two (each process one job at a time): what the
machine's second core is worth for this work at best.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from pathlib import Path

import imagecodecs
from av.video.reformatter import VideoReformatter
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from bench.clips import load_clip  # noqa: E402
from streamsnap.media.frames import EncodedFrame  # noqa: E402
from streamsnap.media.imaging import ImageFormat, ImageSpec, Picture, decode_latest, encode  # noqa: E402

_KEYFRAMES: dict[str, list[bytes]] = {}
SIZES = ("640x480", "1280x720")


def encode_before(picture: Picture, spec: ImageSpec, png_compress_level: int) -> bytes:
    """streamsnap's encode of a native-size picture before the cheaper pictures: a new swscale context
    converts to RGB, then libpng (Up filter) or Pillow encodes."""
    rgb = VideoReformatter().reformat(picture.frame, format="rgb24").to_ndarray()
    if spec.format is ImageFormat.PNG:
        return bytes(imagecodecs.png_encode(rgb, level=png_compress_level, filter=32))  # 32: PNG_FILTER_UP
    buffer = io.BytesIO()
    options = {"method": 0} if spec.format is ImageFormat.WEBP else {}
    Image.fromarray(rgb).save(buffer, format=spec.format.name, quality=spec.quality or 85, **options)
    return buffer.getvalue()


def picture(size: str, index: int, fmt: str = "png", way: str = "after") -> int:
    """Decode keyframe `index` of the clip of `size` and encode it as `fmt` (`way`: now or before); its length."""
    frames = _KEYFRAMES.get(size)
    if frames is None:
        width, height = (int(v) for v in size.split("x"))
        frames = _KEYFRAMES[size] = load_clip("VP8", width, height).keyframes
    data = frames[index % len(frames)]
    decoded = decode_latest("VP8", [EncodedFrame(data, 0, True, 0.0)])
    spec = ImageSpec(ImageFormat(fmt), quality=80 if fmt == "webp" else None)
    return len((encode if way == "after" else encode_before)(decoded, spec, 1))


def rate(make: Callable[[], Executor], size: str, seconds: float, fmt: str = "png",
         way: str = "after") -> tuple[float, float, float]:
    """Pictures per second of wall time and of this process's CPU time, and minor page faults per picture,
    that `make()`'s executor achieves with a queue kept full."""
    with make() as pool:
        list(pool.map(picture, [size] * 8, range(8), [fmt] * 8, [way] * 8))  # warm up (and load the clip)
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        cpu, started, done, index = time.process_time(), time.perf_counter(), 0, 0
        pending: set[Future[int]] = {pool.submit(picture, size, index + k, fmt, way) for k in range(16)}
        index = 16
        while time.perf_counter() - started < seconds:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()
                done += 1
                pending.add(pool.submit(picture, size, index, fmt, way))
                index += 1
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        wait(pending)
        return done / wall, done / cpu, faults / done


def _thread_faults() -> int:
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


def interleaved(size: str, fmt: str, seconds: float) -> dict[str, tuple[int, float, int]]:
    """Per way (before, after, and each with the picture decoded beforehand): pictures, CPU seconds and minor
    page faults of this thread, the ways taking turns picture by picture for `seconds`."""
    width, height = (int(v) for v in size.split("x"))
    keyframes = load_clip("VP8", width, height).keyframes
    decoded = [decode_latest("VP8", [EncodedFrame(data, 0, True, 0.0)]) for data in keyframes[:8]]
    spec = ImageSpec(ImageFormat(fmt), quality=80 if fmt == "webp" else None)
    ways: dict[str, Callable[[int], object]] = {
        "before": lambda i: picture(size, i, fmt, "before"),
        "after": lambda i: picture(size, i, fmt, "after"),
        "before, encode only": lambda i: encode_before(decoded[i % len(decoded)], spec, 1),
        "after, encode only": lambda i: encode(decoded[i % len(decoded)], spec, 1),
    }
    totals = {way: (0, 0.0, 0) for way in ways}
    order = list(ways.items())
    for index in range(8):  # warm up: the clip, the thread's swscale contexts and buffers
        for _, run in order:
            run(index)
    index, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        order.reverse()  # neither way always runs right after the other
        for way, run in order:
            faults, cpu = _thread_faults(), time.thread_time()
            run(index)
            cpu, faults = time.thread_time() - cpu, _thread_faults() - faults
            count, seconds_sum, faults_sum = totals[way]
            totals[way] = (count + 1, seconds_sum + cpu, faults_sum + faults)
        index += 1
    return totals


def per_format(seconds: float) -> None:
    """The per-core table: one worker thread, every format and size, before and after in turns."""
    print(f"One worker thread, keyframe decode + encode, before and after taking turns picture by picture "
          f"for {seconds:.0f} s per format and size; pictures per CPU second of the thread\n")
    print("| size | format | pictures/s per core, before | after | after/before | encodes alone/s per core, "
          "before | after | after/before | page faults per picture, before | after |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in SIZES:
        for fmt in ("png", "jpeg", "webp"):
            with ThreadPoolExecutor(1) as pool:
                totals = pool.submit(interleaved, size, fmt, seconds).result()
            per_core = {way: count / cpu for way, (count, cpu, _) in totals.items()}
            faults = {way: total / count for way, (count, _, total) in totals.items()}
            before, after = per_core["before"], per_core["after"]
            alone_before, alone_after = per_core["before, encode only"], per_core["after, encode only"]
            print(f"| {size} | {fmt.upper()} | {before:.0f} | {after:.0f} | {after / before:.2f}x "
                  f"| {alone_before:.0f} | {alone_after:.0f} | {alone_after / alone_before:.2f}x "
                  f"| {faults['before']:.1f} | {faults['after']:.1f} |", flush=True)


def alone(kind: str, seconds: float = 3.0) -> int:
    """Jobs of one kind (decode or encode of a 640x480 keyframe) one process runs in `seconds`."""
    data = load_clip("VP8", 640, 480).keyframes[5]
    group = [EncodedFrame(data, 0, True, 0.0)]
    decoded = decode_latest("VP8", group)
    job = (lambda: decode_latest("VP8", group)) if kind == "decode" else (lambda: encode(decoded, ImageSpec(), 1))
    done, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        job()
        done += 1
    return done


def threads_and_processes(seconds: float) -> None:
    """PNG pictures per second with more threads or a process pool, then decode and encode scaling alone."""
    kinds: list[tuple[str, Callable[[], Executor]]] = [
        ("1 thread", lambda: ThreadPoolExecutor(1)),
        ("2 threads", lambda: ThreadPoolExecutor(2)),
        ("3 threads", lambda: ThreadPoolExecutor(3)),
        ("4 threads", lambda: ThreadPoolExecutor(4)),
        ("2 processes", lambda: ProcessPoolExecutor(2)),
    ]
    print("\n| workers (PNG) | 640x480 pictures/s | 1280x720 pictures/s |")
    print("|---|---|---|")
    for name, make in kinds:
        cells = [f"{rate(make, size, seconds)[0]:.1f}" for size in SIZES]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    print("\n| 640x480 keyframe | 1 process (jobs/s) | 2 processes (jobs/s, together) | scaling |")
    print("|---|---|---|---|")
    for kind in ("decode", "encode"):
        one = alone(kind) / 3.0
        with ProcessPoolExecutor(2) as pool:
            two = sum(pool.map(alone, [kind, kind])) / 3.0
        print(f"| {kind} | {one:.0f} | {two:.0f} | {two / one:.2f}x |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seconds", nargs="?", type=float, default=4.0, help="length of each threads/processes run")
    parser.add_argument("--per-format", type=float, default=8.0, help="seconds of turns per format and size")
    parser.add_argument("--formats-only", action="store_true", help="the per-format table only")
    args = parser.parse_args()
    print(f"cores available: {len(os.sched_getaffinity(0))}; load average before: {os.getloadavg()[0]:.2f}\n")
    per_format(args.per_format)
    if not args.formats_only:
        threads_and_processes(args.seconds)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
