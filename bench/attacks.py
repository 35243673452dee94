"""Each attack of issue 12 against a running server, timing /healthz and a normal snapshot meanwhile.

    .venv/bin/python bench/attacks.py [--seconds 8] [--json attacks.json]

Starts `streamsnap serve` on a free 127.0.0.1 port (tokens on, `trusted_proxies =
127.0.0.1` so that each simulated client can have its own address through X-Forwarded-For,
and small quotas so that each attack reaches its bound within seconds). A probe process of its
own publishes one normal stream and measures /healthz and snapshots of that stream, first for a
few seconds (the baseline), then while this process plays each attack for `--seconds`; it prints
one table: the attack, what the server answered, /healthz p99, the normal snapshot's p99
during the attack against the baseline, and the server's RSS growth at its peak and a few
seconds after the attack ended, and the server's CPU time over the attack (the machine is shared by
the attacker, the probes and the server: a row whose snapshot p99 rose while the server's CPU stayed
low was slowed by the attacking process, not by the server). Loopback only; a few minutes in all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import yarl
from aiortc import RTCPeerConnection
from aiortc.rtp import RtpPacket

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.hostile_rtsp import (  # noqa: E402
    DrippingCamera,
    FragmentFloodCamera,
    HugeDescriptionCamera,
    ManyTracksCamera,
    RedirectingCamera,
    SourceAddressCamera,
    TinyFrameCamera,
    TrapListener,
)

from bench.run import free_port, percentile, wait_port  # noqa: E402
from streamsnap.access import TokenPolicy  # noqa: E402
from streamsnap.config import WebRtcSettings  # noqa: E402
from streamsnap.media.pattern import PatternTrack  # noqa: E402
from streamsnap.wcsclient import PublishFailed, SnapshotFailed, WcsClient  # noqa: E402

HOST = "127.0.0.1"  # loopback only
SECRET = "bench-attacks-" + "0123456789abcdef" * 3
SERVER_SETTINGS = {
    "STREAMSNAP_AUTH_SECRET": SECRET,
    "STREAMSNAP_TRUSTED_PROXIES": HOST,
    "STREAMSNAP_LOGIN_TIMEOUT": "2",
    "STREAMSNAP_HTTP_HEADER_TIMEOUT": "2",
    "STREAMSNAP_CONNECT_TIMEOUT": "4",
    "STREAMSNAP_KEYFRAME_TIMEOUT": "3",
    "STREAMSNAP_MAX_STREAMS_PER_SUBJECT": "10",
    "STREAMSNAP_MAX_SNAPSHOTS_PER_SUBJECT": "16",
    "STREAMSNAP_RTSP_ALLOWED_HOSTS": "127.0.0.1",  # the hostile cameras' address; their traps are on 127.0.0.2
}
NORMAL_ADDRESS = "198.51.100.10"
GOALS = {"healthz_p99_ms": 100.0, "snapshot_ratio": 2.0, "rss_growth_mb": 50.0}


@dataclass
class Row:
    """One attack's figures."""

    attack: str
    answer: str
    healthz_p99_ms: float
    snapshot_p99_ms: float
    snapshot_baseline_p99_ms: float
    snapshot_errors: int
    rss_peak_growth_mb: float
    rss_after_growth_mb: float
    server_cpu_percent: float
    "The server's CPU time over the attack's wall time (100: one core)."

    @property
    def within_goals(self) -> bool:
        return (self.healthz_p99_ms < GOALS["healthz_p99_ms"]
                and self.snapshot_p99_ms < GOALS["snapshot_ratio"] * self.snapshot_baseline_p99_ms
                and self.rss_peak_growth_mb < GOALS["rss_growth_mb"] and self.snapshot_errors == 0)


class Probes:
    """/healthz every 20 ms and a snapshot of the normal stream every 100 ms, until stopped."""

    def __init__(self, base: str, viewer: WcsClient) -> None:
        self.base = base
        self.viewer = viewer
        self.healthz: list[float] = []
        self.snapshots: list[float] = []
        self.errors: Counter[str] = Counter()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Probes:
        self._tasks = [asyncio.ensure_future(f()) for f in (self._healthz, self._snapshots)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def figures(self) -> dict[str, Any]:
        return {"healthz_p99_ms": round(percentile(self.healthz, 99) * 1000, 1),
                "snapshot_p99_ms": round(percentile(self.snapshots, 99) * 1000, 1),
                "snapshots": len(self.snapshots), "errors": dict(self.errors)}

    async def _healthz(self) -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            while True:
                started = time.perf_counter()
                async with http.get(f"{self.base}/healthz") as response:
                    await response.read()
                self.healthz.append(time.perf_counter() - started)
                await asyncio.sleep(0.02)

    async def _snapshots(self) -> None:
        while True:
            started = time.perf_counter()
            try:
                await self.viewer.snapshot("normal", timeout=30)
                self.snapshots.append(time.perf_counter() - started)
            except SnapshotFailed as exc:
                self.errors[exc.info] += 1
            except TimeoutError:
                self.errors["timeout"] += 1
            await asyncio.sleep(0.1)


async def probe_process(port: int) -> None:
    """The well-behaved side, in a process of its own so that the attacks' own CPU does not skew it:
    publishes `normal`, then measures between `start` and `stop` lines on stdin (one JSON line each)."""
    base, ws = f"http://{HOST}:{port}", f"ws://{HOST}:{port}/normal"
    tokens = TokenPolicy(SECRET)
    headers = {"X-Forwarded-For": NORMAL_ADDRESS}
    publisher = await WcsClient.connect(ws, headers=headers, authToken=tokens.issue(["publish"], subject="normal"))
    await publisher.publish("normal", [PatternTrack(320, 240)])
    viewer = await WcsClient.connect(ws, headers=headers, authToken=tokens.issue(["snapshot"], subject="normal"))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print("READY", flush=True)
    probes: Probes | None = None
    try:
        while line := (await reader.readline()).decode().strip():
            if line == "start":
                probes = Probes(base, viewer)
                await probes.__aenter__()
            elif line == "stop" and probes is not None:
                await probes.__aexit__()
                print(json.dumps(probes.figures()), flush=True)
    finally:
        await viewer.close()
        await publisher.close()


class ProbeClient:
    """The attacking process's handle on the probe process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def expect(self) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(60):
            while True:
                line = (await self.proc.stdout.readline()).decode().strip()
                if not line and self.proc.returncode is not None:
                    raise RuntimeError("the probe process ended")
                if line == "READY" or line.startswith("{"):
                    return line

    async def start(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"start\n")
        await self.proc.stdin.drain()

    async def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stop\n")
        await self.proc.stdin.drain()
        result: dict[str, Any] = json.loads(await self.expect())
        return result


# The attacks: each runs until `deadline` and returns the server's answer, in words.

Attack = Callable[["Bench", float], Awaitable[str]]


@dataclass
class Bench:
    base: str
    ws: str
    tokens: TokenPolicy
    log_file: Path

    def token(self, *rights: str, subject: str = "attacker", streams: list[str] | None = None,
              ttl: float = 3600) -> str:
        return self.tokens.issue(list(rights), streams=streams or [], subject=subject, ttl=ttl)

    async def client(self, address: str, token: str | None = None) -> WcsClient:
        return await WcsClient.connect(self.ws, headers={"X-Forwarded-For": address},
                                       authToken=token or self.token("publish", "snapshot"))


async def offer(video: int = 1) -> str:
    pc = RTCPeerConnection()
    for _ in range(video):
        pc.addTransceiver("video", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = str(pc.localDescription.sdp)
    await pc.close()
    return sdp


def sdp_bomb() -> str:
    head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    section = ("m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:{i}\r\na=sendonly\r\n"
               "a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 goog-remb\r\n"
               "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\n"
               "a=msid:- {i}\r\na=ssrc:{i} cname:abcdefgh\r\na=x-filler:" + "f" * 24 + "\r\n")
    return head + "".join(section.format(i=i) for i in range(3000))


async def maximal_allowed_offer(limits: WebRtcSettings) -> str:
    lines = [line for line in (await offer(limits.sdp_max_media)).split("\r\n") if line and
             not line.startswith("a=candidate")]
    first = next(i for i, line in enumerate(lines) if line.startswith("m="))
    lines[first + 1:first + 1] = [f"a=candidate:{i} 1 udp 2130706431 127.0.0.1 {20000 + i} typ host"
                                  for i in range(limits.sdp_max_candidates)]
    spare = limits.sdp_max_lines - len(lines) - 1
    room = limits.sdp_max_bytes - len("\r\n".join(lines)) - 400
    pad = [f"a=x-pad-{i}:" + "p" * max(1, room // spare - 16) for i in range(spare)]
    lines[first + 1:first + 1] = pad
    return "\r\n".join(lines) + "\r\n"


async def publish_offers(client: WcsClient, names: list[str], sdp: str) -> list[Any]:
    publications = []
    for name in names:
        publication = client.watch(str(uuid.uuid4()), name)
        await client.send("publishStream", {"mediaSessionId": publication.id, "name": name, "sdp": sdp})
        publications.append(publication)
    return publications


async def outcomes(client: WcsClient, publications: list[Any], timeout: float) -> Counter[str]:
    seen: Counter[str] = Counter()

    async def one(publication: Any) -> None:
        try:
            await client.wait_status(publication, "PUBLISHING", timeout)
            seen["PUBLISHING"] += 1
        except PublishFailed as exc:
            seen[f"{exc.status} {exc.info}"] += 1
        except TimeoutError:
            seen["no answer"] += 1

    await asyncio.gather(*(one(p) for p in publications))
    if client.ws.closed:  # the flood limit (message_rate) closed the session: its last offers got no answer
        seen.pop("no answer", None)
        seen[f"session closed {client.ws.close_code} (message_rate)"] += 1
    return seen


async def live(bench: Bench, client: WcsClient, address: str) -> WcsClient:
    """`client`, or a new session from `address` when the server closed it."""
    if not client.ws.closed:
        return client
    await client.close()
    return await bench.client(address)


def words(counts: Counter[str]) -> str:
    return "; ".join(f"{n}x {what}" for what, n in counts.most_common(4))


async def attack_sdp_bomb(bench: Bench, deadline: float) -> str:
    bomb, seen, worst = sdp_bomb(), Counter[str](), 0.0
    client = await bench.client("203.0.113.1")
    try:
        while time.monotonic() < deadline:
            started = time.monotonic()
            client = await live(bench, client, "203.0.113.1")
            publications = await publish_offers(client, [f"bomb-{uuid.uuid4().hex[:6]}" for _ in range(4)], bomb)
            seen += await outcomes(client, publications, 10)
            if not client.ws.closed:
                worst = max(worst, time.monotonic() - started)
    finally:
        await client.close()
    return words(seen) + f" (4 x {len(bomb) / 1e6:.2f} MB offers a round, rounds answered within {worst * 1000:.0f} ms)"


async def attack_maximal_offer(bench: Bench, deadline: float) -> str:
    sdp, seen = await maximal_allowed_offer(WebRtcSettings()), Counter[str]()
    client = await bench.client("203.0.113.2")
    try:
        while time.monotonic() < deadline:
            publications = await publish_offers(client, [f"max-{uuid.uuid4().hex[:6]}" for _ in range(4)], sdp)
            seen += await outcomes(client, publications, 10)
    finally:
        await client.close()
    return words(seen) + " (4 maximal allowed offers a round)"


async def attack_candidates(bench: Bench, deadline: float) -> str:
    base = await offer()
    lines = base.split("\r\n")
    first = next(i for i, line in enumerate(lines) if line.startswith("m="))
    lines[first + 1:first + 1] = [f"a=candidate:{i} 1 udp 2130706431 10.{i // 65536 % 256}.{i // 256 % 256}."
                                  f"{i % 256} 9 typ host" for i in range(3000)]
    sdp, seen = "\r\n".join(lines), Counter[str]()
    client = await bench.client("203.0.113.3")
    try:
        while time.monotonic() < deadline:
            client = await live(bench, client, "203.0.113.3")
            seen += await outcomes(client, await publish_offers(client, [f"cand-{uuid.uuid4().hex[:6]}"], sdp), 10)
    finally:
        await client.close()
    return words(seen) + " (3000 candidates)"


async def attack_never_login(bench: Bench, deadline: float) -> str:
    infos: Counter[str] = Counter()

    async def idler(index: int) -> None:
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                async with http.ws_connect(bench.ws, headers={"X-Forwarded-For": f"203.0.113.{index % 200 + 20}"}) \
                        as ws:
                    async def pings() -> None:
                        while not ws.closed:
                            await ws.send_str(json.dumps({"message": "ping", "data": [None]}))
                            await asyncio.sleep(0.5)
                    pinger = asyncio.ensure_future(pings())
                    async for frame in ws:
                        if frame.type is aiohttp.WSMsgType.TEXT and json.loads(frame.data)["message"] == "fail":
                            infos[json.loads(frame.data)["data"][0]["info"]] += 1
                    pinger.cancel()
                    infos[f"closed {ws.close_code}"] += 1

    await asyncio.gather(*(idler(i) for i in range(200)), return_exceptions=True)
    return words(infos) + " (200 sockets that never log in)"


async def attack_expired_token(bench: Bench, deadline: float) -> str:
    short = bench.token("snapshot", subject="short-lived", ttl=1)
    client = await bench.client("203.0.113.4", short)
    seen: Counter[str] = Counter()
    try:
        await asyncio.sleep(2.1)
        while time.monotonic() < deadline:
            try:
                await client.snapshot("normal")
                seen["snapshotCompleted"] += 1
            except SnapshotFailed as exc:
                seen[f"snapshotFailed {exc.info}"] += 1
            await asyncio.sleep(0.05)
    finally:
        await client.close()
    return words(seen) + " (session opened before exp)"


async def attack_metrics(bench: Bench, deadline: float) -> str:
    seen: Counter[str] = Counter()
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            for token in (None, bench.token("snapshot")):
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                async with http.get(f"{bench.base}/metrics", headers=headers) as response:
                    seen[f"{response.status}"] += 1
            await asyncio.sleep(0.02)
    return "HTTP " + words(seen) + " (no token; token without metrics)"


async def attack_tokens_in_logs(bench: Bench, deadline: float) -> str:
    secret_token = bench.token("snapshot", subject="logged")
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            for key in ("access_token", "access%5Ftoken", "%61ccess_token"):
                url = f"{bench.base}/streams/normal/snapshot.jpg?width=64&{key}={secret_token}"
                async with http.get(url, headers={"X-Forwarded-For": "203.0.113.5"}) as response:
                    await response.read()
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    leaked = secret_token in bench.log_file.read_text(errors="replace")
    return f"token in the server log: {'YES' if leaked else 'no'} (3 encodings)"


async def attack_slowloris(bench: Bench, deadline: float) -> str:
    host, port = HOST, int(bench.base.rsplit(":", 1)[1])
    closed = Counter[str]()

    async def one(drip: bool) -> None:
        started = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            closed["refused"] += 1
            return
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            while time.monotonic() < deadline:
                if drip:
                    writer.write(b"X")
                    await writer.drain()
                with contextlib.suppress(TimeoutError):
                    if await asyncio.wait_for(reader.read(100), 0.5) == b"":
                        closed[f"closed after {round(time.monotonic() - started)} s"] += 1
                        return
            closed["still open"] += 1
        except ConnectionError:
            closed["reset"] += 1
        finally:
            writer.close()

    await asyncio.gather(*(one(i >= 300) for i in range(400)))
    return words(closed) + " (300 idle + 100 dripping)"


async def attack_cross_site(bench: Bench, deadline: float) -> str:
    seen: Counter[str] = Counter()
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            for body, content_type in ((b"{}", "text/plain"), (b'{"nmae": "normal"}', "application/json"),
                                       (b"{}", "application/json")):
                async with http.post(f"{bench.base}/rest-api/stream/terminate", data=body,
                                     headers={"Content-Type": content_type,
                                              "Authorization": f"Bearer {bench.token('manage')}"}) as response:
                    seen[f"{response.status}"] += 1
            await asyncio.sleep(0.05)
    return "HTTP " + words(seen) + " (text/plain {}, typo, empty filter)"


async def attack_tenant_streams(bench: Bench, deadline: float) -> str:
    sdp = await offer()
    client = await bench.client("203.0.113.6", bench.token("publish", "snapshot", streams=["attacker-*"]))
    seen: Counter[str] = Counter()
    try:
        while time.monotonic() < deadline:
            names = [f"attacker-{uuid.uuid4().hex[:6]}" for _ in range(30)]
            seen += await outcomes(client, await publish_offers(client, names, sdp), 8)
    finally:
        await client.close()
    return words(seen)


async def attack_tenant_snapshots(bench: Bench, deadline: float) -> str:
    sdp = await offer()
    token = bench.token("publish", "snapshot", streams=["hog-*"])
    clients = [await bench.client(f"203.0.113.{70 + i}", token) for i in range(10)]  # one subject, many sessions
    seen: Counter[str] = Counter()
    try:
        while time.monotonic() < deadline:
            name = f"hog-{uuid.uuid4().hex[:6]}"
            await publish_offers(clients[0], [name], sdp)  # pending: its pictures wait for media
            await asyncio.sleep(0.2)
            results = await asyncio.gather(*(client.snapshot(name, timeout=10) for client in clients
                                             for _ in range(10)), return_exceptions=True)
            for result in results:
                seen[f"snapshotFailed {result.info}" if isinstance(result, SnapshotFailed) else
                     type(result).__name__] += 1
    finally:
        await asyncio.gather(*(client.close() for client in clients))
    return words(seen) + " (100 at once, 10 sessions, a pending stream)"


def raw_rtp(publication: Any) -> tuple[Callable[[bytes], Awaitable[None]], int, Callable[[], int]]:
    """This client's own raw RTP output (SRTP-protected, to the server), its VP8 payload type, and the
    RTP timestamp of the last real packet it sent."""
    sender = publication.pc.getSenders()[0]
    transport = sender.transport
    payload_type = int(next(line.split(":")[1].split()[0] for line in publication.pc.localDescription.sdp.splitlines()
                            if line.startswith("a=rtpmap:") and "VP8/90000" in line))
    original = transport._send_rtp
    last = [0]

    async def watching(data: bytes) -> None:
        if len(data) >= 12 and data[1] & 0x7F == payload_type:
            last[0] = int.from_bytes(data[4:8], "big")
        await original(data)

    transport._send_rtp = watching
    return original, payload_type, lambda: last[0]


async def attack_rtp_incomplete_frames(bench: Bench, deadline: float) -> str:
    client = await bench.client("203.0.113.8", bench.token("publish", "snapshot", streams=["rtp-*"]))
    publication = await client.publish("rtp-bomb", [PatternTrack(160, 120)], codec="VP8")
    assert publication.pc is not None
    send, payload_type, last_timestamp = raw_rtp(publication)
    await asyncio.sleep(0.5)
    ahead = (last_timestamp() + 90_000 * 600) & 0xFFFFFFFF  # ten minutes ahead of the real frames: never late
    sent = 0
    try:
        while time.monotonic() < deadline:
            for _ in range(40):  # about 4000 packets (4.4 MB) a second: four frames that never get a marker bit
                packet = RtpPacket(payload_type=payload_type, marker=0, sequence_number=(10_000 + sent) & 0xFFFF,
                                   timestamp=(ahead + sent % 4 * 3000) & 0xFFFFFFFF, ssrc=0x5EED0001,
                                   payload=b"\x00" + b"z" * 1100)
                await send(packet.serialize())
                sent += 1
            await asyncio.sleep(0.01)
        for ssrc in range(100):  # and a hundred more packet sources
            packet = RtpPacket(payload_type=payload_type, marker=1, sequence_number=ssrc, timestamp=ssrc,
                               ssrc=0x0BAD0000 + ssrc, payload=b"\x10" + b"y" * 100)
            await send(packet.serialize())
        await asyncio.sleep(0.5)
        try:
            await client.snapshot("rtp-bomb")
            picture = "a picture"
        except SnapshotFailed as exc:
            picture = exc.info
        status = publication.status
    finally:
        await client.close()
    return f"stream {status}, snapshot: {picture} ({sent} packets, {sent * 1101 / 2**20:.0f} MiB, never completed)"


# Hostile cameras (issue 22): each attack's cameras run in this process; the server may pull 127.0.0.1 only.

def camera_puller(bench: Bench) -> dict[str, str]:
    """Headers of a client that may take pictures of cameras and start their pulls (no subject: no quota)."""
    return {"Authorization": f"Bearer {bench.tokens.issue(['snapshot', 'pull'])}", "X-Forwarded-For": "203.0.113.9"}


async def camera_picture(http: aiohttp.ClientSession, bench: Bench, uri: str) -> str:
    """The image url's answer for camera `uri`: "200", or the status and reason."""
    url = yarl.URL(f"{bench.base}/streams/{urllib.parse.quote(uri, safe='')}/snapshot.jpg", encoded=True)
    async with http.get(url, headers=camera_puller(bench)) as response:
        if response.status == 200:
            await response.read()
            return "200"
        body = await response.json(content_type=None)
        return f"{response.status} {body.get('reason')}"


def server_counts(bench: Bench) -> str:
    """The server's threads and open descriptors now."""
    port = int(bench.base.rsplit(":", 1)[1])
    server = psutil.Process(next(c.pid for c in psutil.net_connections("tcp")
                                 if c.laddr and c.laddr.port == port and c.status == "LISTEN"))
    return f"threads {server.num_threads()}, fds {server.num_fds()}"


async def attack_camera_ssrf(bench: Bench, deadline: float) -> str:
    trap = await TrapListener("127.0.0.2").start()
    names = [f"rtsp://127.0.0.2:{trap.port}/x?probe=1", f"rtsp://127.0.0.2:{free_port()}/x",
             "rtsp://169.254.169.254/latest/meta-data", "rtsp://[::1]:554/x", f"rtsp://[::ffff:127.0.0.2]:{trap.port}/x"]
    seen: Counter[str] = Counter()
    try:
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                for answer in await asyncio.gather(*(camera_picture(http, bench, name) for name in names)):
                    seen[answer] += 1
                await asyncio.sleep(0.02)
    finally:
        trap.close()
    return "HTTP " + words(seen) + f" (unlisted hosts, open and closed ports; trap connections {trap.connections})"


async def attack_camera_redirects(bench: Bench, deadline: float) -> str:
    trap = await TrapListener("127.0.0.2").start()
    away = await RedirectingCamera(f"rtsp://127.0.0.2:{trap.port}/cam", after_auth=True).start()
    loop = await RedirectingCamera("rtsp://{self}/again-{n}", after_auth=True).start()
    seen: Counter[str] = Counter()
    pulls = 0
    try:
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                answers = await asyncio.gather(*(camera_picture(http, bench, camera.url(f"/p{pulls}", "u:pw"))
                                                 for camera in (away, loop)))
                for answer in answers:
                    seen[answer] += 1
                pulls += 1
    finally:
        for camera in (away, loop):
            await camera.close()
        trap.close()
    return (words(seen) + f" (after auth; trap connections {trap.connections}, the loop redirected "
            f"{loop.redirects / max(pulls, 1):.1f} times a pull)")


async def attack_camera_drip(bench: Bench, deadline: float) -> str:
    cameras = [await DrippingCamera(phase).start() for phase in ("head", "body", "media")]
    before = server_counts(bench)
    seen: Counter[str] = Counter()
    count = 0

    async def worker(index: int) -> None:
        nonlocal count
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                count += 1
                seen[await camera_picture(http, bench, cameras[index % 3].url(f"/drip-{count}"))] += 1

    try:
        await asyncio.gather(*(worker(index) for index in range(25)))
        await asyncio.sleep(2)
        after = server_counts(bench)
    finally:
        for camera in cameras:
            await camera.close()
    return words(seen) + f" (25 pulls at a time dripping 1 byte / 2 s; server {before}, 2 s after: {after})"


async def attack_camera_huge_description(bench: Bench, deadline: float) -> str:
    camera = await HugeDescriptionCamera(300 * 1024 * 1024).start()
    seen: Counter[str] = Counter()
    rounds = 0
    try:
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                for answer in await asyncio.gather(*(camera_picture(http, bench, camera.url(f"/h{rounds}-{i}"))
                                                     for i in range(4))):
                    seen[answer] += 1
                rounds += 1
    finally:
        await camera.close()
    sent = camera.bytes_sent / max(1, sum(seen.values())) / 2**20
    return words(seen) + f" (300 MB descriptions, 4 at once; {sent:.1f} MB written per pull before the close)"


async def attack_camera_fragments(bench: Bench, deadline: float) -> str:
    seen: Counter[str] = Counter()
    floods = 0
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline - 2:
            camera = await FragmentFloodCamera(good_seconds=0.5).start()
            try:
                seen["picture " + await camera_picture(http, bench, camera.url())] += 1
                await asyncio.wait_for(camera.flooding.wait(), 5)
                floods += 1
                try:
                    await asyncio.wait_for(camera.stream_ended.wait(), 8)
                    seen["flood cut off"] += 1
                except TimeoutError:
                    seen["flood went on"] += 1
            finally:
                await camera.close()
    return words(seen) + f" ({floods} endless FU-A floods after 0.5 s of real video)"


async def attack_camera_tracks(bench: Bench, deadline: float) -> str:
    camera = await ManyTracksCamera(500).start()
    seen: Counter[str] = Counter()
    pulls = 0
    try:
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                async with http.post(f"{bench.base}/rest-api/rtsp/startup", headers=camera_puller(bench),
                                     json={"uri": camera.url(f"/t{pulls}"), "toStream": f"tracks-{pulls}",
                                           "transport": "udp" if pulls % 2 else "tcp"}) as response:
                    body = await response.json(content_type=None)
                    seen[f"{response.status} {body.get('reason') if isinstance(body, dict) else ''}"] += 1
                pulls += 1
    finally:
        await camera.close()
    return "HTTP " + words(seen) + f" (500 tracks, TCP and UDP; SETUPs the camera got: {camera.setups})"


async def attack_camera_tiny_frames(bench: Bench, deadline: float) -> str:
    camera = await TinyFrameCamera(good_seconds=0.5).start()
    seen: Counter[str] = Counter()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{bench.base}/rest-api/rtsp/startup", headers=camera_puller(bench),
                                 json={"uri": camera.url(), "toStream": "tiny-frames"}) as response:
                seen[f"startup {response.status}"] += 1
            while time.monotonic() < deadline:
                async with http.get(f"{bench.base}/streams/tiny-frames/snapshot.jpg",
                                    headers=camera_puller(bench)) as response:
                    await response.read()
                    seen[f"picture {response.status}"] += 1
                await asyncio.sleep(0.25)
            async with http.post(f"{bench.base}/rest-api/rtsp/terminate", headers=camera_puller(bench),
                                 json={"toStream": "tiny-frames"}):
                pass
    finally:
        await camera.close()
    return words(seen) + f" (2-byte frames as fast as taken: {camera.bytes_sent / 2**20:.0f} MiB written by the camera)"


async def attack_camera_udp_source(bench: Bench, deadline: float) -> str:
    trap = await TrapListener("127.0.0.2").start()
    camera = await SourceAddressCamera("127.0.0.2", trap.udp_ports).start()
    seen: Counter[str] = Counter()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{bench.base}/rest-api/rtsp/startup", headers=camera_puller(bench),
                                 json={"uri": camera.url(), "toStream": "udp-source", "transport": "udp"}) as response:
                seen[f"startup {response.status}"] += 1
            while time.monotonic() < deadline:
                async with http.get(f"{bench.base}/streams/udp-source/snapshot.jpg",
                                    headers=camera_puller(bench)) as response:
                    await response.read()
                    seen[f"picture {response.status}"] += 1
                await asyncio.sleep(0.25)
            async with http.post(f"{bench.base}/rest-api/rtsp/terminate", headers=camera_puller(bench),
                                 json={"toStream": "udp-source"}):
                pass
    finally:
        await camera.close()
        trap.close()
    return words(seen) + f" (SETUP reply source=127.0.0.2; datagrams at the trap: {len(trap.datagrams)})"


ATTACKS: list[tuple[str, Attack]] = [
    ("SDP bomb (3000 m-lines)", attack_sdp_bomb),
    ("maximal allowed offer", attack_maximal_offer),
    ("ICE candidate bomb", attack_candidates),
    ("sessions that never log in", attack_never_login),
    ("expired token reused", attack_expired_token),
    ("open metrics", attack_metrics),
    ("tokens in query strings", attack_tokens_in_logs),
    ("slowloris", attack_slowloris),
    ("cross-site / careless REST", attack_cross_site),
    ("one tenant's pending streams", attack_tenant_streams),
    ("one tenant's snapshots", attack_tenant_snapshots),
    ("RTP frames that never complete", attack_rtp_incomplete_frames),
    ("camera urls at unlisted hosts", attack_camera_ssrf),
    ("camera redirects (elsewhere, in a loop)", attack_camera_redirects),
    ("cameras dripping a byte every 2 s", attack_camera_drip),
    ("camera descriptions of 300 MB", attack_camera_huge_description),
    ("camera endless FU-A fragment", attack_camera_fragments),
    ("camera descriptions of 500 tracks", attack_camera_tracks),
    ("camera packets at line rate", attack_camera_tiny_frames),
    ("camera UDP SETUP source= elsewhere", attack_camera_udp_source),
]


def rss_mb(server: psutil.Process) -> float:
    return float(server.memory_info().rss) / 2**20


async def run(args: argparse.Namespace, port: int, server: psutil.Process, log_file: Path) -> list[Row]:
    base, ws = f"http://{HOST}:{port}", f"ws://{HOST}:{port}/bench"
    bench = Bench(base, ws, TokenPolicy(SECRET), log_file)
    proc = await asyncio.create_subprocess_exec(sys.executable, __file__, "--probe", str(port),
                                                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    probe = ProbeClient(proc)
    rows: list[Row] = []
    try:
        await probe.expect()
        await asyncio.sleep(1.0)
        await probe.start()
        await asyncio.sleep(args.baseline)
        baseline = await probe.stop()
        base_p99 = baseline["snapshot_p99_ms"]
        print(f"baseline: /healthz p99 {baseline['healthz_p99_ms']} ms, snapshot p99 {base_p99} ms, "
              f"RSS {rss_mb(server):.1f} MB", flush=True)
        for name, attack in ATTACKS:
            if args.only and args.only not in name:
                continue
            before = peak = rss_mb(server)
            cpu_before, started = sum(server.cpu_times()[:2]), time.monotonic()
            await probe.start()
            attacking = asyncio.ensure_future(attack(bench, time.monotonic() + args.seconds))
            while not attacking.done():
                peak = max(peak, rss_mb(server))
                await asyncio.wait([attacking], timeout=0.2)
            during = await probe.stop()
            cpu = (sum(server.cpu_times()[:2]) - cpu_before) / (time.monotonic() - started) * 100
            answer = attacking.result()
            await asyncio.sleep(args.settle)
            errors = sum(during["errors"].values())
            row = Row(name, answer, during["healthz_p99_ms"], during["snapshot_p99_ms"], base_p99, errors,
                      round(peak - before, 1), round(rss_mb(server) - before, 1), round(cpu))
            rows.append(row)
            print(f"  {name}: {answer}" + (f"; normal snapshot errors {during['errors']}" if errors else ""),
                  flush=True)
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
    return rows


def table(rows: list[Row]) -> str:
    lines = ["| attack | server's answer | /healthz p99 | snapshot p99 during / before | RSS growth peak / after "
             "| server CPU |", "|---|---|---|---|---|---|"]
    for row in rows:
        errors = f", {row.snapshot_errors} errors" if row.snapshot_errors else ""
        lines.append(f"| {row.attack} | {row.answer} | {row.healthz_p99_ms:.1f} ms | {row.snapshot_p99_ms:.1f} / "
                     f"{row.snapshot_baseline_p99_ms:.1f} ms{errors} | {row.rss_peak_growth_mb:+.1f} / "
                     f"{row.rss_after_growth_mb:+.1f} MB | {row.server_cpu_percent:.0f} % |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each attack (1-60)")
    parser.add_argument("--baseline", type=float, default=5.0, help="seconds of measurement before the attacks")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds after each attack before RSS is read")
    parser.add_argument("--only", help="run only the attacks whose name contains this")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--probe", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        asyncio.run(probe_process(args.probe))
        return 0
    args.seconds = min(max(args.seconds, 1.0), 60.0)
    port = free_port()
    env = os.environ | {"STREAMSNAP_ICE_ADDRESSES": HOST, "STREAMSNAP_LOG_LEVEL": "info"} | SERVER_SETTINGS
    with tempfile.TemporaryDirectory(prefix="streamsnap-attacks-") as folder:
        log_file = Path(folder) / "server.log"
        with log_file.open("w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "streamsnap", "serve", "--host", HOST, "--port", str(port)],
                                    env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            try:
                wait_port(port, proc)
            except RuntimeError as exc:
                raise RuntimeError(f"server did not start ({exc}): {log_file.read_text()}") from None
            rows = asyncio.run(run(args, port, psutil.Process(proc.pid), log_file))
        finally:
            proc.terminate()
            proc.wait(30)
    print()
    shown = [f"{key.removeprefix('STREAMSNAP_').lower()}={value}" for key, value in SERVER_SETTINGS.items()
             if key != "STREAMSNAP_AUTH_SECRET"]
    print(f"server: {', '.join(shown)}, auth on; every attack from its own X-Forwarded-For address")
    print(table(rows))
    missed = [row.attack for row in rows if not row.within_goals]
    print(f"goals (/healthz p99 < 100 ms, snapshot p99 < 2x baseline, no snapshot error, RSS growth < 50 MB): "
          f"{'all met' if not missed else 'missed by ' + ', '.join(missed)}")
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
