"""The `streamsnap` command, end to end in subprocesses, as a user runs it."""

from __future__ import annotations

import asyncio
import errno
import io
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from PIL import Image

from streamsnap.access import Right, TokenPolicy
from streamsnap.media.pattern import read_counter
from streamsnap.wcsclient import WcsClient
from tests.clips import write_pattern_clip
from tests.conftest import ROOT, RunningServer, png_image
from tests.harness import free_port

pytestmark = pytest.mark.integration

STREAMSNAP = [sys.executable, "-m", "streamsnap"]


def run(*args: str, timeout: float = 30, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STREAMSNAP, *args], capture_output=True, text=True, timeout=timeout, cwd=cwd)


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


def test_version_is_the_one_the_package_declares() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    console_script = str(Path(sys.executable).parent / "streamsnap")  # the entry point streamsnap.cli:main
    for command in (STREAMSNAP, [console_script]):
        result = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=30)
        assert (result.returncode, result.stderr) == (0, ""), command
        assert result.stdout == f"streamsnap {declared}\n", (command, "an install older than pyproject.toml?")


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


def test_token_can_mint_every_right_the_server_knows(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "cli-secret-" + "0123456789abcdef" * 3
    monkeypatch.setenv("STREAMSNAP_AUTH_SECRET", secret)
    result = run("token", "pull", "--stream", "cam-*")
    assert result.returncode == 0, result.stderr
    grant = TokenPolicy(secret).grant(result.stdout.strip())
    assert grant.rights == {Right.PULL}
    assert grant.allows(Right.PULL, "cam-1") and not grant.allows(Right.PULL, "door")
    # A right added to the server is one the command can give, without a list of its own to update.
    result = run("token", *Right)
    assert result.returncode == 0, result.stderr
    assert TokenPolicy(secret).grant(result.stdout.strip()).rights == set(Right)


def assert_one_line(result: subprocess.CompletedProcess[Any], status: int, *words: str) -> str:
    """The command failed with `status` and said why in one line `streamsnap: ...`; return that line."""
    stderr = result.stderr if isinstance(result.stderr, str) else result.stderr.decode()
    assert result.returncode == status, (result.returncode, stderr)
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamsnap: "), stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.mark.parametrize("args, status, words", [
    (["snapshot", "127.0.0.1:8080/", "x", "-o", "x.png"], 2, ["'127.0.0.1:8080/'", "ws://"]),
    (["publish", "http://127.0.0.1:8080/", "x"], 2, ["http url", "ws://"]),
    (["publish", "ws://127.0.0.1:9/", "x", "--size", "640"], 2, ["--size", "WIDTHxHEIGHT"]),
    (["publish", "ws://127.0.0.1:9/", "x", "--size", "0x0"], 2, ["--size", "16 to 4096"]),
    (["publish", "ws://127.0.0.1:9/", "x", "--size", "641x480"], 2, ["even"]),
    (["publish", "ws://127.0.0.1:9/", "x", "--file", "/etc/hostname"], 2, ["/etc/hostname", "not a video file"]),
    (["publish", "ws://127.0.0.1:9/", "x", "--file", "missing.webm"], 2, ["missing.webm", "no such file"]),
    (["publish", "ws://127.0.0.1:9/", "x", "--once"], 2, ["--once", "--file"]),
    (["snapshot", "ws://127.0.0.1:9/", "x", "-o", "x.gif"], 2, ["'.gif'", "--format"]),
    (["snapshot", "ws://127.0.0.1:9/", "x", "-o", "x.png", "--width", "0"], 2, ["--width", "1-16384"]),
    (["snapshot", "ws://127.0.0.1:9/", "x", "-o", "x.png", "--quality", "50"], 2, ["--quality", "png"]),
    (["snapshot", "wss://127.0.0.1:9/", "x", "-o", "x.png", "--cacert", "/etc/hostname"], 2, ["no PEM"]),
    (["snapshot", "ws://127.0.0.1:9/", "x"], 2, ["-o"]),
    (["snapshot", "ws://127.0.0.1:9/", "x", "-o", "x.png"], 1, ["ws://127.0.0.1:9/", os.strerror(errno.ECONNREFUSED)]),
    (["publish", "ws://127.0.0.1:9/", "x"], 1, ["ws://127.0.0.1:9/", os.strerror(errno.ECONNREFUSED)]),
])
def test_mistakes_are_one_line_and_an_exit_status(tmp_path: Path, args: list[str], status: int,
                                                  words: list[str]) -> None:
    result = run(*args, cwd=tmp_path, timeout=20)  # `--size 0x0` used to hang: the timeout fails it
    assert_one_line(result, status, *words)
    assert list(tmp_path.iterdir()) == []  # and nothing was written


@pytest.mark.parametrize("path", ["/version", "/streams", "/healthz"])
def test_a_url_that_is_not_signaling_says_so(server_process: RunningServer, path: str) -> None:
    url = f"ws://127.0.0.1:{server_process.port}{path}"
    line = assert_one_line(run("snapshot", url, "x", "-o", "x.png", timeout=20), 1, url, "not a signaling url")
    assert line.endswith(f"try ws://127.0.0.1:{server_process.port}/")


async def test_the_root_path_is_signaling_and_the_landing_page(server: RunningServer,
                                                               http: aiohttp.ClientSession) -> None:
    client = await WcsClient.connect(f"ws://127.0.0.1:{server.port}/", timeout=10)
    try:
        assert client.user_data  # getUserData: the session is established on /
    finally:
        await client.close()
    async with http.get(f"{server.http_url}/") as page:
        assert page.status == 200 and page.content_type == "text/html"
        assert "<title>streamsnap</title>" in await page.text()


async def test_token_refuses_a_short_secret_in_one_line() -> None:
    code, stdout, stderr = await run_async("token", "snapshot", env={"STREAMSNAP_AUTH_SECRET": "short-secret"})
    assert (code, stdout) == (2, "")
    assert stderr.splitlines() == [
        "streamsnap: access.secret is 12 bytes; HS256 needs at least 32 (RFC 7518), e.g. from `openssl rand -base64 32`"
    ]


def image_of(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def test_snapshot_formats_sizes_fits_and_stdout(server_process: RunningServer, tmp_path: Path) -> None:
    publisher = start_publisher(server_process.ws_url, "formats", "--size", "320x240")
    url = server_process.ws_url
    try:
        to_stdout = subprocess.run([*STREAMSNAP, "snapshot", url, "formats", "-o", "-"], capture_output=True,
                                   timeout=30, cwd=tmp_path)
        assert to_stdout.returncode == 0, to_stdout.stderr
        assert list(tmp_path.iterdir()) == []  # no file named "-"
        assert (image_of(to_stdout.stdout).format, image_of(to_stdout.stdout).size) == ("PNG", (320, 240))
        assert re.fullmatch(r"-: 320x240, frame age [0-9.]+ ms\n", to_stdout.stderr.decode())

        cases = [
            (["-o", "a.jpeg"], "a.jpeg", "JPEG", (320, 240)),
            (["-o", "b.webp", "--quality", "40"], "b.webp", "WEBP", (320, 240)),
            (["-o", "c.png", "--format", "jpg"], "c.png", "JPEG", (320, 240)),
            (["-o", "d.jpg", "--width", "160"], "d.jpg", "JPEG", (160, 120)),
            (["-o", "e.png", "--height", "60"], "e.png", "PNG", (80, 60)),
            (["-o", "contain.png", "--width", "200", "--height", "200", "--fit", "contain"],
             "contain.png", "PNG", (200, 200)),
            (["-o", "cover.png", "--width", "200", "--height", "200", "--fit", "cover"],
             "cover.png", "PNG", (200, 200)),
        ]
        for options, name, image_format, size in cases:
            result = run("snapshot", url, "formats", *options, cwd=tmp_path)
            assert result.returncode == 0, (options, result.stderr)
            assert result.stdout.startswith(f"{name}: {size[0]}x{size[1]}, frame age "), result.stdout
            image = image_of((tmp_path / name).read_bytes())
            assert (image.format, image.size) == (image_format, size), options
        # The pattern's lower part is coloured: letterboxed, the bottom rows are black bars; cropped, they are not.
        contain = np.asarray(Image.open(tmp_path / "contain.png").convert("L"), dtype=np.float32)
        cover = np.asarray(Image.open(tmp_path / "cover.png").convert("L"), dtype=np.float32)
        assert contain[-20:].max() < 10 and contain[140:170].mean() > 40  # 200x150 picture, 25 px bars
        assert cover[-20:].mean() > 40
    finally:
        publisher.send_signal(signal.SIGINT)
        publisher.communicate(timeout=15)


@pytest.fixture
def tls_server() -> Iterator[tuple[int, str]]:
    """`streamsnap serve --tls-self-signed` in a subprocess; yields its wss port and its certificate (PEM)."""
    port, tls_port = free_port(), free_port()
    proc = subprocess.Popen(
        [*STREAMSNAP, "serve", "--host", "127.0.0.1", "--port", str(port), "--tls-self-signed",
         "--tls-port", str(tls_port)],
        env=os.environ | {"STREAMSNAP_ICE_ADDRESSES": "127.0.0.1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        assert any("SHA-256" in proc.stdout.readline() for _ in range(4))  # listening on both ports
        yield tls_port, ssl.get_server_certificate(("127.0.0.1", tls_port), timeout=10)
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


def test_wss_with_cacert_or_insecure(tls_server: tuple[int, str], tmp_path: Path) -> None:
    tls_port, certificate = tls_server
    url = f"wss://127.0.0.1:{tls_port}/"
    untrusted = run("snapshot", url, "cam", "-o", "x.png", cwd=tmp_path)
    assert_one_line(untrusted, 1, url, "not trusted", "--cacert", "--insecure")

    publisher = start_publisher(url, "tls-cam", "--size", "160x120", "--insecure")
    try:
        (tmp_path / "server.pem").write_text(certificate)
        trusted = run("snapshot", url, "tls-cam", "-o", "shot.png", "--cacert", "server.pem", cwd=tmp_path)
        assert trusted.returncode == 0, trusted.stderr
        assert Image.open(tmp_path / "shot.png").size == (160, 120)
        insecure = run("snapshot", url, "tls-cam", "-o", "shot.webp", "--insecure", cwd=tmp_path)
        assert insecure.returncode == 0, insecure.stderr
        assert Image.open(tmp_path / "shot.webp").format == "WEBP"
    finally:
        publisher.send_signal(signal.SIGINT)
        _, stderr = publisher.communicate(timeout=15)
    assert publisher.returncode == 0, stderr


@pytest.mark.parametrize("suffix, codec", [(".webm", "VP8"), (".mp4", "H264")])
async def test_publish_file_loops_until_stopped(start_server: Callable[..., Any], tmp_path: Path, suffix: str,
                                                codec: str) -> None:
    # A watchdog of 2 s: a publisher that stalls at the end of its one-second file fails within the test.
    server: RunningServer = await start_server(rtp_timeout=2.0)
    clip = write_pattern_clip(tmp_path / f"clip{suffix}")
    publisher = await asyncio.create_subprocess_exec(
        *STREAMSNAP, "publish", server.ws_url, "looped", "--file", str(clip), "--codec", codec,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert publisher.stdout is not None
        line = await asyncio.wait_for(publisher.stdout.readline(), 20)
        assert line.decode().strip() == "PUBLISHING looped"
        client = await WcsClient.connect(server.ws_url)
        counters, ages = set(), []
        try:
            deadline = asyncio.get_running_loop().time() + 5  # five passes through the file
            while asyncio.get_running_loop().time() < deadline:
                picture = await client.snapshot("looped", timeout=10)
                counters.add(read_counter(png_image(picture.png)))
                ages.append(picture.payload["frameAgeMs"])
                await asyncio.sleep(0.1)
        finally:
            await client.close()
        assert counters <= set(range(30)) and len(counters) >= 8, counters  # the file's frames, moving
        assert max(ages) < 500, ages  # never a stall at the end of a pass
        assert publisher.returncode is None
    finally:
        if publisher.returncode is None:
            publisher.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(publisher.communicate(), 15)
    assert publisher.returncode == 0, stderr
    assert b"UNPUBLISHED looped" in stdout


async def test_publish_file_once_ends_by_itself(start_server: Callable[..., Any], tmp_path: Path) -> None:
    server: RunningServer = await start_server()
    clip = write_pattern_clip(tmp_path / "clip.webm")
    code, stdout, stderr = await run_async("publish", server.ws_url, "once", "--file", str(clip), "--once",
                                           timeout=20)
    assert code == 0, stderr
    assert stdout.splitlines() == ["PUBLISHING once", "UNPUBLISHED once"]
    assert server.node is not None
    assert await server.node.registry.lookup("once") is None


async def test_publish_says_when_the_server_ends_the_stream(server: RunningServer,
                                                            http: aiohttp.ClientSession) -> None:
    publisher = await asyncio.create_subprocess_exec(
        *STREAMSNAP, "publish", server.ws_url, "ended-cam", "--size", "160x120",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert publisher.stdout is not None
    line = await asyncio.wait_for(publisher.stdout.readline(), 20)
    assert line.decode().strip() == "PUBLISHING ended-cam"
    async with http.post(f"{server.http_url}/rest-api/stream/terminate", json={"name": "ended-cam"}) as answer:
        assert answer.status == 200
    _, stderr = await asyncio.wait_for(publisher.communicate(), 15)
    assert publisher.returncode == 1
    assert stderr.decode().splitlines() == [
        "streamsnap: ended-cam: the server ended the stream: UNPUBLISHED Stopped by rest /terminate"
    ]
