"""The `streamsnap` command, end to end in subprocesses, as a user runs it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from streamsnap.access import Right, TokenPolicy
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
    for command in ("serve", "publish", "snapshot", "token"):
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


async def run_async(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, str, str]:
    """The command in a subprocess without blocking the in-process server's loop."""
    proc = await asyncio.create_subprocess_exec(*STREAMSNAP, *args, env=os.environ | (env or {}),
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode()


async def test_tokens_from_the_command_line(start_server: Callable[..., Any], tmp_path: Path) -> None:
    secret = "cli-secret-" + "0123456789abcdef" * 3
    server: RunningServer = await start_server(auth_secret=secret)
    with_secret = {"STREAMSNAP_AUTH_SECRET": secret}
    code, publish_token, _ = await run_async("token", "publish", "--stream", "cli-*", "--subject", "cam",
                                             env=with_secret)
    assert code == 0
    grant = TokenPolicy(secret).grant(publish_token.strip())
    assert (grant.rights, grant.streams, grant.subject) == ({Right.PUBLISH}, ("cli-*",), "cam")
    code, _, stderr = await run_async("token", "snapshot", env={"STREAMSNAP_AUTH_SECRET": ""})
    assert code == 2 and "auth_secret" in stderr

    out = tmp_path / "shot.png"
    code, _, stderr = await run_async("snapshot", server.ws_url, "cli-cam", "-o", str(out), timeout=8)
    assert (code, stderr.strip()) == (1, f"streamsnap: {server.ws_url}: session refused: Restricted access")

    publisher = await asyncio.create_subprocess_exec(
        *STREAMSNAP, "publish", server.ws_url, "cli-cam", "--size", "160x120", "--token", publish_token.strip(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert publisher.stdout is not None
        line = await asyncio.wait_for(publisher.stdout.readline(), 20)
        assert line.decode().strip() == "PUBLISHING cli-cam"
        _, snapshot_token, _ = await run_async("token", "snapshot", env=with_secret)
        code, stdout, stderr = await run_async("snapshot", server.ws_url, "cli-cam", "-o", str(out),
                                               env={"STREAMSNAP_TOKEN": snapshot_token.strip()})
        assert code == 0, stderr
        assert "160x120" in stdout
        assert Image.open(out).size == (160, 120)
    finally:
        publisher.send_signal(signal.SIGINT)
        await asyncio.wait_for(publisher.communicate(), 15)
