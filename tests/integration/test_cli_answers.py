"""The client commands act on the server's answer at once, and Ctrl-C never ends them with a traceback.

Each command runs as a user runs it: the installed `streamsnap` script in a subprocess, against a real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
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


def _as_a_shell_starts_it() -> None:
    """In the child before exec: Ctrl-C's signal at its default and not blocked, as a shell starts a command
    (both are inherited, and would otherwise be whatever this test process's other tests left them)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


async def interrupted(args: list[str], after: float | None, *, until: bytes | None = None) -> tuple[int, str, str]:
    """Start the command, send it SIGINT `after` seconds later (or once `until` is on its stdout); its status,
    stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(STREAMSNAP, *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                                preexec_fn=_as_a_shell_starts_it)
    assert proc.stdout is not None
    seen = b""
    if until is not None:
        seen = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert until in seen, seen
    elif after:
        await asyncio.sleep(after)
    with contextlib.suppress(ProcessLookupError):  # it may have finished already
        proc.send_signal(signal.SIGINT)
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 30)
    except TimeoutError:
        proc.kill()
        stdout, stderr = await proc.communicate()
        pytest.fail(f"`streamsnap {args[0]}` still running 30 s after Ctrl-C at {after} s; it said: "
                    f"{(seen + stdout).decode()[-500:]!r} {stderr.decode()[-1500:]!r}")
    assert proc.returncode is not None
    return proc.returncode, (seen + stdout).decode(), stderr.decode()


# From 50 ms on: before that the interpreter itself is starting (site.py, the script's own `import re`), and
# a Ctrl-C there is Python's to report, before any line of streamsnap runs.
MOMENTS = [0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 2.0]


@pytest.mark.timeout(300)
async def test_ctrl_c_at_any_moment_of_publish_ends_it_without_a_traceback(server: RunningServer) -> None:
    args = ["publish", server.ws_url, "interrupted", "--size", "160x120"]
    for after in MOMENTS:
        status, stdout, stderr = await interrupted(args, after)
        assert "Traceback" not in stderr, (after, stderr)
        if "PUBLISHING" in stdout:  # interrupted while publishing: it unpublishes and exits 0
            assert (status, stdout.splitlines()) == (0, ["PUBLISHING interrupted", "UNPUBLISHED interrupted"]), \
                (after, stdout, stderr)
        else:
            assert status == 130, (after, status, stderr)
    status, stdout, stderr = await interrupted(args, None, until=b"PUBLISHING interrupted")  # mid-publish
    assert "Traceback" not in stderr and status == 0, stderr
    assert stdout.splitlines() == ["PUBLISHING interrupted", "UNPUBLISHED interrupted"]


@pytest.mark.timeout(300)
async def test_ctrl_c_at_any_moment_of_the_other_commands_is_status_130(tmp_path: Path) -> None:
    # A server that accepts connections and never answers keeps `snapshot` waiting for it.
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    silent = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    waiting = ["snapshot", f"ws://127.0.0.1:{port}/", "cam", "-o", str(tmp_path / "x.png"), "--timeout", "30"]
    try:
        for args in (waiting, ["serve", "--port", "0", "--host", "127.0.0.1"]):
            for after in MOMENTS:
                status, _, stderr = await interrupted(args, after)
                assert "Traceback" not in stderr, (args[0], after, stderr)
                # serve: 0 once it serves (SIGINT stops it as designed), 130 before
                assert status == 130 or (args[0] == "serve" and status == 0), (args[0], after, status, stderr)
    finally:
        for writer in held:
            writer.close()
        silent.close()
