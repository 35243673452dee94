"""What the benchmarks share that is not a process helper (those are in tests/harness, with the tests'):
CPU time and memory of a process, percentiles, markdown tables, the results files, CPU pinning and
the publishers.

Every benchmark runs as a script (`python bench/NAME.py`) that puts the repository root on
sys.path first, then imports this module, bench/clips.py, bench/publisher.py and tests.harness;
never another benchmark.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.harness import serve_command

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
RECEIVER_CPU, PUBLISHER_CPU = 0, 1
"The server alone on CPU 0, what loads it (publishers, cameras, clients) on CPU 1."


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid`, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], p: float) -> float:
    """The `p`th percentile (nearest rank), NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def table(rows: list[Any], columns: list[tuple[str, str]]) -> str:
    """A markdown table of `rows` (dataclasses): `columns` are (attribute, title)."""
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


def save_results(report: Any, prefix: str = "") -> None:
    """Write `report` as bench/results/<prefix><time>.json and say where."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"{prefix}{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"\n(written to {out.relative_to(ROOT)})")


BEFORE_SRC: list[str] = []
"The src/ directory of the 'before' server (`--before`), when a benchmark compares with an earlier commit."


def receiver_command(kind: str, port: int) -> list[str]:
    """The receiver under test on 127.0.0.1:`port`: streamsnap, 'before' (streamsnap from `BEFORE_SRC`, see
    `receiver_env`), or a plain-aiortc reference (bench/receivers.py)."""
    if kind in ("streamsnap", "before"):
        return serve_command(port, "--ice-address", "127.0.0.1", "--log-level", "warning")
    return [sys.executable, str(ROOT / "bench" / "receivers.py"), "--mode", kind, "--port", str(port)]


def receiver_env(kind: str) -> dict[str, str]:
    """What the receiver `kind` needs in its environment: 'before' imports streamsnap from `BEFORE_SRC`."""
    if kind == "before":
        assert BEFORE_SRC, "--before SRC was not given"
        return {"PYTHONPATH": BEFORE_SRC[0]}
    return {}


ONE_ADDRESS_FOR_MANY = {
    "STREAMSNAP_MAX_SNAPSHOTS_PER_CLIENT": "100000",
    "STREAMSNAP_MAX_STREAMS_PER_ADDRESS": "0",
}
"""Settings of every benchmark's server: the load comes from one address standing for many clients and
publishers, so the per-address quotas would be what a benchmark measures (a benchmark may set them again)."""


@contextmanager
def running(command: list[str], cpu: int | set[int] | None, env: dict[str, str] | None = None,
            ) -> Iterator[subprocess.Popen[str]]:
    """`command` pinned to `cpu` (None: any CPU), stdout piped, killed on leaving."""
    env = {**os.environ, **ONE_ADDRESS_FOR_MANY, **(env or {})}
    cpus = {cpu} if isinstance(cpu, int) else cpu
    # stderr into a file (a pipe nobody reads would fill and block the process), shown if the block fails.
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True, env=env,
                                preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus is not None else None)
        try:
            yield proc
        except BaseException:
            errors.seek(0)
            said = errors.read()
            if said:
                told = said if len(said) < 4000 else f"{said[:3000]}\n[...]\n{said[-1000:]}"
                print(f"{Path(command[1]).name if len(command) > 1 else command[0]}'s stderr:\n{told}",
                      file=sys.stderr)
            raise
        finally:
            proc.kill()
            proc.wait()


@contextmanager
def publishers(url: str, streams: int, codec: str = "VP8", size: str = "640x480", *, prefix: str = "s",
               cpu: int | None = PUBLISHER_CPU, ready_timeout: float | None = None,
               ) -> Iterator[subprocess.Popen[str]]:
    """`streams` publishers (bench/publisher.py: streams `prefix`0, `prefix`1, ... replaying a pre-encoded clip)
    to `url`, once every stream publishes; pinned to `cpu` (None: any). READY is awaited `ready_timeout` seconds
    (None: as long as it takes); their stdout then carries a `STATS <bytes> <keyframes>` line a second."""
    command = [sys.executable, str(ROOT / "bench" / "publisher.py"), url, "--streams", str(streams),
               "--codec", codec, "--size", size, "--prefix", prefix]
    with running(command, cpu) as proc:
        assert proc.stdout is not None
        if ready_timeout is not None:
            ready, _, _ = select.select([proc.stdout], [], [], ready_timeout)
            line = proc.stdout.readline() if ready else ""
        else:
            line = proc.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(f"publishers did not start: {line!r}")
        yield proc


async def open_loop(streams: int, rate: float, seconds: float, one: Callable[[int], Awaitable[None]]) -> None:
    """Call `one(k)` for each stream k `rate` times a second for `seconds`, on a fixed schedule whatever the
    answers (an open loop: a slow answer delays no later request), the streams spread evenly over one period
    from half a second on; return once every call has returned."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.5

    async def stream_schedule(k: int) -> None:
        tasks = []
        at = start + k / streams / rate  # spread evenly over one period
        while at < start + seconds:
            await asyncio.sleep(max(0.0, at - loop.time()))
            tasks.append(asyncio.ensure_future(one(k)))
            at += 1 / rate
        await asyncio.gather(*tasks)

    await asyncio.gather(*(stream_schedule(k) for k in range(streams)))
