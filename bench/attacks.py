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
from tests.harness import closed_by_peer, free_port, serve_command, wait_listening  # noqa: E402
from tests.harness.hostile_rtsp import (  # noqa: E402
    DrippingCamera,
    FragmentFloodCamera,
    HugeDescriptionCamera,
    ManyTracksCamera,
    RedirectingCamera,
    SourceAddressCamera,
    TinyFrameCamera,
    TrapListener,
)
from tests.harness.peer import real_offer, rtp_injector  # noqa: E402
from tests.harness.redis import Redis  # noqa: E402
from tests.harness.rtmp_peer import (  # noqa: E402
    HostilePeer,
    chunks,
    connect,
    null_array_command,
    one_byte_nal_units,
    publish,
    sequence_header,
    set_chunk_size,
    unknown_command,
    video_tag,
)

from bench.common import percentile  # noqa: E402
from streamsnap.access import TokenPolicy  # noqa: E402
from streamsnap.cluster.wire import SIGNATURE_HEADER, sign  # noqa: E402
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
    "STREAMSNAP_RTMP_PORT": str(free_port()),  # for the pixel bomb, pushed by ffmpeg
    # A one-node cluster on a Redis of the bench's own, for the attacks on the cluster port.
    "STREAMSNAP_CLUSTER_SECRET": "bench-attacks-cluster-" + "0123456789abcdef",
    "STREAMSNAP_CLUSTER_PORT": str(free_port()),
    "STREAMSNAP_MAX_STREAMS_PER_ADDRESS": "4",
    "STREAMSNAP_MJPEG_WRITE_TIMEOUT": "2",
    "STREAMSNAP_RTSP_ALLOWED_HOSTS": "127.0.0.1",  # the hostile cameras' address; their traps are on 127.0.0.2
}
REDIS_PORT = free_port()
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


def sdp_bomb() -> str:
    head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    section = ("m=video 9 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 0.0.0.0\r\na=mid:{i}\r\na=sendonly\r\n"
               "a=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack\r\na=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 goog-remb\r\n"
               "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=setup:actpass\r\n"
               "a=msid:- {i}\r\na=ssrc:{i} cname:abcdefgh\r\na=x-filler:" + "f" * 24 + "\r\n")
    return head + "".join(section.format(i=i) for i in range(3000))


async def maximal_allowed_offer(limits: WebRtcSettings) -> str:
    lines = [line for line in (await real_offer(limits.sdp_max_media)).split("\r\n") if line and
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
    base = await real_offer()
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
    sdp = await real_offer()
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
    sdp = await real_offer()
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


async def attack_rtp_incomplete_frames(bench: Bench, deadline: float) -> str:
    client = await bench.client("203.0.113.8", bench.token("publish", "snapshot", streams=["rtp-*"]))
    publication = await client.publish("rtp-bomb", [PatternTrack(160, 120)], codec="VP8")
    assert publication.pc is not None
    send, payload_type, last_timestamp = rtp_injector(publication)
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


async def attack_pixel_bomb(bench: Bench, deadline: float) -> str:
    """Issue 22: Debian's ffmpeg pushes 8192x8192 black H.264 over RTMP while pictures of it at width=160 are
    asked, four at a time every 100 ms. The clip (three frames, a keyframe first) is encoded once and pushed
    looped with `-c copy`: a live 8192x8192 encoder would take the cores the probe is measuring with."""
    with tempfile.TemporaryDirectory(prefix="streamsnap-bomb-") as folder:
        clip = Path(folder) / "bomb.flv"
        encoder = await asyncio.create_subprocess_exec(
            "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
            "color=black:s=8192x8192:r=5", "-frames:v", "3", "-g", "3", "-c:v", "libx264", "-preset", "ultrafast",
            "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-f", "flv", str(clip),
            preexec_fn=lambda: os.nice(19))  # the probe and the server first: the encoder is not what is measured
        if await encoder.wait() != 0:
            return "ffmpeg could not encode the clip"
        key = f"bomb?token={bench.token('publish', streams=['bomb'])}"
        pusher = await asyncio.create_subprocess_exec(
            "ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip),
            "-c", "copy", "-f", "flv", f"rtmp://{HOST}:{SERVER_SETTINGS['STREAMSNAP_RTMP_PORT']}/live/{key}",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        headers = {"Authorization": f"Bearer {bench.token('snapshot', streams=['bomb'])}",
                   "X-Forwarded-For": "203.0.113.22"}
        seen: Counter[str] = Counter()
        listed, slowest = "never listed", 0.0
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30), headers=headers) as http:
                while time.monotonic() < deadline:
                    streams = await (await http.get(f"{bench.base}/streams")).json()
                    bomb = next((s for s in streams if s["name"] == "bomb" and s["status"] == "PUBLISHING"), None)
                    if bomb is not None:
                        listed = f"listed {bomb['width']}x{bomb['height']} when PUBLISHING"
                        break
                    await asyncio.sleep(0.05)

                async def picture(width: int) -> None:
                    nonlocal slowest
                    started = time.perf_counter()
                    async with http.get(f"{bench.base}/streams/bomb/snapshot.jpg?width={width}") as response:
                        body = await response.read()
                    slowest = max(slowest, time.perf_counter() - started)
                    reason = json.loads(body).get("reason", "") if response.status != 200 else "a picture"
                    seen[f"{response.status} {reason}"] += 1

                while time.monotonic() < deadline:
                    await asyncio.gather(*(picture(160 + k) for k in range(4)))
                    await asyncio.sleep(0.1)
        finally:
            pusher.kill()
            await pusher.wait()
    return f"{listed}; {words(seen)} (slowest {slowest * 1000:.0f} ms)"


async def attack_cluster_idle_connections(bench: Bench, deadline: float) -> str:
    """1100 idle connections to the cluster port (they exhausted a node's descriptors before)."""
    port = int(SERVER_SETTINGS["STREAMSNAP_CLUSTER_PORT"])
    held = []
    for _ in range(1100):
        with contextlib.suppress(OSError):
            held.append(await asyncio.open_connection(HOST, port))

    at_once = sum(await asyncio.gather(*(closed_by_peer(reader, 0.5) for reader, _ in held)))
    # A connection closed on arrival reads b"" again: by the end `closed_in_all` counts both kinds.
    closed_in_all = sum(await asyncio.gather(*(closed_by_peer(reader, max(0.5, deadline - time.monotonic()))
                                               for reader, _ in held)))
    for _, writer in held:
        writer.close()
    return (f"{len(held)} opened: {at_once} closed on arrival (per-address cap), {closed_in_all - at_once} closed "
            f"by the header deadline, {len(held) - closed_in_all} still open")


async def attack_cluster_replay(bench: Bench, deadline: float) -> str:
    """A signed cluster request played again (as if copied off the wire), and one dated 29 s ahead."""
    port = int(SERVER_SETTINGS["STREAMSNAP_CLUSTER_PORT"])
    secret = SERVER_SETTINGS["STREAMSNAP_CLUSTER_SECRET"]
    seen: Counter[str] = Counter()
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            path = "/cluster/streams/normal/terminate?lease=x&reason=terminated"
            for header in (sign(secret, "POST", path), sign(secret, "POST", path, when=time.time() + 29)):
                for attempt in ("first", "replayed"):
                    async with http.post(f"http://{HOST}:{port}{path}", headers={SIGNATURE_HEADER: header}) as answer:
                        seen[f"{attempt} {answer.status}"] += 1
            await asyncio.sleep(0.05)
    return words(seen) + " (404: signed and fresh, no such lease; 401: refused)"


async def attack_whip_listed_id(bench: Bench, deadline: float) -> str:
    """A tenant DELETEs another's WHIP stream by the mediaSessionId find_all lists (it was the resource id)."""
    victim = {"Authorization": f"Bearer {bench.token('publish', subject='victim', streams=['cam-*'])}",
              "X-Forwarded-For": "203.0.113.40"}
    tenant = {"Authorization": f"Bearer {bench.token('publish', 'manage', subject='tenant', streams=['cam-*'])}",
              "X-Forwarded-For": "203.0.113.41"}
    pc = RTCPeerConnection()
    pc.addTransceiver(PatternTrack(160, 120), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    seen: Counter[str] = Counter()
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{bench.base}/whip/cam-victim", data=pc.localDescription.sdp,
                             headers={**victim, "Content-Type": "application/sdp"}) as answer:
            location = answer.headers.get("Location", "")
        try:
            while time.monotonic() < deadline:
                async with http.post(f"{bench.base}/rest-api/stream/find_all", json={}, headers=tenant) as found:
                    listed = [s["mediaSessionId"] for s in await found.json() if s["name"] == "cam-victim"] \
                        if found.status == 200 else []
                for guess in listed or ["none"]:
                    async with http.delete(f"{bench.base}/whip/cam-victim/{guess}", headers=tenant) as gone:
                        seen[f"DELETE {gone.status}"] += 1
                await asyncio.sleep(0.1)
        finally:
            if location:
                await http.delete(location, headers=victim)
            await pc.close()
    return words(seen) + " (the stream stayed)"


async def attack_whip_squatting(bench: Bench, deadline: float) -> str:
    """WHIP offers that never connect, from one address under many subjects (a slot each until connect_timeout)."""
    seen: Counter[str] = Counter()
    peers = []
    async with aiohttp.ClientSession() as http:
        try:
            while time.monotonic() < deadline:
                pc = RTCPeerConnection()
                peers.append(pc)
                pc.addTransceiver(PatternTrack(160, 120), direction="sendonly")
                await pc.setLocalDescription(await pc.createOffer())
                token = bench.token("publish", subject=f"squatter-{uuid.uuid4().hex[:6]}")
                async with http.post(f"{bench.base}/whip/squat-{uuid.uuid4().hex[:6]}", data=pc.localDescription.sdp,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp",
                                              "X-Forwarded-For": "203.0.113.42"}) as answer:
                    seen[str(answer.status)] += 1
                await asyncio.sleep(0.2)
        finally:
            for pc in peers:
                await pc.close()
    return words(seen) + " (201: within max_streams_per_address, 429: over it)"


async def attack_mjpeg_stalled(bench: Bench, deadline: float) -> str:
    """40 MJPEG watchers that never read (the per-stream cap is 20)."""
    token = bench.token("snapshot")
    port = int(bench.base.rsplit(":", 1)[1])

    def watcher() -> Any:
        import socket

        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect((HOST, port))
        sock.sendall(f"GET /streams/normal/stream.mjpeg?fps=10&quality=100&access_token={token} HTTP/1.1\r\n"
                     f"Host: x\r\nX-Forwarded-For: 203.0.113.43\r\n\r\n".encode())
        sock.setblocking(False)
        return sock

    socks = [await asyncio.to_thread(watcher) for _ in range(40)]
    # The server notices a watcher stalled once its send buffer (256 KiB, doubled by Linux) is full and the
    # write timeout passed: at this stream's ~50 KB/s, about 12 s.
    await asyncio.sleep(max(15.0, deadline - time.monotonic()))
    closed: Counter[str] = Counter()
    for sock in socks:
        first = b""
        try:
            while data := sock.recv(1 << 20):
                first = first or data
            closed[first[9:12].decode() or "closed"] += 1
        except BlockingIOError:
            closed[f"{first[9:12].decode()} still open"] += 1
        except ConnectionError:
            closed[f"{first[9:12].decode()} reset"] += 1
        sock.close()
    return words(closed) + (" after 15 s (200 reset: dropped at the write timeout once 512 KiB waited; "
                            "429: refused, let go)")


async def attack_mjpeg_sizes(bench: Bench, deadline: float) -> str:
    """MJPEG watchers of 20 distinct sizes of one stream (each a picture per frame)."""
    token = bench.token("snapshot")
    seen: Counter[str] = Counter()
    async with aiohttp.ClientSession() as http:
        held = []
        try:
            for width in range(160, 160 + 20 * 8, 8):
                response = await http.get(f"{bench.base}/streams/normal/stream.mjpeg",
                                          params={"width": str(width), "fps": "10", "access_token": token},
                                          headers={"X-Forwarded-For": "203.0.113.44"})
                seen[str(response.status)] += 1
                held.append(response)
            await asyncio.sleep(max(0.0, deadline - time.monotonic()))
        finally:
            for response in held:
                response.close()
    return words(seen) + " (429: over mjpeg_max_sizes_per_stream)"


async def attack_camera_names(bench: Bench, deadline: float) -> str:
    """Publishing under a camera url's name, to answer the pictures viewers ask of that camera."""
    seen: Counter[str] = Counter()
    client = await bench.client("203.0.113.45")
    try:
        while time.monotonic() < deadline:
            try:
                await client.publish(f"rtsp://camera.example/{uuid.uuid4().hex[:6]}", [PatternTrack(160, 120)],
                                     timeout=5)
                seen["published"] += 1
            except PublishFailed as exc:
                seen[exc.info] += 1
            await asyncio.sleep(0.2)
    finally:
        await client.close()
    return words(seen)
# Hostile encoders on the RTMP port (issue 22, item 4). Each attacker connects from a loopback address of
# its own (127.0.0.x: the per-address cap meets only it), with a small receive window so that not reading
# shows at once; payloads are built once (the attacker's memory stays flat).

RTMP_PORT = free_port()
SERVER_SETTINGS["STREAMSNAP_RTMP_PORT"] = str(RTMP_PORT)
SERVER_SETTINGS["STREAMSNAP_RTMP_HANDSHAKE_TIMEOUT"] = "2"


async def rtmp_peer(source: str, *, read_handshake: bool = True) -> HostilePeer:
    peer = await HostilePeer.open(RTMP_PORT, source=source, receive_buffer=16384)
    await peer.handshake(read=read_handshake)
    return peer


async def rtmp_publishing(bench: Bench, source: str, name: str) -> HostilePeer:
    """A peer from `source` publishing `name` with a valid token (the server said NetStream.Publish.Start)."""
    peer = await rtmp_peer(source)
    token = bench.token("publish", subject="rtmp-attacker", streams=[name])
    await peer.send(set_chunk_size(65536) + connect(chunk_size=65536) + publish(f"{name}?token={token}", 65536))
    answers = b""
    async with asyncio.timeout(5):
        while b"NetStream.Publish.Start" not in answers:
            answers += await peer.read_exactly(1)  # a byte at a time: nothing past the answer is taken
    return peer


async def rtmp_flood(peer: HostilePeer, message: bytes, deadline: float, seen: Counter[str],
                     stalled: str = "server stopped reading (back-pressure)") -> None:
    """Send `message` over and over, never reading, until the server closes or stops reading, or `deadline`."""
    try:
        while time.monotonic() < deadline:
            await peer.send(message, timeout=max(0.1, min(2.0, deadline - time.monotonic())))
        seen["still open at the end"] += 1
    except TimeoutError:
        seen[stalled] += 1
    except OSError:
        seen["closed by the server"] += 1
    finally:
        peer.close()


async def attack_rtmp_never_reads(bench: Bench, deadline: float) -> str:
    seen: Counter[str] = Counter()
    huge, largest, sent = unknown_command(1 << 20, chunk_size=65536), unknown_command(4000, chunk_size=65536), 0
    rounds = 0
    while time.monotonic() < deadline:
        peer = await rtmp_peer("127.0.0.31", read_handshake=False)
        await peer.send(set_chunk_size(65536) + connect(chunk_size=65536))
        await rtmp_flood(peer, huge if rounds % 2 else largest, deadline, seen)
        sent, rounds = sent + peer.sent, rounds + 1
    return (words(seen) + f" (1 MiB and 4 kB command names in turn, never reading, before publish; "
            f"{sent / 2**20:.0f} MiB sent)")


async def attack_rtmp_never_reads_publishing(bench: Bench, deadline: float) -> str:
    seen: Counter[str] = Counter()
    huge = unknown_command(1 << 20, chunk_size=65536)
    small = unknown_command(1, chunk_size=65536)
    flood = small + (bytes([0xC3]) + small[12:]) * 4000  # one-byte headers: 15 bytes a command, ~110 answered
    sent, rounds = 0, 0
    while time.monotonic() < deadline:
        peer = await rtmp_publishing(bench, "127.0.0.32", f"rtmp-echo-{uuid.uuid4().hex[:6]}")
        if rounds % 2:
            await rtmp_flood(peer, huge, deadline, seen)
        else:  # until the server stops reading; then hold the connection, never reading, to the end
            await rtmp_flood(peer, flood, deadline, seen, stalled="small commands: server stopped reading")
        sent, rounds = sent + peer.sent, rounds + 1
    return (words(seen) + f" (1 MiB command names, and small commands answered 7x their size, in turn, "
            f"never reading, after publish; {sent / 2**20:.0f} MiB sent)")


async def attack_rtmp_unknown_commands(bench: Bench, deadline: float) -> str:
    seen: Counter[str] = Counter()
    longest = 0
    huge, largest = unknown_command(1 << 20, chunk_size=65536), unknown_command(4000, chunk_size=65536)
    while time.monotonic() < deadline:
        peer = await rtmp_peer("127.0.0.33")
        try:
            await peer.send(set_chunk_size(65536) + connect(chunk_size=65536))
            await peer.read_all(0.2)
            await peer.send(largest)
            answer, _ = await peer.read_all(0.2)
            longest = max(longest, len(answer))
            await peer.send(huge)
            answer, closed = await peer.read_all(2.0)
            seen[f"closed by the server, {len(answer)} bytes answered" if closed else "still open"] += 1
        except OSError:
            seen["closed by the server"] += 1
        finally:
            peer.close()
    return words(seen) + f" (a 4 kB name answered in {longest} bytes, then a 1 MiB name; reading)"


async def attack_rtmp_nal_bomb(bench: Bench, deadline: float) -> str:
    seen: Counter[str] = Counter()
    tag = video_tag(one_byte_nal_units((4 << 20) - 64), chunk_size=65536)
    while time.monotonic() < deadline:
        peer = await rtmp_publishing(bench, "127.0.0.34", f"rtmp-nal-{uuid.uuid4().hex[:6]}")
        try:
            await peer.send(sequence_header(65536))
            await peer.send(tag)
            seen["closed by the server" if await peer.closed_by_server(5) else "still open"] += 1
        except OSError:
            seen["closed by the server"] += 1
        finally:
            peer.close()
    return words(seen) + f" (a {len(tag) / 2**20:.1f} MiB tag of 1-byte NAL units a round, a new stream each)"


async def attack_rtmp_null_array(bench: Bench, deadline: float) -> str:
    seen: Counter[str] = Counter()
    message = null_array_command(4_000_000, chunk_size=65536)
    while time.monotonic() < deadline:
        peer = await rtmp_peer("127.0.0.35")
        try:
            await peer.send(set_chunk_size(65536))
            await peer.send(message)
            seen["closed by the server" if await peer.closed_by_server(0.5) else "answered or held"] += 1
        except OSError:
            seen["closed by the server"] += 1
        finally:
            peer.close()  # and at once again
    return words(seen) + " (connect with an AMF0 array of 4M nulls, reconnecting at once)"


async def attack_rtmp_connections(bench: Bench, deadline: float) -> str:
    seen: Counter[str] = Counter()
    peers: list[HostilePeer] = []
    try:
        for _ in range(300):
            try:
                peers.append(await rtmp_peer("127.0.0.36"))
            except OSError:
                seen["closed on arrival"] += 1
        held = [peer for peer, closed in zip(peers, await asyncio.gather(*(p.closed_by_server(0.2) for p in peers)),
                                             strict=True) if not closed]
        seen["closed on arrival"] += len(peers) - len(held)
        seen["held"] += len(held)
        closed = await asyncio.gather(*(peer.closed_by_server(max(0.5, deadline - time.monotonic())) for peer in held))
        seen["then closed by the handshake deadline"] += sum(closed)
    finally:
        for peer in peers:
            peer.close()
    return words(seen) + " (300 connections from one address)"


async def attack_rtmp_no_publish(bench: Bench, deadline: float) -> str:
    seen: Counter[str] = Counter()

    async def one(index: int) -> None:
        while time.monotonic() < deadline:
            started = time.monotonic()
            peer = await rtmp_peer(f"127.0.1.{index + 1}")
            try:
                await peer.send(connect())
                while True:  # a small harmless message twice a second: never idle
                    if time.monotonic() > deadline:
                        seen["still open at the end"] += 1
                        break
                    await peer.send(chunks(2, 5, 0, (2_500_000).to_bytes(4, "big")))
                    if await peer.closed_by_server(0.5):
                        seen[f"closed after {round(time.monotonic() - started)} s"] += 1
                        break
            except OSError:
                seen[f"closed after {round(time.monotonic() - started)} s"] += 1
            finally:
                peer.close()

    await asyncio.gather(*(one(i) for i in range(20)))
    return words(seen) + " (20 peers that connect and never publish, reconnecting)"
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


def server_counts(bench: Bench) -> tuple[int, int]:
    """The server's threads and open descriptors now, but its pool of connections to Redis (which keeps as
    many as were ever used at once: the concurrent pulls' name claims)."""
    port = int(bench.base.rsplit(":", 1)[1])
    server = psutil.Process(next(c.pid for c in psutil.net_connections("tcp")
                                 if c.laddr and c.laddr.port == port and c.status == "LISTEN"))
    redis = sum(1 for c in server.net_connections("tcp") if c.raddr and c.raddr.port == REDIS_PORT)
    return server.num_threads(), server.num_fds() - redis


async def counts_back(bench: Bench, before: tuple[int, int], within: float = 8.0) -> str:
    """How long after the attack the server's threads and descriptors took to be back at `before` (at most
    `within` seconds, then what is left)."""
    start = time.monotonic()
    while True:
        now = server_counts(bench)
        waited = time.monotonic() - start
        if now[0] <= before[0] and now[1] <= before[1]:
            return f"server threads {before[0]}, fds {before[1]}; back {waited:.1f} s after"
        if waited > within:
            return f"server threads {before[0]}, fds {before[1]}; {within:.0f} s after: threads {now[0]}, fds {now[1]}"
        await asyncio.sleep(0.25)


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
        after = await counts_back(bench, before)
    finally:
        for camera in cameras:
            await camera.close()
    return words(seen) + f" (25 pulls at a time dripping 1 byte / 2 s; {after})"


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
                try:
                    await asyncio.wait_for(camera.flooding.wait(), 5)
                except TimeoutError:  # the pull never reached the camera's stream: told, not fatal
                    seen["no flood (the camera was not played)"] += 1
                    continue
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


async def pulled_and_pictured(bench: Bench, deadline: float, startup: dict[str, str]) -> Counter[str]:
    """Start the camera pull `startup` through REST, picture its stream every 250 ms until `deadline`, then
    terminate it; the answers seen."""
    seen: Counter[str] = Counter()
    name = startup["toStream"]
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{bench.base}/rest-api/rtsp/startup", headers=camera_puller(bench),
                             json=startup) as response:
            seen[f"startup {response.status}"] += 1
        while time.monotonic() < deadline:
            async with http.get(f"{bench.base}/streams/{name}/snapshot.jpg", headers=camera_puller(bench)) as response:
                await response.read()
                seen[f"picture {response.status}"] += 1
            await asyncio.sleep(0.25)
        async with http.post(f"{bench.base}/rest-api/rtsp/terminate", headers=camera_puller(bench),
                             json={"toStream": name}):
            pass
    return seen


async def attack_camera_tiny_frames(bench: Bench, deadline: float) -> str:
    camera = await TinyFrameCamera(good_seconds=0.5).start()
    try:
        seen = await pulled_and_pictured(bench, deadline, {"uri": camera.url(), "toStream": "tiny-frames"})
    finally:
        await camera.close()
    return words(seen) + f" (2-byte frames as fast as taken: {camera.bytes_sent / 2**20:.0f} MiB written by the camera)"


async def attack_camera_udp_source(bench: Bench, deadline: float) -> str:
    trap = await TrapListener("127.0.0.2").start()
    camera = await SourceAddressCamera("127.0.0.2", trap.udp_ports).start()
    try:
        seen = await pulled_and_pictured(bench, deadline,
                                         {"uri": camera.url(), "toStream": "udp-source", "transport": "udp"})
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
    ("pixel bomb (8192x8192 over RTMP)", attack_pixel_bomb),
    ("idle connections to the cluster port", attack_cluster_idle_connections),
    ("replayed and future-dated cluster requests", attack_cluster_replay),
    ("WHIP DELETE by a listed id", attack_whip_listed_id),
    ("WHIP offers squatting from one address", attack_whip_squatting),
    ("stalled MJPEG watchers", attack_mjpeg_stalled),
    ("MJPEG of 20 sizes", attack_mjpeg_sizes),
    ("camera-url names published", attack_camera_names),
    ("RTMP: never reading, 1 MiB echoed commands before publish", attack_rtmp_never_reads),
    ("RTMP: never reading, 1 MiB echoed commands after publish", attack_rtmp_never_reads_publishing),
    ("RTMP: unknown commands with 1 MiB names", attack_rtmp_unknown_commands),
    ("RTMP: 4 MiB tag of 1-byte NAL units", attack_rtmp_nal_bomb),
    ("RTMP: AMF0 array of 4M nulls before auth", attack_rtmp_null_array),
    ("RTMP: connections from one address", attack_rtmp_connections),
    ("RTMP: connections that never publish", attack_rtmp_no_publish),
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
            if args.only and not any(part in name for part in args.only.split(",")):
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
    parser.add_argument("--only", help="run only the attacks whose name contains this (or one of these, "
                        "comma-separated)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--probe", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        asyncio.run(probe_process(args.probe))
        return 0
    args.seconds = min(max(args.seconds, 1.0), 60.0)
    port = free_port()
    env = os.environ | {"STREAMSNAP_ICE_ADDRESSES": HOST, "STREAMSNAP_LOG_LEVEL": "info",
                        "STREAMSNAP_REDIS_URL": f"redis://{HOST}:{REDIS_PORT}/0"} | SERVER_SETTINGS
    with tempfile.TemporaryDirectory(prefix="streamsnap-attacks-") as folder:
        redis = Redis(REDIS_PORT, Path(folder))
        redis.start()
        log_file = Path(folder) / "server.log"
        with log_file.open("w") as log:
            proc = subprocess.Popen(serve_command(port), env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            try:
                wait_listening(port, proc)
            except RuntimeError as exc:
                raise RuntimeError(f"server did not start ({exc}): {log_file.read_text()}") from None
            rows = asyncio.run(run(args, port, psutil.Process(proc.pid), log_file))
        finally:
            proc.terminate()
            proc.wait(30)
            redis.kill()
    print()
    shown = [f"{key.removeprefix('STREAMSNAP_').lower()}={value}" for key, value in SERVER_SETTINGS.items()
             if not key.endswith("_SECRET")]
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
