"""Hostile encoders on the RTMP port (issue 22, item 4), each through a real socket against a real server.

An honest ffmpeg publisher (tokens on) is pictured before, during and after every attack; meanwhile
/healthz is asked every 10 ms and the process's RSS sampled. Each test asserts what an operator
sees: the attacker's connection closed with the limit named in the log, /healthz prompt, memory
flat, the honest stream pictured, and nothing held once the attacker leaves (connections, their
per-address count, asyncio tasks, streams). The attackers are `tests/harness/rtmp_peer.py`'s raw sockets,
each from a loopback address of its own (127.0.0.x), so that the per-address cap meets only them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import psutil
import pytest
from PIL import Image

from streamsnap.access import Right, TokenPolicy
from streamsnap.protocol.rtmp import USER_CONTROL
from streamsnap.server.listeners import Server
from tests.harness import free_port
from tests.harness.rtmp_peer import (
    HostilePeer,
    chunks,
    command,
    connect,
    null_array_command,
    one_byte_nal_units,
    publish,
    sequence_header,
    set_chunk_size,
    unknown_command,
    video_tag,
)
from tests.integration.test_rtmp import PICTURE, assert_halves

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs Debian's ffmpeg (scripts/system-deps.sh)"),
]

SECRET = "rtmp-hostile-test-secret-0123456789abcdef"
TOKENS = TokenPolicy(SECRET)
DEADLINE = 3.0
"`rtmp.handshake_timeout` and `rtmp.idle_timeout` of these tests (10 s and 30 s by default)."
MAX_RSS_GROWTH = 30 * 2**20
MAX_HEALTHZ_P99 = 0.1


@dataclass
class Scene:
    """A server with tokens on and its RTMP port, an honest ffmpeg publishing `honest`."""

    server: Server
    http: aiohttp.ClientSession
    rtmp_port: int
    tasks: int = 0
    "asyncio tasks once the honest stream was pictured (the baseline)."
    extra: list[asyncio.subprocess.Process] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server.port('http')}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS.issue([Right.SNAPSHOT, Right.MANAGE])}"}

    def key(self, name: str) -> str:
        return f"{name}?token={TOKENS.issue([Right.PUBLISH], streams=[name])}"

    async def push(self, name: str) -> asyncio.subprocess.Process:
        """ffmpeg (Debian's) publishing `name` from 127.0.0.1, as an encoder does."""
        proc = await asyncio.create_subprocess_exec(
            "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-f", "lavfi", "-i", PICTURE,
            "-t", "120", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-pix_fmt", "yuv420p",
            "-g", "15", "-f", "flv", f"rtmp://127.0.0.1:{self.rtmp_port}/live/{self.key(name)}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        self.extra.append(proc)
        return proc

    async def streams(self) -> dict[str, str]:
        async with self.http.get(f"{self.base}/streams", headers=self.headers()) as answer:
            return {s["name"]: s["status"] for s in await answer.json()}

    async def publishing(self, name: str, timeout: float = 15.0) -> None:
        async with asyncio.timeout(timeout):
            while (await self.streams()).get(name) != "PUBLISHING":  # noqa: ASYNC110  (polled over HTTP)
                await asyncio.sleep(0.1)

    async def picture(self, name: str = "honest") -> None:
        """A picture of `name`, with the honest publisher's colours where they belong."""
        async with self.http.get(f"{self.base}/streams/{name}/snapshot.png", headers=self.headers()) as answer:
            assert answer.status == 200, await answer.text()
            assert_halves(Image.open(io.BytesIO(await answer.read())))

    async def rtmp_publisher(self, source: str, name: str) -> HostilePeer:
        """A hostile peer from `source` whose publish of `name` (valid token) was accepted; it reads no further."""
        peer = await HostilePeer.open(self.rtmp_port, source=source, receive_buffer=16384)
        await peer.handshake()
        await peer.send(set_chunk_size(65536) + connect(chunk_size=65536) + publish(self.key(name), 65536))
        answers = b""
        async with asyncio.timeout(5):
            while b"NetStream.Publish.Start" not in answers:
                answers += await peer.read_exactly(1)
        return peer

    async def back_to_baseline(self, streams: set[str], connections: int = 1, timeout: float = 10.0) -> None:
        """Only the honest publishers' connections, counts and streams are held; tasks as before the attack
        (and one publish task for each honest publisher started since)."""
        rtmp = self.server.rtmp
        assert rtmp is not None
        state: dict[str, object] = {}
        try:
            async with asyncio.timeout(timeout):
                while True:
                    state = {"connections": len(rtmp.connections), "per_address": dict(rtmp.guard.open),
                             "streams": set(await self.streams()),
                             "extra_tasks": len(asyncio.all_tasks()) - self.tasks - (connections - 1)}
                    if state == {"connections": connections, "per_address": {"127.0.0.1": connections},
                                 "streams": streams, "extra_tasks": 0}:
                        return
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(f"not back to baseline after {timeout} s: {state}") from None


@pytest.fixture
async def make_scene(start_full_server: Callable[..., Any],
                     http: aiohttp.ClientSession) -> AsyncIterator[Callable[..., Any]]:
    scenes: list[Scene] = []

    async def make(**overrides: Any) -> Scene:
        port = free_port()
        settings = {"rtmp_handshake_timeout": DEADLINE, "rtmp_idle_timeout": DEADLINE} | overrides
        server = await start_full_server(rtmp_port=port, auth_secret=SECRET, **settings)
        scene = Scene(server, http, port)
        scenes.append(scene)
        await scene.push("honest")
        await scene.publishing("honest")
        # The picture workers (threads) start with the first pictures.
        await asyncio.gather(*(scene.picture() for _ in range(4)))
        scene.tasks = len(asyncio.all_tasks())
        return scene

    yield make
    for scene in scenes:
        for proc in scene.extra:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


class Watch:
    """During an attack: /healthz every 10 ms, the honest stream pictured every 250 ms, RSS every 50 ms."""

    def __init__(self, scene: Scene) -> None:
        self.scene = scene
        self.healthz: list[float] = []
        self.pictures = 0
        self.rss_before = self.rss_peak = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Watch:
        self._tasks = [asyncio.ensure_future(f()) for f in (self._healthz, self._pictures)]
        # RSS is counted from here: the probes' own first second (the picture workers' memory
        # arenas, the HTTP client) is not the attacker's doing.
        await asyncio.sleep(1.0)
        self.healthz.clear()
        self.rss_before = self.rss_peak = psutil.Process(os.getpid()).memory_info().rss
        self._tasks.append(asyncio.ensure_future(self._rss()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _healthz(self) -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                started = time.perf_counter()
                async with http.get(f"{self.scene.base}/healthz") as answer:
                    assert answer.status == 200
                    await answer.read()
                self.healthz.append(time.perf_counter() - started)
                await asyncio.sleep(0.01)

    async def _pictures(self) -> None:
        while True:
            await self.scene.picture()
            self.pictures += 1
            await asyncio.sleep(0.25)

    async def _rss(self) -> None:
        me = psutil.Process(os.getpid())
        while True:
            self.rss_peak = max(self.rss_peak, me.memory_info().rss)
            await asyncio.sleep(0.05)

    def check(self, seconds: float) -> None:
        """/healthz prompt, memory flat, the honest stream pictured all along."""
        latencies = sorted(self.healthz)
        p99 = latencies[int(len(latencies) * 0.99) - 1]
        assert p99 < MAX_HEALTHZ_P99, f"/healthz p99 {p99 * 1000:.0f} ms, worst {latencies[-1] * 1000:.0f} ms"
        growth = self.rss_peak - self.rss_before
        assert growth < MAX_RSS_GROWTH, f"RSS grew {growth / 2**20:.0f} MB"
        assert self.pictures >= seconds * 2, self.pictures


def logged(caplog: pytest.LogCaptureFixture, words: str) -> int:
    """How many log lines hold `words`."""
    return sum(words in record.getMessage() for record in caplog.records)


async def until(deadline: float) -> AsyncIterator[int]:
    """Rounds of an attack until `deadline` (loop.time())."""
    loop, round_ = asyncio.get_running_loop(), 0
    while loop.time() < deadline:
        yield round_
        round_ += 1


async def test_peers_that_never_read_and_send_large_commands_before_publish_are_closed_unread(
        make_scene: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    # The attack: connect, then unknown commands with 1 MiB names the server echoed to a peer
    # that never reads (+1434 MB in 8 s before any token check). Then the largest commands allowed.
    scene: Scene = await make_scene()
    huge = unknown_command(1 << 20, chunk_size=65536)
    largest = unknown_command(4000, chunk_size=65536)  # 4013 bytes, under rtmp.max_command_bytes
    closed = {"huge": 0, "largest": 0}
    loop = asyncio.get_running_loop()
    with caplog.at_level(logging.INFO, logger="streamsnap"):
        async with Watch(scene) as watch:
            async for round_ in until(loop.time() + 4):
                kind = "huge" if round_ % 2 else "largest"
                peer = await HostilePeer.open(scene.rtmp_port, source="127.0.0.2", receive_buffer=4096)
                try:
                    await peer.handshake(read=False)
                    await peer.send(set_chunk_size(65536) + connect(chunk_size=65536))
                    with contextlib.suppress(OSError, TimeoutError):
                        for _ in range(100):  # 400 kB of the largest commands, or 100 MiB of huge ones
                            await peer.send(huge if kind == "huge" else largest, timeout=2)
                    closed[kind] += await peer.closed_by_server(2)  # read only now, to see the end
                finally:
                    peer.close()
        watch.check(4)
    assert closed["huge"] >= 2 and closed["largest"] >= 2, closed
    assert logged(caplog, "command of 1048591 bytes over rtmp.max_command_bytes (4096)") == closed["huge"]
    assert logged(caplog, "bytes before publish, over rtmp.max_bytes_before_publish (65536)") == closed["largest"]
    await scene.picture()
    await scene.back_to_baseline({"honest"})


async def test_a_publisher_that_never_reads_is_not_read_from_then_closed(
        make_scene: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    # After publish (+954 MB in 20 s, linear): 1 MiB names are refused as before publish; small unknown
    # commands, each answered in ~7 times its bytes, fill the peer's window, and then nothing more is read.
    scene: Scene = await make_scene()
    flood = unknown_command(1, chunk_size=65536)
    type_3 = bytes([0xC3]) + flood[12:]  # the same command again, with a one-byte header: 15 bytes each
    with caplog.at_level(logging.INFO, logger="streamsnap"):
        async with Watch(scene) as watch:
            peer = await scene.rtmp_publisher("127.0.0.3", "never-reads-1")
            try:
                with contextlib.suppress(OSError):
                    await peer.send(unknown_command(1 << 20, chunk_size=65536))
                assert await peer.closed_by_server(2)
            finally:
                peer.close()
            peer = await scene.rtmp_publisher("127.0.0.3", "never-reads-2")
            started = time.monotonic()
            try:
                await peer.send(flood)
                with pytest.raises(TimeoutError):  # the server stopped reading: our sending blocks
                    while True:
                        await peer.send(type_3 * 1000, timeout=1.0)
                stalled_after = peer.sent
                await asyncio.sleep(DEADLINE + 1.5)
                assert await peer.closed_by_server(2)
            finally:
                peer.close()
            closed_after = time.monotonic() - started
        watch.check(closed_after)
    assert logged(caplog, "command of 1048591 bytes over rtmp.max_command_bytes (4096)") == 1
    assert logged(caplog, f"it read nothing it was sent for {DEADLINE:.0f} s (rtmp.idle_timeout)") == 1
    # What it could make the server hold is bounded by socket buffers, not by what it sent: a few MB
    # of answers at most (it took the server's kernel buffers and our 4 KiB window to fill).
    assert stalled_after < 8 * 2**20, stalled_after
    await scene.back_to_baseline({"honest"})


async def test_unknown_commands_with_1_mib_names_are_refused_unread_and_others_answered_short(
        make_scene: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    scene: Scene = await make_scene()
    with caplog.at_level(logging.INFO, logger="streamsnap"):
        async with Watch(scene) as watch:
            for _ in range(10):
                peer = await HostilePeer.open(scene.rtmp_port, source="127.0.0.5")
                try:
                    await peer.handshake()
                    await peer.send(set_chunk_size(65536) + connect(chunk_size=65536))
                    answer, closed = await peer.read_all(0.3)
                    assert b"NetConnection.Connect.Success" in answer and not closed
                    await peer.send(unknown_command(4000, chunk_size=65536))  # answered, its name cut short
                    answer, closed = await peer.read_all(0.3)
                    assert b"NetConnection.Call.Failed" in answer and b"x" * 64 in answer and not closed
                    assert b"x" * 65 not in answer and len(answer) < 300
                    with contextlib.suppress(OSError):
                        await peer.send(unknown_command(1 << 20, chunk_size=65536))
                    answer, closed = await peer.read_all(2)
                    assert (answer, closed) == (b"", True)  # nothing said, nothing echoed: closed
                finally:
                    peer.close()
        watch.check(1)
    assert logged(caplog, "command of 1048591 bytes over rtmp.max_command_bytes (4096)") == 10
    await scene.back_to_baseline({"honest"})


async def test_a_tag_of_a_million_nal_units_ends_its_stream_without_holding_the_loop(
        make_scene: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    # 4 MiB of 1-byte NAL units: before, each tag held the loop 1.3 s (3 MB/s of them: /healthz 7.3 s).
    scene: Scene = await make_scene()
    bomb = video_tag(one_byte_nal_units((4 << 20) - 64), chunk_size=65536)
    rounds = 0
    loop = asyncio.get_running_loop()
    with caplog.at_level(logging.INFO, logger="streamsnap"):
        async with Watch(scene) as watch:
            async for round_ in until(loop.time() + 5):
                peer = await scene.rtmp_publisher("127.0.0.6", f"bomb-{round_}")
                try:
                    await peer.send(sequence_header(65536))
                    with contextlib.suppress(OSError):
                        await peer.send(bomb)
                    assert await peer.closed_by_server(5)
                    rounds += 1
                finally:
                    peer.close()
        watch.check(5)
    assert rounds >= 3
    assert logged(caplog, "more than 1024 NAL units in a frame (rtmp.max_nal_units_per_frame)") == rounds
    assert logged(caplog, "ended: error") == rounds
    await scene.back_to_baseline({"honest"})


async def test_an_amf0_array_of_millions_of_nulls_before_auth_is_refused_unread(
        make_scene: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    # Before: 5.9 s of /healthz per connect, the attacker reconnecting at once.
    scene: Scene = await make_scene()
    millions = null_array_command(4_000_000, chunk_size=65536)
    thousand = null_array_command(1000, chunk_size=65536)  # within rtmp.max_command_bytes, over the value count
    seen = {"millions": 0, "thousand": 0}
    loop = asyncio.get_running_loop()
    with caplog.at_level(logging.INFO, logger="streamsnap"):
        async with Watch(scene) as watch:
            async for round_ in until(loop.time() + 4):
                kind = "millions" if round_ % 2 else "thousand"
                peer = await HostilePeer.open(scene.rtmp_port, source="127.0.0.7")
                try:
                    await peer.handshake()
                    with contextlib.suppress(OSError):  # (sent apart: a joined copy would be ours, 4 MB a round)
                        await peer.send(set_chunk_size(65536))
                        await peer.send(millions if kind == "millions" else thousand)
                    answer, closed = await peer.read_all(2)
                    assert closed and b"_result" not in answer
                    seen[kind] += 1
                finally:
                    peer.close()  # and again at once
        watch.check(4)
    assert seen["millions"] >= 5 and seen["thousand"] >= 5, seen
    assert logged(caplog, "command of 4000024 bytes over rtmp.max_command_bytes (4096)") == seen["millions"]
    assert logged(caplog, "AMF0 array of 1000 values over the limit of 256") == seen["thousand"]
    await scene.back_to_baseline({"honest"})


async def test_connections_over_the_per_address_cap_are_closed_on_arrival(
        make_scene: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    scene: Scene = await make_scene(rtmp_max_connections_per_ip=4)
    peers: list[HostilePeer] = []
    with caplog.at_level(logging.INFO, logger="streamsnap"):
        async with Watch(scene) as watch:
            try:
                for _ in range(40):
                    peers.append(await HostilePeer.open(scene.rtmp_port, source="127.0.0.8"))
                closed = await asyncio.gather(*(peer.closed_by_server(0.5) for peer in peers))
                assert closed.count(False) == 4  # held (until the deadline), the 36 others closed on arrival
                # Another address is not counted with them: a second encoder from 127.0.0.1 publishes.
                await scene.push("honest-2")
                await scene.publishing("honest-2")
                await scene.picture("honest-2")
                held = [peer for peer, gone in zip(peers, closed, strict=True) if not gone]
                assert all(await asyncio.gather(*(peer.closed_by_server(DEADLINE + 1) for peer in held)))
            finally:
                for peer in peers:
                    peer.close()
            # Once they are gone, the address is served again.
            again = await HostilePeer.open(scene.rtmp_port, source="127.0.0.8")
            try:
                await again.handshake()
            finally:
                again.close()
        watch.check(1)
    assert logged(caplog, "RTMP connection from 127.0.0.8 refused: 4 connections from this address "
                          "(rtmp.max_connections_per_ip)") == 36
    assert logged(caplog, "no accepted publish within 3 s (rtmp.handshake_timeout)") >= 4
    await scene.back_to_baseline({"honest", "honest-2"}, connections=2)


async def test_peers_that_never_publish_are_closed_at_the_deadline(
        make_scene: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    # Never idle (a small message every 300 ms), never done: a handshake dripped byte by byte, a
    # connect and nothing else, a connect then `createStream` over and over.
    scene: Scene = await make_scene()
    keepalive = chunks(2, USER_CONTROL, 0, b"\x00\x06\x00\x00\x00\x01")

    async def dripping_handshake(peer: HostilePeer) -> None:
        for byte in bytes([3]) + bytes(1536) + bytes(1536):
            await peer.send(bytes([byte]))
            await asyncio.sleep(0.3)

    async def connected_only(peer: HostilePeer) -> None:
        await peer.handshake()
        await peer.send(connect())
        while True:
            await peer.send(keepalive)
            await asyncio.sleep(0.3)

    async def creating_streams(peer: HostilePeer) -> None:
        await peer.handshake()
        await peer.send(connect())
        for txn in range(2, 10_000):
            await peer.send(command("createStream", float(txn), None))
            await asyncio.sleep(0.3)

    async def one(index: int, behaviour: Callable[[HostilePeer], Any]) -> float:
        peer = await HostilePeer.open(scene.rtmp_port, source=f"127.0.1.{index}")
        started = time.monotonic()
        try:
            with contextlib.suppress(OSError):
                await behaviour(peer)
            return time.monotonic() - started
        finally:
            peer.close()

    behaviours = [dripping_handshake, connected_only, creating_streams] * 3
    with caplog.at_level(logging.INFO, logger="streamsnap"):
        async with Watch(scene) as watch:
            lives = await asyncio.wait_for(
                asyncio.gather(*(one(i + 1, b) for i, b in enumerate(behaviours))), DEADLINE + 5)
        watch.check(DEADLINE)
    assert all(DEADLINE - 0.5 < life < DEADLINE + 1.5 for life in lives), lives
    assert logged(caplog, f"no accepted publish within {DEADLINE:.0f} s (rtmp.handshake_timeout)") == len(behaviours)
    await scene.back_to_baseline({"honest"})
