"""`serve --workers N`: N processes on one machine, one node each, sharing the public ports.

One event loop uses one core; workers use them all. Each worker is a whole node of the
cluster (its own name, its own cluster listener on a port of its own, its streams in Redis),
and they share the public ports with SO_REUSEPORT, so the kernel spreads connections among
them; a picture asked of one worker for a stream another holds is routed like any other
cross-node request. The supervisor passes each worker the resolved settings through the
environment, forwards SIGINT/SIGTERM, and starts again a worker that died.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from types import FrameType

from streamsnap.config import ENV_PREFIX, Settings
from streamsnap.web.catalog import node_name

logger = logging.getLogger(__name__)

WORKER_ENV = "STREAMSNAP_WORKER"
"Set in each worker to its number (1..N)."
RESTART_DELAY = 1.0


def _environment_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return str(value)


def worker_environment(settings: Settings, number: int, secret: str) -> dict[str, str]:
    """The environment of worker `number`: every setting, with what must differ between workers."""
    env = dict(os.environ)
    for field in dataclasses.fields(Settings):
        env[ENV_PREFIX + field.name.upper()] = _environment_value(getattr(settings, field.name))
    base = node_name(settings.node_name)
    env.update({
        WORKER_ENV: str(number),
        ENV_PREFIX + "WORKERS": "1",
        ENV_PREFIX + "NODE_NAME": f"{base}-{number}",
        ENV_PREFIX + "CLUSTER_SECRET": secret,
        # Each worker needs a cluster listener of its own.
        ENV_PREFIX + "CLUSTER_PORT": str(settings.cluster_port + number - 1) if settings.cluster_port else "0",
        ENV_PREFIX + "ADVERTISE_URL": "",
    })
    return env


def supervise(settings: Settings) -> int:
    """Run `settings.workers` workers until SIGINT/SIGTERM; return the exit status."""
    secret = settings.cluster_secret or secrets.token_hex(24)
    command = [sys.executable, "-m", "streamsnap", "serve"]
    workers: dict[int, subprocess.Popen[bytes]] = {}
    stopping = False

    def start(number: int) -> None:
        workers[number] = subprocess.Popen(command, env=worker_environment(settings, number, secret))

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for process in workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"streamsnap: {settings.workers} workers on port {settings.port}, coordinated through Redis", flush=True)
    for number in range(1, settings.workers + 1):
        start(number)
    while True:
        for number, process in list(workers.items()):
            code = process.poll()
            if code is None or stopping:
                continue
            print(f"streamsnap: worker {number} exited with status {code}; starting it again", file=sys.stderr,
                  flush=True)
            time.sleep(RESTART_DELAY)
            if not stopping:
                start(number)
        if stopping and all(process.poll() is not None for process in workers.values()):
            break
        time.sleep(0.2)
    failed = [process.returncode for process in workers.values() if process.returncode not in (0, -signal.SIGTERM)]
    return 1 if failed else 0
