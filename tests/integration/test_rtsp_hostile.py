"""Hostile cameras, round three (issue 22): each attack played by a camera of our own over real sockets
(`tests/harness/hostile_rtsp.py`), against a running server; the tests assert what the client and the operator
see (status, words, log), that a trap listener saw nothing, and that threads, descriptors and memory
come back."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
import yarl

from streamsnap.config import Camera
from streamsnap.wcsclient import SnapshotFailed, WcsClient
from tests.conftest import ROOT, RunningServer
from tests.harness import free_port, wait_listening
from tests.harness.hostile_rtsp import (
    DigestCamera,
    DrippingCamera,
    FragmentFloodCamera,
    HostileCamera,
    HugeDescriptionCamera,
    ManyTracksCamera,
    RedirectingCamera,
    Request,
    Session,
    SourceAddressCamera,
    TinyFrameCamera,
    TrapListener,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

NOT_ALLOWED = "Restricted access: camera host not allowed"
CLOSED_BY_DEFAULT = (f"{NOT_ALLOWED} (pulling cameras not in [[cameras]] is off: list the hosts that may be pulled "
                     "in rtsp.allowed_hosts)")
"The image url's words at the defaults: the setting that opens camera pulls is named."
LOOPBACK = ["127.0.0.1/32"]
"The allow-list of most tests here: the hostile cameras' address, and not 127.0.0.2 (the traps')."


def image_url(server: RunningServer, name: str, ext: str = "jpg") -> yarl.URL:
    return yarl.URL(f"{server.http_url}/streams/{urllib.parse.quote(name, safe='')}/snapshot.{ext}", encoded=True)


async def picture(http: aiohttp.ClientSession, server: RunningServer, name: str) -> tuple[int, Any]:
    """The image url's answer: (status, JSON body or the image's size in bytes)."""
    async with http.get(image_url(server, name)) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, len(await response.read())


async def startup(http: aiohttp.ClientSession, server: RunningServer, body: dict[str, Any]) -> tuple[int, Any]:
    async with http.post(f"{server.http_url}/rest-api/rtsp/startup", json=body) as response:
        return response.status, await response.json(content_type=None)


async def eventually(check: Callable[[], bool], timeout: float = 10.0, what: object = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"condition not met in time {what}"
        await asyncio.sleep(0.1)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client that keeps no connection after a request: the descriptors counted are the server's."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30),
                                     connector=aiohttp.TCPConnector(force_close=True)) as session:
        yield session


@pytest.fixture
async def started() -> AsyncIterator[Callable[..., Any]]:
    """Start hostile cameras and traps (closed at teardown)."""
    things: list[Any] = []

    async def start(thing: Any) -> Any:
        things.append(thing)
        return await thing.start()

    yield start
    for thing in things:
        result = thing.close()
        if asyncio.iscoroutine(result):
            await result


class Resources:
    """This process's threads, descriptors and RSS, against a baseline taken after a warm-up."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.threads = self.fds = self.rss = 0

    def baseline(self) -> None:
        gc.collect()
        self.threads, self.fds, self.rss = threading.active_count(), self.process.num_fds(), self.rss_now()

    def rss_now(self) -> int:
        return int(self.process.memory_info().rss)

    def back(self) -> bool:
        return threading.active_count() <= self.threads and self.process.num_fds() <= self.fds + 2

    def __str__(self) -> str:
        sockets = [(c.laddr, c.raddr, c.status) for c in self.process.net_connections("all")]
        return (f"threads {self.threads}->{threading.active_count()}, fds {self.fds}->{self.process.num_fds()}, "
                f"RSS {(self.rss_now() - self.rss) / 2**20:+.1f} MB; sockets now: {sockets}")


async def warm_up(http: aiohttp.ClientSession, server: RunningServer, started: Callable[..., Any]) -> None:
    """One good pull and its end: thread pools, FFmpeg's lazily loaded parts, resolver threads."""
    camera = await started(HostileCamera())
    status, body = await picture(http, server, camera.url("/warm"))
    assert status == 200, body
    assert server.node is not None
    await server.node.cameras.terminate(camera.url("/warm"))


# Finding 1: at the defaults, a client can make the server connect anywhere (a port scanner).

async def test_unlisted_cameras_are_never_pulled_at_the_defaults(
        start_server: Callable[..., Any], http: aiohttp.ClientSession, started: Callable[..., Any],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    trap = await started(TrapListener("127.0.0.1"))
    configured = await started(HostileCamera())
    server: RunningServer = await start_server(rtsp_allowed_hosts=[],  # the default
                                               cameras=[Camera(name="yard", uri=configured.url("/yard"))])
    closed_port = free_port()
    names = [f"rtsp://127.0.0.1:{trap.port}/x?q=1", f"rtsp://127.0.0.1:{closed_port}/x",
             f"rtsp://localhost:{trap.port}/x", "rtsp://169.254.169.254:80/latest/meta-data", "rtsp://[::1]:554/x",
             f"rtsp://user:pw@127.0.0.1:{trap.port}/x"]
    answers = []
    client = await WcsClient.connect(server.ws_url)
    try:
        for name in names:
            started_at = time.monotonic()
            status, body = await picture(http, server, name)
            answers.append((status, body, time.monotonic() - started_at))
            assert (status, body["reason"], body["error"]) == (403, "source_not_allowed", CLOSED_BY_DEFAULT), body
            status, body = await startup(http, server, {"uri": name, "toStream": "s"})
            assert (status, body["reason"]) == (403, "source_not_allowed"), (name, body)
            with pytest.raises(SnapshotFailed) as failed:
                await client.snapshot(name, timeout=10)
            assert failed.value.args[0] == NOT_ALLOWED
    finally:
        await client.close()
    assert trap.connections == 0
    # An open port and a closed one answer the same: nothing to scan with.
    assert answers[0][:2] == answers[1][:2]
    assert "rtsp.allowed_hosts" in caplog.text  # the operator is told which setting opens it
    # The operator's own cameras ([[cameras]]) are pulled at the defaults.
    await eventually(lambda: configured.methods.count("PLAY") > 0)
    await eventually(lambda: server.node is not None and any(
        pull.status == "PUBLISHING" for pull in server.node.cameras.pulls()))
    status, body = await picture(http, server, "yard")
    assert status == 200, body


async def test_loopback_link_local_and_metadata_need_an_entry_of_their_own(
        start_server: Callable[..., Any], http: aiohttp.ClientSession, started: Callable[..., Any]) -> None:
    trap = await started(TrapListener("127.0.0.1"))
    server: RunningServer = await start_server(rtsp_allowed_hosts=["0.0.0.0/0", "::/0"])
    for name in (f"rtsp://127.0.0.1:{trap.port}/x", f"rtsp://localhost:{trap.port}/x", f"rtsp://0.0.0.0:{trap.port}/x",
                 f"rtsp://[::ffff:127.0.0.1]:{trap.port}/x", "rtsp://169.254.169.254/x", "rtsp://[fe80::1]/x"):
        status, body = await picture(http, server, name)
        assert (status, body["reason"]) == (403, "source_not_allowed"), (name, body)
    assert trap.connections == 0


# Finding 2: the allow-list was checked, then FFmpeg connected on its own.

@pytest.mark.parametrize("after_auth", [False, True], ids=["describe", "after-auth"])
async def test_a_redirect_to_a_host_not_listed_is_refused_and_never_contacted(
        start_server: Callable[..., Any], http: aiohttp.ClientSession, started: Callable[..., Any],
        after_auth: bool) -> None:
    trap = await started(TrapListener("127.0.0.2"))
    camera = await started(RedirectingCamera(f"rtsp://127.0.0.2:{trap.port}/cam", after_auth=after_auth))
    server: RunningServer = await start_server(rtsp_allowed_hosts=LOOPBACK)
    status, body = await picture(http, server, camera.url(userinfo="viewer:pw"))
    assert (status, body["reason"]) == (403, "source_not_allowed"), body
    assert camera.redirects == 1
    await asyncio.sleep(0.5)  # anything still on its way to the trap
    assert trap.connections == 0


async def test_a_redirect_loop_ends_at_max_redirects(start_server: Callable[..., Any], http: aiohttp.ClientSession,
                                                     started: Callable[..., Any]) -> None:
    camera = await started(RedirectingCamera("rtsp://{self}/again-{n}", after_auth=True))
    server: RunningServer = await start_server(rtsp_allowed_hosts=LOOPBACK, rtsp_max_redirects=3)
    started_at = time.monotonic()
    status, body = await picture(http, server, camera.url(userinfo="viewer:pw"))
    assert (status, body["reason"]) == (502, "source_unreachable"), body
    assert time.monotonic() - started_at < 3
    await asyncio.sleep(0.5)
    assert camera.redirects == 4  # the first answer, then three redirects followed, and no more


async def test_configured_camera_redirects_are_checked_too(
        start_server: Callable[..., Any], http: aiohttp.ClientSession, started: Callable[..., Any]) -> None:
    trap = await started(TrapListener("127.0.0.2"))
    away = await started(RedirectingCamera(f"rtsp://127.0.0.2:{trap.port}/cam"))
    home = await started(RedirectingCamera("rtsp://{self}/moved"))
    real = await started(HostileCamera())

    async def describe(request: Request, session: Session) -> None:  # "/moved" is served, anything else redirected
        if request.url.endswith("/moved"):
            await HostileCamera.describe(home, request, session)
        else:
            await RedirectingCamera.describe(home, request, session)

    home.describe = describe  # type: ignore[method-assign]
    server: RunningServer = await start_server(
        rtsp_allowed_hosts=[], rtsp_reconnect_max=1.0,
        cameras=[Camera(name="away", uri=away.url()), Camera(name="home", uri=home.url()),
                 Camera(name="real", uri=real.url())])
    await eventually(lambda: away.redirects >= 2 and home.methods.count("PLAY") >= 1, timeout=20)
    assert trap.connections == 0
    async with http.post(f"{server.http_url}/rest-api/rtsp/find_all", json={}) as response:
        listing = {pull["toStream"]: pull for pull in await response.json()}
    assert listing["away"]["reason"] == "source_not_allowed", listing


async def test_ffmpeg_is_only_given_relay_urls_and_the_relay_connects_to_the_checked_address(
        start_server: Callable[..., Any], http: aiohttp.ClientSession, started: Callable[..., Any]) -> None:
    camera = await started(HostileCamera())
    server: RunningServer = await start_server(rtsp_allowed_hosts=["127.0.0.1/32", "localhost"])
    status, body = await picture(http, server, camera.url(host="localhost", userinfo="viewer:pw"))
    assert status == 200, body
    assert camera.connections == 1, camera.peers  # one connection, ours
    hosts = {urllib.parse.urlsplit(request.url).netloc for request in camera.requests}
    assert all(host.startswith("127.0.0.1:") and host != f"127.0.0.1:{camera.port}" for host in hosts), hosts


async def test_credentials_reach_the_camera_through_the_relay(
        start_server: Callable[..., Any], http: aiohttp.ClientSession, started: Callable[..., Any]) -> None:
    camera = await started(DigestCamera("viewer", "s3cr3t"))
    server: RunningServer = await start_server(rtsp_allowed_hosts=LOOPBACK)
    status, body = await picture(http, server, camera.url("/a", userinfo="viewer:s3cr3t"))
    assert status == 200, body
    status, body = await picture(http, server, camera.url("/b", userinfo="viewer:wrong"))
    assert (status, body["reason"]) == (502, "source_unauthorized"), body


def _unshare_works() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind /etc/hosts /etc/hosts"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="needs root and unshare -m (a private /etc/hosts for the server)")
async def test_dns_rebinding_cannot_move_the_connection(http: aiohttp.ClientSession,
                                                        started: Callable[..., Any]) -> None:
    """The camera's name resolves to the camera for the first look-up, to a trap from the moment the camera
    is connected: a second look-up (FFmpeg's own, before) would reach the trap. The server runs with an
    /etc/hosts of this test's (a private mount namespace), so that both look-ups are real ones."""
    camera = await started(HostileCamera())
    trap = TrapListener("127.0.0.2", port=camera.port)
    await started(trap)
    with tempfile.TemporaryDirectory() as folder:
        hosts = Path(folder) / "hosts"
        write_hosts(hosts, "127.0.0.1")
        answer = camera.answer

        async def rebinding(request: Request, session: Session) -> None:
            write_hosts(hosts, "127.0.0.2")  # from the first request on: the camera is connected by then
            await answer(request, session)

        camera.answer = rebinding  # type: ignore[method-assign]
        port = free_port()
        env = os.environ | {"STREAMSNAP_RTSP_ALLOWED_HOSTS": "127.0.0.1,rebinding-camera.test",
                            "STREAMSNAP_ICE_ADDRESSES": "127.0.0.1"}
        proc = subprocess.Popen(  # noqa: ASYNC220
            ["unshare", "-m", "sh", "-c", f'mount --bind "{hosts}" /etc/hosts && exec "{sys.executable}" '
             f"-m streamsnap serve --host 127.0.0.1 --port {port}"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        try:
            await asyncio.to_thread(wait_listening, port, proc)
            status, body = await picture(http, RunningServer(port), f"rtsp://rebinding-camera.test:{camera.port}/cam")
            assert status == 200, body
            await asyncio.sleep(0.5)
            assert trap.connections == 0
            assert camera.connections == 1
        finally:
            proc.terminate()
            proc.wait(10)


def write_hosts(path: Path, address: str) -> None:
    """The system's /etc/hosts with the rebinding camera's name at `address`, written in place (a bind mount
    of the file keeps seeing it)."""
    path.write_text(Path("/etc/hosts").read_text() + f"{address} rebinding-camera.test\n")


async def test_a_udp_setup_reply_cannot_send_our_rtp_elsewhere(
        start_server: Callable[..., Any], http: aiohttp.ClientSession, started: Callable[..., Any]) -> None:
    trap = await started(TrapListener("127.0.0.2"))
    camera = await started(SourceAddressCamera("127.0.0.2", trap.udp_ports))
    server: RunningServer = await start_server(rtsp_allowed_hosts=LOOPBACK, rtsp_transport="udp")
    status, body = await picture(http, server, camera.url())
    assert status == 200, body
    await asyncio.sleep(1.5)  # RTCP receiver reports go out about once a second
    assert trap.datagrams == []
    assert trap.connections == 0


# Finding 3: a camera could hold the server's threads, sockets and memory.

async def test_dripping_cameras_hold_no_thread_and_no_socket(
        start_server: Callable[..., Any], http: aiohttp.ClientSession, started: Callable[..., Any]) -> None:
    server: RunningServer = await start_server(rtsp_allowed_hosts=LOOPBACK, rtsp_open_timeout=1.0)
    await warm_up(http, server, started)
    drips = [await started(DrippingCamera(phase)) for phase in ("head", "body", "media")]
    resources = Resources()
    resources.baseline()
    answers: dict[tuple[int, str], int] = {}

    async def one(index: int) -> None:
        status, body = await picture(http, server, drips[index % 3].url(f"/drip-{index}"))
        key = (status, body["reason"] if isinstance(body, dict) else "")
        answers[key] = answers.get(key, 0) + 1

    for batch in range(12):  # 300 requests from one client, 25 at a time
        await asyncio.gather(*(one(batch * 25 + i) for i in range(25)))
    assert answers == {(504, "source_timeout"): 300}, answers
    await eventually(resources.back, timeout=5, what=resources)
    assert server.node is not None and server.node.cameras.pulls() == []


class SilentCamera(HostileCamera):
    """Answers PLAY, then sends nothing."""

    async def stream(self, session: Session) -> None:
        await asyncio.Event().wait()


async def test_a_camera_silent_after_play_over_udp_holds_nothing(
        start_server: Callable[..., Any], http: aiohttp.ClientSession, started: Callable[..., Any]) -> None:
    server: RunningServer = await start_server(rtsp_allowed_hosts=LOOPBACK, rtsp_open_timeout=1.0,
                                               rtsp_transport="udp")
    await warm_up(http, server, started)
    camera = await started(SilentCamera())
    resources = Resources()
    resources.baseline()
    answers = await asyncio.gather(*(picture(http, server, camera.url(f"/silent-{i}")) for i in range(20)))
    assert {(status, body["reason"]) for status, body in answers} == {(504, "source_timeout")}, answers
    await eventually(resources.back, timeout=5, what=resources)


async def test_a_huge_description_is_refused_unread(start_server: Callable[..., Any], http: aiohttp.ClientSession,
                                                    started: Callable[..., Any]) -> None:
    server: RunningServer = await start_server(rtsp_allowed_hosts=LOOPBACK)
    await warm_up(http, server, started)
    camera = await started(HugeDescriptionCamera(300 * 1024 * 1024))
    resources = Resources()
    resources.baseline()
    answers = await asyncio.gather(*(picture(http, server, camera.url(f"/huge-{i}")) for i in range(4)))
    for status, body in answers:
        assert (status, body["reason"]) == (502, "unsupported_source"), body
    assert resources.rss_now() - resources.rss < 24 * 2**20, str(resources)
    assert camera.bytes_sent < 32 * 2**20  # what the kernel's buffers took before the connection was closed
    await eventually(resources.back, timeout=5, what=resources)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_an_endless_fragment_is_capped(start_server: Callable[..., Any], http: aiohttp.ClientSession,
                                             started: Callable[..., Any], caplog: pytest.LogCaptureFixture,
                                             transport: str) -> None:
    caplog.set_level(logging.INFO)
    server: RunningServer = await start_server(rtsp_allowed_hosts=LOOPBACK, rtsp_transport=transport)
    await warm_up(http, server, started)
    camera = await started(FragmentFloodCamera(good_seconds=1.0))
    resources = Resources()
    resources.baseline()
    status, body = await picture(http, server, camera.url())
    assert status == 200, body  # a real picture first, then the flood
    await asyncio.wait_for(camera.flooding.wait(), 5)
    flood_began, peak = time.monotonic(), 0
    while time.monotonic() - flood_began < 10 and server.node is not None and server.node.cameras.pulls():
        peak = max(peak, resources.rss_now() - resources.rss)
        await asyncio.sleep(0.05)
    assert server.node is not None and server.node.cameras.pulls() == [], "the flooding camera's pull goes on"
    assert peak < 32 * 2**20, f"RSS peak {peak / 2**20:.1f} MB"
    assert "sends a video frame of more than" in caplog.text  # the operator is told why
    await eventually(resources.back, timeout=5, what=resources)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_a_camera_is_read_at_its_packet_rate(start_server: Callable[..., Any], http: aiohttp.ClientSession,
                                                   started: Callable[..., Any], transport: str) -> None:
    rate = 1000
    server: RunningServer = await start_server(rtsp_allowed_hosts=LOOPBACK, rtsp_transport=transport,
                                               rtsp_max_packets_per_second=rate)
    camera = await started(TinyFrameCamera(good_seconds=1.0))
    status, body = await picture(http, server, camera.url())
    assert status == 200, body
    await asyncio.wait_for(camera.flooding.wait(), 5)
    assert server.node is not None
    source = server.node.sources.get(camera.url())
    assert source is not None
    before, began = source.stats().frames_received, time.monotonic()
    await asyncio.sleep(3)
    frames = source.stats().frames_received - before
    sent = camera.bytes_sent // 14
    assert frames <= rate * (time.monotonic() - began) * 1.25, (frames, sent)
    assert sent > 3 * frames  # the camera tried far more


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_a_description_of_500_tracks_is_refused_before_any_setup(
        start_server: Callable[..., Any], http: aiohttp.ClientSession, started: Callable[..., Any],
        transport: str) -> None:
    server: RunningServer = await start_server(rtsp_allowed_hosts=LOOPBACK, rtsp_transport=transport)
    await warm_up(http, server, started)
    camera = await started(ManyTracksCamera(500))
    resources = Resources()
    resources.baseline()
    status, body = await picture(http, server, camera.url())
    assert (status, body["reason"]) == (502, "unsupported_source"), body
    assert camera.setups == 0
    await eventually(resources.back, timeout=5, what=resources)
