"""streamsnap's benchmark: receiver CPU and memory per stream, snapshot latency, side by side in one run.

    python bench/run.py                 # the full run (about 20 minutes), as in docs/performance.md
    python bench/run.py --quick         # shorter windows, for a look while developing

Publishers (bench/publisher.py) replay pre-encoded clips on CPU 1; each receiver runs
alone on CPU 0: streamsnap, plain aiortc decoding every frame ("decode-all"), and plain
aiortc with decoding replaced by nothing ("floor"). Then snapshot latency, and the capacity
part: an open loop over the image url (PNGs, 640x480 and 1280x720) finds how many streams the
server sustains at one picture a second each (every request served, p99 < 1 s), then asks the
capacity's streams 1.5 and 2 pictures a second (past capacity in pictures), and `max_age_ms` 500
vs 0 with several viewers per stream; `--crowd` adds 1.5x and 2x the streams (more media to
receive as well). Per step it prints served, refused fast, timeouts, latency, frame age, server
CPU, frames decoded and PLIs per picture and the publishers' upstream bitrate, then the goals of
issue 17, met or not. `--decode-all` adds the decode-all reference (same PNG encoder; its
pictures' age shows how far its decoder falls behind).
Prints markdown tables and writes bench/results/<time>.json.

    python bench/run.py --only capacity --server-cpus 0,1 --decode-all
    python bench/run.py --quick --before /tmp/base/src   # beside an earlier commit's server (a git worktree)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.harness import free_port, wait_listening

from bench.common import (
    BEFORE_SRC,
    PUBLISHER_CPU,
    RECEIVER_CPU,
    cpu_seconds,
    open_loop,
    percentile,
    publishers,
    receiver_command,
    receiver_env,
    rss_mb,
    running,
    save_results,
    table,
)
from streamsnap.wcsclient import SnapshotFailed, WcsClient


@dataclass
class CpuRow:
    receiver: str
    codec: str
    size: str
    streams: int
    snapshots_per_second_per_stream: float
    cpu_per_stream: float = 0.0
    rss_per_stream_mb: float = 0.0
    snapshot_errors: int = 0


async def snapshot_loop(url: str, names: list[str], stop: float, rate: float) -> int:
    """Ask each stream for `rate` snapshots a second until `stop`; return the error count."""
    client = await WcsClient.connect(url)
    errors = 0
    try:
        while time.monotonic() < stop:
            tick = time.monotonic()
            results = await asyncio.gather(*(client.snapshot(n) for n in names), return_exceptions=True)
            errors += sum(isinstance(r, Exception) for r in results)
            await asyncio.sleep(max(0.0, 1 / rate - (time.monotonic() - tick)))
    finally:
        await client.close()
    return errors


def measure_cpu(row: CpuRow, seconds: float, warmup: float) -> CpuRow:
    port = free_port()
    url = f"ws://127.0.0.1:{port}/bench"
    with running(receiver_command(row.receiver, port), RECEIVER_CPU, receiver_env(row.receiver)) as receiver:
        wait_listening(port)
        time.sleep(1)
        rss_empty = rss_mb(receiver.pid)
        with publishers(url, row.streams, row.codec, row.size):
            time.sleep(warmup)
            cpu_start, wall_start = cpu_seconds(receiver.pid), time.monotonic()
            if row.snapshots_per_second_per_stream:
                names = [f"s{i}" for i in range(row.streams)]
                row.snapshot_errors = asyncio.run(
                    snapshot_loop(url, names, wall_start + seconds, row.snapshots_per_second_per_stream))
            else:
                time.sleep(seconds)
            cpu = cpu_seconds(receiver.pid) - cpu_start
            wall = time.monotonic() - wall_start
            row.cpu_per_stream = cpu / wall / row.streams
            row.rss_per_stream_mb = (rss_mb(receiver.pid) - rss_empty) / row.streams
    return row


@dataclass
class LatencyRow:
    server: str
    "streamsnap, or 'before' (`--before`)."
    scenario: str
    codec: str
    size: str
    streams: int
    concurrent: int
    requests: int = 0
    errors: int = 0
    p50_ms: float = 0.0
    p95_ms: float = 0.0
    p99_ms: float = 0.0
    frame_age_p50_ms: float = 0.0
    frame_age_p99_ms: float = 0.0
    samples: list[float] = field(default_factory=list, repr=False)


async def latency_rounds(url: str, row: LatencyRow, rounds: int, pause: float) -> None:
    sessions = max(1, (row.concurrent + 49) // 50)  # the server caps requests in flight per session
    clients = [await WcsClient.connect(url) for _ in range(sessions)]
    latencies: list[float] = []
    ages: list[float] = []
    try:
        for _ in range(rounds):
            await asyncio.sleep(pause)

            async def one(k: int) -> None:
                started = time.perf_counter()
                try:
                    picture = await clients[k % sessions].snapshot(f"s{k % row.streams}", timeout=10)
                except (SnapshotFailed, TimeoutError):
                    row.errors += 1
                    return
                latencies.append((time.perf_counter() - started) * 1000)
                ages.append(float(picture.payload.get("frameAgeMs", "nan")))

            await asyncio.gather(*(one(k) for k in range(row.concurrent)))
    finally:
        for client in clients:
            await client.close()
    row.requests = rounds * row.concurrent
    row.p50_ms, row.p95_ms, row.p99_ms = (percentile(latencies, p) for p in (50, 95, 99))
    row.frame_age_p50_ms, row.frame_age_p99_ms = percentile(ages, 50), percentile(ages, 99)


def measure_latency(rows: list[LatencyRow], rounds: int, warmup: float) -> None:
    by_setup: dict[tuple[str, str, str, int], list[LatencyRow]] = {}
    for row in rows:
        by_setup.setdefault((row.server, row.codec, row.size, row.streams), []).append(row)
    for (server, codec, size, streams), group in by_setup.items():
        port = free_port()
        url = f"ws://127.0.0.1:{port}/bench"
        with running(receiver_command(server, port), RECEIVER_CPU, receiver_env(server)):
            wait_listening(port)
            with publishers(url, streams, codec, size):
                time.sleep(warmup)
                for row in group:
                    pause = 3.0 if row.scenario == "idle" else 0.5
                    asyncio.run(latency_rounds(url, row, rounds, pause))


# The capacity part: pictures under an open-loop load, up to twice what the server sustains.

LOAD_LIMITS = {
    # One address stands for many clients and many publishers here: the per-address limits would be
    # what the benchmark measures, not the server's capacity.
    "STREAMSNAP_MAX_STREAMS": "2000",
    "STREAMSNAP_MAX_SESSIONS": "5000",
    "STREAMSNAP_MAX_CONNECTIONS_PER_IP": "5000",
    "STREAMSNAP_MAX_HTTP_CONNECTIONS_PER_IP": "100000",
    "STREAMSNAP_MAX_SNAPSHOTS_PER_SUBJECT": "0",
    "STREAMSNAP_MAX_SNAPSHOTS_IN_FLIGHT": "100000",
}
REFUSED_FAST_MS = 50.0


@dataclass
class CapacityRow:
    receiver: str
    size: str
    streams: int
    rate: float
    "Pictures per second asked of each stream."
    max_age_ms: float
    requests: int = 0
    served: int = 0
    refused_fast: int = 0
    "Refused (503/429) within 50 ms."
    refused_slow: int = 0
    "Refused after 50 ms or more."
    timeouts: int = 0
    "No answer within 10 s."
    errors: int = 0
    "Any other failure (connection errors, other statuses)."
    p50_ms: float = 0.0
    "Of served pictures, client side."
    p99_ms: float = 0.0
    frame_age_p99_ms: float = 0.0
    "How old the depicted frame was when answered (the server's X-Frame-Age-Ms), p99 of served pictures."
    served_per_second: float = 0.0
    server_cpu: float = 0.0
    "Cores the server used."
    load_cpu: float = 0.0
    "Cores the publishers and this client used."
    frames_per_picture: float = float("nan")
    "Frames decoded per served picture (decode-all: every frame received)."
    plis_per_picture: float = float("nan")
    upstream_mbps: float = 0.0
    "Publishers' encoded video sent, all streams (Mbit/s; RTP/SRTP overhead not counted)."
    streams_ended: int = 0
    loop_lag_max_ms: float = float("nan")
    "Largest event loop lag the server measured during the window (sampled twice a second)."
    client_lag_max_ms: float = 0.0
    "Largest lag of this benchmark client's own event loop (a late client reads answers late too)."
    sustained: bool = False
    "Every request served (none refused, no timeout), p99 < 1 s, pictures < 1 s old at p99, no stream ended."
    failures: str = ""
    "The server's failed answers during the window, by result (from /metrics)."


class PublisherStats:
    """The publishers' `STATS <bytes> <keyframes>` lines, read in a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.bytes = 0
        self.keyframes = 0
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            fields = line.split()
            if len(fields) == 3 and fields[0] == "STATS":
                self.bytes, self.keyframes = int(fields[1]), int(fields[2])


async def scrape(base: str) -> dict[str, float]:
    """The server's /metrics as {series: value} (series with their labels)."""
    async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as response:
        text = await response.text()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


async def http_open_loop(base: str, streams: int, rate: float, seconds: float, max_age_ms: float,
                         row: CapacityRow, sample_lag: bool) -> None:
    """Ask each stream `rate` PNGs a second over the image url on a fixed schedule, whatever the answers;
    with `sample_lag`, read the server's event loop lag from /metrics twice a second meanwhile."""
    latencies: list[float] = []
    ages: list[float] = []
    lags: list[float] = []

    async def sample() -> None:
        while True:
            await asyncio.sleep(0.5)
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                lags.append((await scrape(base)).get("streamsnap_event_loop_lag_seconds", 0.0))

    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as http:

        async def one(k: int) -> None:
            started = time.perf_counter()
            try:
                async with http.get(f"{base}/streams/s{k}/snapshot.png", params={"max_age_ms": f"{max_age_ms:g}"},
                                    ) as response:
                    await response.read()
                    status = response.status
                    age = response.headers.get("X-Frame-Age-Ms")
            except TimeoutError:
                row.timeouts += 1
                return
            except aiohttp.ClientError:
                row.errors += 1
                return
            elapsed = (time.perf_counter() - started) * 1000
            if status == 200:
                latencies.append(elapsed)
                if age is not None:
                    ages.append(float(age))
            elif status in (429, 503):
                if elapsed < REFUSED_FAST_MS:
                    row.refused_fast += 1
                else:
                    row.refused_slow += 1
            else:
                row.errors += 1

        async def own_lag() -> None:
            while True:
                planned = loop.time() + 0.01
                await asyncio.sleep(0.01)
                row.client_lag_max_ms = max(row.client_lag_max_ms, (loop.time() - planned) * 1000)

        samplers = [asyncio.ensure_future(own_lag())]
        if sample_lag:
            samplers.append(asyncio.ensure_future(sample()))
        await open_loop(streams, rate, seconds, one)
        for sampler in samplers:
            sampler.cancel()
        await asyncio.gather(*samplers, return_exceptions=True)
    if lags:
        row.loop_lag_max_ms = max(lags) * 1000
    row.served = len(latencies)
    row.requests = row.served + row.refused_fast + row.refused_slow + row.timeouts + row.errors
    row.p50_ms, row.p99_ms = percentile(latencies, 50), percentile(latencies, 99)
    row.frame_age_p99_ms = percentile(ages, 99)


def measure_step(row: CapacityRow, seconds: float, warmup: float, server_cpus: set[int]) -> CapacityRow:
    """One step: a fresh server and `row.streams` publishers, then the open loop for `seconds`."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with running(receiver_command(row.receiver, port), server_cpus, LOAD_LIMITS | receiver_env(row.receiver)) \
            as receiver:
        wait_listening(port)
        with publishers(f"ws://127.0.0.1:{port}/bench", row.streams, "VP8", row.size) as load:
            upstream = PublisherStats(load)
            time.sleep(warmup)
            streamsnap = row.receiver in ("streamsnap", "before")
            before = asyncio.run(scrape(base)) if streamsnap else {}
            server_start, load_start = cpu_seconds(receiver.pid), cpu_seconds(load.pid)
            client_start, wall_start = time.process_time(), time.monotonic()
            bytes_start = upstream.bytes
            asyncio.run(http_open_loop(base, row.streams, row.rate, seconds, row.max_age_ms, row, streamsnap))
            wall = time.monotonic() - wall_start
            row.server_cpu = (cpu_seconds(receiver.pid) - server_start) / wall
            row.load_cpu = (cpu_seconds(load.pid) - load_start + time.process_time() - client_start) / wall
            row.upstream_mbps = (upstream.bytes - bytes_start) * 8 / wall / 1e6
            row.served_per_second = row.served / seconds
            if streamsnap:
                after = asyncio.run(scrape(base))

                def delta(name: str) -> float:
                    return after.get(name, 0.0) - before.get(name, 0.0)

                if row.served:
                    row.frames_per_picture = delta("streamsnap_frames_decoded_total") / row.served
                    row.plis_per_picture = delta("streamsnap_plis_sent_total") / row.served
                row.streams_ended = row.streams - int(after.get("streamsnap_streams", 0))
                failed = {name.split('"')[1]: delta(name) for name in after
                          if name.startswith("streamsnap_snapshots_total{") and '"ok"' not in name}
                row.failures = ", ".join(f"{k}: {v:.0f}" for k, v in sorted(failed.items()) if v)
            elif row.served:
                row.frames_per_picture = 30 * row.streams * wall / row.served  # it decodes every frame
    row.sustained = (row.timeouts == 0 and row.errors == 0 and row.streams_ended == 0 and row.p99_ms < 1000
                     and row.frame_age_p99_ms < 1000 and row.refused_fast + row.refused_slow == 0)
    print(f"  {row}", file=sys.stderr, flush=True)
    return row


def find_capacity(receiver: str, size: str, steps: list[int], seconds: float, warmup: float,
                  server_cpus: set[int]) -> tuple[int, list[CapacityRow]]:
    """Streams sustained at one picture a second each (max_age_ms=0): the largest step before one fails."""
    rows: list[CapacityRow] = []
    for streams in steps:
        row = measure_step(CapacityRow(receiver, size, streams, 1.0, 0.0), seconds, warmup, server_cpus)
        rows.append(row)
        if not row.sustained:
            break
    sustained = [r.streams for r in rows if r.sustained]
    return (max(sustained) if sustained else 0), rows


CAPACITY_COLUMNS = [
    ("receiver", "server"), ("size", "size"), ("streams", "streams"), ("rate", "asked/s/stream"),
    ("max_age_ms", "max_age_ms"), ("requests", "requests"), ("served", "served"),
    ("served_per_second", "served/s"), ("refused_fast", "refused < 50 ms"), ("refused_slow", "refused later"),
    ("timeouts", "timeouts"), ("errors", "errors"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
    ("frame_age_p99_ms", "frame age p99 ms"), ("server_cpu", "server CPU (cores)"),
    ("load_cpu", "load-side CPU (cores)"),
    ("frames_per_picture", "frames decoded/picture"), ("plis_per_picture", "PLIs/picture"),
    ("upstream_mbps", "upstream Mbit/s"), ("streams_ended", "streams ended"),
    ("loop_lag_max_ms", "max loop lag ms"), ("client_lag_max_ms", "client's max loop lag ms"),
    ("sustained", "sustained"),
]


def run_capacity(args: argparse.Namespace, seconds: float, warmup: float, report: dict[str, Any]) -> None:
    """The capacity part: capacity per size, 1.5x and 2x of it, max_age_ms 500 vs 0, decode-all beside."""
    server_cpus = {int(c) for c in args.server_cpus.split(",")}
    load_busy = os.getloadavg()[0]
    rows: list[CapacityRow] = []
    goals: list[tuple[str, bool | None, str]] = []
    sizes = [size for size in args.capacity_sizes.split(",") if size]
    capacities: dict[str, int] = {}
    for size in sizes:
        steps = [int(s) for s in (args.capacity_steps_720 if size == "1280x720" else args.capacity_steps).split(",")]
        capacity, found = find_capacity("streamsnap", size, steps, seconds, warmup, server_cpus)
        rows += found
        capacities[size] = capacity
        if not capacity:
            continue
        # Past capacity in pictures: the capacity's streams asked 1.5 and 2 pictures a second each. More
        # streams at one picture a second would add receiving work too (at 640x480 a stream's receive
        # path costs about as much a second as one picture), and the media comes first.
        over = [measure_step(CapacityRow("streamsnap", size, capacity, factor, 0.0), seconds, warmup, server_cpus)
                for factor in (1.5, 2.0)]
        rows += over
        # Past capacity in streams as well: the machine's limit on receiving, shown, not a goal of pictures.
        crowd = [measure_step(CapacityRow("streamsnap", size, round(capacity * factor), 1.0, 0.0), seconds, warmup,
                              server_cpus) for factor in (1.5, 2.0)] if args.crowd else []
        rows += crowd
        light = [r for r in found if r.sustained]
        base_frames = min(r.frames_per_picture for r in light)
        within = all(r.served_per_second >= 0.9 * capacity for r in over)
        goals.append((f"{size}: asked 1.5x and 2x capacity, served/s >= 90% of capacity ({capacity}/s)", within,
                      ", ".join(f"{r.served_per_second:.0f}/s" for r in over)))
        goals.append((f"{size}: every excess request refused fast (< 50 ms), no timeouts",
                      all(r.refused_slow == 0 and r.timeouts == 0 and r.errors == 0 for r in over),
                      ", ".join(f"{r.refused_fast} fast, {r.refused_slow} slow, {r.timeouts} timeouts" for r in over)))
        goals.append((f"{size}: no published stream ends", all(r.streams_ended == 0 for r in rows if r.size == size),
                      ", ".join(str(r.streams_ended) for r in rows if r.size == size)))
        worst = max(r.frames_per_picture for r in over)
        goals.append((f"{size}: frames decoded per picture never rise with load", worst <= base_frames * 1.1 + 0.05,
                      f"{base_frames:.2f} below capacity, up to {worst:.2f} past it"))
    if capacities.get("640x480"):
        # A wall of pictures watched by several viewers: `viewers` requests a second per stream on the
        # capacity's streams, `viewers` times the capacity asked.
        capacity = capacities["640x480"]
        pair = [measure_step(CapacityRow("streamsnap", "640x480", capacity, args.viewers, age), seconds, warmup,
                             server_cpus) for age in (0.0, 500.0)]
        rows += pair
        ratio = pair[1].served / pair[0].served if pair[0].served else float("inf")
        goals.append((f"max_age_ms=500 serves >= 3x the requests of max_age_ms=0 ({capacity} streams x "
                      f"{args.viewers:g}/s)", ratio >= 3, f"{pair[1].served} vs {pair[0].served}: {ratio:.1f}x"))
        goals.append(("max_age_ms=500 and 0: no timeouts, refusals fast",
                      all(r.refused_slow == 0 and r.timeouts == 0 and r.errors == 0 for r in pair),
                      ", ".join(f"{r.refused_fast} fast, {r.refused_slow} slow, {r.timeouts} timeouts" for r in pair)))
        if args.reference_capacity:
            goals.append((f"640x480 capacity >= 2x the previous figure ({args.reference_capacity})",
                          capacity >= 2 * args.reference_capacity, f"{capacity} streams"))
    if args.before and capacities.get("640x480"):
        steps = [int(s) for s in args.capacity_steps.split(",")]
        earlier, found = find_capacity("before", "640x480", steps, seconds, warmup, server_cpus)
        rows += found
        goals.append((f"640x480 capacity >= 2x the 'before' server's of the same run ({earlier})",
                      capacities["640x480"] >= 2 * earlier, f"{capacities['640x480']} vs {earlier} streams: "
                      + (f"{capacities['640x480'] / earlier:.1f}x" if earlier else "before sustained no step")))
    if args.decode_all:
        reference, found = find_capacity("decode-all", "640x480", [int(s) for s in args.decode_all_steps.split(",")],
                                         seconds, warmup, server_cpus)
        rows += found
        ours = capacities.get("640x480")
        print(f"\ndecode-all (same PNG encoder): {reference} streams"
              + (f"; streamsnap / decode-all = {ours / reference:.1f}x" if reference and ours else ""))
    print(f"\n### Pictures under load: PNGs over the image url, open loop (server on CPU "
          f"{args.server_cpus}; load average {load_busy:.1f} when the part started"
          f"{': a shared, busy machine' if load_busy > 1.5 else ''})\n")
    print(table(rows, CAPACITY_COLUMNS))
    print("\nCapacity (streams at 1 picture/s, max_age_ms=0, sustained): "
          + ", ".join(f"{size} {count}" for size, count in capacities.items()))
    print("\nGoals of issue 17:\n")
    for goal, met, figures in goals:
        print(f"- {goal}: {'met' if met else 'NOT met'} ({figures})")
    report["capacity"] = [asdict(r) for r in rows]
    report["capacity_goals"] = [{"goal": g, "met": m, "figures": f} for g, m, f in goals]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows (numbers are rougher)")
    parser.add_argument("--only", choices=["cpu", "latency", "capacity"], help="run one part")
    parser.add_argument("--server-cpus", default="0",
                        help="CPUs the server may use in the capacity part, e.g. 0 or 0,1 (default 0)")
    parser.add_argument("--capacity-seconds", type=float, default=0.0,
                        help="measuring window of each capacity step (default: 30 s, 7.5 s with --quick)")
    parser.add_argument("--capacity-sizes", default="640x480,1280x720", help="stream sizes of the capacity part")
    parser.add_argument("--capacity-steps", default="20,30,40,50,60,70,80,100,120",
                        help="streams tried at 640x480 until one step is not sustained")
    parser.add_argument("--capacity-steps-720", default="10,20,30,40,50,60,70,80",
                        help="streams tried at 1280x720")
    parser.add_argument("--viewers", type=float, default=8.0,
                        help="requests a second per stream in the max_age_ms 500-vs-0 step (default 8)")
    parser.add_argument("--crowd", action="store_true",
                        help="also run 1.5x and 2x the capacity's streams at one picture a second (receive load)")
    parser.add_argument("--decode-all", action="store_true", help="also find the decode-all reference's capacity")
    parser.add_argument("--decode-all-steps", default="10,20,30,40,50,60,80")
    parser.add_argument("--reference-capacity", type=int, default=0,
                        help="the 640x480 capacity to double (a previous run's figure)")
    parser.add_argument("--before", metavar="SRC",
                        help="also measure streamsnap from this src/ directory (an earlier commit's, e.g. a git "
                             "worktree's), as 'before', beside this checkout's, in every part")
    args = parser.parse_args()
    if args.before:
        BEFORE_SRC.append(str(Path(args.before).resolve()))
    servers = ["streamsnap", "before"] if args.before else ["streamsnap"]
    seconds, warmup, rounds = (15, 4, 8) if args.quick else (60, 5, 20)
    os.sched_setaffinity(0, {PUBLISHER_CPU})
    report: dict[str, Any] = {"quick": args.quick, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}

    if args.only in (None, "cpu"):
        plan = [("VP8", "640x480", 10), ("VP8", "1280x720", 6), ("H264", "640x480", 10)]
        cpu_rows = []
        for codec, size, streams in plan:
            for receiver, rate in (("floor", 0.0), *((server, rate) for server in servers for rate in (0.0, 1.0)),
                                   ("decode-all", 0.0)):
                row = measure_cpu(CpuRow(receiver, codec, size, streams, rate), seconds, warmup)
                print(f"  {row}", file=sys.stderr, flush=True)
                cpu_rows.append(row)
        print("\n### Receiver CPU and memory per stream\n")
        print(table(cpu_rows, [("codec", "codec"), ("size", "size"), ("streams", "streams"),
                               ("receiver", "receiver"), ("snapshots_per_second_per_stream", "snapshots/s/stream"),
                               ("cpu_per_stream", "CPU (cores) per stream"),
                               ("rss_per_stream_mb", f"RSS MB per stream after {seconds} s"),
                               ("snapshot_errors", "errors")]))
        print("\nRatios (same run):\n")
        for codec, size, _ in plan:
            got = {(r.receiver, r.snapshots_per_second_per_stream): r.cpu_per_stream
                   for r in cpu_rows if (r.codec, r.size) == (codec, size)}
            idle, floor, full = got[("streamsnap", 0.0)], got[("floor", 0.0)], got[("decode-all", 0.0)]
            print(f"- {codec} {size}: streamsnap idle / floor = {idle / floor:.2f}; "
                  f"decode-all / streamsnap idle = {full / idle:.2f}"
                  + (f"; streamsnap / before, idle = {idle / got[('before', 0.0)]:.2f}, at 1 picture/s = "
                     f"{got[('streamsnap', 1.0)] / got[('before', 1.0)]:.2f}" if args.before else ""))
        report["cpu"] = [asdict(r) for r in cpu_rows]

    if args.only in (None, "latency"):
        latency_rows = [row for server in servers for row in (
            [LatencyRow(server, "idle", "VP8", size, 1, 1) for size in ("640x480", "1280x720")]
            + [LatencyRow(server, "busy", "VP8", "1280x720", 20, n) for n in (1, 10, 100)]
            + [LatencyRow(server, "busy", "VP8", "640x480", 20, n) for n in (1, 10, 100)])]
        measure_latency(latency_rows, rounds, warmup)
        print("\n### Snapshot latency (request sent to PNG received, client side)\n")
        print(table(latency_rows, [("server", "server"), ("scenario", "streams"), ("codec", "codec"), ("size", "size"),
                                   ("streams", "live streams"), ("concurrent", "concurrent requests"),
                                   ("requests", "requests"), ("errors", "errors"), ("p50_ms", "p50 ms"),
                                   ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"),
                                   ("frame_age_p50_ms", "frame age p50 ms"),
                                   ("frame_age_p99_ms", "frame age p99 ms")]))
        report["latency"] = [asdict(r) for r in latency_rows]

    if args.only in (None, "capacity"):
        run_capacity(args, args.capacity_seconds or seconds / 2, warmup * 2, report)

    save_results(report)


if __name__ == "__main__":
    main()
