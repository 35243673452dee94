"""Real redis-server processes on 127.0.0.1: one server, or a Redis Cluster of several masters."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tests.harness.processes import LISTEN_TIMEOUT, LOOPBACK, free_port, stop, wait_listening

CLUSTER_BUS_OFFSET = 10000
"Redis Cluster's bus listens this far above a master's port, so a master's port is at most 65535 - 10000."


@dataclass
class Redis:
    """One redis-server on loopback, nothing saved to disk (restartable on the same port, empty)."""

    port: int
    directory: Path
    extra: list[str] = field(default_factory=list)
    "More redis-server arguments (e.g. cluster mode)."
    start_timeout: float = LISTEN_TIMEOUT
    "How long `start` waits for it to listen."
    output: int | IO[Any] = subprocess.PIPE
    "Where its stdout and stderr go (a pipe is read when it exits before listening)."
    proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", LOOPBACK, "--save", "", "--appendonly", "no",
             "--dir", str(self.directory), *self.extra],
            stdout=self.output, stderr=subprocess.STDOUT, text=True)
        wait_listening(self.port, self.proc, self.start_timeout)

    def kill(self) -> None:
        if self.proc is not None:
            stop(self.proc, signal.SIGKILL)


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


def cluster_port() -> int:
    """A free port that Redis Cluster accepts (its bus listens 10000 above, so at most 55535)."""
    while True:
        port = free_port()
        if port <= 65535 - CLUSTER_BUS_OFFSET:
            sock = socket.socket()
            try:
                sock.bind((LOOPBACK, port + CLUSTER_BUS_OFFSET))  # the bus port must be free too
                return port
            except OSError:
                continue
            finally:
                sock.close()


def start_redis_cluster(directory: Path, masters: int = 3, start_timeout: float = LISTEN_TIMEOUT) -> list[Redis]:
    """`masters` Redis Cluster masters on loopback (no replicas), joined with redis-cli, once the cluster is ok."""
    servers: list[Redis] = []
    try:
        for index in range(masters):
            folder = directory / f"r{index}"
            folder.mkdir()
            server = Redis(cluster_port(), folder, ["--cluster-enabled", "yes", "--cluster-config-file",
                                                    str(folder / "nodes.conf"), "--cluster-node-timeout", "2000"],
                           start_timeout)
            servers.append(server)
            server.start()
        subprocess.run(["redis-cli", "--cluster", "create", *(f"{LOOPBACK}:{s.port}" for s in servers),
                        "--cluster-replicas", "0", "--cluster-yes"], check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            info = subprocess.run(["redis-cli", "-p", str(servers[0].port), "cluster", "info"], capture_output=True,
                                  text=True, timeout=10).stdout
            if "cluster_state:ok" in info:
                break
            time.sleep(0.2)
    except BaseException:
        for server in servers:
            server.kill()
        raise
    return servers
