"""streamsnap's benchmark: receiver CPU and memory per stream, snapshot latency, side by side in one run.

    python bench/run.py                 # the full run (about 20 minutes), as in the README
    python bench/run.py --quick         # shorter windows, for a look while developing

Publishers (bench/publisher.py) replay pre-encoded clips on CPU 1; each receiver runs
alone on CPU 0: streamsnap, plain aiortc decoding every frame ("decode-all"), and plain
aiortc with decoding replaced by nothing ("floor"). Then snapshot latency, and how many
640x480 streams the server holds on its one core with snapshot p99 under 1 s. Prints
markdown tables and writes bench/results/<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from streamsnap.wcsclient import SnapshotFailed, WcsClient  # noqa: E402

RESULTS = ROOT / "bench" / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RECEIVER_CPU, PUBLISHER_CPU = 0, 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def receiver_command(kind: str, port: int) -> list[str]:
    if kind == "streamsnap":
        return [sys.executable, "-m", "streamsnap", "serve", "--host", "127.0.0.1", "--port", str(port),
                "--ice-address", "127.0.0.1", "--log-level", "warning"]
    return [sys.executable, str(ROOT / "bench" / "receivers.py"), "--mode", kind, "--port", str(port)]


@contextmanager
def running(command: list[str], cpu: int) -> Iterator[subprocess.Popen[str]]:
    # The load comes from one address standing for many clients: no per-address limit for it.
    env = {**os.environ, "STREAMSNAP_MAX_SNAPSHOTS_PER_CLIENT": "100000"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                            preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on {port}")


@contextmanager
def publishers(url: str, streams: int, codec: str, size: str) -> Iterator[subprocess.Popen[str]]:
    command = [sys.executable, str(ROOT / "bench" / "publisher.py"), url, "--streams", str(streams),
               "--codec", codec, "--size", size]
    with running(command, PUBLISHER_CPU) as proc:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"publishers did not start: {line!r}")
        yield proc


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
    with running(receiver_command(row.receiver, port), RECEIVER_CPU) as receiver:
        wait_port(port)
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


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


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
    by_setup: dict[tuple[str, str, int], list[LatencyRow]] = {}
    for row in rows:
        by_setup.setdefault((row.codec, row.size, row.streams), []).append(row)
    for (codec, size, streams), group in by_setup.items():
        port = free_port()
        url = f"ws://127.0.0.1:{port}/bench"
        with running(receiver_command("streamsnap", port), RECEIVER_CPU):
            wait_port(port)
            with publishers(url, streams, codec, size):
                time.sleep(warmup)
                for row in group:
                    pause = 3.0 if row.scenario == "idle" else 0.5
                    asyncio.run(latency_rounds(url, row, rounds, pause))


@dataclass
class CapacityRow:
    streams: int
    rate: float
    "Snapshots per second asked of each stream."
    requests: int = 0
    errors: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    receiver_cpu: float = 0.0
    "Cores the server used (it has one)."
    publisher_cpu: float = 0.0
    "Cores the publishers and this client used on the other CPU (near 1.0: the load side is the limit)."
    sustained: bool = False


async def open_loop(url: str, streams: int, rate: float, seconds: float, row: CapacityRow) -> None:
    """Ask each stream `rate` snapshots a second, on a fixed schedule whatever the answers (open loop)."""
    sessions = max(1, streams // 10)  # stay far from the per-session limit of requests in flight
    clients = [await WcsClient.connect(url) for _ in range(sessions)]
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5

    async def one(k: int) -> None:
        started = time.perf_counter()
        try:
            await clients[k % sessions].snapshot(f"s{k}", timeout=10)
        except (SnapshotFailed, TimeoutError):
            row.errors += 1
            return
        latencies.append((time.perf_counter() - started) * 1000)

    async def stream_schedule(k: int) -> None:
        tasks = []
        at = start + k / streams / rate  # spread evenly over one period
        while at < start + seconds:
            await asyncio.sleep(max(0.0, at - loop.time()))
            tasks.append(asyncio.ensure_future(one(k)))
            at += 1 / rate
        await asyncio.gather(*tasks)

    try:
        await asyncio.gather(*(stream_schedule(k) for k in range(streams)))
    finally:
        for client in clients:
            await client.close()
    row.requests = len(latencies) + row.errors
    row.p50_ms, row.p99_ms = percentile(latencies, 50), percentile(latencies, 99)


def measure_capacity(steps: list[int], rate: float, seconds: float, warmup: float) -> list[CapacityRow]:
    """640x480 VP8 streams on one server core, more at each step, until snapshot p99 reaches 1 s."""
    rows = []
    for streams in steps:
        row = CapacityRow(streams, rate)
        port = free_port()
        url = f"ws://127.0.0.1:{port}/bench"
        with running(receiver_command("streamsnap", port), RECEIVER_CPU) as receiver:
            wait_port(port)
            with publishers(url, streams, "VP8", "640x480") as load:
                time.sleep(warmup)
                server_start, load_start, wall_start = cpu_seconds(receiver.pid), cpu_seconds(load.pid), \
                    time.monotonic()
                client_start = time.process_time()
                asyncio.run(open_loop(url, streams, rate, seconds, row))
                wall = time.monotonic() - wall_start
                row.receiver_cpu = (cpu_seconds(receiver.pid) - server_start) / wall
                row.publisher_cpu = (cpu_seconds(load.pid) - load_start + time.process_time() - client_start) / wall
        row.sustained = row.errors == 0 and row.p99_ms < 1000
        print(f"  {row}", file=sys.stderr, flush=True)
        rows.append(row)
        if not row.sustained:
            break
    return rows


def table(rows: list[Any], columns: list[tuple[str, str]]) -> str:
    lines = ["| " + " | ".join(title for _, title in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for name, _ in columns:
            value = getattr(row, name)
            if isinstance(value, bool):
                cells.append("yes" if value else "no")
                continue
            cells.append("0" if value == 0 else f"{value:.4f}" if isinstance(value, float) and value < 1 else
                         f"{value:.1f}" if isinstance(value, float) else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows (numbers are rougher)")
    parser.add_argument("--only", choices=["cpu", "latency", "capacity"], help="run one part")
    parser.add_argument("--capacity-rate", type=float, default=1.0,
                        help="snapshots per second asked of each stream in the capacity part (default 1)")
    args = parser.parse_args()
    seconds, warmup, rounds = (15, 4, 8) if args.quick else (60, 5, 20)
    os.sched_setaffinity(0, {PUBLISHER_CPU})
    report: dict[str, Any] = {"quick": args.quick, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}

    if args.only in (None, "cpu"):
        plan = [("VP8", "640x480", 10), ("VP8", "1280x720", 6), ("H264", "640x480", 10)]
        cpu_rows = []
        for codec, size, streams in plan:
            for receiver, rate in (("floor", 0.0), ("streamsnap", 0.0), ("streamsnap", 1.0), ("decode-all", 0.0)):
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
                  f"decode-all / streamsnap idle = {full / idle:.2f}")
        report["cpu"] = [asdict(r) for r in cpu_rows]

    if args.only in (None, "latency"):
        latency_rows = [LatencyRow("idle", "VP8", "1280x720", 1, 1)] + [
            LatencyRow("busy", codec, "1280x720", 20, n) for codec in ("VP8",) for n in (1, 10, 100)
        ] + [LatencyRow("busy", "VP8", "640x480", 20, n) for n in (1, 10, 100)]
        measure_latency(latency_rows, rounds, warmup)
        print("\n### Snapshot latency (request sent to PNG received, client side)\n")
        print(table(latency_rows, [("scenario", "streams"), ("codec", "codec"), ("size", "size"),
                                   ("streams", "live streams"), ("concurrent", "concurrent requests"),
                                   ("requests", "requests"), ("errors", "errors"), ("p50_ms", "p50 ms"),
                                   ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"),
                                   ("frame_age_p50_ms", "frame age p50 ms"),
                                   ("frame_age_p99_ms", "frame age p99 ms")]))
        report["latency"] = [asdict(r) for r in latency_rows]

    if args.only in (None, "capacity"):
        steps = [10, 20, 30, 40] if args.quick else [10, 20, 24, 28, 32, 36, 40, 50, 60]
        capacity_rows = measure_capacity(steps, args.capacity_rate, seconds / 2, warmup * 2)
        print(f"\n### How many 640x480@30 VP8 streams one core sustains, each asked {args.capacity_rate:g} "
              "snapshot(s) a second (open loop)\n")
        print(table(capacity_rows, [("streams", "live streams"), ("requests", "requests"), ("errors", "errors"),
                                    ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"),
                                    ("receiver_cpu", "server CPU (cores)"),
                                    ("publisher_cpu", "load-side CPU (cores)"), ("sustained", "p99 < 1 s")]))
        best = [r.streams for r in capacity_rows if r.sustained]
        print(f"\nSustained: {max(best) if best else 0} streams"
              + ("" if capacity_rows and not capacity_rows[-1].sustained else " (the largest step tried)"))
        report["capacity"] = [asdict(r) for r in capacity_rows]

    save_results(report)


def save_results(report: Any, prefix: str = "") -> None:
    """Write `report` as bench/results/<prefix><time>.json and say where."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{prefix}{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\n(written to {out.relative_to(ROOT)})")


if __name__ == "__main__":
    main()
