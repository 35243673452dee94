"""Pictures per second of the decode+encode work on this machine: more threads, or a process pool?

    python bench/pool.py                # 640x480 and 1280x720 VP8 keyframe -> PNG, a few seconds each

The work is what the engine does per picture on the keyframe path: decode one keyframe (FFmpeg's
VP8 decoder) and encode it as PNG (libpng, Up filter, level 1). Both release the GIL in their C
parts, so threads can use a second core; a process pool pays for pickling the PNG back. The
picture is handed back to the parent as bytes either way. Prints a markdown table, then how
decoding alone and encoding alone scale from one process to two (each process one job at a time):
what the machine's second core is worth for this work at best.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, ProcessPoolExecutor, ThreadPoolExecutor, wait
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from bench.clips import load_clip  # noqa: E402
from streamsnap.media.frames import EncodedFrame  # noqa: E402
from streamsnap.media.imaging import ImageSpec, decode_latest, encode  # noqa: E402

_KEYFRAMES: dict[str, list[bytes]] = {}


def picture(size: str, index: int) -> int:
    """Decode keyframe `index` of the clip of `size` and encode it as PNG; return the PNG's length."""
    frames = _KEYFRAMES.get(size)
    if frames is None:
        width, height = (int(v) for v in size.split("x"))
        frames = _KEYFRAMES[size] = load_clip("VP8", width, height).keyframes
    data = frames[index % len(frames)]
    decoded = decode_latest("VP8", [EncodedFrame(data, 0, True, 0.0)])
    return len(encode(decoded, ImageSpec(), 1))


def rate(make: Callable[[], Executor], size: str, seconds: float) -> float:
    """Pictures per second `make()`'s executor achieves with a queue kept full."""
    with make() as pool:
        list(pool.map(picture, [size] * 8, range(8)))  # warm up (and load the clip in each process)
        started, done, index = time.perf_counter(), 0, 0
        pending = {pool.submit(picture, size, index + k) for k in range(16)}
        index = 16
        while time.perf_counter() - started < seconds:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                future.result()
                done += 1
                pending.add(pool.submit(picture, size, index))
                index += 1
        return done / (time.perf_counter() - started)


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


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
    print(f"cores available: {len(os.sched_getaffinity(0))}; load average before: {os.getloadavg()[0]:.2f}\n")
    kinds: list[tuple[str, Callable[[], Executor]]] = [
        ("1 thread", lambda: ThreadPoolExecutor(1)),
        ("2 threads", lambda: ThreadPoolExecutor(2)),
        ("3 threads", lambda: ThreadPoolExecutor(3)),
        ("4 threads", lambda: ThreadPoolExecutor(4)),
        ("2 processes", lambda: ProcessPoolExecutor(2)),
    ]
    print("| workers | 640x480 pictures/s | 1280x720 pictures/s |")
    print("|---|---|---|")
    for name, make in kinds:
        cells = [f"{rate(make, size, seconds):.1f}" for size in ("640x480", "1280x720")]
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    print("\n| 640x480 keyframe | 1 process (jobs/s) | 2 processes (jobs/s, together) | scaling |")
    print("|---|---|---|---|")
    for kind in ("decode", "encode"):
        one = alone(kind) / 3.0
        with ProcessPoolExecutor(2) as pool:
            two = sum(pool.map(alone, [kind, kind])) / 3.0
        print(f"| {kind} | {one:.0f} | {two:.0f} | {two / one:.2f}x |", flush=True)
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
