"""The client commands act on the server's answer at once.

Each command runs as a user runs it: the installed `streamsnap` script in a subprocess, against a real server.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import RunningServer

pytestmark = pytest.mark.integration

STREAMSNAP = str(Path(sys.executable).parent / "streamsnap")
"The console script (`streamsnap.cli:main`), as installed."

LONG_NAME = "n" * 5000


async def streamsnap(*args: str, timeout: float = 30) -> tuple[int, str, str, float]:
    """Run the command; its status, stdout, stderr and how long it took."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(STREAMSNAP, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, stdout.decode(), stderr.decode(), time.monotonic() - started


@pytest.mark.parametrize("name", ["", "   ", "\t"])
async def test_an_empty_name_is_refused_before_anything_is_sent(name: str) -> None:
    for command in (["publish", "ws://127.0.0.1:9/", name, "--duration", "3"],
                    ["snapshot", "ws://127.0.0.1:9/", name, "-o", "x.png"]):
        status, stdout, stderr, _ = await streamsnap(*command)
        # exit 2 (a mistake in the command line), and no attempt to connect to the closed port
        assert (status, stdout) == (2, ""), stderr
        assert stderr.splitlines() == [stderr.strip()] and "stream name is empty" in stderr, stderr


async def test_publish_acts_on_the_servers_refusal_at_once(server: RunningServer) -> None:
    status, stdout, stderr, took = await streamsnap("publish", server.ws_url, LONG_NAME, "--duration", "3")
    assert status == 1 and stdout == ""
    assert took < 10  # the server refused at once; it used to wait 20 s (and --duration 3 did not shorten it)
    [line] = stderr.splitlines()
    assert line.startswith("streamsnap: publish of " + "n" * 40 + "… failed: FAILED: Malformed message"), line
    assert "256" in line  # the server's reason: names of 1 to 256 characters
    assert len(line) < 200  # the 5000-character name is not echoed back


async def test_snapshot_acts_on_the_servers_refusal_at_once(server: RunningServer, tmp_path: Path) -> None:
    out = tmp_path / "x.png"
    status, stdout, stderr, took = await streamsnap("snapshot", server.ws_url, LONG_NAME, "-o", str(out))
    assert status == 1 and stdout == ""
    assert took < 8  # was "no answer within 10 s"
    [line] = stderr.splitlines()
    assert line.startswith("streamsnap: snapshot failed: Malformed message"), line
    assert len(line) < 200
    assert not out.exists()


async def test_spaces_around_a_name_are_left_out(server: RunningServer, tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(STREAMSNAP, "publish", server.ws_url, "  padded  ", "--size",
                                                "160x120", "--duration", "3",
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.decode() == "PUBLISHING padded\n"
        assert server.node is not None and await server.node.registry.lookup("padded") is not None
        status, _, stderr, _ = await streamsnap("snapshot", server.ws_url, " padded", "-o", str(tmp_path / "p.png"))
        assert status == 0, stderr
    finally:
        await proc.communicate()
