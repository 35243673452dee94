"""Processes the tests and the benchmarks start: a free loopback port, waiting until one listens, stopping.

Everything listens on 127.0.0.1 only: neither tests nor benchmarks send traffic anywhere else.
"""

from __future__ import annotations

import asyncio
import os
import selectors
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"

LISTEN_TIMEOUT = 30.0
"""How long `wait_listening` waits by default: a server started beside a benchmark's publishers on a
busy two-core machine may take that long. Tests pass their own, shorter bound (tests/conftest.py)."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 when asked (only then: another process may take it before it is used)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


async def closed_by_peer(reader: asyncio.StreamReader, wait: float) -> bool:
    """Whether the other side closes (or resets) the connection within `wait` seconds, sending nothing."""
    try:
        return await asyncio.wait_for(reader.read(1), wait) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


def wait_listening(port: int, proc: subprocess.Popen[Any] | None = None, timeout: float = LISTEN_TIMEOUT) -> None:
    """Until something listens on 127.0.0.1:`port`; raises (with its output) when `proc` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((LOOPBACK, port), timeout=0.2).close()
            return
        except OSError:
            if proc is not None and proc.poll() is not None:
                output = proc.stdout.read() if proc.stdout else ""
                raise RuntimeError(f"process exited ({proc.returncode}): {output}") from None
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout} s")


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Send `sig` to `proc` if it still runs, and SIGKILL it when it has not exited `timeout` seconds later."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def read_line(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    """The next stdout line of `proc`, within `timeout` seconds."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        assert selector.select(timeout), f"no output within {timeout} s"
    return proc.stdout.readline()


class Processes:
    """Background processes of a listing, each in its own process group, ended at teardown.

    A group of its own, because a listing's command may start others (`make serve` starts
    `streamsnap serve`): SIGINT to the group is Ctrl-C in a terminal, and SIGKILL leaves none behind.
    """

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, args: list[str], cwd: Path, env: Mapping[str, str]) -> subprocess.Popen[str]:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        self.started.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.started):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
