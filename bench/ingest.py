"""Ingest benchmark: what an idle stream costs, and how fast its picture comes, per kind of source.

    python bench/ingest.py              # 5 streams per kind, 20 s windows
    python bench/ingest.py --quick      # 2 streams per kind, short windows

The same pre-encoded clip (bench/clips.py: H.264 640x480, 1.5 Mbit/s, 30 fps, nothing
encoded while measuring) is pushed three ways, to a fresh `streamsnap serve` on CPU 0 each
time, publishers on CPU 1: RTMP (ffmpeg `-c copy` from the clip), WHIP (aiortc replaying the
clip, SDP posted to /whip/NAME) and WCS-WebRTC (bench/publisher.py). Per kind: the server's
CPU per stream while nobody asks pictures ("idle"), its RSS per stream, then picture latency
(p50/p99 of `GET /streams/NAME/snapshot.jpg?max_age_ms=0`, no reuse, one stream at a time).
Prints one markdown table and writes bench/results/ingest-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.harness import free_port  # noqa: E402
from tests.harness import wait_listening as wait_port  # noqa: E402

from bench.clips import load_clip  # noqa: E402
from bench.common import (  # noqa: E402
    ONE_ADDRESS_FOR_MANY,
    PUBLISHER_CPU,
    RECEIVER_CPU,
    RESULTS,
    cpu_seconds,
    percentile,
    rss_mb,
)

WIDTH, HEIGHT = 640, 480
KINDS = ("rtmp", "whip", "webrtc")


@dataclass
class IngestRow:
    kind: str
    streams: int
    idle_cpu_per_stream: float = 0.0
    "Share of one core per stream, nobody asking pictures."
    rss_per_stream_mb: float = 0.0
    picture_p50_ms: float = 0.0
    picture_p99_ms: float = 0.0
    pictures: int = 0
    errors: int = 0


@contextmanager
def process(command: list[str], cpu: int, env: dict[str, str] | None = None,
            stdout: int | None = subprocess.DEVNULL) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(command, stdout=stdout, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, **(env or {})}, preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def clip_file() -> Path:
    """The clip in an MP4 file (timestamps for `-re`, seekable for `-stream_loop`), for ffmpeg `-c copy`."""
    clip = load_clip("H264", WIDTH, HEIGHT)
    raw = ROOT / "bench" / "cache" / f"H264-{WIDTH}x{HEIGHT}.h264"
    path = raw.with_suffix(".mp4")
    if not path.exists():
        raw.write_bytes(b"".join(clip.frames))
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-fflags", "+genpts", "-r", "30",
                        "-f", "h264", "-i", str(raw), "-c", "copy", str(path)], check=True)
    return path


@contextmanager
def publishers(kind: str, http_port: int, rtmp_port: int, streams: int) -> Iterator[None]:
    with ExitStack() as stack:
        if kind == "rtmp":
            source = clip_file()
            for index in range(streams):
                stack.enter_context(process(
                    ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1",
                     "-i", str(source), "-c", "copy", "-f", "flv",
                     f"rtmp://127.0.0.1:{rtmp_port}/live/s{index}"], PUBLISHER_CPU))
        else:
            command = ([sys.executable, __file__, "--whip-publish", f"http://127.0.0.1:{http_port}/whip/",
                        "--streams", str(streams)] if kind == "whip" else
                       [sys.executable, str(ROOT / "bench" / "publisher.py"), f"ws://127.0.0.1:{http_port}/b",
                        "--streams", str(streams), "--codec", "H264", "--size", f"{WIDTH}x{HEIGHT}"])
            proc = stack.enter_context(process(command, PUBLISHER_CPU, stdout=subprocess.PIPE))
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "READY":
                raise RuntimeError(f"{kind} publishers did not start")
        yield


async def wait_publishing(base: str, streams: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            found = await (await http.get(f"{base}/streams")).json()
            if sum(1 for s in found if s["status"] == "PUBLISHING") >= streams:
                return
            await asyncio.sleep(0.2)
    raise RuntimeError("streams did not start")


async def picture_latency(base: str, streams: int, rounds: int, row: IngestRow) -> None:
    samples: list[float] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        for round_ in range(rounds):
            name = f"s{round_ % streams}"
            await asyncio.sleep(0.3)
            started = time.perf_counter()
            answer = await http.get(f"{base}/streams/{name}/snapshot.jpg?max_age_ms=0")  # a fresh picture
            await answer.read()
            if answer.status == 200:
                samples.append((time.perf_counter() - started) * 1000)
            else:
                row.errors += 1
    row.pictures = len(samples)
    row.picture_p50_ms, row.picture_p99_ms = percentile(samples, 50), percentile(samples, 99)


def measure(kind: str, streams: int, warmup: float, seconds: float, rounds: int) -> IngestRow:
    row = IngestRow(kind, streams)
    port, rtmp_port = free_port(), free_port()
    command = [sys.executable, "-m", "streamsnap", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--ice-address", "127.0.0.1", "--log-level", "warning"]
    env = {"STREAMSNAP_RTMP_PORT": str(rtmp_port), **ONE_ADDRESS_FOR_MANY}
    base = f"http://127.0.0.1:{port}"
    with process(command, RECEIVER_CPU, env) as server:
        wait_port(port)
        time.sleep(1)
        rss_empty = rss_mb(server.pid)
        with publishers(kind, port, rtmp_port, streams):
            asyncio.run(wait_publishing(base, streams))
            time.sleep(warmup)
            cpu_start, wall_start = cpu_seconds(server.pid), time.monotonic()
            time.sleep(seconds)
            row.idle_cpu_per_stream = (cpu_seconds(server.pid) - cpu_start) / (time.monotonic() - wall_start) / streams
            row.rss_per_stream_mb = (rss_mb(server.pid) - rss_empty) / streams
            asyncio.run(picture_latency(base, streams, rounds, row))
    return row


async def whip_publish(url: str, streams: int) -> None:
    """Replay the clip to `url`NAME by WHIP, `streams` times; print READY once every answer is in."""
    from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

    from bench.publisher import ReplayTrack

    clip = load_clip("H264", WIDTH, HEIGHT)
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    peers = []
    async with aiohttp.ClientSession() as http:
        for index in range(streams):
            track = ReplayTrack(clip, offset=index * 7)
            pc = RTCPeerConnection()
            transceiver = pc.addTransceiver(track, direction="sendonly")
            transceiver.setCodecPreferences(h264)
            track.sender = transceiver.sender
            await pc.setLocalDescription(await pc.createOffer())
            answer = await http.post(f"{url}s{index}", data=pc.localDescription.sdp,
                                     headers={"Content-Type": "application/sdp"})
            if answer.status != 201:
                raise RuntimeError(f"WHIP refused: {answer.status} {await answer.text()}")
            await pc.setRemoteDescription(RTCSessionDescription(await answer.text(), "answer"))
            peers.append(pc)
    print("READY", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="2 streams per kind, short windows")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--whip-publish", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.whip_publish:
        asyncio.run(whip_publish(args.whip_publish, args.streams))
        return
    streams = 2 if args.quick else args.streams
    warmup, seconds, rounds = (3.0, 8.0, 20) if args.quick else (5.0, 20.0, 60)
    rows = [measure(kind, streams, warmup, seconds, rounds) for kind in args.kinds.split(",")]
    print(f"\n### Ingest: idle cost and picture latency per kind (H.264 {WIDTH}x{HEIGHT}, 1.5 Mbit/s, 30 fps)\n")
    print("| kind | streams | idle CPU per stream | RSS per stream | picture p50 | picture p99 | errors |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row.kind} | {row.streams} | {row.idle_cpu_per_stream:.1%} | {row.rss_per_stream_mb:.1f} MB "
              f"| {row.picture_p50_ms:.0f} ms | {row.picture_p99_ms:.0f} ms | {row.errors} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"ingest-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps([asdict(row) for row in rows], indent=2))
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
