"""Soak test: N publishers and M snapshot sessions against one server for T minutes, on loopback only.

    .venv/bin/python bench/soak.py --publishers 20 --sessions 4 --minutes 10

Starts `streamsnap serve` on a free 127.0.0.1 port and `bench/publisher.py` (pre-encoded
clips, so the publishers cost little CPU), then has each session ask snapshots of the
streams in turn, without pause beyond `--pause`. Every `--every` seconds it prints the
server's RSS, open file descriptors and threads, and the snapshots and errors so far; at the
end a summary (latency percentiles, errors by reason, RSS trend) and, with `--json`, the
whole record. Not part of CI: it takes minutes by design.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.harness import free_port, serve_command, wait_listening  # noqa: E402

from bench.common import percentile  # noqa: E402
from streamsnap.wcsclient import SnapshotFailed, WcsClient  # noqa: E402

HOST = "127.0.0.1"  # loopback only, whatever the arguments
MAX_PUBLISHERS = 50
MAX_SESSIONS = 32
MAX_MINUTES = 120


@dataclass
class Sample:
    """The server's state at one moment."""

    t: float
    rss_mb: float
    fds: int
    threads: int
    snapshots: int
    errors: int


@dataclass
class Record:
    """Everything one soak run measured."""

    publishers: int
    sessions: int
    minutes: float
    size: str
    codec: str
    samples: list[Sample] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value) points, per minute."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return 60 * sum((t - mean_t) * (v - mean_v) for t, v in points) / var


async def snapshot_session(url: str, names: list[str], offset: int, stop: float, pause: float,
                           record: Record) -> None:
    client = await WcsClient.connect(url)
    try:
        index = offset
        while time.monotonic() < stop:
            name = names[index % len(names)]
            index += 1
            started = time.monotonic()
            try:
                await client.snapshot(name, timeout=15)
                record.latencies_ms.append((time.monotonic() - started) * 1000)
            except SnapshotFailed as exc:
                record.errors[exc.info] += 1
            except TimeoutError:
                record.errors["timeout"] += 1
            if pause:
                await asyncio.sleep(pause)
    finally:
        await client.close()


async def sample_loop(server: psutil.Process, start: float, stop: float, every: float, record: Record) -> None:
    while True:
        now = time.monotonic()
        with server.oneshot():
            sample = Sample(round(now - start, 1), round(server.memory_info().rss / 2**20, 1), server.num_fds(),
                            server.num_threads(), len(record.latencies_ms), sum(record.errors.values()))
        record.samples.append(sample)
        print(f"{sample.t:7.0f}s  rss {sample.rss_mb:7.1f} MB  fds {sample.fds:4d}  threads {sample.threads:3d}  "
              f"snapshots {sample.snapshots:7d}  errors {sample.errors}", flush=True)
        if now >= stop:
            return
        await asyncio.sleep(min(every, max(0.0, stop - now)))


async def soak(args: argparse.Namespace, port: int, server: psutil.Process) -> Record:
    record = Record(args.publishers, args.sessions, args.minutes, args.size, args.codec)
    url = f"ws://{HOST}:{port}/soak"
    names = [f"soak-{i}" for i in range(args.publishers)]
    start = time.monotonic()
    stop = start + args.minutes * 60
    sessions = [snapshot_session(url, names, k * 7, stop, args.pause, record) for k in range(args.sessions)]
    await asyncio.gather(sample_loop(server, start, stop, args.every, record), *sessions)
    return record


def summary(record: Record, warmup: float) -> dict[str, Any]:
    steady = [s for s in record.samples if s.t >= warmup]
    rss = [(s.t, s.rss_mb) for s in steady]
    # The allocator settles over the first minutes; a leak shows in the second half as much as in the whole.
    second_half = rss[len(rss) // 2:]
    fds = [(s.t, float(s.fds)) for s in steady]
    total = len(record.latencies_ms) + sum(record.errors.values())
    return {
        "snapshots": len(record.latencies_ms),
        "errors": dict(record.errors),
        "error_rate": sum(record.errors.values()) / total if total else 0.0,
        "latency_ms": {"p50": round(percentile(record.latencies_ms, 50), 1),
                       "p99": round(percentile(record.latencies_ms, 99), 1),
                       "max": round(max(record.latencies_ms, default=float("nan")), 1)},
        "rss_mb": {"first": steady[0].rss_mb if steady else None, "last": steady[-1].rss_mb if steady else None,
                   "max": max((s.rss_mb for s in steady), default=None),
                   "slope_mb_per_min": round(slope_per_minute(rss), 3),
                   "second_half_slope_mb_per_min": round(slope_per_minute(second_half), 3)},
        "fds": {"first": steady[0].fds if steady else None, "last": steady[-1].fds if steady else None,
                "slope_per_min": round(slope_per_minute(fds), 3)},
        "threads": {"first": steady[0].threads if steady else None, "last": steady[-1].threads if steady else None},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishers", type=int, default=20)
    parser.add_argument("--sessions", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--pause", type=float, default=0.2, help="seconds each session waits between snapshots")
    parser.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=30.0, help="seconds left out of the trend")
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--codec", default="VP8", choices=["VP8", "H264"])
    parser.add_argument("--json", type=Path, help="write the whole record here")
    args = parser.parse_args()
    if not (1 <= args.publishers <= MAX_PUBLISHERS and 1 <= args.sessions <= MAX_SESSIONS
            and 0 < args.minutes <= MAX_MINUTES):
        parser.error(f"bounds: publishers 1-{MAX_PUBLISHERS}, sessions 1-{MAX_SESSIONS}, minutes up to {MAX_MINUTES}")

    port = free_port()
    env = os.environ | {"STREAMSNAP_ICE_ADDRESSES": HOST, "STREAMSNAP_LOG_LEVEL": "warning",
                        "STREAMSNAP_MAX_CONNECTIONS_PER_IP": str(args.publishers + args.sessions + 10)}
    server_proc = subprocess.Popen(serve_command(port), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   text=True)
    publisher_proc: subprocess.Popen[str] | None = None
    try:
        wait_listening(port, server_proc)
        publisher_proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "publisher.py"), f"ws://{HOST}:{port}/pub",
             "--streams", str(args.publishers), "--codec", args.codec, "--size", args.size, "--prefix", "soak-"],
            stdout=subprocess.PIPE, text=True,
        )
        assert publisher_proc.stdout is not None
        if publisher_proc.stdout.readline().strip() != "READY":
            raise RuntimeError("publishers did not start")
        print(f"soak: {args.publishers} publishers ({args.codec} {args.size}), {args.sessions} snapshot sessions, "
              f"{args.minutes} min, server pid {server_proc.pid}", flush=True)
        record = asyncio.run(soak(args, port, psutil.Process(server_proc.pid)))
    finally:
        if publisher_proc is not None:
            publisher_proc.terminate()
            publisher_proc.wait(10)
        server_proc.send_signal(signal.SIGTERM)
        exit_code = server_proc.wait(30)
    result = summary(record, args.warmup)
    result["server_exit_code"] = exit_code
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "summary": result,
                                         "samples": [asdict(s) for s in record.samples]}, indent=2))
    return 0 if not record.errors and exit_code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
