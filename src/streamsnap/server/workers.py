"""`serve --workers N`: N processes on one machine, one node each, sharing the public ports.

One event loop uses one core; workers use them all. Each worker is a whole node of the
cluster (its own name, its own cluster listener on a port of its own, its streams in Redis),
and they share the public ports with SO_REUSEPORT, so the kernel spreads connections among
them; a picture asked of one worker for a stream another holds is routed like any other
cross-node request. The supervisor passes each worker the resolved settings through the
environment, forwards SIGINT/SIGTERM, and starts again a worker that died.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from streamsnap.config import ENV_PREFIX, Settings, flat_values
from streamsnap.server.node import node_name

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
    # The settings as resolved here replace whatever names the supervisor's environment gave them by.
    env = {key: value for key, value in os.environ.items() if not key.startswith(ENV_PREFIX)}
    for declaration, value in flat_values(settings):
        if declaration.path != "cameras":  # tables: the workers read them from the config file
            env[declaration.env] = _environment_value(value)
    cluster = settings.cluster
    env.update({
        WORKER_ENV: str(number),
        ENV_PREFIX + "NODE_WORKERS": "1",
        ENV_PREFIX + "NODE_NAME": f"{node_name(settings.node.name)}-{number}",
        ENV_PREFIX + "CLUSTER_SECRET": secret,
        # Each worker needs a cluster listener of its own.
        ENV_PREFIX + "CLUSTER_PORT": str(cluster.port + number - 1) if cluster.port else "0",
        ENV_PREFIX + "CLUSTER_ADVERTISE_URL": "",
    })
    return env


def supervise(settings: Settings, config_file: Path | None = None) -> int:
    """Run `node.workers` workers until SIGINT/SIGTERM; return the exit status.

    Each worker reads `config_file` for the `[[cameras]]` it holds (every worker pulls each camera;
    the cluster lets one hold its name, the others try again until it ends); every other setting
    comes through the environment, as resolved here.
    """
    secret = settings.cluster.secret or secrets.token_hex(24)
    command = [sys.executable, "-m", "streamsnap", "serve"]
    if config_file is not None:
        command += ["--config", str(config_file)]
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
    print(f"streamsnap: {settings.node.workers} workers on port {settings.http.port}, coordinated through Redis",
          flush=True)
    for number in range(1, settings.node.workers + 1):
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
