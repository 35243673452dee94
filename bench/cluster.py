"""streamsnap's cluster benchmarks in one go: cross-node pictures, Redis traffic, dead nodes, workers.

    python bench/cluster.py             # all four, the full runs (up to about 45 minutes)
    python bench/cluster.py --quick     # shorter windows and fewer trials (about 7 minutes)
    python bench/cluster.py --only redis

Each benchmark is a script of its own, run here one after another exactly as by hand:

- bench/cluster_latency.py: a picture asked on its stream's node and through another node;
- bench/cluster_redis.py: what Redis sees per operation, key sizes, Redis time at scale;
- bench/cluster_ttl.py: from `kill -9` of a node until its stream leaves the others' GET /streams;
- bench/cluster_workers.py: `serve --workers 2` against one worker.

Each prints its tables and writes bench/results/cluster-<name>-<time>.json.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
BENCHMARKS = ("latency", "redis", "ttl", "workers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows, fewer trials (numbers are rougher)")
    parser.add_argument("--only", choices=BENCHMARKS, help="run one benchmark")
    args = parser.parse_args()
    for name in BENCHMARKS:
        if args.only in (None, name):
            script = BENCH / f"cluster_{name}.py"
            done = subprocess.run([sys.executable, str(script), *(["--quick"] if args.quick else [])])
            if done.returncode:  # stop at the first failure, as the single script did
                sys.exit(f"bench/{script.name} failed (exit status {done.returncode})")


if __name__ == "__main__":
    main()
