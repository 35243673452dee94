"""Cluster benchmark, ttl: seconds from `kill -9` of a node until its stream leaves another node's GET /streams.

    python bench/cluster_ttl.py             # 6 trials per cluster_ttl, 5 s and 2 s
    python bench/cluster_ttl.py --quick     # 3 trials each

An observer node and, per trial, a victim node with one 320x240 publisher, on one redis-server of
its own; the kill falls at a different phase of the heartbeat in each trial. Also what a picture
of the stream through the observer answers just after the kill and once the stream is gone.
Prints a markdown table and writes bench/results/cluster-ttl-<time>.json. (bench/cluster.py runs
it with the other cluster benchmarks.)
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import harness

from bench.cluster_common import listed, main, nodes, publishers_on, redis_server, start_node, wait_listed
from bench.common import percentile, table


@dataclass
class TtlRow:
    ttl: float
    trials: int
    vanished_s: list[float] = field(default_factory=list)
    min_s: float = 0.0
    median_s: float = 0.0
    max_s: float = 0.0
    picture_before: str = ""
    "What a picture of the stream via the other node answered right after the kill."
    picture_after: str = ""
    "What it answered once the stream was gone."


async def status_of(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url) as response:
        if response.status == 200:
            return "200"
        return f"{response.status} {(await response.json()).get('reason', '')}"


async def time_vanish(observer: harness.Node, name: str, victim: subprocess.Popen[str],
                      timeout: float) -> tuple[float, str, str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        victim.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        before = await status_of(http, f"{observer.http_url}/streams/{name}/snapshot.jpg")
        async with asyncio.timeout(timeout):
            while name in await listed(http, observer):  # noqa: ASYNC110 -- another process
                await asyncio.sleep(0.05)
        vanished = time.monotonic() - killed
        after = await status_of(http, f"{observer.http_url}/streams/{name}/snapshot.jpg")
    return vanished, before, after


def run_ttl(quick: bool) -> list[TtlRow]:
    trials = 3 if quick else 6
    rows = []
    with redis_server() as server:
        for ttl in (5.0, 2.0):
            row = TtlRow(ttl, trials)
            observer = start_node("observer", server.url, ttl=ttl)
            with nodes(observer):
                for trial in range(trials):
                    victim = start_node(f"victim{trial}", server.url, ttl=ttl)
                    with nodes(victim), publishers_on(victim, 1, prefix=f"doomed{trial}-", size="320x240"):
                        name = f"doomed{trial}-0"
                        asyncio.run(wait_listed(observer, {name}))
                        time.sleep(trial * ttl / 3 / trials)  # spread the kill over the heartbeat's phase
                        vanished, before, after = asyncio.run(time_vanish(observer, name, victim.proc, ttl * 3))
                    victim.proc.wait()
                    row.vanished_s.append(vanished)
                    row.picture_before, row.picture_after = before, after
                    print(f"  ttl {ttl}: {vanished:.2f} s ({before} / {after})", file=sys.stderr, flush=True)
            row.min_s, row.max_s = min(row.vanished_s), max(row.vanished_s)
            row.median_s = percentile(row.vanished_s, 50)
            rows.append(row)
    print("\n### From kill -9 of a node to its stream leaving another node's GET /streams\n")
    print(table(rows, [("ttl", "cluster_ttl s"), ("trials", "trials"), ("min_s", "min s"), ("median_s", "median s"),
                       ("max_s", "max s"), ("picture_before", "picture via the other node, just after the kill"),
                       ("picture_after", "once gone")]))
    print("\n(Records expire `ttl` after the last heartbeat, which comes every ttl/3: expected between 2/3 ttl "
          "and ttl.)")
    return rows


if __name__ == "__main__":
    main("ttl", __doc__, lambda quick: [asdict(row) for row in run_ttl(quick)])
