"""The `streamsnap` command, end to end in subprocesses, as a user runs it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from streamsnap.media.pattern import read_counter
from tests.conftest import RunningServer

pytestmark = pytest.mark.integration

STREAMSNAP = [sys.executable, "-m", "streamsnap"]


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STREAMSNAP, *args], capture_output=True, text=True, timeout=timeout)


def start_publisher(url: str, name: str, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([*STREAMSNAP, "publish", url, name, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == f"PUBLISHING {name}", (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc


def test_help_of_every_command() -> None:
    for command in ("serve", "publish", "snapshot"):
        result = run(command, "--help")
        assert result.returncode == 0
        assert "usage: streamsnap " + command in result.stdout


def test_publish_then_snapshot_to_a_file(server_process: RunningServer, tmp_path: Path) -> None:
    publisher = start_publisher(server_process.ws_url, "cli-cam", "--size", "320x240", "--codec", "H264")
    try:
        time.sleep(1.0)
        out = tmp_path / "first.png"
        result = run("snapshot", server_process.ws_url, "cli-cam", "-o", str(out))
        assert result.returncode == 0, result.stderr
        assert "320x240" in result.stdout
        first = read_counter(Image.open(out))
        time.sleep(1.0)
        result = run("snapshot", server_process.ws_url, "cli-cam", "-o", str(out))
        assert result.returncode == 0, result.stderr
        second = read_counter(Image.open(out))
        assert Image.open(out).size == (320, 240)
        assert 15 <= second - first <= 90  # about a second of frames apart, not a stale picture
    finally:
        publisher.send_signal(signal.SIGINT)
        stdout, stderr = publisher.communicate(timeout=15)
    assert publisher.returncode == 0, stderr
    assert "UNPUBLISHED cli-cam" in stdout


def test_snapshot_of_unknown_stream_exits_non_zero(server_process: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "none.png"
    result = run("snapshot", server_process.ws_url, "no-such-stream", "-o", str(out))
    assert result.returncode == 1
    assert "Stream not found" in result.stderr
    assert not out.exists()


def test_killed_publisher_takes_its_stream_away(server_process: RunningServer, tmp_path: Path) -> None:
    publisher = start_publisher(server_process.ws_url, "doomed", "--size", "320x240")
    out = tmp_path / "doomed.png"
    assert run("snapshot", server_process.ws_url, "doomed", "-o", str(out)).returncode == 0
    publisher.kill()
    publisher.wait()
    deadline = time.monotonic() + 10
    while True:
        result = run("snapshot", server_process.ws_url, "doomed", "-o", str(out))
        if result.returncode == 1:
            break
        assert time.monotonic() < deadline, "stream still served 10 s after its publisher died"
        time.sleep(0.2)
    assert "Stream not found" in result.stderr


def test_snapshot_against_a_closed_port_fails_clearly(tmp_path: Path) -> None:
    result = run("snapshot", "ws://127.0.0.1:9/", "x", "-o", str(tmp_path / "x.png"))
    assert result.returncode == 1
    assert result.stderr.startswith("streamsnap: ws://127.0.0.1:9/")
