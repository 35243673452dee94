"""What may pass between a camera and FFmpeg: a sans-I/O guard of one RTSP connection.

The relay (`media/rtsp_relay.py`) hands `RtspGuard` the bytes each side sends and forwards what it
returns; the guard does no I/O and keeps no clock. FFmpeg speaks to the relay only, so everything
it would otherwise trust from a camera is checked here first:

- every message head is bounded (`HEAD_MAX_BYTES`) and every body (`max_sdp_bytes`) before it is read;
- a redirect (3xx) never reaches FFmpeg: the guard reports its Location (the source checks the target
  and starts again, counting against `max_redirects`);
- the description (SDP) may have at most `max_tracks` media sections; FFmpeg is given the session part
  and the first H.264 or H.265 video section only, so it sets up one track (one channel pair, or one UDP
  port pair);
- a SETUP reply's Transport is rebuilt from what FFmpeg may use: interleaved channels (TCP) or server
  ports (UDP, rewritten to the relay's loopback pair); `source=`, `destination=` and multicast are never
  passed on, so FFmpeg only ever talks to 127.0.0.1;
- RTP of the video track (interleaved or from the relay's UDP socket) is measured per access unit, as
  FFmpeg's H.264 or H.265 parser gathers it: bytes, packets (fragments pending) and NAL units; a frame over
  a bound ends the pull (a frame over `gop.max_bytes` could never be cached anyway).

RTSP framing follows RFC 2326 / 7826 (`$` + channel + 16-bit length for interleaved data).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from streamsnap.reasons import StreamEnd

HEAD_MAX_BYTES = 16 * 1024
"Longest head (start line and headers) of an RTSP message either side may send."

_REQUEST_LINE = re.compile(rb"^[A-Z_]{1,32} \S{1,4096} RTSP/\d\.\d$")
_STATUS_LINE = re.compile(rb"^RTSP/\d\.\d (\d{3})(?: .*)?$")
_PORTS = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")
_CLIENT_PORT = re.compile(r"client_port=(\d{1,5})(?:-(\d{1,5}))?", re.IGNORECASE)


@dataclass(frozen=True)
class GuardLimits:
    """The bounds one pull's guard enforces."""

    sdp_bytes: int
    "Largest body (the description) a camera message may have (`rtsp.max_sdp_bytes`)."
    tracks: int
    "Media sections (m= lines) a description may have (`rtsp.max_tracks`)."
    frame_bytes: int
    "RTP payload bytes one video frame may hold (`gop.max_bytes`)."
    frame_packets: int
    "RTP packets one video frame may hold: its fragments pending (`webrtc.rtp_max_packets_per_frame`)."
    frame_nals: int
    "NAL units one video frame may hold (`rtsp.max_frame_nals`)."
    packets_per_second: int
    """Packets (interleaved frames, UDP datagrams) a camera may send a second; more wait (TCP) or are dropped
    (UDP) (`rtsp.max_packets_per_second`)."""


class GuardRefusal(Exception):
    """The camera said something FFmpeg must not hear; the pull ends with `reason`."""

    def __init__(self, reason: StreamEnd, words: str) -> None:
        super().__init__(words)
        self.reason = reason
        self.words = words


@dataclass(frozen=True)
class Redirected:
    """The camera answered with a redirect (not passed on)."""

    location: str
    "The Location header as the camera wrote it (maybe relative)."


@dataclass(frozen=True)
class ClientPorts:
    """FFmpeg's RTP and RTCP ports on 127.0.0.1 (UDP transport), from its SETUP."""

    rtp: int
    rtcp: int


@dataclass(frozen=True)
class ServerPorts:
    """The camera's RTP and RTCP ports (UDP transport), from its SETUP reply; its address is the checked one."""

    rtp: int
    rtcp: int


@dataclass(frozen=True)
class Played:
    """The camera answered PLAY."""


Event = Redirected | ClientPorts | ServerPorts | Played


@dataclass(frozen=True)
class UdpPorts:
    """The relay's UDP port pairs: towards the camera, and on 127.0.0.1 towards FFmpeg."""

    camera: tuple[int, int]
    loopback: tuple[int, int]


@dataclass
class _Message:
    start: bytes
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers if key.lower() == name), None)

    def replace_header(self, name: str, value: str) -> None:
        lowered = name.lower()
        self.headers = [(key, value if key.lower() == lowered else old) for key, old in self.headers]

    def render(self) -> bytes:
        if self.body or self.header("content-length") is not None:
            self.headers = [(key, value) for key, value in self.headers if key.lower() != "content-length"]
            self.headers.append(("Content-Length", str(len(self.body))))
        head = b"\r\n".join([self.start] + [f"{key}: {value}".encode("latin-1") for key, value in self.headers])
        return head + b"\r\n\r\n" + self.body


@dataclass
class _Framer:
    """Splits one direction's bytes into RTSP messages and interleaved frames, bounded."""

    side: str
    body_max: int
    buffer: bytearray = field(default_factory=bytearray)
    backlog: bool = False
    "Whether the last `feed` stopped at its frame budget with bytes left to read."
    _searched: int = 0
    "Where the search for the end of a pending head goes on from (what was searched stays searched)."

    def feed(self, data: bytes, frames: int | None = None) -> list[_Message | bytes]:
        """The messages and interleaved frames (`$`, channel, length and data, as sent) complete so far; at most
        `frames` interleaved frames (the rest stays buffered: `backlog`)."""
        self.buffer += data
        out: list[_Message | bytes] = []
        position = 0
        self.backlog = False
        try:
            while position < len(self.buffer):
                if self.buffer[position] == 0x24:  # "$": interleaved binary data
                    if frames is not None:
                        if frames <= 0:
                            self.backlog = True
                            break
                        frames -= 1
                    if len(self.buffer) - position < 4:
                        break
                    end = position + 4 + int.from_bytes(self.buffer[position + 2:position + 4], "big")
                    if len(self.buffer) < end:
                        break
                    out.append(bytes(self.buffer[position:end]))
                    position = end
                    continue
                message, position = self._message(position)
                if message is None:
                    break
                out.append(message)
        finally:
            if position:
                del self.buffer[:position]  # once per feed: the frames of one read are not moved one by one
                self._searched = max(0, self._searched - position)
        return out

    def _message(self, position: int) -> tuple[_Message | None, int]:
        """The message at `position` and where the next begins, or None (and `position`) while incomplete."""
        end, gap = self._head_end(position)
        if end < 0:
            if len(self.buffer) - position > HEAD_MAX_BYTES:
                raise GuardRefusal(StreamEnd.INVALID_SDP, f"{self.side} sent a head over {HEAD_MAX_BYTES} bytes")
            self._searched = max(position, len(self.buffer) - 3)
            return None, position
        if end - position > HEAD_MAX_BYTES:
            raise GuardRefusal(StreamEnd.INVALID_SDP, f"{self.side} sent a head over {HEAD_MAX_BYTES} bytes")
        lines = [line.rstrip(b"\r") for line in bytes(self.buffer[position:end]).split(b"\n")]
        start = lines[0]
        if not (_STATUS_LINE.match(start) or _REQUEST_LINE.match(start)):
            raise GuardRefusal(StreamEnd.INVALID_SDP, f"{self.side} does not speak RTSP")
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, colon, value = line.decode("latin-1").partition(":")
            if not colon or not name.strip():
                raise GuardRefusal(StreamEnd.INVALID_SDP, f"{self.side} sent a header that is not one")
            headers.append((name.strip(), value.strip()))
        length_text = next((value for key, value in headers if key.lower() == "content-length"), "0")
        if not length_text.isdigit() or len(length_text) > 12:
            raise GuardRefusal(StreamEnd.INVALID_SDP, f"{self.side} sent a bad Content-Length")
        length = int(length_text)
        if length > self.body_max:
            raise GuardRefusal(StreamEnd.INVALID_SDP, f"{self.side} announced a body of {length} bytes "
                                                      f"(more than rtsp.max_sdp_bytes, {self.body_max})")
        body_start = end + gap
        if len(self.buffer) < body_start + length:
            self._searched = end  # the head is found again at once, when the body is complete
            return None, position
        self._searched = 0
        return _Message(start, headers, bytes(self.buffer[body_start:body_start + length])), body_start + length

    def _head_end(self, position: int) -> tuple[int, int]:
        """Where the head at `position` ends and the length of the blank line there (CRLF CRLF, or LF LF as
        FFmpeg accepts)."""
        since = max(position, self._searched)
        found = [(index, len(mark)) for mark in (b"\r\n\r\n", b"\n\n")
                 if (index := self.buffer.find(mark, since)) >= 0]
        return min(found) if found else (-1, 0)


def _ports(text: str, lowest: int = 1, highest: int = 65535) -> tuple[int, int] | None:
    """A pair `a-b` (or `a`, meaning `a-(a+1)`) within the bounds, or None."""
    match = _PORTS.match(text)
    if match is None:
        return None
    first = int(match.group(1))
    second = int(match.group(2)) if match.group(2) else first + 1
    if not (lowest <= first <= highest and lowest <= second <= highest):
        return None
    return first, second


def _transport_parameters(value: str) -> tuple[str, dict[str, str]]:
    """The first transport spec of a Transport header: its protocol and its parameters (names lowered)."""
    spec = value.split(",", 1)[0]
    parts = [part.strip() for part in spec.split(";")]
    parameters: dict[str, str] = {}
    for part in parts[1:]:
        name, _, text = part.partition("=")
        parameters[name.strip().lower()] = text.strip()
    return parts[0].upper(), parameters


VIDEO_ENCODINGS = ("H264", "H265")
"The RTP encodings (rtpmap names) of the video FFmpeg is given: the codecs the snapshot engine decodes."


def choose_video_track(sdp: bytes, max_tracks: int) -> tuple[bytes, str]:
    """The description FFmpeg is given (the session part and the first H.264 or H.265 video section) and that
    section's encoding; raises `GuardRefusal`."""
    text = sdp.decode("latin-1")
    lines = [line for line in text.replace("\r\n", "\n").split("\n") if line]
    media = [index for index, line in enumerate(lines) if line.startswith("m=")]
    if len(media) > max_tracks:
        raise GuardRefusal(StreamEnd.INVALID_SDP, f"describes {len(media)} tracks (more than rtsp.max_tracks, "
                                                  f"{max_tracks})")
    seen: list[str] = []
    for number, first in enumerate(media):
        end = media[number + 1] if number + 1 < len(media) else len(lines)
        section = lines[first:end]
        words = section[0][2:].split()
        if len(words) < 4:
            continue
        kind, formats = words[0].lower(), words[3:]
        encodings = {line[9:].split(None, 1)[0]: line[9:].split(None, 1)[1].split("/", 1)[0].upper()
                     for line in section if line.startswith("a=rtpmap:") and len(line[9:].split(None, 1)) == 2}
        encoding = encodings.get(formats[0], "")
        seen.append(f"{kind} {encoding or formats[0]}")
        if kind == "video" and encoding in VIDEO_ENCODINGS:
            return ("\r\n".join(lines[:media[0]] + section) + "\r\n").encode("latin-1"), encoding
    raise GuardRefusal(StreamEnd.UNSUPPORTED_CODEC, "describes no H.264 or H.265 video"
                       + (f" ({', '.join(seen)})" if seen else ""))


NalStart = tuple[int, int]
"(NAL unit type, the first byte after its header) of a NAL unit an RTP packet begins."


def _h264_starts(payload: bytes | memoryview, most: int) -> list[NalStart] | None:
    """The NAL units an H.264 RTP payload (RFC 6184) begins; None for a packet FFmpeg drops."""
    kind = payload[0] & 0x1F
    if 1 <= kind <= 23:
        return [(kind, payload[1] if len(payload) > 1 else 0)]
    if kind == 24:  # STAP-A
        starts: list[NalStart] = []
        position = 1
        while position + 3 <= len(payload) and len(starts) <= most:
            size = int.from_bytes(payload[position:position + 2], "big")
            unit = payload[position + 2:position + 2 + size]
            if size == 0 or len(unit) < size:
                return None
            starts.append((unit[0] & 0x1F, unit[1] if size > 1 else 0))
            position += 2 + size
        return starts
    if kind == 28:  # FU-A
        if len(payload) < 2:
            return None
        return [(payload[1] & 0x1F, payload[2] if len(payload) > 2 else 0)] if payload[1] & 0x80 else []
    return None  # STAP-B, MTAP, FU-B and reserved types: FFmpeg drops them too


def _h265_starts(payload: bytes | memoryview, most: int) -> list[NalStart] | None:
    """The NAL units an H.265 RTP payload (RFC 7798, without DONL) begins; None for a packet FFmpeg drops."""
    if len(payload) < 3:
        return None
    kind = (payload[0] >> 1) & 0x3F
    if kind < 48:
        return [(kind, payload[2])]
    if kind == 48:  # aggregation packet
        starts: list[NalStart] = []
        position = 2
        while position + 4 <= len(payload) and len(starts) <= most:
            size = int.from_bytes(payload[position:position + 2], "big")
            unit = payload[position + 2:position + 2 + size]
            if size < 2 or len(unit) < size:
                return None
            starts.append(((unit[0] >> 1) & 0x3F, unit[2] if size > 2 else 0))
            position += 2 + size
        return starts
    if kind == 49:  # fragmentation unit: its header's S bit begins the unit
        return [(payload[2] & 0x3F, payload[3] if len(payload) > 3 else 0)] if payload[2] & 0x80 else []
    return None  # PACI and reserved types: FFmpeg drops them too


@dataclass(frozen=True)
class _Syntax:
    """Where FFmpeg's parser of one codec ends a picture: the NAL types of slices, those that end a picture
    once a slice was seen (parameter sets, SEI, access unit delimiters), and how a packet's units are read."""

    starts: Callable[[bytes | memoryview, int], list[NalStart] | None]
    slices: frozenset[int]
    boundaries: frozenset[int]


SYNTAX = {
    "H264": _Syntax(_h264_starts, frozenset({1, 2, 5}), frozenset({6, 7, 8, 9})),
    # VCL types 0..31 (first_slice_segment_in_pic_flag is the first bit after the header); VPS, SPS, PPS,
    # AUD, prefix SEI.
    "H265": _Syntax(_h265_starts, frozenset(range(32)), frozenset({32, 33, 34, 35, 39})),
}


@dataclass
class FrameBounds:
    """One RTP flow of H.264 or H.265 measured per access unit, as FFmpeg's parser gathers it.

    A frame starts where FFmpeg's parser would end the one before: a slice that starts a picture (its first
    macroblock 0, its first_slice_segment_in_pic_flag set), or an SEI, parameter set or access unit
    delimiter, once a slice was seen. Marker bits are not trusted: a camera may set them on every packet of a
    frame that never ends.
    """

    limits: GuardLimits
    codec: str = "H264"
    "The encoding of the described video track (`VIDEO_ENCODINGS`)."
    size: int = 0
    packets: int = 0
    nals: int = 0
    slice_seen: bool = False

    def check(self, packet: bytes | memoryview) -> bool:
        """Whether `packet` is RTP FFmpeg should get (False: drop it); raises `GuardRefusal` past a bound."""
        payload = _rtp_payload(packet)
        if not payload:
            return False
        syntax = SYNTAX[self.codec]
        starts = syntax.starts(payload, self.limits.frame_nals)
        if starts is None:
            return False
        for nal_type, first in starts:
            if nal_type in syntax.slices:
                if self.slice_seen and first & 0x80:  # the first slice of a picture: a new one
                    self._new_frame()
                self.slice_seen = True
            elif nal_type in syntax.boundaries and self.slice_seen:
                self._new_frame()
                self.slice_seen = False
        self.size += len(payload)
        self.packets += 1
        self.nals += len(starts)
        if self.size > self.limits.frame_bytes:
            raise GuardRefusal(StreamEnd.UNSUPPORTED_CODEC, f"sends a video frame of more than "
                                                            f"{self.limits.frame_bytes} bytes (gop.max_bytes)")
        if self.packets > self.limits.frame_packets:
            raise GuardRefusal(StreamEnd.UNSUPPORTED_CODEC, f"sends a video frame of more than "
                                                            f"{self.limits.frame_packets} packets "
                                                            f"(webrtc.rtp_max_packets_per_frame)")
        if self.nals > self.limits.frame_nals:
            raise GuardRefusal(StreamEnd.UNSUPPORTED_CODEC, f"sends a video frame of more than "
                                                            f"{self.limits.frame_nals} NAL units (rtsp.max_frame_nals)")
        return True

    def _new_frame(self) -> None:
        self.size = self.packets = self.nals = 0


def _rtp_payload(packet: bytes | memoryview) -> bytes | memoryview:
    """The payload of an RTP packet (empty when it is not one)."""
    if len(packet) < 12 or packet[0] >> 6 != 2:
        return b""
    offset = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10:  # header extension
        if len(packet) < offset + 4:
            return b""
        offset += 4 + 4 * int.from_bytes(packet[offset + 2:offset + 4], "big")
    end = len(packet)
    if packet[0] & 0x20:  # padding
        end -= packet[-1]
    return packet[offset:end] if offset < end else b""


class RtspGuard:
    """One RTSP connection between FFmpeg (the client) and a camera, checked in both directions."""

    def __init__(self, limits: GuardLimits, transport: str, udp: UdpPorts | None = None) -> None:
        self.limits = limits
        self.transport = transport
        "What FFmpeg was told to ask: tcp (interleaved) or udp."
        self.udp = udp
        self.frames = FrameBounds(limits)
        "The video track's RTP, interleaved or over UDP."
        self.channels: tuple[int, int] | None = None
        "The video track's interleaved RTP and RTCP channels, once set up."
        self.client_ports: tuple[int, int] | None = None
        self._camera = _Framer("the camera", limits.sdp_bytes)
        self._client = _Framer("FFmpeg", limits.sdp_bytes)
        self.camera_packets = 0
        "Interleaved frames the camera sent (passed or not): what the relay's packet rate counts."
        self._asked: dict[str, str] = {}
        "Method of each request FFmpeg sent, by CSeq."
        self._setups = 0

    def from_client(self, data: bytes) -> tuple[bytes, list[Event]]:
        """What to send the camera of `data` from FFmpeg, and what happened."""
        out: list[bytes] = []
        events: list[Event] = []
        for item in self._client.feed(data):
            if isinstance(item, bytes):  # FFmpeg's RTCP receiver reports
                out.append(item)
                continue
            method = item.start.split(b" ", 1)[0].decode("ascii")
            cseq = item.header("cseq")
            if cseq is not None and len(self._asked) < 64:
                self._asked[cseq] = method
            if method == "SETUP" and self.udp is not None:
                self._udp_setup(item, events)
            out.append(item.render())
        return b"".join(out), events

    @property
    def backlog(self) -> bool:
        """Whether camera bytes wait in the guard for the next budget (`from_camera(b"", frames)`)."""
        return self._camera.backlog

    def from_camera(self, data: bytes, frames: int | None = None) -> tuple[bytes, list[Event]]:
        """What to send FFmpeg of `data` from the camera (at most `frames` interleaved frames of it; the rest
        waits: `backlog`), and what happened; raises `GuardRefusal`."""
        out: list[bytes] = []
        events: list[Event] = []
        for item in self._camera.feed(data, frames):
            if isinstance(item, bytes):
                self.camera_packets += 1
                channel = item[1]
                if self.channels is None or channel not in self.channels:
                    continue  # nothing set up there: FFmpeg never asked for it
                if channel == self.channels[0] and not self.frames.check(memoryview(item)[4:]):
                    continue
                out.append(item)
                continue
            status = _STATUS_LINE.match(item.start)
            if status is None:  # a request of the camera's own (OPTIONS, GET_PARAMETER, ANNOUNCE...)
                out.append(item.render())
                continue
            code = int(status.group(1))
            method = self._asked.pop(item.header("cseq") or "", "")
            if 300 <= code < 400:
                location = item.header("location")
                if not location:
                    raise GuardRefusal(StreamEnd.SOURCE_UNREACHABLE, f"answered {code} without a Location")
                events.append(Redirected(location))
                return b"".join(out), events
            if 200 <= code < 300:
                if method == "DESCRIBE":
                    item.body, codec = choose_video_track(item.body, self.limits.tracks)
                    self.frames = FrameBounds(self.limits, codec)
                elif method == "SETUP":
                    self._setup_reply(item, events)
                elif method == "PLAY":
                    events.append(Played())
            out.append(item.render())
        return b"".join(out), events

    def check_udp_rtp(self, packet: bytes) -> bool:
        """Whether an RTP datagram from the camera goes on to FFmpeg; raises `GuardRefusal` past a bound."""
        return self.frames.check(packet)

    def _udp_setup(self, request: _Message, events: list[Event]) -> None:
        """FFmpeg's SETUP (UDP): its ports noted, the camera told the relay's."""
        assert self.udp is not None
        value = request.header("transport") or ""
        match = _CLIENT_PORT.search(value)
        if match is None:
            return
        ports = _ports(match.group(1) + (f"-{match.group(2)}" if match.group(2) else ""))
        if ports is None:
            return
        self.client_ports = ports
        events.append(ClientPorts(*ports))
        camera = self.udp.camera
        request.replace_header("Transport", _CLIENT_PORT.sub(f"client_port={camera[0]}-{camera[1]}", value))

    def _setup_reply(self, reply: _Message, events: list[Event]) -> None:
        """The camera's SETUP reply, its Transport rebuilt from what FFmpeg may use."""
        self._setups += 1
        if self._setups > 1:
            raise GuardRefusal(StreamEnd.INVALID_SDP, "answered more SETUPs than the one track FFmpeg asked")
        protocol, parameters = _transport_parameters(reply.header("transport") or "")
        if "multicast" in parameters or not protocol.startswith("RTP/AVP"):
            raise GuardRefusal(StreamEnd.INVALID_SDP, "answered SETUP with a transport that was not asked "
                                                      "(multicast, or not RTP)")
        ssrc = parameters.get("ssrc", "")
        tail = f";ssrc={ssrc}" if re.fullmatch(r"[0-9A-Fa-f]{1,8}", ssrc) else ""
        if self.transport == "tcp":
            channels = _ports(parameters.get("interleaved", ""), 0, 255)
            if protocol != "RTP/AVP/TCP" or channels is None:
                raise GuardRefusal(StreamEnd.INVALID_SDP, "answered SETUP without interleaved channels")
            self.channels = channels
            value = f"RTP/AVP/TCP;unicast;interleaved={channels[0]}-{channels[1]}{tail}"
        else:
            server = _ports(parameters.get("server_port", ""))
            if protocol == "RTP/AVP/TCP" or server is None or self.client_ports is None or self.udp is None:
                raise GuardRefusal(StreamEnd.INVALID_SDP, "answered SETUP without UDP server ports")
            events.append(ServerPorts(*server))
            client, loopback = self.client_ports, self.udp.loopback
            value = (f"RTP/AVP;unicast;client_port={client[0]}-{client[1]};"
                     f"server_port={loopback[0]}-{loopback[1]}{tail}")
        reply.replace_header("Transport", value)
