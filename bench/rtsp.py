"""RTSP cameras vs WebRTC streams of the same picture: idle cost, picture latency, first picture.

    python bench/rtsp.py            # 480p and 720p, 4 streams each (about 4 minutes)
    python bench/rtsp.py --quick    # 480p only, shorter windows

Cameras are GStreamer RTSP servers (the tests' camera, tests/harness/rtsp.py; system python3
with python3-gst-1.0) encoding a moving test pattern in H.264 at 30 fps, 1.5 Mbit/s, a keyframe
every 2 s; WebRTC streams are bench/publisher.py replaying a pre-encoded H.264 clip of the same
size. The server runs alone on CPU 0, cameras and publishers on CPU 1. Per kind and size: the server's
CPU and RSS per stream with no pictures asked; picture latency p50/p99 (one request at a
time, WebSocket); and, for cameras, the time to the first picture of a camera not yet pulled
(an rtsp:// stream name). Prints markdown tables and writes bench/results/rtsp-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.harness import RtspCamera, free_port, wait_listening

from bench.common import (
    PUBLISHER_CPU,
    RECEIVER_CPU,
    cpu_seconds,
    percentile,
    publishers,
    receiver_command,
    rss_mb,
    running,
    save_results,
    table,
)
from streamsnap.wcsclient import SnapshotFailed, WcsClient

GOP_SECONDS = 2.0
KBPS = 1500


@contextmanager
def camera(port: int, size: str) -> Iterator[str]:
    """One RTSP camera on CPU 1 (a moving test pattern); yields its url."""
    width, height = size.split("x")
    source = RtspCamera(port, extra=["--width", width, "--height", height, "--fps", "30", "--gop", str(GOP_SECONDS),
                                     "--kbps", str(KBPS), "--pattern", "smpte horizontal-speed=3"],
                        cpus={PUBLISHER_CPU})
    try:
        source.start_blocking()
        yield source.url
    finally:
        source.kill()


def rest(port: int, path: str, body: object) -> tuple[int, object]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@dataclass
class KindRow:
    kind: str
    size: str
    streams: int
    idle_cpu_per_stream: float = 0.0
    "Cores."
    rss_per_stream_mb: float = 0.0
    requests: int = 0
    errors: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    first_picture_p50_ms: float = float("nan")
    first_picture_max_ms: float = float("nan")
    samples: list[float] = field(default_factory=list, repr=False)


async def latencies(url: str, names: list[str], rounds: int, row: KindRow) -> None:
    """One picture at a time, each stream in turn, with a pause so that no picture is reused."""
    client = await WcsClient.connect(url)
    values: list[float] = []
    try:
        for index in range(rounds * len(names)):
            await asyncio.sleep(0.25)
            started = time.perf_counter()
            try:
                await client.snapshot(names[index % len(names)], timeout=10)
            except (SnapshotFailed, TimeoutError):
                row.errors += 1
                continue
            values.append((time.perf_counter() - started) * 1000)
    finally:
        await client.close()
    row.requests = rounds * len(names)
    row.p50_ms, row.p99_ms = percentile(values, 50), percentile(values, 99)


async def first_pictures(url: str, cameras: list[str]) -> list[float]:
    """Time from the request to the picture for cameras nobody pulls yet (rtsp:// names, on demand)."""
    client = await WcsClient.connect(url)
    values = []
    try:
        for uri in cameras:
            started = time.perf_counter()
            await client.snapshot(uri, timeout=30)
            values.append((time.perf_counter() - started) * 1000)
    finally:
        await client.close()
    return values


def idle_cost(pid: int, row: KindRow, rss_empty: float, seconds: float) -> None:
    cpu_start, wall_start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    row.idle_cpu_per_stream = (cpu_seconds(pid) - cpu_start) / (time.monotonic() - wall_start) / row.streams
    row.rss_per_stream_mb = (rss_mb(pid) - rss_empty) / row.streams


def measure_rtsp(size: str, streams: int, seconds: float, warmup: float, rounds: int) -> KindRow:
    row = KindRow("rtsp", size, streams)
    port = free_port()
    with running(receiver_command("streamsnap", port), RECEIVER_CPU, {"STREAMSNAP_RTSP_ALLOWED_HOSTS": "127.0.0.1"}) \
            as server, ExitStack() as stack:
        wait_listening(port)
        time.sleep(1)
        rss_empty = rss_mb(server.pid)
        urls = [stack.enter_context(camera(free_port(), size)) for _ in range(streams)]
        for index, uri in enumerate(urls):
            status, body = rest(port, "/rest-api/rtsp/startup", {"uri": uri, "toStream": f"c{index}"})
            if status != 200:
                raise RuntimeError(f"startup of {uri}: {status} {body}")
        time.sleep(warmup)
        idle_cost(server.pid, row, rss_empty, seconds)
        asyncio.run(latencies(f"ws://127.0.0.1:{port}/bench", [f"c{i}" for i in range(streams)], rounds, row))
        # Cameras not pulled by their url yet, asked for by it (a pull on demand), their encoders kept
        # running by a REST pull under another name. GStreamer's RTSP server still sends a joining
        # client a keyframe at once (as many cameras do on PLAY): these figures are the handshake and
        # the open, a camera that does not adds the wait for its next keyframe (up to its interval).
        fresh = [stack.enter_context(camera(free_port(), size)) for _ in range(5)]
        for index, uri in enumerate(fresh):
            status, body = rest(port, "/rest-api/rtsp/startup", {"uri": uri, "toStream": f"warm{index}"})
            if status != 200:
                raise RuntimeError(f"startup of {uri}: {status} {body}")
        time.sleep(GOP_SECONDS * 1.3)
        row.samples = asyncio.run(first_pictures(f"ws://127.0.0.1:{port}/bench", fresh))
        row.first_picture_p50_ms = percentile(row.samples, 50)
        row.first_picture_max_ms = max(row.samples)
    return row


def measure_webrtc(size: str, streams: int, seconds: float, warmup: float, rounds: int) -> KindRow:
    row = KindRow("webrtc", size, streams)
    port = free_port()
    url = f"ws://127.0.0.1:{port}/bench"
    with running(receiver_command("streamsnap", port), RECEIVER_CPU) as server:
        wait_listening(port)
        time.sleep(1)
        rss_empty = rss_mb(server.pid)
        with publishers(url, streams, "H264", size):
            time.sleep(warmup)
            idle_cost(server.pid, row, rss_empty, seconds)
            asyncio.run(latencies(url, [f"s{i}" for i in range(streams)], rounds, row))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="480p only, short windows")
    parser.add_argument("--streams", type=int, default=4)
    args = parser.parse_args()
    seconds, warmup, rounds = (8, 3, 5) if args.quick else (20, 5, 10)
    sizes = ["854x480"] if args.quick else ["854x480", "1280x720"]
    os.sched_setaffinity(0, {PUBLISHER_CPU})
    rows = []
    for size in sizes:
        for measure in (measure_rtsp, measure_webrtc):
            row = measure(size, args.streams, seconds, warmup, rounds)
            print(f"  {row}", file=sys.stderr, flush=True)
            rows.append(row)
    print(f"\n### RTSP cameras vs WebRTC streams (H.264, 30 fps; cameras {KBPS} kbit/s, "
          f"keyframe every {GOP_SECONDS:g} s)\n")
    print(table(rows, [("kind", "kind"), ("size", "size"), ("streams", "streams"),
                       ("idle_cpu_per_stream", "idle CPU (cores) per stream"),
                       ("rss_per_stream_mb", "RSS MB per stream"), ("requests", "pictures"), ("errors", "errors"),
                       ("p50_ms", "picture p50 ms"), ("p99_ms", "picture p99 ms"),
                       ("first_picture_p50_ms", "first picture p50 ms (not yet pulled)"),
                       ("first_picture_max_ms", "first picture max ms")]))
    print(f"\nGoals: idle camera <= idle WebRTC stream; p99 < 300 ms at 720p; first picture <= "
          f"{GOP_SECONDS * 1000 + 500:.0f} ms (keyframe interval + 500 ms).")
    save_results({"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "rows": [asdict(r) for r in rows]}, "rtsp-")


if __name__ == "__main__":
    main()
