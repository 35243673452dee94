"""MJPEG fan-out: server CPU for 1 and for 10 watchers of one 720p stream at 5 fps, in one run.

    python bench/mjpeg.py            # 30 s windows, as in docs/performance.md
    python bench/mjpeg.py --quick    # 8 s windows

The server (`streamsnap serve`) runs alone on CPU 0; the publisher (bench/publisher.py, a
pre-encoded VP8 clip replayed at 30 fps) and the watchers (this process) on CPU 1. Each row
measures the server's CPU over a window after a warm-up: with no watcher (receiving only),
with 1 and with 10 watchers. The goal: 10 watchers cost under 1.3x one watcher, since the
pictures are made once per stream and spec and only copied to each watcher's socket.
Prints a markdown table and writes bench/results/mjpeg-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.harness import free_port, wait_listening  # noqa: E402

from bench.common import (  # noqa: E402
    PUBLISHER_CPU,
    RECEIVER_CPU,
    cpu_seconds,
    publishers,
    receiver_command,
    running,
    save_results,
    table,
)

SIZE = "1280x720"
FPS = 5.0
GOAL = 1.3


@dataclass
class Row:
    watchers: int
    server_cpu: float = 0.0
    "Cores the server used over the window."
    parts_per_second: float = 0.0
    "Pictures received per second, over all watchers."
    parts_per_watcher_per_second: float = 0.0
    mjpeg_cpu: float = 0.0
    "Cores above the no-watcher row: what MJPEG itself costs."


async def watch(url: str, counts: list[int], index: int, stop: asyncio.Event) -> None:
    """Read one MJPEG answer, counting its parts, until `stop`."""
    timeout = aiohttp.ClientTimeout(total=None, sock_read=30)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.get(url) as response:
        assert response.status == 200, await response.text()
        boundary = b"--frame\r\n"
        while not stop.is_set():
            line = await response.content.readline()
            if not line:
                return
            if line == boundary:
                counts[index] += 1


async def measure(url: str, row: Row, server_pid: int, warmup: float, seconds: float) -> None:
    counts = [0] * row.watchers
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(watch(url, counts, i, stop)) for i in range(row.watchers)]
    await asyncio.sleep(warmup)
    parts_start, cpu_start, wall_start = sum(counts), cpu_seconds(server_pid), time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - wall_start
    row.server_cpu = (cpu_seconds(server_pid) - cpu_start) / wall
    row.parts_per_second = (sum(counts) - parts_start) / wall
    row.parts_per_watcher_per_second = row.parts_per_second / row.watchers if row.watchers else 0.0
    stop.set()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows")
    parser.add_argument("--watchers", type=int, nargs="+", default=[0, 1, 10])
    args = parser.parse_args()
    warmup, seconds = (3.0, 8.0) if args.quick else (5.0, 30.0)
    os.sched_setaffinity(0, {PUBLISHER_CPU})
    port = free_port()
    rows = [Row(n) for n in args.watchers]
    with running(receiver_command("streamsnap", port), RECEIVER_CPU) as server:
        wait_listening(port)
        with publishers(f"ws://127.0.0.1:{port}/bench", 1, "VP8", SIZE):
            url = f"http://127.0.0.1:{port}/streams/s0/stream.mjpeg?fps={FPS:g}"
            for row in rows:
                asyncio.run(measure(url, row, server.pid, warmup, seconds))
                print(f"  {row.watchers} watchers: {row.server_cpu:.3f} cores, "
                      f"{row.parts_per_second:.1f} pictures/s received", flush=True)
    idle = next((r.server_cpu for r in rows if r.watchers == 0), 0.0)
    for row in rows:
        row.mjpeg_cpu = row.server_cpu - idle if row.watchers else 0.0
    print(f"\n### MJPEG: one {SIZE} VP8 stream at {FPS:g} fps, server CPU (cores)\n")
    print(table(rows, [("watchers", "watchers"), ("server_cpu", "server CPU (cores)"),
                       ("mjpeg_cpu", "above receiving only"), ("parts_per_second", "pictures/s received"),
                       ("parts_per_watcher_per_second", "pictures/s per watcher")]))
    report: dict[str, object] = {"size": SIZE, "fps": FPS, "seconds": seconds, "rows": [asdict(r) for r in rows]}
    by = {r.watchers: r for r in rows}
    if 1 in by and 10 in by and by[1].server_cpu > 0:
        ratio = by[10].server_cpu / by[1].server_cpu
        report["ratio_10_to_1"] = ratio
        verdict = "meets" if ratio < GOAL else "misses"
        print(f"\n10 watchers / 1 watcher, server CPU: {ratio:.2f}x ({verdict} the goal of < {GOAL}x)")
        if by[1].mjpeg_cpu > 0:
            report["mjpeg_ratio_10_to_1"] = by[10].mjpeg_cpu / by[1].mjpeg_cpu
            print(f"10 watchers / 1 watcher, above receiving only: {report['mjpeg_ratio_10_to_1']:.2f}x")
    save_results(report, prefix="mjpeg-")


if __name__ == "__main__":
    main()
