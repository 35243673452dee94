"""`streamsnap serve` as a separate process, started the way a user starts it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

from tests.harness.processes import LISTEN_TIMEOUT, LOOPBACK, free_port, stop, wait_listening


def serve_command(port: int, *flags: str) -> list[str]:
    """`streamsnap serve` (this interpreter's) on 127.0.0.1:`port`, with `flags` after."""
    return [sys.executable, "-m", "streamsnap", "serve", "--host", LOOPBACK, "--port", str(port), *flags]


@dataclass
class Node:
    """One `streamsnap serve` process listening on 127.0.0.1."""

    name: str
    port: int
    proc: subprocess.Popen[str]

    @property
    def ws_url(self) -> str:
        return f"ws://{LOOPBACK}:{self.port}/"

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"


def start_node(*flags: str, name: str = "", port: int | None = None, env: Mapping[str, str] | None = None,
               output: int | IO[Any] = subprocess.PIPE, timeout: float = LISTEN_TIMEOUT) -> Node:
    """`streamsnap serve` with `flags` on `port` (a free one if None), once it listens (killed if it does not).

    ICE candidates are gathered on 127.0.0.1 only unless `env` says otherwise; stderr goes with
    stdout to `output` (a pipe, read when the process exits before listening, or a file).
    """
    if port is None:
        port = free_port()
    environment = os.environ | {"STREAMSNAP_ICE_ADDRESSES": LOOPBACK, **(env or {})}
    proc = subprocess.Popen(serve_command(port, *flags), env=environment, stdout=output, stderr=subprocess.STDOUT,
                            text=True)
    try:
        wait_listening(port, proc, timeout)
    except BaseException:  # Ctrl-C in a benchmark as well: no server left behind
        stop(proc, signal.SIGKILL)
        raise
    return Node(name, port, proc)
