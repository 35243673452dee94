"""Hostile RTSP cameras for tests and benchmarks: asyncio TCP (and UDP) servers that speak just enough
RTSP to misbehave, and count what the server did to them.

`HostileCamera` is a well-behaved camera (OPTIONS, DESCRIBE, SETUP over TCP or UDP, PLAY, then a
real H.264 picture of one colour at 15 fps, encoded with PyAV's libx264); each attack is a subclass
that overrides one step. Loopback only: every listener binds 127.0.0.x.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import functools
import hashlib
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field

import av
import numpy as np

H264_SDP = ("v=0\r\no=- 1 1 IN IP4 {host}\r\ns=hostile\r\nt=0 0\r\na=control:*\r\n"
            "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n"
            "a=control:track1\r\n")
FPS = 15
RTP_PAYLOAD = 1200


@functools.cache
def h264_frames(colour: tuple[int, int, int] = (0, 200, 0), count: int = FPS * 2) -> list[bytes]:
    """`count` frames (Annex-B, 160x120, one colour, a keyframe with SPS/PPS every second)."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = 160, 120, "yuv420p"
    codec.time_base, codec.framerate = fractions.Fraction(1, FPS), FPS
    codec.options = {"preset": "ultrafast", "tune": "zerolatency",
                     "x264-params": f"keyint={FPS}:repeat-headers=1:bframes=0"}
    picture = np.full((120, 160, 3), colour, dtype=np.uint8)
    frames: list[bytes] = []
    for index in range(count):
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        frames += [bytes(packet) for packet in codec.encode(frame)]
    frames += [bytes(packet) for packet in codec.encode(None)]
    return frames


def nal_units(annexb: bytes) -> list[bytes]:
    """The NAL units of an Annex-B frame."""
    return [unit.lstrip(b"\x00") for unit in re.split(b"\x00\x00\x01", annexb) if unit.strip(b"\x00")]


def rtp_packet(payload: bytes, *, sequence: int, timestamp: int, marker: bool, ssrc: int = 0x5EED) -> bytes:
    return (bytes([0x80, (0x80 if marker else 0) | 96]) + (sequence & 0xFFFF).to_bytes(2, "big")
            + (timestamp & 0xFFFFFFFF).to_bytes(4, "big") + ssrc.to_bytes(4, "big") + payload)


def packetize(frame: bytes) -> Iterator[tuple[bytes, bool]]:
    """RTP payloads of one frame (single NAL units, FU-A past `RTP_PAYLOAD`), each with its marker bit."""
    units = nal_units(frame)
    for index, unit in enumerate(units):
        last_unit = index == len(units) - 1
        if len(unit) <= RTP_PAYLOAD:
            yield unit, last_unit
            continue
        indicator, kind, rest = unit[0] & 0xE0 | 28, unit[0] & 0x1F, unit[1:]
        chunks = [rest[i:i + RTP_PAYLOAD] for i in range(0, len(rest), RTP_PAYLOAD)]
        for number, chunk in enumerate(chunks):
            start, end = number == 0, number == len(chunks) - 1
            yield bytes([indicator, (0x80 if start else 0) | (0x40 if end else 0) | kind]) + chunk, last_unit and end


@dataclass
class Request:
    method: str
    url: str
    cseq: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Session:
    """One RTSP connection to the camera, as the camera sees it."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: tuple[str, int]
    interleaved: int | None = None
    "The RTP channel the client asked for (TCP), or None."
    client_ports: tuple[int, int] | None = None
    "The client's RTP and RTCP ports (UDP), or None."
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.writer.write(data)


async def bind_udp_pair(host: str, received: list[tuple[bytes, tuple[str, int]]],
                        ) -> tuple[list[asyncio.DatagramTransport], tuple[int, int]]:
    """Two UDP sockets on `host`, an even port and the next (RTP and RTCP), appending what arrives to
    `received`; their transports and ports."""
    loop = asyncio.get_running_loop()

    class Receiver(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
            received.append((data, addr))

    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1] & ~1
        try:
            first, _ = await loop.create_datagram_endpoint(Receiver, local_addr=(host, port))
        except OSError:
            continue
        try:
            second, _ = await loop.create_datagram_endpoint(Receiver, local_addr=(host, port + 1))
        except OSError:
            first.close()
            continue
        return [first, second], (port, port + 1)
    raise RuntimeError("no UDP port pair")


class HostileCamera:
    """A camera on 127.0.0.1 (or `host`) that behaves until a subclass says otherwise."""

    def __init__(self, host: str = "127.0.0.1", colour: tuple[int, int, int] = (0, 200, 0)) -> None:
        self.host = host
        self.colour = colour
        self.port = 0
        self.connections = 0
        "TCP connections the camera accepted."
        self.peers: list[tuple[str, int]] = []
        self.requests: list[Request] = []
        self.bytes_sent = 0
        "Bytes of media or bodies the camera got written into its sockets (TCP) or sent (UDP)."
        self.udp_received: list[tuple[bytes, tuple[str, int]]] = []
        "Datagrams that reached the camera's own UDP ports."
        self.sessions: list[Session] = []
        self.stream_ended = asyncio.Event()
        "Set when a stream the camera played ended (the client went away, or was cut off)."
        self._server: asyncio.Server | None = None
        self._udp: list[asyncio.DatagramTransport] = []
        self.udp_ports: tuple[int, int] = (0, 0)

    async def start(self) -> HostileCamera:
        self._server = await asyncio.start_server(self._serve, self.host, 0, limit=1 << 20)
        self.port = self._server.sockets[0].getsockname()[1]
        self.udp_ports = await self._bind_udp_pair()
        return self

    def url(self, path: str = "/cam", userinfo: str = "", host: str | None = None) -> str:
        return f"rtsp://{userinfo + '@' if userinfo else ''}{host or self.host}:{self.port}{path}"

    @property
    def methods(self) -> list[str]:
        return [request.method for request in self.requests]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in self.sessions:
            for task in session.tasks:
                task.cancel()
            session.writer.close()
        for transport in self._udp:
            transport.close()

    async def _bind_udp_pair(self) -> tuple[int, int]:
        transports, ports = await bind_udp_pair(self.host, self.udp_received)
        self._udp += transports
        return ports

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        peer = writer.get_extra_info("peername")[:2]
        self.peers.append(peer)
        session = Session(reader, writer, peer)
        self.sessions.append(session)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                while head.startswith(b"$"):  # the client's RTCP over TCP: skip it
                    size = int.from_bytes(head[2:4], "big")
                    rest = head[4:]
                    if len(rest) < size:
                        rest += await reader.readexactly(size - len(rest))
                    head = rest[size:] + (b"" if b"\r\n\r\n" in rest[size:] else await reader.readuntil(b"\r\n\r\n"))
                lines = head.decode("latin-1").split("\r\n")
                method, url, _ = [*lines[0].split(" "), "", ""][:3]
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                request = Request(method, url, headers.get("cseq", "0"), headers, body)
                self.requests.append(request)
                await self.answer(request, session)
                await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError,
                asyncio.CancelledError):
            pass
        finally:
            for task in session.tasks:
                task.cancel()
            writer.close()

    # What a well-behaved camera answers; subclasses override a step to attack.

    def reply(self, session: Session, request: Request, status: str = "200 OK", headers: str = "",
              body: bytes = b"") -> None:
        length = f"Content-Length: {len(body)}\r\n" if body else ""
        session.write(f"RTSP/1.0 {status}\r\nCSeq: {request.cseq}\r\n{headers}{length}\r\n".encode() + body)

    def description(self, request: Request) -> bytes:
        return H264_SDP.format(host=self.host).encode()

    async def answer(self, request: Request, session: Session) -> None:
        if request.method == "OPTIONS":
            self.reply(session, request, headers="Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER\r\n")
        elif request.method == "DESCRIBE":
            await self.describe(request, session)
        elif request.method == "SETUP":
            await self.setup(request, session)
        elif request.method == "PLAY":
            self.reply(session, request, headers="Session: 4711\r\nRange: npt=0.000-\r\n")
            await session.writer.drain()
            session.tasks.append(asyncio.ensure_future(self._stream(session)))
        else:
            self.reply(session, request, headers="Session: 4711\r\n")

    async def describe(self, request: Request, session: Session) -> None:
        self.reply(session, request, headers=f"Content-Base: {request.url}/\r\nContent-Type: application/sdp\r\n",
                   body=self.description(request))

    def transport_reply(self, request: Request, session: Session) -> str:
        asked = request.headers.get("transport", "")
        channels = re.search(r"interleaved=(\d+)", asked)
        if channels:
            session.interleaved = int(channels.group(1))
            return f"RTP/AVP/TCP;unicast;interleaved={session.interleaved}-{session.interleaved + 1}"
        ports = re.search(r"client_port=(\d+)-(\d+)", asked)
        assert ports, asked
        session.client_ports = (int(ports.group(1)), int(ports.group(2)))
        return (f"RTP/AVP;unicast;client_port={ports.group(1)}-{ports.group(2)};"
                f"server_port={self.udp_ports[0]}-{self.udp_ports[1]}")

    async def setup(self, request: Request, session: Session) -> None:
        transport = self.transport_reply(request, session)
        self.reply(session, request, headers=f"Session: 4711\r\nTransport: {transport}\r\n")

    async def _stream(self, session: Session) -> None:
        try:
            with contextlib.suppress(ConnectionError, OSError):
                await self.stream(session)
        finally:
            self.stream_ended.set()

    def send_rtp(self, session: Session, packet: bytes) -> None:
        """One RTP packet to the client, interleaved or over UDP, as it asked."""
        self.bytes_sent += len(packet)
        if session.interleaved is not None:
            session.write(b"$" + bytes([session.interleaved]) + len(packet).to_bytes(2, "big") + packet)
        elif session.client_ports is not None:
            self._udp[0].sendto(packet, (session.peer[0], session.client_ports[0]))

    async def stream(self, session: Session) -> None:
        """Real H.264 at `FPS` frames a second, for as long as the client stays."""
        sequence = 0
        frames = h264_frames(self.colour)
        index = 0
        while True:
            for payload, marker in packetize(frames[index % len(frames)]):
                self.send_rtp(session, rtp_packet(payload, sequence=sequence, timestamp=index * 90000 // FPS,
                                                  marker=marker))
                sequence += 1
            await session.writer.drain()
            index += 1
            await asyncio.sleep(1 / FPS)


class DigestCamera(HostileCamera):
    """A strict camera: every request needs digest authentication (RFC 2617, no qop) whose `uri` is the
    request's own url."""

    def __init__(self, user: str, password: str) -> None:
        super().__init__()
        self.user, self.password = user, password
        self.refused = 0

    def authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("digest "):
            return False
        fields = dict(re.findall(r'(\w+)="?([^",]*)"?', header[7:]))

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()  # RFC 2617's hash

        secret, target = md5(f"{self.user}:cam:{self.password}"), md5(f"{request.method}:{fields.get('uri')}")
        expected = md5(f"{secret}:n0nce:{target}")
        return fields.get("username") == self.user and fields.get("uri") == request.url and \
            fields.get("response") == expected

    async def answer(self, request: Request, session: Session) -> None:
        if request.method != "OPTIONS" and not self.authorized(request):
            self.refused += 1
            self.reply(session, request, "401 Unauthorized", 'WWW-Authenticate: Digest realm="cam", nonce="n0nce"\r\n')
            return
        await super().answer(request, session)


class RedirectingCamera(HostileCamera):
    """Answers DESCRIBE with a redirect to `location` ("{self}" is its own address), only once the client
    sent credentials when `after_auth` (a check of the unauthenticated DESCRIBE sees a good camera then)."""

    def __init__(self, location: str, *, after_auth: bool = False, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.location = location
        self.after_auth = after_auth
        self.redirects = 0

    async def describe(self, request: Request, session: Session) -> None:
        if self.after_auth and "authorization" not in request.headers:
            self.reply(session, request, "401 Unauthorized", 'WWW-Authenticate: Basic realm="cam"\r\n')
            return
        self.redirects += 1
        target = self.location.replace("{self}", f"{self.host}:{self.port}").replace("{n}", str(self.redirects))
        self.reply(session, request, "302 Moved Temporarily", f"Location: {target}\r\n")


class DrippingCamera(HostileCamera):
    """Sends one byte every `every` seconds from `phase` on: "head" (the DESCRIBE reply's head), "body" (its
    SDP), or "media" (after PLAY, interleaved RTP)."""

    def __init__(self, phase: str, every: float = 2.0) -> None:
        super().__init__()
        self.phase = phase
        self.every = every

    async def drip(self, session: Session, data: bytes) -> None:
        for byte in data:
            session.write(bytes([byte]))
            self.bytes_sent += 1
            await session.writer.drain()
            with contextlib.suppress(TimeoutError):  # and hang up as soon as the client does
                if not await asyncio.wait_for(session.reader.read(65536), self.every):
                    return

    async def describe(self, request: Request, session: Session) -> None:
        body = self.description(request)
        head = (f"RTSP/1.0 200 OK\r\nCSeq: {request.cseq}\r\nContent-Type: application/sdp\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        if self.phase == "head":
            await self.drip(session, head + body)
        elif self.phase == "body":
            session.write(head)
            await self.drip(session, body)
        else:
            session.write(head + body)

    async def stream(self, session: Session) -> None:
        frame = rtp_packet(b"\x65" + b"\x88" * 100, sequence=0, timestamp=0, marker=True)
        await self.drip(session, b"$\x00" + len(frame).to_bytes(2, "big") + frame)


class HugeDescriptionCamera(HostileCamera):
    """Answers DESCRIBE with a `size`-byte body, written as fast as the client takes it."""

    def __init__(self, size: int = 300 * 1024 * 1024) -> None:
        super().__init__()
        self.size = size

    async def describe(self, request: Request, session: Session) -> None:
        session.write(f"RTSP/1.0 200 OK\r\nCSeq: {request.cseq}\r\nContent-Type: application/sdp\r\n"
                      f"Content-Length: {self.size}\r\n\r\n".encode() + self.description(request))
        chunk = b"a=x-filler:" + b"f" * 65500 + b"\r\n"
        left = self.size - len(self.description(request))
        while left > 0:
            session.write(chunk[:left])
            self.bytes_sent += min(left, len(chunk))
            left -= len(chunk)
            await session.writer.drain()


class ManyTracksCamera(HostileCamera):
    """Describes `tracks` H.264 video tracks, and counts the SETUPs it gets."""

    def __init__(self, tracks: int = 500) -> None:
        super().__init__()
        self.tracks = tracks

    @property
    def setups(self) -> int:
        return self.methods.count("SETUP")

    def description(self, request: Request) -> bytes:
        head = f"v=0\r\no=- 1 1 IN IP4 {self.host}\r\ns=many\r\nt=0 0\r\na=control:*\r\n"
        track = ("m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 packetization-mode=1\r\n"
                 "a=control:track{i}\r\n")
        return (head + "".join(track.format(i=i) for i in range(self.tracks))).encode()


class FragmentFloodCamera(HostileCamera):
    """Plays real video for `good_seconds`, then one FU-A NAL unit that never ends (fragments of `fragment`
    bytes, marker bit on every packet, timestamps moving on), as fast as the client takes them."""

    def __init__(self, good_seconds: float = 1.0, fragment: int = 1400) -> None:
        super().__init__()
        self.good_seconds = good_seconds
        self.fragment = fragment
        self.flooding = asyncio.Event()

    async def stream(self, session: Session) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(super().stream(session), self.good_seconds)
        self.flooding.set()
        sequence = 40_000
        start = bytes([0x7C, 0x85]) + b"\x88" * self.fragment  # FU-A start of an IDR slice
        middle = bytes([0x7C, 0x05]) + b"\x88" * self.fragment
        self.send_rtp(session, rtp_packet(start, sequence=sequence, timestamp=0, marker=True))
        while True:
            for _ in range(64):
                sequence += 1
                self.send_rtp(session, rtp_packet(middle, sequence=sequence, timestamp=sequence * 10, marker=True))
            await session.writer.drain()
            if session.client_ports is not None:
                await asyncio.sleep(0.001)  # UDP has no back-pressure: do not fill the socket buffers blindly


class TinyFrameCamera(HostileCamera):
    """Plays real video for `good_seconds`, then valid RTP of 2-byte pictures (each a new frame) as fast as the
    client takes them: the most packets a second a camera can send."""

    def __init__(self, good_seconds: float = 1.0) -> None:
        super().__init__()
        self.good_seconds = good_seconds
        self.flooding = asyncio.Event()

    async def stream(self, session: Session) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(super().stream(session), self.good_seconds)
        self.flooding.set()
        burst = [rtp_packet(b"\x41\x88", sequence=i, timestamp=i * 10, marker=True) for i in range(4096)]
        while True:
            for packet in burst:
                self.send_rtp(session, packet)
            await session.writer.drain()
            if session.client_ports is not None:
                await asyncio.sleep(0.001)


class SourceAddressCamera(HostileCamera):
    """Answers a UDP SETUP with `source=<source>` and the server ports `ports` (a trap's), as a camera that
    would make the server send its RTP and RTCP elsewhere."""

    def __init__(self, source: str, ports: tuple[int, int]) -> None:
        super().__init__()
        self.source = source
        self.trap_ports = ports

    def transport_reply(self, request: Request, session: Session) -> str:
        reply = super().transport_reply(request, session)
        if session.client_ports is None:
            return reply
        return (f"RTP/AVP;unicast;client_port={session.client_ports[0]}-{session.client_ports[1]};"
                f"server_port={self.trap_ports[0]}-{self.trap_ports[1]};source={self.source}")


class TrapListener:
    """A TCP listener (and a UDP port pair) on `host` that counts what reaches it: the place no connection
    and no datagram may go."""

    def __init__(self, host: str = "127.0.0.2", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.connections = 0
        self.datagrams: list[tuple[bytes, tuple[str, int]]] = []
        self.udp_ports: tuple[int, int] = (0, 0)
        self._server: asyncio.Server | None = None
        self._udp: list[asyncio.DatagramTransport] = []

    async def start(self) -> TrapListener:
        async def count(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self._server = await asyncio.start_server(count, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self._udp, self.udp_ports = await bind_udp_pair(self.host, self.datagrams)
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for transport in self._udp:
            transport.close()
